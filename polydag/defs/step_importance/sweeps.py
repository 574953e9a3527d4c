"""Resumable sweeps over problem partitions, in ranged runs.

Dagster's CLI runs a partition range only for single-run backfill policies, and an asset
backfill of a multi-run policy needs the daemon. A sweep on one machine needs neither: it
asks the instance which partitions are already materialized, cuts the missing ones into
contiguous ranges of the asset's backfill-policy size, and executes each range as one
ordinary run of the code location's asset job in the given instance (resolved from the
``Definitions`` object, so no module path is named here). Each finished run is durable, so a
killed sweep, run again, does only what is missing.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from dagster import AssetKey, DagsterInstance, Definitions

from polydag.core.ops.progress import progress
from polydag.defs.partitions import PROBLEM_PARTITIONS_NAME
from polydag.instance.dagster_internals import (
    ASSET_PARTITION_RANGE_END_TAG,
    ASSET_PARTITION_RANGE_START_TAG,
)
from polydag.instance.executor import execute_in_process

STEP_IMPORTANCE = AssetKey("step_importance")
STEP_IMPORTANCE_CONTROL = AssetKey("step_importance_control")  # the same sweep with the control model


def contiguous_ranges(ordered, wanted: set[str], max_len: int | None) -> list[list[str]]:
    """Stretches of consecutive keys of ``ordered`` that are all in ``wanted``, cut to
    ``max_len`` (None: unbounded). A range run covers every key between its ends, so a range
    must never straddle a key that is not wanted (it would be recomputed)."""
    ranges: list[list[str]] = []
    current: list[str] = []
    for key in ordered:
        if key in wanted and (max_len is None or len(current) < max_len):
            current.append(key)
            continue
        if current:
            ranges.append(current)
        current = [key] if key in wanted else []
    if current:
        ranges.append(current)
    return ranges


@dataclass
class SweepResult:
    n_registered: int
    n_already_done: int
    runs: list[dict] = field(default_factory=list)
    asset: str = STEP_IMPORTANCE.to_user_string()

    @property
    def success(self) -> bool:
        return all(run["success"] for run in self.runs)

    def describe(self) -> str:
        done = sum(run["n_problems"] for run in self.runs if run["success"])
        lines = [
            f"{self.asset}: {self.n_registered} problem partitions in scope, "
            f"{self.n_already_done} already materialized, {done} materialized now "
            f"in {len(self.runs)} ranged run(s)"
        ]
        for run in self.runs:
            status = "ok" if run["success"] else "FAILED"
            lines.append(
                f"  run {run['run_id'][:8]} {run['start']}...{run['end']} "
                f"({run['n_problems']} problems, {run['wall_s']:.1f}s) {status}"
            )
        return "\n".join(lines)


def sweep_step_importance(
    instance: DagsterInstance,
    *,
    defs: Definitions | None = None,
    max_problems: int | None = None,
    problems_per_run: int | None = None,
    run_config: dict | None = None,
    asset: AssetKey = STEP_IMPORTANCE,
) -> SweepResult:
    """Materialize the missing partitions of the problem-partitioned ``asset`` (``step_importance``,
    or :data:`STEP_IMPORTANCE_CONTROL` for the control model) of ``instance`` in ranged runs of
    ``defs``' asset job (default: polydag's code location, ``polydag.definitions.defs``)."""
    from polydag.defs.step_importance.assets import PROBLEMS_PER_RUN

    if defs is None:
        from polydag.definitions import defs

    ordered = list(instance.get_dynamic_partitions(PROBLEM_PARTITIONS_NAME))
    if not ordered:
        raise ValueError(
            "no problem partitions are registered; materialize the problems first: "
            "dagster asset materialize -m polydag --select problems"
        )
    if max_problems is not None:
        ordered = ordered[:max_problems]
    done = instance.get_materialized_partitions(asset)
    missing = {key for key in ordered if key not in done}
    result = SweepResult(n_registered=len(ordered), n_already_done=len(ordered) - len(missing),
                         asset=asset.to_user_string())
    # the implicit asset job of every asset: what the UI and `dagster asset materialize` run
    job = defs.resolve_implicit_global_asset_job_def()
    ranges = contiguous_ranges(ordered, missing, problems_per_run or PROBLEMS_PER_RUN)
    with progress(len(missing), f"sweep {result.asset}", unit="problem") as bar:
        for keys in ranges:
            started = time.monotonic()
            # polydag's executor, like every other run (JobDefinition.execute_in_process would
            # swap in Dagster's): a killed sweep's run is reaped instead of holding the gpu pool
            run = execute_in_process(
                job,
                run_config=run_config,
                instance=instance,
                asset_selection=[asset],
                tags={
                    ASSET_PARTITION_RANGE_START_TAG: keys[0],
                    ASSET_PARTITION_RANGE_END_TAG: keys[-1],
                },
                raise_on_error=False,
            )
            result.runs.append(
                {
                    "run_id": run.run_id,
                    "start": keys[0],
                    "end": keys[-1],
                    "n_problems": len(keys),
                    "success": run.success,
                    "wall_s": time.monotonic() - started,
                }
            )
            bar.update(len(keys), runs=f"{len(result.runs)}/{len(ranges)}")
            if not result.runs[-1]["success"]:
                break  # later ranges would fail the same way; the failure is in the run's logs
    return result
