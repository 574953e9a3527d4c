"""Diversity-collapse flags: the researchers' W&B "red flags", as pure functions over tables.

Two sources:

* **training** (``training_alerts``): rows of the live ``training_log`` table, grouped by
  (run_id, lambda_key). A *diversity step* is a row whose ``diversity_score`` is not null (the
  trainer samples replies only every ``compute_diversity_every_n_steps`` steps). For each
  group, with ``n`` diversity steps, ``early`` = the first ``early_steps`` of them and
  ``window`` = the last ``window_steps`` of them (never overlapping ``early`` for the drop):

  - ``nonfinite``: any of quality_loss, diversity_score, diversity_loss, combined_loss,
    diversity_grad_share is NaN or ±inf (first such step).
  Floor and drop apply to λ ≠ 0 (and λ = 0 too with ``watch_baseline``).

  - ``diversity_floor``: mean(diversity_score over window) ≤ ``diversity_floor``. D is a mean
    pairwise distance (≥ 0); D = 0 means every sample of a prompt is identical, so the
    default floor 0.0 is the researchers' "diversity_score not staying positive".
  - ``diversity_drop``: (mean(early) − mean(window)) / mean(early) > ``max_relative_drop``,
    once n ≥ early_steps + 1 (window = the last min(window_steps, n − early_steps) steps) and
    mean(early) > 0 (a drop from ≤ 0 is undefined; the floor covers it).
  - ``grad_share_zero`` (λ > 0 only): n ≥ ``min_diversity_steps`` and every diversity step of
    the window has diversity_grad_share ≤ ``grad_share_eps``: the diversity term gets no
    gradient (e.g. a float-valued term, or identical samples whose advantages are all zero).
  - ``combined_not_below_quality`` (λ > 0 only): n ≥ ``min_diversity_steps`` and
    mean(combined_loss) ≥ mean(quality_loss) + ``combined_margin`` over the window's steps.
    Caveat: with the score-function objective, combined = quality + diversity_loss where
    diversity_loss = −λ·mean(A_i·ℓ_i) is a surrogate whose *value* can be either sign (its
    gradient, not its value, is the diversity objective). The flag therefore reproduces the
    researchers' red flag "combined_loss not below quality_loss" (from their earlier
    ``ce − λ·D`` loss, where it meant the diversity term was not pulling) on the window mean
    rather than per step, to damp the surrogate's sign noise. Read it as a hint, not a proof.

* **evaluation** (``evaluation_alerts``): the ``comparison`` table (each λ against λ = 0,
  per metric) and, when given, ``metrics_summary``:

  - ``diversity_worse``: a λ > 0 whose diversity metric (distinct_2, self_bleu with lower
    better, semantic_diversity by default) differs from λ = 0 in the *bad* direction with
    p_holm < ``alpha``.
  - ``pass_at_k_collapse``: a λ > 0 whose pass@k (default pass_at_10) relative change
    against λ = 0 is < −``max_pass_at_k_drop`` (from ``comparison``; from ``metrics_summary``
    when comparison lacks that metric).

Every function returns ``Alert`` records and never touches a database: ``polydag.core.storage.alerts``
stores them. Alerts are identified by (source, kind, run_id, lambda_key, subject) so that
re-evaluating the same rows on a later sensor tick finds the same alert again.
"""

from __future__ import annotations

import math

import polars as pl

from polydag.core.polychromic.config import CollapseThresholds
from polydag.core.evaluation.metrics.seeds import POOLED_SEED_KEY
from polydag.core.storage.alerts import Alert

TRAINING = "training"
EVALUATION = "evaluation"

NONFINITE = "nonfinite"
DIVERSITY_FLOOR = "diversity_floor"
DIVERSITY_DROP = "diversity_drop"
GRAD_SHARE_ZERO = "grad_share_zero"
COMBINED_NOT_BELOW_QUALITY = "combined_not_below_quality"
DIVERSITY_WORSE = "diversity_worse"
PASS_AT_K_COLLAPSE = "pass_at_k_collapse"

TRAINING_KINDS = (NONFINITE, DIVERSITY_FLOOR, DIVERSITY_DROP, GRAD_SHARE_ZERO, COMBINED_NOT_BELOW_QUALITY)
EVALUATION_KINDS = (DIVERSITY_WORSE, PASS_AT_K_COLLAPSE)

LOSS_COLUMNS = ("quality_loss", "diversity_score", "diversity_loss", "combined_loss", "diversity_grad_share")
TRAINING_COLUMNS = ("seq", "run_id", "lambda_key", "diversity_weight", "step", *LOSS_COLUMNS)
COMPARISON_COLUMNS = ("lambda_key", "diversity_weight", "metric", "higher_is_better", "value",
                      "baseline", "rel_change", "p_holm")


def _require(df: pl.DataFrame, columns, table: str) -> None:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise KeyError(f"{table} is missing columns {missing}; it has {df.columns}")


def _mean(values) -> float:
    return float(sum(values) / len(values))


def training_alerts(rows: pl.DataFrame, thresholds: CollapseThresholds) -> list[Alert]:
    """Flags of every (run_id, lambda_key, seed_key) in ``rows`` (all rows of those runs so
    far; rows without ``seed_key`` are seed 0's)."""
    _require(rows, TRAINING_COLUMNS, "training_log rows")
    if "seed_key" not in rows.columns:
        rows = rows.with_columns(seed_key=pl.lit("0"))
    alerts: list[Alert] = []
    for (run_id, lambda_key, seed_key), group in rows.sort("seq").group_by(
            ["run_id", "lambda_key", "seed_key"], maintain_order=True):
        alerts.extend(_run_alerts(run_id, lambda_key, seed_key, group, thresholds))
    return alerts


def _run_alerts(run_id: str, lambda_key: str, seed_key: str, group: pl.DataFrame,
                t: CollapseThresholds) -> list[Alert]:
    lam = float(group["diversity_weight"][0])
    out: list[Alert] = []

    def alert(kind, step, value, threshold, message, **details):
        # the subject tells apart the seeds of one λ trained in one run
        out.append(Alert(TRAINING, kind, lambda_key, run_id, None if step is None else int(step),
                         None if value is None else float(value),
                         None if threshold is None else float(threshold),
                         f"λ={lambda_key} seed {seed_key} run {run_id[:8]}: {message}",
                         subject=f"seed={seed_key}", details=details))

    records = group.to_dicts()
    for r in records:
        bad = [c for c in LOSS_COLUMNS if r[c] is not None and not math.isfinite(r[c])]
        if bad:
            alert(NONFINITE, r["step"], r[bad[0]], None,
                  f"non-finite {', '.join(f'{c}={r[c]}' for c in bad)} at step {r['step']}",
                  columns=bad)
            break

    # Flags below look at finite diversity steps only (non-finite ones are flagged above).
    div = [r for r in records if r["diversity_score"] is not None and math.isfinite(r["diversity_score"])]
    n = len(div)
    if n == 0 or (lam == 0 and not t.watch_baseline):
        return out
    window = div[-t.window_steps:]
    last_step = window[-1]["step"]
    scores = [r["diversity_score"] for r in window]

    mean_window = _mean(scores)
    if mean_window <= t.diversity_floor:
        alert(DIVERSITY_FLOOR, last_step, mean_window, t.diversity_floor,
              f"diversity_score mean {mean_window:.4g} over the last {len(window)} diversity steps "
              f"is at or below the floor {t.diversity_floor:g}",
              window_steps=[r["step"] for r in window])

    if n >= t.early_steps + 1:
        early = div[: t.early_steps]
        late = div[-min(t.window_steps, n - t.early_steps):]
        mean_early = _mean([r["diversity_score"] for r in early])
        mean_late = _mean([r["diversity_score"] for r in late])
        if mean_early > 0:
            drop = (mean_early - mean_late) / mean_early
            if drop > t.max_relative_drop:
                alert(DIVERSITY_DROP, late[-1]["step"], drop, t.max_relative_drop,
                      f"diversity_score fell {drop:.0%} from its early mean {mean_early:.4g} "
                      f"(first {len(early)} diversity steps) to {mean_late:.4g} (last {len(late)})",
                      early_mean=mean_early, window_mean=mean_late)

    if lam > 0 and n >= t.min_diversity_steps:
        shares = [r["diversity_grad_share"] for r in window]
        finite_shares = [s for s in shares if s is not None and math.isfinite(s)]
        if finite_shares and len(finite_shares) == len(shares) and max(finite_shares) <= t.grad_share_eps:
            alert(GRAD_SHARE_ZERO, last_step, max(finite_shares), t.grad_share_eps,
                  f"λ={lam:g} > 0 but diversity_grad_share ≤ {t.grad_share_eps:g} on each of the last "
                  f"{len(window)} diversity steps: the diversity term gets no gradient")
        pairs = [(r["combined_loss"], r["quality_loss"]) for r in window
                 if r["combined_loss"] is not None and r["quality_loss"] is not None
                 and math.isfinite(r["combined_loss"]) and math.isfinite(r["quality_loss"])]
        if pairs:
            mean_combined = _mean([c for c, _ in pairs])
            mean_quality = _mean([q for _, q in pairs])
            if mean_combined >= mean_quality + t.combined_margin:
                alert(COMBINED_NOT_BELOW_QUALITY, last_step, mean_combined - mean_quality, t.combined_margin,
                      f"combined_loss mean {mean_combined:.4g} is not below quality_loss mean "
                      f"{mean_quality:.4g} over the last {len(pairs)} diversity steps (λ={lam:g})",
                      mean_combined=mean_combined, mean_quality=mean_quality)
    return out


def evaluation_alerts(
    comparison: pl.DataFrame,
    thresholds: CollapseThresholds,
    *,
    metrics_summary: pl.DataFrame | None = None,
    run_id: str | None = None,
    baseline_key: str = "0.0",
) -> list[Alert]:
    """Flags of each λ > 0 in ``comparison`` (and ``metrics_summary`` for pass@k it lacks).

    ``run_id`` is the Dagster run that materialized the tables: a later evaluation run that
    still shows the same problem is a new alert; the same run seen twice is not.
    """
    _require(comparison, COMPARISON_COLUMNS, "comparison")
    # with training seeds, each λ has per-seed rows and one pooled row per metric
    # (seed_key POOLED_SEED_KEY); an alert is about the λ, so it reads the pooled one
    if "seed_key" in comparison.columns:
        comparison = comparison.filter(pl.col("seed_key") == POOLED_SEED_KEY)
    if metrics_summary is not None and "seed_key" in metrics_summary.columns:
        metrics_summary = metrics_summary.filter(pl.col("seed_key") == POOLED_SEED_KEY)
    t = thresholds
    out: list[Alert] = []
    seen_pass: set[tuple[str, str]] = set()
    for r in comparison.filter(pl.col("lambda_key") != baseline_key).to_dicts():
        if r["diversity_weight"] is None or r["diversity_weight"] <= 0:
            continue
        metric, key = r["metric"], r["lambda_key"]
        if metric in t.diversity_metrics and r["p_holm"] is not None and r["value"] is not None \
                and r["baseline"] is not None:
            worse = r["value"] < r["baseline"] if r["higher_is_better"] else r["value"] > r["baseline"]
            if worse and r["p_holm"] < t.alpha:
                direction = "lower" if r["higher_is_better"] else "higher"
                out.append(Alert(EVALUATION, DIVERSITY_WORSE, key, run_id, None, float(r["p_holm"]), t.alpha,
                                 f"λ={key}: {metric} {r['value']:.4g} is significantly {direction} (worse) "
                                 f"than λ={baseline_key} ({r['baseline']:.4g}), Holm p={r['p_holm']:.3g}",
                                 subject=metric,
                                 details={"metric": metric, "value": r["value"], "baseline": r["baseline"],
                                          "rel_change": r["rel_change"], "p_holm": r["p_holm"]}))
        if metric in t.pass_at_k_metrics and r["rel_change"] is not None and math.isfinite(r["rel_change"]):
            seen_pass.add((key, metric))
            if r["rel_change"] < -t.max_pass_at_k_drop:
                out.append(_pass_alert(key, metric, r["value"], r["baseline"], r["rel_change"], t, run_id,
                                       baseline_key, "comparison"))
    if metrics_summary is not None:
        _require(metrics_summary, ("lambda_key", "diversity_weight"), "metrics_summary")
        base = metrics_summary.filter(pl.col("lambda_key") == baseline_key)
        for metric in t.pass_at_k_metrics:
            if metric not in metrics_summary.columns or base.height != 1:
                continue
            b = base[metric][0]
            if b is None or not b > 0:
                continue  # relative change undefined against a zero baseline
            for r in metrics_summary.filter(pl.col("diversity_weight") > 0).to_dicts():
                if (r["lambda_key"], metric) in seen_pass or r[metric] is None:
                    continue
                rel = (r[metric] - b) / b
                if rel < -t.max_pass_at_k_drop:
                    out.append(_pass_alert(r["lambda_key"], metric, r[metric], b, rel, t, run_id,
                                           baseline_key, "metrics_summary"))
    return out


def _pass_alert(key, metric, value, baseline, rel, t, run_id, baseline_key, table) -> Alert:
    return Alert(EVALUATION, PASS_AT_K_COLLAPSE, key, run_id, None, float(rel), -t.max_pass_at_k_drop,
                 f"λ={key}: {metric} collapsed to {value:.4g} from {baseline:.4g} at λ={baseline_key} "
                 f"({rel:+.0%}, limit −{t.max_pass_at_k_drop:.0%})",
                 subject=metric,
                 details={"metric": metric, "value": value, "baseline": baseline, "rel_change": rel,
                          "table": table})
