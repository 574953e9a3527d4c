"""Gates of the step-importance sweeps (``polydag.core.step_importance.audit`` says why and
checks them): the null control must reproduce the baseline, and the one-row reference loop
must give the engine's answer on every re-answered row. The model's sweep and the control
model's pass the same gates (:func:`sweep_gates`)."""

import polars as pl
from dagster import AssetCheckExecutionContext, AssetCheckResult, MetadataValue, asset_check

from polydag.core.step_importance.audit import null_control_mismatches, reference_mismatches
from polydag.core.storage.duck import read_rows
from polydag.core.storage.tables import markdown_table
from polydag.defs.step_importance.assets import step_importance, step_importance_control
from polydag.defs.storage.resources import PolydagStorage


def sweep_gates(sweep) -> list:
    """The two blocking gates of a problem-partitioned ablation asset, reading its table."""
    table = sweep.key.path[-1]

    @asset_check(
        asset=sweep,
        name="null_control_matches_baseline",
        blocking=True,
        description="The null control (an empty ablation through the same batched path) gives the "
        "baseline answer on every problem.",
    )
    def null_control_matches_baseline(
        context: AssetCheckExecutionContext, storage: PolydagStorage
    ) -> AssetCheckResult:
        keys = list(context.partition_keys)
        rows = read_rows(storage.duckdb_path, table,
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


    @asset_check(
        asset=sweep,
        name="reference_loop_matches_engine",
        blocking=True,
        description="Runtime reference gate: every variant of a seeded sample of each run's problems "
        "(all of them for small runs), re-answered by the independent one-row loop, gives the batched "
        "engine's answer.",
    )
    def reference_loop_matches_engine(
        context: AssetCheckExecutionContext, storage: PolydagStorage
    ) -> AssetCheckResult:
        keys = list(context.partition_keys)
        rows = read_rows(storage.duckdb_path, table,
                         columns=["problem_id", "protocol", "variant", "answer_text", "reference_checked",
                                  "reference_answer_text"],
                         problem_id=keys)
        if "reference_checked" not in rows.columns:   # no rows stored for these keys
            rows = pl.DataFrame(schema={"problem_id": pl.String, "answer_text": pl.String,
                                        "reference_checked": pl.Boolean, "reference_answer_text": pl.String})
        bad = reference_mismatches(rows)
        checked = rows.filter(pl.col("reference_checked"))
        n_problems = checked["problem_id"].n_unique()
        return AssetCheckResult(
            passed=bad.is_empty() and checked.height > 0,
            description=(
                f"the one-row reference differs from the engine on {bad.height} of {checked.height} rows"
                if bad.height else
                ("no row of these problems was re-answered by the reference loop" if checked.height == 0 else
                 f"the one-row reference gives the engine's answer on all {checked.height} rows "
                 f"of {n_problems} problems")
            ),
            metadata={
                "n_rows_checked": checked.height,
                "n_problems_checked": n_problems,
                "n_mismatches": bad.height,
                "mismatches": MetadataValue.md(markdown_table(bad.head(10)) if bad.height else "none"),
            },
        )

    return [null_control_matches_baseline, reference_loop_matches_engine]


null_control_matches_baseline, reference_loop_matches_engine = sweep_gates(step_importance)
control_null_control_matches_baseline, control_reference_loop_matches_engine = sweep_gates(step_importance_control)
