"""Step-importance summaries on hand-made rows, with hand-worked Wilson intervals."""

import math

import polars as pl
import pytest

from polydag.core.step_importance.summary import (
    cochran_armitage,
    plot_importance,
    rates_by_mode,
    summarize_step_importance,
    wilson_interval,
)


def test_wilson_interval_hand_worked_values():
    # z = 1.959964, z^2 = 3.841459.
    # 8/10: centre (0.8 + 0.1920730) / 1.3841459 = 0.7167401, half 1.959964 * 0.1600112 / 1.3841459 = 0.2265776
    assert wilson_interval(8, 10) == pytest.approx((0.4901625, 0.9433178), abs=1e-6)
    # 0/5: centre = half = 0.384146 / 1.768292 = 0.217241
    assert wilson_interval(0, 5) == pytest.approx((0.0, 0.434482), abs=1e-6)
    # 1/2: centre 0.5, half 1.959964 * 0.604228 / 2.920729 = 0.405469
    assert wilson_interval(1, 2) == pytest.approx((0.094531, 0.905469), abs=1e-6)
    assert wilson_interval(0, 0) == (None, None)
    with pytest.raises(ValueError):
        wilson_interval(3, 2)


def test_cochran_armitage_hand_worked():
    # p̄ = 0.5, T = 2 * (10 - 5) = 10, Var = 0.25 * (50 - 900 / 30) = 5, z = 10 / sqrt(5)
    z, p = cochran_armitage([0, 5, 10], [10, 10, 10], [0.0, 1.0, 2.0])
    assert z == pytest.approx(10 / math.sqrt(5))
    assert p == pytest.approx(7.744e-6, rel=1e-3)
    assert cochran_armitage([0, 0], [0, 0], [0.0, 1.0]) == (None, None)


def _rows(n_problems=10, broken_at=None, null_differs=()):
    """Baseline correct on problems 0..7 (8 of 10). ``broken_at[pos]`` = ids of baseline-correct
    problems whose answer the single ablation at ``pos`` breaks."""
    broken_at = broken_at or {}
    rows = []
    for i in range(n_problems):
        pid = f"q{i}"
        base_ok = i < 8
        base = {"problem_id": pid, "protocol": "codi", "mode": "none", "site": "none", "position": -1,
                "predicted": "1" if base_ok else "0", "answer_text": "The answer is: 1" if base_ok else "The answer is: 0",
                "correct": base_ok, "baseline_correct": base_ok, "flipped": False, "answer_changed": False,
                "gold_logprob": -1.0, "kl_to_baseline": 0.0}
        rows.append({**base, "variant": "baseline", "scheme": "baseline"})
        null_text = "The answer is: 9" if i in null_differs else base["answer_text"]
        rows.append({**base, "variant": "null", "scheme": "null", "answer_text": null_text})
        for pos in range(6):
            broken = i in broken_at.get(pos, ())
            correct = base_ok and not broken
            rows.append({**base, "variant": f"single-zero-input-p{pos}", "scheme": "single", "mode": "zero",
                         "site": "input", "position": pos, "correct": correct, "flipped": correct != base_ok,
                         "predicted": "1" if correct else "0", "answer_changed": correct != base_ok,
                         "gold_logprob": -1.0 - pos, "kl_to_baseline": 0.1 * pos})
    return pl.DataFrame(rows)


PROBLEMS = pl.DataFrame({"problem_id": [f"q{i}" for i in range(10)],
                         "difficulty": ["<=2"] * 5 + ["5+"] * 5})
# Increasing importance: position p breaks the first p baseline-correct problems (0..7).
INCREASING = {pos: tuple(range(pos)) for pos in range(6)}


def test_importance_by_position_with_wilson_intervals():
    parts = summarize_step_importance(_rows(broken_at=INCREASING), PROBLEMS)
    assert set(parts) == {"baseline", "null_control", "by_position", "by_difficulty", "early_late", "trend"}
    by_pos = parts["by_position"].sort("position")
    assert by_pos["n_baseline_correct"].to_list() == [8] * 6
    assert by_pos["n_broken"].to_list() == [0, 1, 2, 3, 4, 5]
    assert by_pos["importance"].to_list() == pytest.approx([k / 8 for k in range(6)])
    row = by_pos.filter(pl.col("position") == 4).row(0, named=True)
    lo, hi = wilson_interval(4, 8)
    assert (row["importance_lo"], row["importance_hi"]) == pytest.approx((lo, hi))
    # 4/8: centre 0.5, half 1.959964 * sqrt(0.03125 + 0.015006) / 1.480182 = 0.284784
    assert (row["importance_lo"], row["importance_hi"]) == pytest.approx((0.215216, 0.784784), abs=1e-6)
    assert row["flip_rate"] == pytest.approx(4 / 10)
    assert row["mean_kl_to_baseline"] == pytest.approx(0.4)
    assert row["mean_gold_logprob_drop"] == pytest.approx(4.0)


def test_by_difficulty_early_late_and_baseline():
    parts = summarize_step_importance(_rows(broken_at=INCREASING), PROBLEMS)
    by_diff = parts["by_difficulty"]
    # Baseline-correct: q0..q4 are "<=2" (5), q5..q7 are "5+" (3). Position 5 breaks q0..q4.
    at5 = {r["difficulty"]: r for r in by_diff.filter(pl.col("position") == 5).iter_rows(named=True)}
    assert (at5["<=2"]["n_broken"], at5["<=2"]["n_baseline_correct"]) == (5, 5)
    assert (at5["5+"]["n_broken"], at5["5+"]["n_baseline_correct"]) == (0, 3)
    early_late = parts["early_late"].filter(pl.col("difficulty") == "all").row(0, named=True)
    # Early pairs: 3 positions x 8 problems, broken 0 + 1 + 2; late: broken 3 + 4 + 5.
    assert (early_late["n_broken_early"], early_late["n_pairs_early"]) == (3, 24)
    assert (early_late["n_broken_late"], early_late["n_pairs_late"]) == (12, 24)
    assert early_late["late_over_early"] == pytest.approx(4.0)
    baseline = parts["baseline"].filter(pl.col("difficulty") == "all").row(0, named=True)
    assert (baseline["n_correct"], baseline["n_problems"], baseline["accuracy"]) == (8, 10, 0.8)
    assert (baseline["accuracy_lo"], baseline["accuracy_hi"]) == pytest.approx((0.4901625, 0.9433178), abs=1e-6)


def test_trend_tests_see_the_direction():
    up = summarize_step_importance(_rows(broken_at=INCREASING), PROBLEMS)["trend"].row(0, named=True)
    assert up["n_positions"] == 6
    assert up["cochran_armitage_z"] > 3 and up["cochran_armitage_p"] < 0.01
    assert up["page_p"] < 0.01 and up["spearman_rho"] == pytest.approx(1.0)
    decreasing = {pos: tuple(range(5 - pos)) for pos in range(6)}
    down = summarize_step_importance(_rows(broken_at=decreasing), PROBLEMS)["trend"].row(0, named=True)
    assert down["cochran_armitage_z"] < -3 and down["page_p"] > 0.5 and down["spearman_rho"] == pytest.approx(-1.0)


def test_null_control_agreement_counts_differences():
    clean = summarize_step_importance(_rows(), PROBLEMS)["null_control"].row(0, named=True)
    assert (clean["n_problems"], clean["n_agree"], clean["agreement"]) == (10, 10, 1.0)
    broken = summarize_step_importance(_rows(null_differs=(3,)), PROBLEMS)["null_control"].row(0, named=True)
    assert (broken["n_agree"], broken["n_disagree"], broken["agreement"]) == (9, 1, 0.9)


def test_importance_is_null_not_zero_without_baseline_correct_problems():
    rows = _rows().with_columns(baseline_correct=pl.lit(False), correct=pl.lit(False))
    by_pos = summarize_step_importance(rows, PROBLEMS)["by_position"]
    assert by_pos["importance"].null_count() == by_pos.height
    assert by_pos["importance_lo"].null_count() == by_pos.height


def test_bad_inputs_are_named():
    with pytest.raises(ValueError, match="lack column"):
        summarize_step_importance(_rows().drop("flipped"), PROBLEMS)
    with pytest.raises(ValueError, match="difficulty"):
        summarize_step_importance(_rows(), PROBLEMS.drop("difficulty"))
    with pytest.raises(ValueError, match="no step-importance rows"):
        summarize_step_importance(_rows().head(0), PROBLEMS)


def test_plot_writes_a_png(tmp_path):
    parts = summarize_step_importance(_rows(broken_at=INCREASING), PROBLEMS)
    out = plot_importance(parts["by_difficulty"], tmp_path / "plots" / "importance.png")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    empty = plot_importance(parts["by_difficulty"].head(0), tmp_path / "empty.png")
    assert empty.stat().st_size > 0


def test_wilson_bounds_are_exact_at_the_extremes():
    assert wilson_interval(0, 6)[0] == 0.0 and wilson_interval(6, 6)[1] == 1.0
    rows = _rows()  # nothing broken: every importance is 0/8
    by_pos = summarize_step_importance(rows, PROBLEMS)["by_position"]
    assert by_pos["importance_lo"].to_list() == [0.0] * by_pos.height


def test_flip_rate_and_importance_per_mode():
    zero = _rows(broken_at=INCREASING)
    # The same problems under gaussian noise: every position breaks the first baseline-correct one.
    noise = zero.filter(pl.col("position") >= 0).with_columns(
        mode=pl.lit("gaussian"), variant=pl.col("variant").str.replace("zero", "gaussian"),
        correct=pl.col("baseline_correct") & (pl.col("problem_id") != "q0"))
    noise = noise.with_columns(flipped=pl.col("correct") != pl.col("baseline_correct"))
    table = rates_by_mode(pl.concat([zero, noise]))
    by_mode = {r["mode"]: r for r in table.iter_rows(named=True)}
    assert set(by_mode) == {"zero", "gaussian"}
    # zero: 0+1+2+3+4+5 = 15 broken of 6 x 8 baseline-correct pairs, 15 flips of 60 pairs.
    assert (by_mode["zero"]["n_broken"], by_mode["zero"]["n_baseline_correct"]) == (15, 48)
    assert by_mode["zero"]["flip_rate"] == pytest.approx(15 / 60)
    assert (by_mode["gaussian"]["n_broken"], by_mode["gaussian"]["importance"]) == (6, pytest.approx(6 / 48))
    lo, hi = wilson_interval(6, 48)
    assert (by_mode["gaussian"]["importance_lo"], by_mode["gaussian"]["importance_hi"]) == pytest.approx((lo, hi))


def test_early_late_split_is_configurable():
    parts = summarize_step_importance(_rows(broken_at=INCREASING), PROBLEMS, early_positions=(0,),
                                      late_positions=(4, 5))
    row = parts["early_late"].filter(pl.col("difficulty") == "all").row(0, named=True)
    # Early: position 0 breaks nothing (0 of 8); late: 4 + 5 broken of 2 x 8 pairs.
    assert (row["n_broken_early"], row["n_pairs_early"]) == (0, 8)
    assert (row["n_broken_late"], row["n_pairs_late"]) == (9, 16)
    from polydag.core.step_importance.config import StepSummaryConfig

    with pytest.raises(ValueError, match="must not share positions"):
        StepSummaryConfig(early_positions=(0, 3), late_positions=(3, 4))


def test_plot_has_a_pooled_curve_and_warns_about_nothing(tmp_path):
    import warnings

    rows = _rows(broken_at=INCREASING)
    # A second family whose problems are never baseline-correct: no line, so no legend.
    hopeless = rows.filter(pl.col("position") >= 0).with_columns(
        mode=pl.lit("mean"), baseline_correct=pl.lit(False), correct=pl.lit(False))
    parts = summarize_step_importance(pl.concat([rows, hopeless]), PROBLEMS)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        pooled = plot_importance(parts["by_difficulty"], tmp_path / "pooled.png", parts["by_position"])
        plain = plot_importance(parts["by_difficulty"], tmp_path / "plain.png")
    assert pooled.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert pooled.read_bytes() != plain.read_bytes()


def test_each_position_stands_next_to_the_control_and_its_band():
    # The control breaks nothing: 0 of its 8 baseline-correct problems at every position, so its
    # band is Wilson(0, 8) = [0, 0.324408] (centre = half = 0.240091 / 1.480182 = 0.162204).
    control = _rows()
    parts = summarize_step_importance(_rows(broken_at=INCREASING), PROBLEMS, control_rows=control)
    by_pos = parts["by_position"].sort("position")
    assert by_pos["control_importance"].to_list() == [0.0] * 6
    assert by_pos["control_n_baseline_correct"].to_list() == [8] * 6
    assert by_pos["control_importance_lo"].to_list() == [0.0] * 6
    assert by_pos["control_importance_hi"].to_list() == pytest.approx([0.324408] * 6, abs=1e-6)
    # The model's 0, 1/8 and 2/8 lie in it; 3/8 = 0.375 and above do not.
    assert by_pos["within_control_band"].to_list() == [True, True, True, False, False, False]
    assert parts["control_baseline"].filter(pl.col("difficulty") == "all")["n_correct"].to_list() == [8]


def test_the_band_is_the_controls_own_and_a_bound_counts_as_inside():
    # Control: position p breaks the first p problems too, so it equals the model: every
    # importance sits inside its own band, 0/8 on the lower bound exactly.
    same = _rows(broken_at=INCREASING)
    by_pos = summarize_step_importance(same, PROBLEMS, control_rows=same)["by_position"]
    assert by_pos["within_control_band"].to_list() == [True] * 6
    lo, hi = wilson_interval(3, 8)
    row = by_pos.filter(pl.col("position") == 3).row(0, named=True)
    assert (row["control_importance_lo"], row["control_importance_hi"]) == pytest.approx((lo, hi))


def test_without_a_control_the_columns_are_null_and_a_missing_variant_is_null():
    alone = summarize_step_importance(_rows(broken_at=INCREASING), PROBLEMS)
    by_pos = alone["by_position"]
    for column in ("control_importance", "control_importance_lo", "control_importance_hi", "within_control_band"):
        assert by_pos[column].null_count() == by_pos.height, column
    assert "control_baseline" not in alone
    assert summarize_step_importance(_rows(), PROBLEMS, control_rows=_rows().head(0))["by_position"][
        "within_control_band"].null_count() == 6
    # the control ran positions 0-3 only: positions 4 and 5 have nothing to compare with
    partial = _rows().filter(pl.col("position") <= 3)
    flags = summarize_step_importance(_rows(broken_at=INCREASING), PROBLEMS, control_rows=partial)[
        "by_position"].sort("position")["within_control_band"].to_list()
    assert flags == [True, True, True, False, None, None]


def test_plot_draws_the_control_band_and_warns_about_nothing(tmp_path):
    import warnings

    model = _rows(broken_at=INCREASING)
    with_control = summarize_step_importance(model, PROBLEMS, control_rows=_rows())
    without = summarize_step_importance(model, PROBLEMS)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        drawn = plot_importance(with_control["by_difficulty"], tmp_path / "control.png", with_control["by_position"])
        absent = plot_importance(without["by_difficulty"], tmp_path / "absent.png", without["by_position"])
    assert drawn.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert drawn.read_bytes() != absent.read_bytes()
