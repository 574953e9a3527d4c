"""Gate of the step-importance sweep: the null control must reproduce the baseline.

The null ablation masks nothing but goes through the same code path as every ablation. If
its answer differs from the baseline on any problem, the ablation path itself changes answers
(as the researchers' double end-of-thought did) and every importance number is suspect.
"""

import polars as pl
from dagster import AssetCheckExecutionContext, AssetCheckResult, MetadataValue, asset_check
from dagster_duckdb import DuckDBResource

from polydag.core.storage.tables import markdown_table
from polydag.defs.step_importance.assets import step_importance


def null_control_mismatches(rows: pl.DataFrame) -> pl.DataFrame:
    """(problem, protocol) pairs whose null-control output differs from the baseline's, or
    that lack one of the two rows. The full decoded text is compared, not just the number."""
    keys = ["problem_id", "protocol"]
    baseline = rows.filter(pl.col("scheme") == "baseline").select(*keys, baseline_text="answer_text")
    null = rows.filter(pl.col("scheme") == "null").select(*keys, null_text="answer_text")
    joined = baseline.join(null, on=keys, how="full", coalesce=True, nulls_equal=True)
    missing = pl.col("baseline_text").is_null() & pl.col("null_text").is_null()
    return joined.filter(missing | ~pl.col("baseline_text").eq_missing(pl.col("null_text")))


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
            "SELECT problem_id, protocol, scheme, answer_text FROM step_importance "
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
