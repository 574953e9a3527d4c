"""Gate of the step-importance sweep: the null control must reproduce the baseline
(``polydag.core.step_importance.audit`` says why and checks it)."""

from dagster import AssetCheckExecutionContext, AssetCheckResult, MetadataValue, asset_check

from polydag.core.step_importance.audit import null_control_mismatches
from polydag.core.storage.duck import read_rows
from polydag.core.storage.tables import markdown_table
from polydag.defs.step_importance.assets import step_importance
from polydag.defs.storage.resources import PolydagStorage


@asset_check(
    asset=step_importance,
    blocking=True,
    description="The null control (an empty ablation through the same batched path) gives the "
    "baseline answer on every problem.",
)
def null_control_matches_baseline(
    context: AssetCheckExecutionContext, storage: PolydagStorage
) -> AssetCheckResult:
    keys = list(context.partition_keys)
    rows = read_rows(storage.duckdb_path, "step_importance",
                     columns=["problem_id", "protocol", "scheme", "answer_text"],
                     scheme=["baseline", "null"], problem_id=keys)
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
