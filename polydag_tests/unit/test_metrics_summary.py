"""summarize_metrics: per-λ means, bootstrap SEs and pass@k from hand-made metric tables."""

import numpy as np
import polars as pl
import pytest

from polydag.core.evaluation.metrics.pass_at_k import pass_at_k
from polydag.core.evaluation.metrics.summary import bootstrap_se, summarize_metrics, with_pass_at_k


def _metrics(n_samples=10):
    rows = []
    for key, passed, d2 in (("0.0", [10, 5, 0, 2], [0.2, 0.3, 0.4, 0.5]), ("2.0", [9, 9, 1, 4], [0.5, 0.6, None, 0.8])):
        for i, (c, d) in enumerate(zip(passed, d2)):
            rows.append({"lambda_key": key, "diversity_weight": float(key), "prompt_id": f"p{i}",
                         "n_samples": n_samples, "n_passed": c, "distinct_1": 0.5, "distinct_2": d,
                         "self_bleu": 0.1 * (i + 1), "semantic_diversity": 0.3, "vendi": 2.0})
    return pl.DataFrame(rows)


def test_means_and_pass_at_k():
    both = summarize_metrics(_metrics(), n_boot=200)
    # a table without seeds is seed "0", followed by its pooled row (the same numbers)
    assert both["seed_key"].to_list() == ["0", "pooled", "0", "pooled"]
    assert both.filter(pl.col("seed_key") == "0").drop("seed_key", "seed").equals(
        both.filter(pl.col("seed_key") == "pooled").drop("seed_key", "seed"))
    summary = both.filter(pl.col("seed_key") == "pooled")
    assert summary["lambda_key"].to_list() == ["0.0", "2.0"]
    base = summary.row(0, named=True)
    assert base["n_prompts"] == 4 and base["n_samples"] == 40 and base["n_passed"] == 17
    assert base["distinct_2"] == pytest.approx(0.35)
    assert base["self_bleu"] == pytest.approx(0.25)
    assert base["pass_at_1"] == pytest.approx(np.mean([1.0, 0.5, 0.0, 0.2]))
    assert base["pass_at_5"] == pytest.approx(np.mean([pass_at_k(10, c, 5) for c in (10, 5, 0, 2)]))
    assert base["pass_at_10"] == pytest.approx(0.75)  # every prompt with c > 0 passes at k = n
    strong = summary.row(1, named=True)
    # a null per-prompt value is left out of the mean and counted
    assert strong["distinct_2"] == pytest.approx(np.mean([0.5, 0.6, 0.8]))
    assert strong["distinct_2_n"] == 3 and strong["distinct_1_n"] == 4


def test_standard_errors():
    summary = summarize_metrics(_metrics(), n_boot=4000, seed=1)
    base = summary.row(0, named=True)
    assert base["distinct_1_se"] == 0.0  # constant values
    values = np.array([0.1, 0.2, 0.3, 0.4])
    analytic = values.std(ddof=0) / np.sqrt(len(values))  # the bootstrap SE of a mean
    assert base["self_bleu_se"] == pytest.approx(analytic, rel=0.1)


def test_bootstrap_se_is_deterministic_and_nan_for_one_value():
    values = np.arange(20.0)
    assert bootstrap_se(values, 500, 3) == bootstrap_se(values, 500, 3)
    assert np.isnan(bootstrap_se(np.array([1.0]), 500, 3))


def _five_samples():
    return _metrics(n_samples=5).with_columns(n_passed=pl.min_horizontal("n_passed", 5))


def test_k_larger_than_n_is_refused():
    with pytest.raises(ValueError, match="pass@10 needs at least 10 samples.*n_samples=5"):
        summarize_metrics(_five_samples(), ks=(1, 10))
    table = with_pass_at_k(_five_samples(), ks=(1, 5))
    assert "pass_at_5" in table.columns


def test_more_passes_than_samples_is_refused():
    with pytest.raises(ValueError, match="n_passed > n_samples.*prompt_id='p0'"):
        summarize_metrics(_metrics(n_samples=5), ks=(1,))


def test_missing_columns_are_refused():
    with pytest.raises(ValueError, match="lacks columns"):
        summarize_metrics(_metrics().drop("vendi"))
