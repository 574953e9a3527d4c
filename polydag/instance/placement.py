"""Whether a run needs a GPU: read from its tags and its stored execution plan.

Conventions are in :mod:`polydag.instance.constants`.
"""

from __future__ import annotations

from dagster import DagsterInstance, DagsterRun

from polydag.instance.constants import GPU_POOL, GPU_TAG, tag_is_true


def run_needs_gpu(instance: DagsterInstance, run: DagsterRun) -> bool:
    """Whether ``run`` should get a GPU.

    An explicit run tag ``polydag/gpu`` decides. Otherwise the run needs one when any step it
    executes is in the ``gpu`` pool or carries the op tag ``polydag/gpu`` (read from the
    execution plan snapshot stored with the run, so UI launches, backfills and sensors are
    covered without any run tag).
    """
    explicit = run.tags.get(GPU_TAG)
    if explicit is not None:
        return tag_is_true(explicit)
    if run.run_op_concurrency and GPU_POOL in (run.run_op_concurrency.all_pools or ()):
        return True
    if not run.execution_plan_snapshot_id:
        return False
    snapshot = instance.get_execution_plan_snapshot(run.execution_plan_snapshot_id)
    to_execute = set(snapshot.step_keys_to_execute)
    return any(
        step.key in to_execute and (step.pool == GPU_POOL or tag_is_true((step.tags or {}).get(GPU_TAG)))
        for step in snapshot.steps
    )
