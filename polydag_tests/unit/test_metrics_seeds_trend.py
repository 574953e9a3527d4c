"""Seeds in the comparison and the summary (per seed and pooled), and the dose-response trend test."""

import numpy as np
import polars as pl
import pytest
from scipy.stats import page_trend_test, wilcoxon

from polydag.core.evaluation.metrics.seeds import POOLED_SEED_KEY
from polydag.core.evaluation.metrics.significance import compare_to_baseline
from polydag.core.evaluation.metrics.summary import summarize_metrics
from polydag.core.evaluation.metrics.trend import dose_response_trends

N_PROMPTS = 12


def _table(effect_of, seeds=("0", "1", "2"), lambdas=("0.0", "1.0"), noise=0.0, seed=0):
    """Per-prompt metrics with seed columns: distinct_2 = prompt base + effect_of(λ, seed) (+ noise)."""
    rng = np.random.default_rng(seed)
    base = rng.uniform(0.3, 0.6, N_PROMPTS)
    rows = []
    for s in seeds:
        for key in lambdas:
            jitter = rng.normal(0, noise, N_PROMPTS) if noise else np.zeros(N_PROMPTS)
            for p in range(N_PROMPTS):
                d2 = float(base[p] + effect_of(float(key), int(s), p) + jitter[p])
                rows.append({"lambda_key": key, "seed_key": s, "seed": int(s), "prompt_id": f"p{p:02d}",
                             "n_samples": 10, "n_passed": 5, "distinct_1": 0.5, "distinct_2": d2,
                             "self_bleu": 1.0 - d2, "semantic_diversity": 0.4, "vendi": 3.0})
    return pl.DataFrame(rows)


def _per_seed_effect(lam, s, p):
    # seed 0 and 1 gain, seed 2 loses a little; the prompt index varies the size
    return lam * {0: 0.04, 1: 0.02, 2: -0.01}[s] * (1 + p / N_PROMPTS)


def test_each_seed_is_compared_with_its_own_baseline_and_the_pooled_test_uses_seed_means():
    table = _table(_per_seed_effect)
    result = compare_to_baseline(table, metrics=("distinct_2",), n_boot=200)
    assert result["seed_key"].to_list() == ["0", "1", "2", POOLED_SEED_KEY]
    assert result["aggregation"].to_list() == ["seed", "seed", "seed", "mean_over_seeds"]
    assert result["n_seeds"].to_list() == [1, 1, 1, 3]
    for row in result.head(3).iter_rows(named=True):
        s = row["seed_key"]
        x = table.filter((pl.col("seed_key") == s) & (pl.col("lambda_key") == "1.0")).sort("prompt_id")["distinct_2"]
        y = table.filter((pl.col("seed_key") == s) & (pl.col("lambda_key") == "0.0")).sort("prompt_id")["distinct_2"]
        assert row["diff"] == pytest.approx((x - y).mean())
        assert row["p_wilcoxon"] == pytest.approx(wilcoxon((x - y).to_numpy()).pvalue)
    assert result["diff"][2] < 0 < result["diff"][0]  # seed 2 went the other way

    # pooled by hand: per prompt the mean over the 3 seeds, then the paired Wilcoxon over prompts
    means = table.group_by("lambda_key", "prompt_id").agg(pl.col("distinct_2").mean()).sort("prompt_id")
    x = means.filter(pl.col("lambda_key") == "1.0")["distinct_2"].to_numpy()
    y = means.filter(pl.col("lambda_key") == "0.0")["distinct_2"].to_numpy()
    pooled = result.row(3, named=True)
    assert pooled["n_pairs"] == N_PROMPTS
    assert pooled["diff"] == pytest.approx((x - y).mean())
    assert pooled["p_wilcoxon"] == pytest.approx(wilcoxon(x - y).pvalue)


def test_a_seed_without_its_baseline_is_refused():
    table = _table(_per_seed_effect)
    lacking = table.filter(~((pl.col("lambda_key") == "0.0") & (pl.col("seed_key") == "2")))
    with pytest.raises(ValueError, match=r"seeds \['2'\] that the baseline λ '0.0' lacks"):
        compare_to_baseline(lacking, metrics=("distinct_2",), n_boot=200)
    with pytest.raises(ValueError, match="reserved"):
        compare_to_baseline(table.with_columns(seed_key=pl.lit(POOLED_SEED_KEY)), metrics=("distinct_2",))


def test_summary_has_one_row_per_seed_and_a_pooled_row_of_seed_means():
    table = _table(_per_seed_effect)
    summary = summarize_metrics(table, n_boot=200)
    one = summary.filter(pl.col("lambda_key") == "1.0")
    assert one["seed_key"].to_list() == ["0", "1", "2", POOLED_SEED_KEY]
    assert one["n_seeds"].to_list() == [1, 1, 1, 3]
    per_seed = [table.filter((pl.col("lambda_key") == "1.0") & (pl.col("seed_key") == s))["distinct_2"].mean()
                for s in ("0", "1", "2")]
    assert one["distinct_2"].head(3).to_list() == pytest.approx(per_seed)
    assert one["distinct_2"][3] == pytest.approx(np.mean(per_seed))  # equal prompt sets: mean of seed means
    assert one["n_samples"][3] == 3 * N_PROMPTS * 10


LAMBDAS = ("0.0", "0.3", "1.0", "2.0")


def test_trend_finds_a_monotone_dose_response_and_not_a_flat_one():
    monotone = _table(lambda lam, s, p: 0.03 * lam, lambdas=LAMBDAS, noise=0.005, seed=1)
    flat = _table(lambda lam, s, p: 0.0, lambdas=LAMBDAS, noise=0.02, seed=1)
    up = dose_response_trends(monotone, ("distinct_2", "self_bleu"))
    none = dose_response_trends(flat, ("distinct_2", "self_bleu"))
    assert up["seed_key"].to_list() == ["0", "0", "1", "1", "2", "2", POOLED_SEED_KEY, POOLED_SEED_KEY]
    for row in up.iter_rows(named=True):
        assert row["n_lambdas"] == 4 and row["n_prompts"] == N_PROMPTS
        # Self-BLEU falls as distinct_2 rises: both are "better as λ grows"
        assert row["p_better"] < 1e-4 and row["p_worse"] > 0.99, row
    for row in none.iter_rows(named=True):
        assert row["p_better"] > 0.01 and row["p_worse"] > 0.01, row
    assert up.filter(pl.col("seed_key") == POOLED_SEED_KEY)["n_seeds"].to_list() == [3, 3]

    # the pooled row is Page's test on the per-prompt means over seeds, λ ascending
    means = monotone.group_by("lambda_key", "prompt_id").agg(pl.col("distinct_2").mean())
    blocks = np.column_stack([means.filter(pl.col("lambda_key") == k).sort("prompt_id")["distinct_2"].to_numpy()
                              for k in LAMBDAS])
    expected = page_trend_test(blocks)
    pooled = up.filter((pl.col("seed_key") == POOLED_SEED_KEY) & (pl.col("metric") == "distinct_2")).row(0, named=True)
    assert pooled["page_l"] == pytest.approx(expected.statistic)
    assert pooled["p_better"] == pytest.approx(expected.pvalue)


def test_trend_needs_three_lambdas():
    table = _table(lambda lam, s, p: 0.03 * lam, lambdas=("0.0", "1.0"), seeds=("0",))
    result = dose_response_trends(table, ("distinct_2",))
    assert result["p_better"].null_count() == result.height
    assert result["note"][0] == "needs ≥ 3 λ values, has 2"


INTENTS = ["agree", "ask", "advise", "joke", "cheer", "disagree", "story", "hype"]


def _generations(n_intents, seeds=("0", "1", "2"), lambdas=("0.0", "1.0", "2.0"), n_prompts=8):
    """10 samples per (λ, seed, prompt) spread over ``n_intents(λ, seed, p)`` intents; a
    sample's text is its intent and the prompt's word, so same-intent samples repeat."""
    rows = []
    for s in seeds:
        for key in lambdas:
            for p in range(n_prompts):
                k = n_intents(float(key), int(s), p)
                for idx in range(10):
                    intent = INTENTS[idx % k]
                    rows.append({"lambda_key": key, "seed_key": s, "seed": int(s), "prompt_id": f"p{p}",
                                 "sample_idx": idx, "text": f"{intent} about topic {p}", "passed": idx != 9,
                                 "reply_intent": intent})
    return pl.DataFrame(rows)


def _more_intents_with_lambda(lam, s, p):
    return 2 + p % 2 + int(lam) + (1 if lam == 2.0 and s == 1 else 0)


def _evaluate(generations):
    from polydag.core.evaluation.metrics.per_prompt import per_prompt_metrics
    from polydag.core.evaluation.metrics.verdict import VerdictThresholds, verdict, with_trend
    from polydag_tests.unit.fakes import TableEmbedder

    truth = pl.DataFrame({"prompt_id": [f"p{p}" for p in range(8)], "admitted_intents": [INTENTS] * 8})
    metrics = per_prompt_metrics(generations, TableEmbedder(dimension=256), prompt_truth=truth)
    bars = VerdictThresholds(workshop={"distinct_k": 0.2}, main_conference={"distinct_k": 0.5},
                             similar={"pass_at_1": 0.05})
    comparison = compare_to_baseline(metrics, metrics=("distinct_k", "coverage", "pass_at_1"), n_boot=200)
    trend = dose_response_trends(metrics.with_columns(pass_at_1=pl.col("n_passed") / pl.col("n_samples")),
                                 ("distinct_k", "pass_at_1"))
    return metrics, comparison, with_trend(verdict(comparison, bars), trend, bars)


def test_from_generations_to_a_seed_consistent_main_conference_verdict():
    metrics, comparison, table = _evaluate(_generations(_more_intents_with_lambda))
    # distinct_k counts the passed samples' intents (sample 9 fails, so at most 9 of them)
    row = metrics.filter((pl.col("lambda_key") == "2.0") & (pl.col("seed_key") == "1")
                         & (pl.col("prompt_id") == "p1")).row(0, named=True)
    assert row["distinct_k"] == 6 and row["coverage"] == pytest.approx(6 / 8)
    pooled = comparison.filter((pl.col("seed_key") == POOLED_SEED_KEY) & (pl.col("metric") == "distinct_k"))
    assert pooled["p_holm"].max() < 0.05
    two = table.filter(pl.col("lambda_key") == "2.0").row(0, named=True)
    assert two["n_seeds"] == 3 and two["distinct_k_n_seeds_better"] == 3
    assert two["seed_consistent"] is True and two["main_conference_met"] is True
    assert two["distinct_k_trend_p"] < 0.001 and two["pass_at_1_similar"] is True


def test_a_seed_where_lambda_changes_nothing_refuses_main_conference():
    def seed_2_flat(lam, s, p):
        return _more_intents_with_lambda(0.0 if s == 2 else lam, s, p)

    _, comparison, table = _evaluate(_generations(seed_2_flat))
    two = table.filter(pl.col("lambda_key") == "2.0").row(0, named=True)
    assert two["distinct_k_main_conference_met"] is True  # the pooled change alone would pass
    assert two["distinct_k_n_seeds_better"] == 2 and two["seed_consistent"] is False
    assert two["main_conference_met"] is False and two["workshop_met"] is True


def test_alerts_and_the_ceiling_audit_read_the_pooled_rows_once_per_lambda():
    from polydag.core.evaluation.metric_audit import pass_at_k_ceilings
    from polydag.core.polychromic.collapse import evaluation_alerts
    from polydag.core.polychromic.config import CollapseThresholds

    table = _table(lambda lam, s, p: -0.05 * lam * (1 + p / N_PROMPTS))  # every seed gets less diverse
    comparison = compare_to_baseline(table, metrics=("distinct_2", "self_bleu"), n_boot=200)
    alerts = evaluation_alerts(comparison, CollapseThresholds(), run_id="r")
    pooled_only = evaluation_alerts(comparison.filter(pl.col("seed_key") == POOLED_SEED_KEY).drop("seed_key"),
                                    CollapseThresholds(), run_id="r")
    assert alerts and [a.subject for a in alerts] == [a.subject for a in pooled_only]
    assert len({(a.lambda_key, a.subject) for a in alerts}) == len(alerts)  # no per-seed duplicates
    summary = summarize_metrics(table.with_columns(n_passed=pl.lit(10)), n_boot=50)
    assert len(pass_at_k_ceilings(summary)) == 3 * 2  # pass@1/5/10 of 2 λ, not of each seed row too
