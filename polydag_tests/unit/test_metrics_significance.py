"""compare_to_baseline and its statistics on crafted paired data."""

import numpy as np
import polars as pl
import pytest
from scipy.stats import wilcoxon

from polydag.core.evaluation.metrics.seeds import POOLED_SEED_KEY
from polydag.core.evaluation.metrics.significance import cohens_dz, compare_to_baseline, holm_adjust, wilcoxon_p

METRICS = ("distinct_1", "distinct_2", "self_bleu", "semantic_diversity", "vendi")


def _table(effects: dict[str, float], n_prompts=40, seed=0):
    """Per-prompt metrics for λ "0.0" plus one λ per entry of effects (added to distinct_2,
    subtracted from self_bleu), with per-prompt noise shared across λ (pairing)."""
    rng = np.random.default_rng(seed)
    base_d2 = rng.uniform(0.2, 0.5, n_prompts)
    base_sb = rng.uniform(0.3, 0.6, n_prompts)
    passed = rng.integers(0, 11, n_prompts)
    rows = []
    for key, effect in {"0.0": 0.0, **effects}.items():
        noise = rng.normal(0, 0.01, n_prompts) if effect else np.zeros(n_prompts)
        for p in range(n_prompts):
            rows.append({
                "lambda_key": key, "prompt_id": f"p{p:03d}", "n_samples": 10, "n_passed": int(passed[p]),
                "distinct_1": 0.5, "distinct_2": float(base_d2[p] + effect + noise[p]),
                "self_bleu": float(base_sb[p] - effect + noise[p]), "semantic_diversity": 0.4, "vendi": 3.0,
            })
    return pl.DataFrame(rows)


def test_clear_effect_is_significant_with_ci_excluding_zero():
    table = _table({"1.0": 0.05})
    result = compare_to_baseline(table, metrics=("distinct_2", "self_bleu"), n_boot=999)
    d2 = result.filter(pl.col("metric") == "distinct_2").row(0, named=True)
    assert d2["n_pairs"] == 40
    assert d2["diff"] == pytest.approx(0.05, abs=0.01)
    assert d2["rel_change"] == pytest.approx(d2["diff"] / d2["baseline"])
    assert d2["ci_low"] > 0 and d2["ci_low"] < d2["diff"] < d2["ci_high"]
    assert d2["ci_method"] == "BCa"
    assert d2["p_wilcoxon"] < 1e-6
    assert d2["cohens_dz"] > 2
    sb = result.filter(pl.col("metric") == "self_bleu").row(0, named=True)
    assert sb["higher_is_better"] is False and sb["diff"] < 0 and sb["ci_high"] < 0


def test_identical_data_gives_p_one():
    table = _table({"1.0": 0.0})
    both = compare_to_baseline(table, metrics=METRICS, n_boot=200)
    # a table without seeds is seed "0"; its pooled rows equal its seed rows
    assert both["seed_key"].to_list() == ["0"] * len(METRICS) + [POOLED_SEED_KEY] * len(METRICS)
    result = both.filter(pl.col("seed_key") == POOLED_SEED_KEY)
    assert result["p_wilcoxon"].to_list() == [1.0] * len(METRICS)
    assert result["p_holm"].to_list() == [1.0] * len(METRICS)
    assert result["cohens_dz"].to_list() == [0.0] * len(METRICS)
    assert result["ci_low"].to_list() == [0.0] * len(METRICS) == result["ci_high"].to_list()
    assert set(result["ci_method"].to_list()) == {"constant"}


def test_pass_at_k_is_compared_per_prompt():
    table = _table({"1.0": 0.0})
    better = table.with_columns(
        n_passed=pl.when(pl.col("lambda_key") == "1.0").then(pl.min_horizontal(pl.col("n_passed") + 3, 10))
        .otherwise(pl.col("n_passed"))
    )
    result = compare_to_baseline(better, metrics=("pass_at_1", "pass_at_10"), n_boot=200)
    p1 = result.filter(pl.col("metric") == "pass_at_1").row(0, named=True)
    assert p1["diff"] > 0 and p1["p_wilcoxon"] < 0.01
    assert p1["value"] == pytest.approx(better.filter(pl.col("lambda_key") == "1.0")["n_passed"].mean() / 10)


def test_holm_across_lambdas():
    table = _table({"0.3": 0.002, "1.0": 0.05, "2.0": 0.1})
    result = (compare_to_baseline(table, metrics=("distinct_2",), n_boot=200)
              .filter(pl.col("seed_key") == POOLED_SEED_KEY).sort("diversity_weight"))
    raw = result["p_wilcoxon"].to_list()
    assert result["p_holm"].to_list() == pytest.approx(holm_adjust(raw))
    assert all(h >= r for h, r in zip(result["p_holm"], raw))


def test_holm_adjust_hand_worked():
    # sorted 0.01, 0.02, 0.04 with m=3: 0.03, max(0.03, 0.04)=0.04, max(0.04, 0.04)=0.04
    assert holm_adjust([0.04, 0.01, 0.02]) == pytest.approx([0.04, 0.03, 0.04])
    assert holm_adjust([0.5, 0.6]) == pytest.approx([1.0, 1.0])
    adjusted = holm_adjust([0.01, float("nan")])
    assert adjusted[0] == pytest.approx(0.01) and np.isnan(adjusted[1])


def test_small_statistics():
    d = np.array([0.1, 0.2, 0.3, -0.1])
    assert cohens_dz(d) == pytest.approx(d.mean() / d.std(ddof=1))
    assert np.isnan(cohens_dz(np.array([0.2, 0.2])))
    assert wilcoxon_p(np.zeros(5)) == 1.0
    assert wilcoxon_p(d) == pytest.approx(wilcoxon(d).pvalue)


def test_refusals():
    table = _table({"1.0": 0.05})
    with pytest.raises(ValueError, match="baseline λ '0.0' has no rows.*materialize"):
        compare_to_baseline(table.filter(pl.col("lambda_key") != "0.0"))
    with pytest.raises(ValueError, match="cover different prompts"):
        compare_to_baseline(table.filter(~((pl.col("lambda_key") == "1.0") & (pl.col("prompt_id") == "p000"))))
    with pytest.raises(ValueError, match="unknown metric"):
        compare_to_baseline(table, metrics=("bleu_score",))
    with pytest.raises(ValueError, match="repeated"):
        compare_to_baseline(pl.concat([table, table.head(1)]))


def test_null_values_are_dropped_pairwise():
    table = _table({"1.0": 0.05}).with_columns(
        distinct_2=pl.when((pl.col("lambda_key") == "1.0") & (pl.col("prompt_id") == "p001")).then(None)
        .otherwise(pl.col("distinct_2"))
    )
    row = compare_to_baseline(table, metrics=("distinct_2",), n_boot=200).row(0, named=True)
    assert row["n_pairs"] == 39
