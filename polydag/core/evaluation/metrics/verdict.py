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

A missing (null) relative change or p never meets a bar. Bars, "similar" and significance are
read from the pooled comparison rows (``seed_key = "pooled"``: per prompt, the mean over seeds).

Seed consistency, the researchers' last main-conference condition ("consistent across multiple
seeds"), is assessed when a λ has at least ``thresholds.min_seeds`` seeds (``n_seeds``;
``seed_consistency_assessed``). For each bar metric, ``<metric>_n_seeds_better`` counts the
seeds whose own mean change against λ = 0 of the same seed points in the metric's better
direction (Self-BLEU: down), and ``<metric>_seed_consistent`` holds when every seed does and
the pooled test is significant. ``seed_consistent`` needs that for every bar metric. Unassessed
(fewer seeds), both are null.

``workshop_met`` requires every workshop bar and every "similar" condition.
``main_conference_met`` requires every main-conference bar, every "similar" condition and
``seed_consistent``, so it is never true while seed consistency is unassessed.
"""

from __future__ import annotations

import math
import polars as pl

from polydag.core.polychromic.lambdas import lambda_value
from polydag.core.evaluation.config import VERDICT_LEVELS as LEVELS, VerdictThresholds
from polydag.core.evaluation.metrics.registry import metric_info
from polydag.core.evaluation.metrics.seeds import POOLED_SEED_KEY


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


def _better_direction(change, higher_is_better: bool) -> bool:
    """The change points the way that is better for the metric (0 is no direction)."""
    if not _is_number(change):
        return False
    return bool(change > 0 if higher_is_better else change < 0)


def _split_seeds(comparison_df: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(pooled rows, per-seed rows); a table without seeds is one seed whose rows are both."""
    if "seed_key" not in comparison_df.columns:
        return comparison_df, comparison_df.with_columns(seed_key=pl.lit("0"))
    pooled = comparison_df.filter(pl.col("seed_key") == POOLED_SEED_KEY)
    per_seed = comparison_df.filter(pl.col("seed_key") != POOLED_SEED_KEY)
    return pooled, per_seed


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

    pooled, per_seed = _split_seeds(comparison_df)
    rows = []
    keys = sorted(pooled.get_column("lambda_key").unique().to_list(), key=lambda_value)
    for lambda_key in keys:
        part = {r["metric"]: r for r in pooled.filter(pl.col("lambda_key") == lambda_key).iter_rows(named=True)}
        seeds = per_seed.filter(pl.col("lambda_key") == lambda_key)
        n_seeds = seeds.get_column("seed_key").n_unique()
        assessed = n_seeds >= thresholds.min_seeds
        row: dict = {"lambda_key": lambda_key, "diversity_weight": lambda_value(lambda_key), "n_seeds": n_seeds}
        level_ok = {level: True for level in LEVELS}
        consistent_all = True
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
            if metric in thresholds.bar_metrics:
                higher = metric_info(metric).higher_is_better
                # the sign of each seed's mean difference (rel_change has the same sign, but is
                # NaN where a seed's baseline mean is 0)
                direction = "diff" if "diff" in seeds.columns else "rel_change"
                seed_diffs = seeds.filter(pl.col("metric") == metric).get_column(direction).to_list()
                n_better = sum(_better_direction(v, higher) for v in seed_diffs)
                row[f"{metric}_n_seeds_better"] = n_better
                consistent = bool(n_better == n_seeds and n_seeds > 0 and significant)
                row[f"{metric}_seed_consistent"] = consistent if assessed else None
                consistent_all &= consistent
        row["seed_consistency_assessed"] = assessed
        row["seed_consistent"] = bool(consistent_all) if assessed else None
        row["workshop_met"] = bool(level_ok["workshop"])
        # never met while seed consistency is unassessed (fewer than min_seeds seeds)
        row["main_conference_met"] = bool(level_ok["main_conference"] and assessed and consistent_all)
        rows.append(row)
    schema = {}
    for name in (rows[0] if rows else {"lambda_key": None, "diversity_weight": None}):
        if name == "lambda_key":
            schema[name] = pl.String
        elif name == "n_seeds" or name.endswith("_n_seeds_better"):
            schema[name] = pl.Int64
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
    "distinct_k": "distinct_k",
    "coverage": "Coverage",
}


def _label(metric: str) -> str:
    from polydag.core.evaluation.metrics.registry import distinct_pass_at_k_of

    km = distinct_pass_at_k_of(metric)
    if km is not None:
        return f"Pass@{km[0]} (≥{km[1]} classes)"
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


def _p_number(value) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return "<0.001" if value < 0.001 else f"{value:.3f}"


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
    header += ["seeds", "workshop", "main conference"]
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
        cells.append(_seed_cell(row, thresholds))
        cells += ["**met**" if row["workshop_met"] else "not met", "**met**" if row["main_conference_met"] else "not met"]
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    lines.append(
        f"Relative change of the per-prompt mean (pooled: each prompt averaged over its seeds) vs the "
        f"baseline λ; p = Wilcoxon signed-rank "
        f"({'Holm-adjusted across λ' if thresholds.p_column == 'p_holm' else 'unadjusted'}), "
        f"α = {thresholds.alpha}. A bar counts only when significant and in the better direction. "
        f"Seeds: for each bar metric, the seeds whose own change vs λ = 0 of the same seed is in the "
        f"better direction; seed consistency (every seed, and the pooled test significant) is assessed "
        f"with ≥ {thresholds.min_seeds} seeds, and main conference needs it."
    )
    return "\n".join(lines)


def _seed_cell(row: dict, thresholds: VerdictThresholds) -> str:
    n = row.get("n_seeds")
    counts = ", ".join(f"{_label(m)} {row[f'{m}_n_seeds_better']}/{n}" for m in thresholds.bar_metrics
                       if f"{m}_n_seeds_better" in row)
    if not row.get("seed_consistency_assessed"):
        return f"unassessed: {n} seed{'s' if n != 1 else ''} < {thresholds.min_seeds} ({counts})"
    return f"{'consistent ✓' if row['seed_consistent'] else 'not consistent ✗'} ({counts})"


def with_trend(verdict_df: pl.DataFrame, trend_df: pl.DataFrame, thresholds: VerdictThresholds | None = None
               ) -> pl.DataFrame:
    """The verdict plus the pooled dose-response test of every bar and "similar" metric.

    ``<metric>_trend_p`` is Page's one-sided p of "better as λ grows" (pooled over seeds; see
    ``trend``), ``<metric>_trend_significant`` is p < alpha. They describe the whole sweep, so
    every λ row carries the same values; they inform, and no bar depends on them.
    """
    thresholds = thresholds or VerdictThresholds()
    metrics = thresholds.bar_metrics + [m for m in thresholds.similar if m not in thresholds.bar_metrics]
    pooled = trend_df.filter(pl.col("seed_key") == POOLED_SEED_KEY)
    p_of = dict(pooled.select("metric", "p_better").iter_rows())
    columns = []
    for metric in metrics:
        p = p_of.get(metric)
        columns.append(pl.lit(p, dtype=pl.Float64).alias(f"{metric}_trend_p"))
        columns.append(pl.lit(_significant(p, thresholds.alpha), dtype=pl.Boolean)
                       .alias(f"{metric}_trend_significant"))
    return verdict_df.with_columns(columns)


def trend_markdown(trend_df: pl.DataFrame, thresholds: VerdictThresholds | None = None) -> str:
    """A Markdown table of the dose-response tests: one line per metric, pooled then each seed."""
    thresholds = thresholds or VerdictThresholds()
    seeds = [k for k in dict.fromkeys(trend_df.get_column("seed_key").to_list()) if k != POOLED_SEED_KEY]
    header = ["metric", "λ values", "pooled: p better / p worse (prompts)", *[f"seed {s}: p better" for s in seeds]]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]

    def p_text(r) -> str:
        if r is None or r["p_better"] is None:
            return f"n/a ({r['note']})" if r is not None and r["note"] else "n/a"
        return f"{_p_number(r['p_better'])} / {_p_number(r['p_worse'])} ({r['n_prompts']})"

    rows = {(r["seed_key"], r["metric"]): r for r in trend_df.iter_rows(named=True)}
    for metric in dict.fromkeys(trend_df.get_column("metric").to_list()):
        pooled = rows.get((POOLED_SEED_KEY, metric))
        cells = [_label(metric), pooled["lambda_keys"] if pooled else "", p_text(pooled)]
        for seed in seeds:
            r = rows.get((seed, metric))
            cells.append("n/a" if r is None else _p_number(r["p_better"]))
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    lines.append(
        "Page's L trend test over λ ascending, blocks = test prompts (scipy.stats.page_trend_test); "
        "'p better' is one-sided for the metric improving as λ grows (Self-BLEU falling), 'p worse' "
        f"the reverse order. Pooled: each prompt averaged over the seeds every λ has. α = {thresholds.alpha}, "
        "not adjusted across metrics."
    )
    return "\n".join(lines)
