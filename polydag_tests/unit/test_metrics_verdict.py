"""The researchers' bars: direction, significance, overall verdict, Markdown and the plot."""

import polars as pl
import pytest

from polydag.core.evaluation.metrics.plot import plot_comparison
from polydag.core.evaluation.metrics.significance import COMPARISON_SCHEMA
from polydag.core.evaluation.metrics.verdict import VerdictThresholds, verdict, verdict_markdown


def _comparison(rows):
    """rows: (lambda_key, metric, rel_change, p_holm)."""
    full = []
    for key, metric, rel, p in rows:
        full.append({
            "lambda_key": key, "diversity_weight": float(key), "baseline_key": "0.0", "metric": metric,
            "higher_is_better": metric != "self_bleu", "n_pairs": 100, "value": 1.0 + (rel or 0.0),
            "baseline": 1.0, "diff": rel, "rel_change": rel, "ci_low": None, "ci_high": None,
            "ci_method": "BCa", "p_wilcoxon": p, "p_holm": p, "cohens_dz": 0.5,
        })
    return pl.DataFrame(full, schema=COMPARISON_SCHEMA)


# The researchers' own λ=0.3 numbers (Distinct-2 +1.6%, Self-BLEU +2.3%, Pass@1 −2.6%, Pass@10 −0.2%)
RESEARCHERS_0_3 = [("0.3", "distinct_2", 0.016, 0.2), ("0.3", "self_bleu", 0.023, 0.3),
                   ("0.3", "pass_at_1", -0.026, 0.4), ("0.3", "pass_at_10", -0.002, 0.9)]
WORKSHOP_ONLY = [("1.0", "distinct_2", 0.15, 0.001), ("1.0", "self_bleu", -0.12, 0.001),
                 ("1.0", "pass_at_1", 0.01, 0.8), ("1.0", "pass_at_10", 0.30, 0.01)]
MAIN = [("2.0", "distinct_2", 0.30, 0.001), ("2.0", "self_bleu", -0.35, 0.001),
        ("2.0", "pass_at_1", -0.04, 0.5), ("2.0", "pass_at_10", 0.60, 0.001)]


def test_levels():
    table = verdict(_comparison(RESEARCHERS_0_3 + WORKSHOP_ONLY + MAIN)).sort("diversity_weight")
    assert table["lambda_key"].to_list() == ["0.3", "1.0", "2.0"]
    assert table["workshop_met"].to_list() == [False, True, True]
    assert table["main_conference_met"].to_list() == [False, False, True]
    weak = table.row(0, named=True)
    assert weak["distinct_2_workshop_met"] is False and weak["pass_at_1_similar"] is True


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
    assert verdict(_comparison(dropped), loose).row(0, named=True)["main_conference_met"] is True


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
    table = verdict(_comparison(RESEARCHERS_0_3 + MAIN))
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
