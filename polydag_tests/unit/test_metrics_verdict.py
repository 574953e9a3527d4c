"""The researchers' bars: direction, significance, overall verdict, Markdown and the plot."""

import polars as pl
import pytest

from polydag.core.evaluation.metrics.plot import plot_comparison
from polydag.core.evaluation.metrics.seeds import POOLED_SEED_KEY
from polydag.core.evaluation.metrics.significance import COMPARISON_SCHEMA
from polydag.core.evaluation.metrics.verdict import VerdictThresholds, verdict, verdict_markdown


def _row(key, metric, rel, p, seed_key, n_seeds):
    return {
        "lambda_key": key, "diversity_weight": float(key), "baseline_key": "0.0", "metric": metric,
        "seed_key": seed_key, "seed": None if seed_key == POOLED_SEED_KEY else int(seed_key),
        "aggregation": "mean_over_seeds" if seed_key == POOLED_SEED_KEY else "seed", "n_seeds": n_seeds,
        "higher_is_better": metric != "self_bleu", "n_pairs": 100, "value": 1.0 + (rel or 0.0),
        "baseline": 1.0, "diff": rel, "rel_change": rel, "ci_low": None, "ci_high": None,
        "ci_method": "BCa", "p_wilcoxon": p, "p_holm": p, "cohens_dz": 0.5,
    }


def _comparison(rows, n_seeds=1, seed_rel=None):
    """rows: (lambda_key, metric, rel_change, p_holm) of the pooled test. Each of ``n_seeds``
    seeds gets the same relative change unless ``seed_rel(seed_index, key, metric, rel)`` says
    otherwise (its p is not read by the verdict)."""
    full = []
    for key, metric, rel, p in rows:
        full.append(_row(key, metric, rel, p, POOLED_SEED_KEY, n_seeds))
        for s in range(n_seeds):
            r = seed_rel(s, key, metric, rel) if seed_rel else rel
            full.append(_row(key, metric, r, 0.5, str(s), 1))
    return pl.DataFrame(full, schema=COMPARISON_SCHEMA)


# The researchers' own λ=0.3 numbers (Distinct-2 +1.6%, Self-BLEU +2.3%, Pass@1 −2.6%, Pass@10 −0.2%)
RESEARCHERS_0_3 = [("0.3", "distinct_2", 0.016, 0.2), ("0.3", "self_bleu", 0.023, 0.3),
                   ("0.3", "pass_at_1", -0.026, 0.4), ("0.3", "pass_at_10", -0.002, 0.9)]
WORKSHOP_ONLY = [("1.0", "distinct_2", 0.15, 0.001), ("1.0", "self_bleu", -0.12, 0.001),
                 ("1.0", "pass_at_1", 0.01, 0.8), ("1.0", "pass_at_10", 0.30, 0.01)]
MAIN = [("2.0", "distinct_2", 0.30, 0.001), ("2.0", "self_bleu", -0.35, 0.001),
        ("2.0", "pass_at_1", -0.04, 0.5), ("2.0", "pass_at_10", 0.60, 0.001)]


def test_levels():
    table = verdict(_comparison(RESEARCHERS_0_3 + WORKSHOP_ONLY + MAIN, n_seeds=3)).sort("diversity_weight")
    assert table["lambda_key"].to_list() == ["0.3", "1.0", "2.0"]
    assert table["workshop_met"].to_list() == [False, True, True]
    assert table["main_conference_met"].to_list() == [False, False, True]
    assert table["seed_consistency_assessed"].to_list() == [True] * 3
    weak = table.row(0, named=True)
    assert weak["distinct_2_workshop_met"] is False and weak["pass_at_1_similar"] is True


@pytest.mark.parametrize("n_seeds", [1, 2])
def test_main_conference_is_refused_without_seed_consistency_assessed(n_seeds):
    # every main-conference bar is met by the pooled test, but fewer than min_seeds (3) seeds
    row = verdict(_comparison(MAIN, n_seeds=n_seeds)).row(0, named=True)
    assert row["distinct_2_main_conference_met"] is True and row["self_bleu_main_conference_met"] is True
    assert row["n_seeds"] == n_seeds and row["seed_consistency_assessed"] is False
    assert row["seed_consistent"] is None and row["distinct_2_seed_consistent"] is None
    assert row["main_conference_met"] is False
    assert row["workshop_met"] is True  # the workshop bars do not ask for seeds
    assert "unassessed" in verdict_markdown(verdict(_comparison(MAIN, n_seeds=n_seeds)))


def test_one_seed_the_wrong_way_breaks_seed_consistency():
    def seed_2_reverses_self_bleu(s, key, metric, rel):
        return -rel if (s == 2 and metric == "self_bleu") else rel

    row = verdict(_comparison(MAIN, n_seeds=3, seed_rel=seed_2_reverses_self_bleu)).row(0, named=True)
    assert row["seed_consistency_assessed"] is True
    assert row["self_bleu_n_seeds_better"] == 2 and row["distinct_2_n_seeds_better"] == 3
    assert row["self_bleu_seed_consistent"] is False and row["distinct_2_seed_consistent"] is True
    assert row["seed_consistent"] is False and row["main_conference_met"] is False
    # the same direction in every seed is not enough: the pooled test must be significant too
    weak = [(k, m, r, (0.2 if m == "pass_at_10" else p)) for k, m, r, p in MAIN]
    row = verdict(_comparison(weak, n_seeds=4)).row(0, named=True)
    assert row["pass_at_10_n_seeds_better"] == 4 and row["pass_at_10_seed_consistent"] is False
    assert row["main_conference_met"] is False
    loose = VerdictThresholds(min_seeds=4)
    assert verdict(_comparison(MAIN, n_seeds=3), loose).row(0, named=True)["seed_consistency_assessed"] is False


def test_direction_matters_for_self_bleu():
    wrong_way = [(k, m, (0.12 if m == "self_bleu" else r), p) for k, m, r, p in WORKSHOP_ONLY]
    row = verdict(_comparison(wrong_way)).row(0, named=True)
    assert row["self_bleu_significant"] is True  # it did change...
    assert row["self_bleu_workshop_met"] is False  # ...the wrong way
    assert row["workshop_met"] is False


def test_bars_need_significance():
    not_significant = [(k, m, r, 0.2) for k, m, r, _ in MAIN]
    row = verdict(_comparison(not_significant)).row(0, named=True)
    assert row["distinct_2_main_conference_met"] is False and row["main_conference_met"] is False


def test_pass_at_1_must_stay_similar():
    dropped = [(k, m, (-0.10 if m == "pass_at_1" else r), p) for k, m, r, p in MAIN]
    row = verdict(_comparison(dropped)).row(0, named=True)
    assert row["pass_at_1_similar"] is False and row["main_conference_met"] is False
    loose = VerdictThresholds(similar={"pass_at_1": 0.15})
    assert verdict(_comparison(dropped, n_seeds=3), loose).row(0, named=True)["main_conference_met"] is True


def test_null_relative_change_never_meets_a_bar():
    missing = [(k, m, (None if m == "distinct_2" else r), p) for k, m, r, p in MAIN]
    row = verdict(_comparison(missing)).row(0, named=True)
    assert row["distinct_2_workshop_met"] is False and row["workshop_met"] is False


def test_thresholds_validate_direction_and_metrics():
    with pytest.raises(ValueError, match="points the wrong way"):
        VerdictThresholds(workshop={"self_bleu": 0.10})
    with pytest.raises(ValueError, match="unknown metric"):
        VerdictThresholds(workshop={"bleu": 0.10})
    with pytest.raises(ValueError, match="alpha"):
        VerdictThresholds(alpha=0)
    with pytest.raises(ValueError, match="does not have"):
        verdict(_comparison([r for r in MAIN if r[1] != "pass_at_10"]))


def test_markdown_table():
    table = verdict(_comparison(RESEARCHERS_0_3 + MAIN, n_seeds=3))
    text = verdict_markdown(table)
    lines = text.splitlines()
    assert lines[0].startswith("| λ | Distinct-2 (+12% / +25%) | Self-BLEU (-10% / -30%)")
    assert lines[2].startswith("| 0.3 | +1.6% (p=0.200) W✗ M✗")
    assert "**met**" in lines[3] and lines[3].startswith("| 2.0 |")
    assert "Holm" in text


def test_plot_is_a_png(tmp_path):
    metrics = ("distinct_2", "self_bleu", "pass_at_10")
    summary = pl.DataFrame({
        "lambda_key": ["0.0", "1.0", "2.0"], "diversity_weight": [0.0, 1.0, 2.0],
        **{m: [0.2, 0.25, 0.3] for m in metrics}, **{f"{m}_se": [0.01, 0.01, None] for m in metrics},
    })
    comparison = _comparison([("1.0", "distinct_2", 0.25, 0.001), ("2.0", "distinct_2", 0.5, 0.2)])
    path = plot_comparison(summary, comparison, tmp_path / "plots" / "verdict.png")
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000
    with pytest.raises(ValueError, match="lacks mean/_se"):
        plot_comparison(summary.drop("self_bleu_se"), comparison, tmp_path / "x.png")


def test_plot_draws_each_seed_and_the_pooled_line(tmp_path):
    rows = []
    for seed_key in ("0", "1", "2", POOLED_SEED_KEY):
        for lam in (0.0, 1.0, 2.0):
            rows.append({"lambda_key": str(lam), "diversity_weight": lam, "seed_key": seed_key,
                         "distinct_2": 0.2 + 0.05 * lam, "distinct_2_se": 0.01})
    summary = pl.DataFrame(rows)
    comparison = _comparison([("1.0", "distinct_2", 0.25, 0.001)], n_seeds=3)
    path = plot_comparison(summary, comparison, tmp_path / "verdict.png", metrics=["distinct_2"])
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_trend_columns_come_from_the_pooled_page_test():
    from polydag.core.evaluation.metrics.verdict import trend_markdown, with_trend

    trend = pl.DataFrame({
        "seed_key": ["0", POOLED_SEED_KEY, POOLED_SEED_KEY], "metric": ["distinct_2", "distinct_2", "self_bleu"],
        "p_better": [0.5, 0.004, 0.3], "p_worse": [0.5, 0.99, 0.7], "n_prompts": [10, 10, 10],
        "lambda_keys": ["0.0,1.0,2.0"] * 3, "note": [None, None, None],
    })
    table = with_trend(verdict(_comparison(MAIN, n_seeds=3)), trend)
    row = table.row(0, named=True)
    assert row["distinct_2_trend_p"] == 0.004 and row["distinct_2_trend_significant"] is True
    assert row["self_bleu_trend_significant"] is False
    assert row["pass_at_10_trend_p"] is None and row["pass_at_10_trend_significant"] is False
    assert "0.004 / 0.990 (10)" in trend_markdown(trend)
