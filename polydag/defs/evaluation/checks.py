"""Gates of the evaluation half: a broken metric table stops the run before anything
downstream is computed from it."""

import polars as pl
from dagster import AssetCheckResult, AssetCheckSeverity, MetadataValue, asset_check

from polydag.core.evaluation.metric_audit import diversity_metric_problems, pass_at_k_ceilings
from polydag.defs.evaluation.assets import metrics, metrics_summary


@asset_check(
    asset=metrics,
    blocking=True,
    description="No diversity metric is all zero, NaN, or out of range for any λ "
    "(the researchers' silent-zero failure).",
)
def metrics_diversity_values_sane(metrics: pl.DataFrame) -> AssetCheckResult:
    problems = diversity_metric_problems(metrics)
    return AssetCheckResult(
        passed=not problems,
        description="; ".join(problems[:5]) if problems else "all diversity metrics in range",
        metadata={"problems": MetadataValue.md("\n".join(f"- {p}" for p in problems) or "none")},
    )


@asset_check(
    asset=metrics_summary,
    description="Warn when pass@k ≥ 0.95: a ceiling leaves no room to show a diversity benefit "
    "(the task or the quality checker is too easy).",
)
def pass_at_k_below_ceiling(metrics_summary: pl.DataFrame) -> AssetCheckResult:
    ceilings = pass_at_k_ceilings(metrics_summary)
    return AssetCheckResult(
        passed=not ceilings,
        severity=AssetCheckSeverity.WARN,
        description="; ".join(ceilings) if ceilings else "no pass@k at the ceiling",
    )
