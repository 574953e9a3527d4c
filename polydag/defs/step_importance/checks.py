"""Gate of the step-importance sweep: the null control must reproduce the baseline.

The null ablation masks nothing but goes through the same code path as every ablation. If
its answer differs from the baseline on any problem, the ablation path itself changes answers
(as the researchers' double end-of-thought did) and every importance number is suspect.
"""

import polars as pl
from dagster import AssetCheckExecutionContext, AssetCheckResult, MetadataValue, asset_check
from dagster_duckdb import DuckDBResource

from polydag.core.tables import markdown_table
from polydag.defs.step_importance.assets import step_importance


def null_control_mismatches(rows: pl.DataFrame) -> pl.DataFrame:
    """Problems whose null-control answer differs from their baseline answer."""
    baseline = rows.filter(pl.col("scheme") == "baseline").select(
        "problem_id", baseline_answer="predicted"
    )
    null = rows.filter(pl.col("scheme") == "null").select("problem_id", null_answer="predicted")
    joined = baseline.join(null, on="problem_id", how="full", coalesce=True)
    return joined.filter(
        pl.col("baseline_answer").is_null()
        | pl.col("null_answer").is_null()
        | (pl.col("baseline_answer") != pl.col("null_answer"))
    )


@asset_check(
    asset=step_importance,
    blocking=True,
    description="The null control (an empty ablation through the same batched path) gives the "
    "baseline answer on every problem.",
)
def null_control_matches_baseline(
    context: AssetCheckExecutionContext, duckdb: DuckDBResource
) -> AssetCheckResult:
    keys = list(context.partition_keys)
    with duckdb.get_connection() as con:
        rows = con.execute(
            "SELECT problem_id, scheme, predicted FROM step_importance "
            "WHERE scheme IN ('baseline', 'null') AND problem_id IN (SELECT unnest(?))",
            [keys],
        ).pl()
    bad = null_control_mismatches(rows)
    checked = rows["problem_id"].n_unique()
    return AssetCheckResult(
        passed=bad.is_empty() and checked == len(keys),
        description=(
            f"null control differs from baseline on {bad.height} of {checked} problems"
            if bad.height or checked != len(keys)
            else f"null control equals baseline on all {checked} problems"
        ),
        metadata={
            "n_problems_checked": checked,
            "n_mismatches": bad.height,
            "mismatches": MetadataValue.md(markdown_table(bad.head(10)) if bad.height else "none"),
        },
    )
