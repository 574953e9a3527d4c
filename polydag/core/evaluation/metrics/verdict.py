"""The researchers' decision rule, applied to the comparison table.

Bars are relative changes against the baseline λ, written the way the researchers wrote them
(their decision table): Distinct-2 +12% / +25%, Self-BLEU −10% / −30%, pass@10 +25% / +50% for
workshop / main conference; pass@1 must stay "similar" (|relative change| ≤ 5% by default);
p < 0.05. A bar's sign must point in the metric's better direction (Self-BLEU: lower is better),
which is checked when the thresholds are built.

A metric meets a bar when, for that λ,

    (bar > 0 and rel_change ≥ bar  or  bar < 0 and rel_change ≤ bar)
    and p (``p_column``, Holm-adjusted by default) < alpha

(``<metric>_significant`` is the second condition alone: the two-sided test says the λ differs
from the baseline, in either direction).

A missing (null) relative change or p never meets a bar. ``workshop_met`` /
``main_conference_met`` require every bar of that level and every "similar" condition.
Consistency across training seeds, the researchers' last main-conference condition, needs
several seeds per λ and is not assessed by this table.
"""

from __future__ import annotations

import math
import polars as pl

from polydag.core.polychromic.lambdas import lambda_value
from polydag.core.evaluation.config import VERDICT_LEVELS as LEVELS, VerdictThresholds


def _is_number(value) -> bool:
    return value is not None and not math.isnan(value)


def _significant(p, alpha: float) -> bool:
    """Two-sided significance: p < alpha (a null p is never significant)."""
    return bool(_is_number(p) and p < alpha)


def _bar_met(rel_change, bar: float, significant: bool) -> bool:
    """Relative change at least as far as the bar, in the bar's direction, and significant.

    Metrics are non-negative, so with a positive baseline mean the relative change has the sign
    of the mean difference: moving past the bar means moving in the better direction.
    """
    if not _is_number(rel_change) or not significant:
        return False
    return bool(rel_change >= bar if bar > 0 else rel_change <= bar)


def verdict(comparison_df: pl.DataFrame, thresholds: VerdictThresholds | None = None) -> pl.DataFrame:
    """One row per λ: per metric the relative change, p, significance and which bars are met;
    then ``workshop_met`` and ``main_conference_met`` (see module doc)."""
    thresholds = thresholds or VerdictThresholds()
    needed = ["lambda_key", "metric", "rel_change", thresholds.p_column]
    missing = [c for c in needed if c not in comparison_df.columns]
    if missing:
        raise ValueError(f"comparison table lacks columns {missing}; it has {comparison_df.columns}")
    metrics = thresholds.bar_metrics + [m for m in thresholds.similar if m not in thresholds.bar_metrics]
    present = set(comparison_df.get_column("metric").to_list())
    absent = [m for m in metrics if m not in present]
    if absent:
        raise ValueError(
            f"the verdict needs metrics {absent}, which the comparison table does not have "
            f"(it has {sorted(present)}); add them to compare_to_baseline(metrics=...)"
        )

    rows = []
    keys = sorted(comparison_df.get_column("lambda_key").unique().to_list(), key=lambda_value)
    for lambda_key in keys:
        part = {r["metric"]: r for r in comparison_df.filter(pl.col("lambda_key") == lambda_key).iter_rows(named=True)}
        row: dict = {"lambda_key": lambda_key, "diversity_weight": lambda_value(lambda_key)}
        level_ok = {level: True for level in LEVELS}
        for metric in metrics:
            r = part.get(metric)
            if r is None:
                raise ValueError(f"comparison table has no row for λ {lambda_key!r}, metric {metric!r}")
            rel, p = r["rel_change"], r[thresholds.p_column]
            row[f"{metric}_rel_change"] = rel
            row[f"{metric}_p"] = p
            significant = _significant(p, thresholds.alpha)
            row[f"{metric}_significant"] = significant
            for level in LEVELS:
                bar = getattr(thresholds, level).get(metric)
                if bar is None:
                    continue
                met = _bar_met(rel, bar, significant)
                row[f"{metric}_{level}_met"] = met
                level_ok[level] &= met
            if metric in thresholds.similar:
                similar = _is_number(rel) and abs(rel) <= thresholds.similar[metric]
                row[f"{metric}_similar"] = bool(similar)
                for level in LEVELS:
                    level_ok[level] &= similar
        for level in LEVELS:
            row[f"{level}_met"] = bool(level_ok[level])
        rows.append(row)
    schema = {}
    for name in (rows[0] if rows else {"lambda_key": None, "diversity_weight": None}):
        if name == "lambda_key":
            schema[name] = pl.String
        elif name == "diversity_weight" or name.endswith(("_rel_change", "_p")):
            schema[name] = pl.Float64
        else:
            schema[name] = pl.Boolean
    return pl.DataFrame(rows, schema=schema)


_LABELS = {
    "distinct_1": "Distinct-1",
    "distinct_2": "Distinct-2",
    "self_bleu": "Self-BLEU",
    "semantic_diversity": "Semantic div.",
    "vendi": "Vendi",
}


def _label(metric: str) -> str:
    if metric.startswith("pass_at_"):
        return f"Pass@{metric.removeprefix('pass_at_')}"
    return _LABELS.get(metric, metric)


def _pct(value) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return f"{value:+.1%}"


def _p(value) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "p n/a"
    return "p<0.001" if value < 0.001 else f"p={value:.3f}"


def verdict_markdown(verdict_df: pl.DataFrame, thresholds: VerdictThresholds | None = None) -> str:
    """A Markdown table of the verdict: per λ and metric the relative change, p and bars met."""
    thresholds = thresholds or VerdictThresholds()
    metrics = thresholds.bar_metrics + [m for m in thresholds.similar if m not in thresholds.bar_metrics]
    header = ["λ"]
    for metric in metrics:
        bars = [f"{getattr(thresholds, level)[metric]:+.0%}" for level in LEVELS if metric in getattr(thresholds, level)]
        if metric in thresholds.similar:
            bars.append(f"±{thresholds.similar[metric]:.0%}")
        header.append(f"{_label(metric)} ({' / '.join(bars)})")
    header += ["workshop", "main conference"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in verdict_df.sort("diversity_weight").iter_rows(named=True):
        cells = [row["lambda_key"]]
        for metric in metrics:
            marks = []
            for level, short in zip(LEVELS, ("W", "M")):
                if f"{metric}_{level}_met" in row:
                    marks.append(f"{short}{'✓' if row[f'{metric}_{level}_met'] else '✗'}")
            if f"{metric}_similar" in row:
                marks.append("similar ✓" if row[f"{metric}_similar"] else "similar ✗")
            cells.append(f"{_pct(row[f'{metric}_rel_change'])} ({_p(row[f'{metric}_p'])}) {' '.join(marks)}")
        cells += ["**met**" if row["workshop_met"] else "not met", "**met**" if row["main_conference_met"] else "not met"]
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    lines.append(
        f"Relative change of the per-prompt mean vs the baseline λ; p = Wilcoxon signed-rank "
        f"({'Holm-adjusted across λ' if thresholds.p_column == 'p_holm' else 'unadjusted'}), "
        f"α = {thresholds.alpha}. A bar counts only when significant and in the better direction. "
        "Consistency across training seeds is not assessed here."
    )
    return "\n".join(lines)
