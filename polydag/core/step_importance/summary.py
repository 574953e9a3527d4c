"""Summaries of step-importance rows: importance by position, difficulty, early vs late, trends.

Definitions (per variant, i.e. per protocol/scheme/mode/site/position):

- **importance** = n_broken / n_baseline_correct, where n_broken counts problems that the
  baseline answers correctly and the ablated model answers wrongly (the researchers'
  "did ablation cause an error"). Undefined (null) when no problem is baseline-correct.
- **flip rate** = problems whose correctness differs from the baseline (either direction)
  / all problems.
- Both come with **Wilson score 95% intervals**: with p = k/n and z = Φ⁻¹(0.975),
  ``(p + z²/2n ± z·sqrt(p(1-p)/n + z²/4n²)) / (1 + z²/n)``.
- **early vs late** pools positions 0-2 and 3-5 (configurable) over (problem, position) pairs; the pairs of
  one problem are not independent, so its intervals are narrower than a per-problem analysis
  would give and are descriptive.
- **trend tests** across positions, per variant family:
  * Cochran–Armitage test for trend in proportions, scores = positions:
    ``T = Σ s_i (k_i − n_i p̄)``, ``Var T = p̄(1−p̄) (Σ n_i s_i² − (Σ n_i s_i)² / N)``,
    ``z = T / sqrt(Var T)``, two-sided p from the normal distribution. It treats positions
    as independent samples (they are the same problems), so it is approximate.
  * Page's L test (``scipy.stats.page_trend_test``, asymptotic), which respects the pairing:
    blocks are baseline-correct problems, treatments are positions in increasing order, the
    alternative is "importance increases with position" (one-sided).
  * Spearman's rho between position and importance (descriptive, ``scipy.stats.spearmanr``).
- **null control agreement**: the fraction of problems whose null-control answer (number and
  text) equals the baseline's; anything below 1 means the ablation path itself changes answers.
- **the control model** (negative control, issue 12): the same sweep of a model trained with
  constant latent thoughts (``CodiTrainConfig.latent_thoughts``), which carries nothing through
  them. Each position's importance stands next to the control's at the same variant, with the
  control's Wilson 95% band; ``within_control_band`` is true where the model's importance lies
  inside that band (bounds included): an ablation curve cannot tell that position of the
  model from one of a model that does not use its latents. The columns are null where the
  control has no rows for the variant (or was not run).
"""

from __future__ import annotations

import math
from pathlib import Path

import polars as pl

EARLY_POSITIONS = (0, 1, 2)
LATE_POSITIONS = (3, 4, 5)
FAMILY = ["protocol", "scheme", "mode", "site"]
DIFFICULTY_ORDER = ["<=2", "3", "4", "5+", "unknown"]
REQUIRED_ROW_COLUMNS = ("problem_id", "variant", "scheme", "mode", "site", "position", "predicted",
                        "answer_text", "correct", "baseline_correct", "flipped")


def _z(confidence: float = 0.95) -> float:
    from scipy.stats import norm

    return float(norm.ppf(0.5 + confidence / 2))


def wilson_interval(k: int, n: int, confidence: float = 0.95) -> tuple[float | None, float | None]:
    """Wilson score interval of k successes in n trials; (None, None) when n == 0."""
    if n < 0 or k < 0 or k > n:
        raise ValueError(f"need 0 <= k <= n, got k={k}, n={n}")
    if n == 0:
        return None, None
    z = _z(confidence)
    p = k / n
    denom = 1 + z * z / n
    center = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    # The bounds are exactly 0 at k = 0 and 1 at k = n; pin them against rounding.
    return (0.0 if k == 0 else center - half), (1.0 if k == n else center + half)


def _wilson_exprs(k: str, n: str, prefix: str) -> list[pl.Expr]:
    """Polars expressions for the rate k/n and its Wilson bounds (null when n == 0)."""
    z = _z()
    kk, nn = pl.col(k).cast(pl.Float64), pl.col(n).cast(pl.Float64)
    p = kk / nn
    denom = 1 + z * z / nn
    center = (p + z * z / (2 * nn)) / denom
    half = z * ((p * (1 - p) / nn + z * z / (4 * nn * nn)).sqrt()) / denom
    ok = pl.col(n) > 0
    # The bounds are exactly 0 at k = 0 and 1 at k = n; pin them against rounding.
    lo = pl.when(pl.col(k) == 0).then(0.0).otherwise(center - half)
    hi = pl.when(pl.col(k) == pl.col(n)).then(1.0).otherwise(center + half)
    return [
        pl.when(ok).then(p).otherwise(None).alias(prefix),
        pl.when(ok).then(lo).otherwise(None).alias(f"{prefix}_lo"),
        pl.when(ok).then(hi).otherwise(None).alias(f"{prefix}_hi"),
    ]


def _with_protocol(rows: pl.DataFrame) -> pl.DataFrame:
    if "protocol" not in rows.columns:
        rows = rows.with_columns(protocol=pl.lit("codi"))
    return rows


def _validate(rows: pl.DataFrame, problems: pl.DataFrame) -> None:
    missing = [c for c in REQUIRED_ROW_COLUMNS if c not in rows.columns]
    if missing:
        raise ValueError(f"step-importance rows lack column(s) {missing}")
    for column in ("problem_id", "difficulty"):
        if column not in problems.columns:
            raise ValueError(f"problems table lacks column {column!r}")
    if rows.is_empty():
        raise ValueError("no step-importance rows to summarize")


def rows_of_current_problems(rows: pl.DataFrame, problems: pl.DataFrame) -> tuple[pl.DataFrame, list[str]]:
    """The rows whose problem is in ``problems``, and the ids of the problems left out.

    A problem set that changed (a new file, fewer problems) leaves rows of problems it no
    longer has; they are kept in ``step_importance`` for the record but never summarized next
    to the current set (they have no difficulty in it, and the set's meaning changed).
    """
    current = set(problems["problem_id"].to_list())
    stale = sorted(set(rows["problem_id"].unique().to_list()) - current)
    return rows.filter(pl.col("problem_id").is_in(list(current))), stale


def _counts(frame: pl.DataFrame, keys: list[str]) -> pl.DataFrame:
    """Importance and flip-rate counts per group, with Wilson intervals and continuous metrics."""
    aggs = [
        pl.len().alias("n_problems"),
        pl.col("baseline_correct").sum().alias("n_baseline_correct"),
        (pl.col("baseline_correct") & ~pl.col("correct")).sum().alias("n_broken"),
        pl.col("flipped").sum().alias("n_flipped"),
    ]
    if "answer_changed" in frame.columns:
        aggs.append(pl.col("answer_changed").mean().alias("answer_changed_rate"))
    if "kl_to_baseline" in frame.columns:
        aggs.append(pl.col("kl_to_baseline").mean().alias("mean_kl_to_baseline"))
    if "gold_logprob_drop" in frame.columns:
        aggs.append(pl.col("gold_logprob_drop").mean().alias("mean_gold_logprob_drop"))
    out = frame.group_by(keys).agg(aggs)
    return out.with_columns(
        *_wilson_exprs("n_broken", "n_baseline_correct", "importance"),
        *_wilson_exprs("n_flipped", "n_problems", "flip_rate"),
    ).sort(keys)


def _ablation_rows(rows: pl.DataFrame, problems: pl.DataFrame) -> pl.DataFrame:
    joined = rows.join(problems.select("problem_id", "difficulty"), on="problem_id", how="left")
    if "gold_logprob" in rows.columns:
        base = rows.filter(pl.col("scheme") == "baseline").select(
            "problem_id", "protocol", pl.col("gold_logprob").alias("_base_logprob"))
        joined = joined.join(base, on=["problem_id", "protocol"], how="left").with_columns(
            gold_logprob_drop=pl.col("_base_logprob") - pl.col("gold_logprob")).drop("_base_logprob")
    return joined.filter(pl.col("scheme").is_in(["prefix", "single"]))


def _baseline_table(rows: pl.DataFrame, problems: pl.DataFrame) -> pl.DataFrame:
    base = rows.filter(pl.col("scheme") == "baseline").join(
        problems.select("problem_id", "difficulty"), on="problem_id", how="left")
    overall = base.group_by("protocol").agg(pl.len().alias("n_problems"), pl.col("correct").sum().alias("n_correct"))
    overall = overall.with_columns(difficulty=pl.lit("all"))
    by_diff = base.group_by("protocol", "difficulty").agg(pl.len().alias("n_problems"),
                                                          pl.col("correct").sum().alias("n_correct"))
    table = pl.concat([overall.select(by_diff.columns), by_diff])
    return table.with_columns(*_wilson_exprs("n_correct", "n_problems", "accuracy")).sort("protocol", "difficulty")


def _null_table(rows: pl.DataFrame) -> pl.DataFrame:
    cols = ["problem_id", "protocol", "predicted", "answer_text"]
    base = rows.filter(pl.col("scheme") == "baseline").select(cols)
    null = rows.filter(pl.col("scheme") == "null").select(cols)
    joined = base.join(null, on=["problem_id", "protocol"], how="full", coalesce=True, suffix="_null")
    agree = (
        pl.col("answer_text").is_not_null() & pl.col("answer_text_null").is_not_null()
        & (pl.col("answer_text") == pl.col("answer_text_null"))
        & pl.col("predicted").eq_missing(pl.col("predicted_null"))
    )
    return joined.with_columns(agree=agree).group_by("protocol").agg(
        pl.len().alias("n_problems"),
        pl.col("agree").sum().alias("n_agree"),
        (~pl.col("agree")).sum().alias("n_disagree"),
        pl.col("agree").mean().alias("agreement"),
    ).sort("protocol")


def _early_late(ablations: pl.DataFrame, early=EARLY_POSITIONS, late=LATE_POSITIONS) -> pl.DataFrame:
    segment = (pl.when(pl.col("position").is_in(list(early))).then(pl.lit("early"))
               .when(pl.col("position").is_in(list(late))).then(pl.lit("late")).otherwise(None))
    frame = ablations.with_columns(segment=segment).filter(pl.col("segment").is_not_null())
    frame = pl.concat([frame, frame.with_columns(difficulty=pl.lit("all"))])
    counts = frame.group_by(FAMILY + ["difficulty", "segment"]).agg(
        pl.col("baseline_correct").sum().alias("n_pairs"),
        (pl.col("baseline_correct") & ~pl.col("correct")).sum().alias("n_broken"),
    ).with_columns(*_wilson_exprs("n_broken", "n_pairs", "importance"))
    early = counts.filter(pl.col("segment") == "early").drop("segment")
    late = counts.filter(pl.col("segment") == "late").drop("segment")
    keys = FAMILY + ["difficulty"]
    wide = early.join(late, on=keys, how="full", coalesce=True, suffix="_late")
    wide = wide.rename({c: f"{c}_early" for c in ["n_pairs", "n_broken", "importance", "importance_lo", "importance_hi"]})
    return wide.with_columns(
        late_over_early=pl.when(pl.col("importance_early") > 0)
        .then(pl.col("importance_late") / pl.col("importance_early")).otherwise(None)
    ).sort(keys)


def cochran_armitage(k: list[int], n: list[int], scores: list[float]) -> tuple[float | None, float | None]:
    """(z, two-sided p) of the Cochran–Armitage trend test; (None, None) if undefined."""
    from scipy.stats import norm

    total_n, total_k = sum(n), sum(k)
    if total_n == 0:
        return None, None
    p_bar = total_k / total_n
    t = sum(s * (ki - ni * p_bar) for s, ki, ni in zip(scores, k, n))
    var = p_bar * (1 - p_bar) * (sum(ni * s * s for s, ni in zip(scores, n))
                                 - sum(ni * s for s, ni in zip(scores, n)) ** 2 / total_n)
    if var <= 0:
        return None, None
    z = t / math.sqrt(var)
    return z, float(2 * norm.sf(abs(z)))


def _trend(ablations: pl.DataFrame, by_position: pl.DataFrame) -> pl.DataFrame:
    import numpy as np
    from scipy.stats import page_trend_test, spearmanr

    out = []
    for family, group in by_position.group_by(FAMILY, maintain_order=True):
        group = group.sort("position")
        positions = group["position"].to_list()
        record = dict(zip(FAMILY, family))
        record["n_positions"] = len(positions)
        z, p = cochran_armitage(group["n_broken"].to_list(), group["n_baseline_correct"].to_list(),
                                [float(x) for x in positions])
        record["cochran_armitage_z"], record["cochran_armitage_p"] = z, p
        record["page_l"] = record["page_p"] = record["spearman_rho"] = record["spearman_p"] = None
        rows = ablations.filter(pl.all_horizontal([pl.col(c) == v for c, v in zip(FAMILY, family)])
                                & pl.col("baseline_correct"))
        if len(positions) >= 3 and rows.height:
            wide = rows.with_columns(broken=(~pl.col("correct")).cast(pl.Int64)).pivot(
                on="position", index="problem_id", values="broken", aggregate_function="first")
            cols = [str(pos) for pos in positions]
            wide = wide.drop_nulls(cols)
            if wide.height >= 2:
                result = page_trend_test(wide.select(cols).to_numpy().astype(float), method="asymptotic")
                record["page_l"], record["page_p"] = float(result.statistic), float(result.pvalue)
            importance = group["importance"].to_list()
            if all(v is not None for v in importance) and len(set(importance)) > 1:
                rho = spearmanr(np.array(positions, dtype=float), np.array(importance, dtype=float))
                record["spearman_rho"], record["spearman_p"] = float(rho.statistic), float(rho.pvalue)
        out.append(record)
    schema = {**{c: pl.String for c in FAMILY}, "n_positions": pl.Int64,
              "cochran_armitage_z": pl.Float64, "cochran_armitage_p": pl.Float64,
              "page_l": pl.Float64, "page_p": pl.Float64, "spearman_rho": pl.Float64, "spearman_p": pl.Float64}
    return pl.DataFrame(out, schema=schema)


CONTROL_COLUMNS = {"n_baseline_correct": "control_n_baseline_correct", "n_broken": "control_n_broken",
                   "importance": "control_importance", "importance_lo": "control_importance_lo",
                   "importance_hi": "control_importance_hi"}


def with_control(by_position: pl.DataFrame, control_by_position: pl.DataFrame | None) -> pl.DataFrame:
    """``by_position`` with the control's importance and Wilson band at the same variant
    (columns of :data:`CONTROL_COLUMNS`, null without a control row) and ``within_control_band``:
    the model's importance lies in the control's band, bounds included (null when either side
    is undefined)."""
    keys = FAMILY + ["position", "variant"]
    if control_by_position is None or control_by_position.is_empty():
        control = pl.DataFrame(schema={**{k: by_position.schema[k] for k in keys},
                                       **{new: pl.Int64 if new.startswith("control_n_") else pl.Float64
                                          for new in CONTROL_COLUMNS.values()}})
    else:
        control = control_by_position.select(*keys, *[pl.col(old).alias(new) for old, new in CONTROL_COLUMNS.items()])
    joined = by_position.join(control, on=keys, how="left")
    inside = ((pl.col("importance") >= pl.col("control_importance_lo"))
              & (pl.col("importance") <= pl.col("control_importance_hi")))
    return joined.with_columns(within_control_band=inside).sort(keys)


def rates_by_mode(rows: pl.DataFrame) -> pl.DataFrame:
    """Flip rate and importance of each (protocol, mode, site), pooled over the ablation
    variants' (problem, variant) pairs, with Wilson 95% intervals; descriptive (the pairs of
    one problem are not independent)."""
    ablations = rows.filter(pl.col("position") >= 0)
    keys = ["protocol", "mode", "site"]
    counts = ablations.group_by(keys).agg(
        n_pairs=pl.len(),
        n_flipped=pl.col("flipped").sum(),
        n_baseline_correct=pl.col("baseline_correct").sum(),
        n_broken=(pl.col("baseline_correct") & ~pl.col("correct")).sum(),
    )
    return counts.with_columns(*_wilson_exprs("n_flipped", "n_pairs", "flip_rate"),
                               *_wilson_exprs("n_broken", "n_baseline_correct", "importance")).sort(keys)


def summarize_step_importance(rows: pl.DataFrame, problems: pl.DataFrame, *,
                              early_positions=EARLY_POSITIONS, late_positions=LATE_POSITIONS,
                              control_rows: pl.DataFrame | None = None) -> dict[str, pl.DataFrame]:
    """All summary views of ``run_ablations`` rows (see the module docstring):
    ``baseline``, ``null_control``, ``by_position`` (with the control's columns, null without
    ``control_rows``), ``by_difficulty``, ``early_late`` (pooling ``early_positions`` against
    ``late_positions``) and ``trend``, each a polars DataFrame with plain columns; with
    non-empty ``control_rows`` (the control model's rows) also ``control_baseline``."""
    _validate(rows, problems)
    rows = _with_protocol(rows)
    ablations = _ablation_rows(rows, problems)
    by_position = _counts(ablations, FAMILY + ["position", "variant"])
    by_difficulty = _counts(ablations, FAMILY + ["difficulty", "position", "variant"])
    control_parts = {}
    control_by_position = None
    if control_rows is not None and not control_rows.is_empty():
        _validate(control_rows, problems)
        control_rows = _with_protocol(control_rows)
        control_by_position = _counts(_ablation_rows(control_rows, problems), FAMILY + ["position", "variant"])
        control_parts["control_baseline"] = _baseline_table(control_rows, problems)
    return {
        "baseline": _baseline_table(rows, problems),
        "null_control": _null_table(rows),
        "by_position": with_control(by_position, control_by_position),
        "by_difficulty": by_difficulty,
        "early_late": _early_late(ablations, early_positions, late_positions),
        "trend": _trend(ablations, by_position),
        **control_parts,
    }


def plot_importance(by_difficulty: pl.DataFrame, path: str | Path, by_position: pl.DataFrame | None = None) -> Path:
    """PNG of importance against position, one panel per variant family: one line per
    difficulty and, with ``by_position``, the pooled curve over all problems (black), each
    with its 95% Wilson band, and where ``by_position`` has the control's columns
    (:func:`with_control`) the control model's curve (grey, dashed) and its band. Panels
    without a line get no legend (so matplotlib does not warn)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    families = by_difficulty.select(FAMILY).unique(maintain_order=True).rows() if by_difficulty.height else []
    n = max(1, len(families))
    cols = min(n, 3)
    rows_n = math.ceil(n / cols)
    fig, axes = plt.subplots(rows_n, cols, figsize=(4.6 * cols, 3.4 * rows_n), squeeze=False)
    for ax in axes.flat[n:]:
        ax.axis("off")
    if not families:
        axes[0][0].text(0.5, 0.5, "no ablation rows", ha="center", va="center")

    def of_family(frame, family):
        return frame.filter(pl.all_horizontal([pl.col(c) == v for c, v in zip(FAMILY, family)]))

    for ax, family in zip(axes.flat, families):
        group = of_family(by_difficulty, family)
        difficulties = sorted(group["difficulty"].unique().to_list(),
                              key=lambda d: DIFFICULTY_ORDER.index(d) if d in DIFFICULTY_ORDER else 99)
        lines = [(f"{d} steps", group.filter(pl.col("difficulty") == d), "importance", {}) for d in difficulties]
        if by_position is not None:
            pooled = of_family(by_position, family)
            lines.append(("all problems", pooled, "importance", {"color": "black", "linewidth": 2}))
            if "control_importance" in pooled.columns:
                lines.append(("control (constant thoughts)", pooled, "control_importance",
                              {"color": "grey", "linestyle": "--"}))
        for label, frame, column, style in lines:
            line = frame.filter(pl.col(column).is_not_null()).sort("position")
            if line.is_empty():
                continue
            x = line["position"].to_list()
            drawn = ax.plot(x, line[column].to_list(), marker="o", label=label, **style)[0]
            ax.fill_between(x, line[f"{column}_lo"].to_list(), line[f"{column}_hi"].to_list(), alpha=0.15,
                            color=drawn.get_color())
        protocol, scheme, mode, site = family
        ax.set_title(f"{scheme} / {mode} / {site}" + (" (researchers)" if protocol == "researchers" else ""), fontsize=9)
        ax.set_xlabel("thought position (prefix: last ablated)")
        ax.set_ylabel("importance (baseline-correct → wrong)")
        ax.set_ylim(-0.02, 1.02)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
        else:
            ax.text(0.5, 0.5, "no baseline-correct problems", ha="center", va="center", transform=ax.transAxes,
                    fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
