"""Sanity audits of metric tables: the researchers' silent-zero failure, made loud.

Their evaluation swallowed a missing-NLTK-data exception and reported 0.0 for every diversity
metric. A metric column that is all zero, NaN, or outside its range for a λ is never a result.

A single prompt's value may legitimately be undefined (NaN): Self-BLEU of one sample, Distinct-2
when every sample is one token long. Metrics never turn that into 0.0. The audit tolerates such
prompts up to ``MAX_UNDEFINED_FRACTION`` of a λ; more than that is a broken metric, not data.
"""

from __future__ import annotations

import re

import polars as pl

from polydag.core.evaluation.metrics.seeds import POOLED_SEED_KEY

# (lower, upper) bounds of each per-prompt metric; vendi is bounded by the number of samples.
METRIC_RANGES = {
    "distinct_1": (0.0, 1.0),
    "distinct_2": (0.0, 1.0),
    "self_bleu": (0.0, 1.0),
    "semantic_diversity": (0.0, 2.0),
    "vendi": (1.0, None),
}
MAX_UNDEFINED_FRACTION = 0.1


def diversity_metric_problems(metrics: pl.DataFrame) -> list[str]:
    """Human-readable problems, one per (λ, metric); empty when the table is sane."""
    problems = []
    for (key,), group in metrics.group_by(["lambda_key"], maintain_order=True):
        for column, (lower, upper) in METRIC_RANGES.items():
            value = pl.col(column).cast(pl.Float64)
            bad = value.is_null() | value.is_nan()
            upper_expr = pl.lit(upper) if upper is not None else pl.col("n_samples")
            stats = group.select(
                n_nan=bad.sum(),
                n_finite=(~bad).sum(),
                n_zero=(~bad & (value == 0)).sum(),
                n_out=(~bad & ((value < lower) | (value > upper_expr))).sum(),
            ).row(0, named=True)
            if stats["n_nan"] > MAX_UNDEFINED_FRACTION * group.height or not stats["n_finite"]:
                problems.append(
                    f"λ={key} {column}: {stats['n_nan']} of {group.height} values are NaN or "
                    "missing"
                )
            if stats["n_finite"] and stats["n_zero"] == stats["n_finite"] and column != "vendi":
                problems.append(f"λ={key} {column}: all {stats['n_finite']} values are 0")
            if stats["n_out"]:
                bound = upper if upper is not None else "n_samples"
                problems.append(
                    f"λ={key} {column}: {stats['n_out']} value(s) outside [{lower}, {bound}]"
                )
    return problems


def pass_at_k_ceilings(summary: pl.DataFrame, threshold: float = 0.95) -> list[str]:
    """pass@k at or above ``threshold``: the task or the quality checker is too easy."""
    found = []
    if "seed_key" in summary.columns:  # per-seed rows and one pooled row per λ: judge the pooled one
        summary = summary.filter(pl.col("seed_key") == POOLED_SEED_KEY)
    for column in [c for c in summary.columns if re.fullmatch(r"pass_at_\d+", c)]:
        for key, value in summary.select("lambda_key", column).iter_rows():
            if value is not None and value >= threshold:
                found.append(f"λ={key} {column} = {value:.3f} ≥ {threshold}")
    return found
