"""The tag and pool conventions that place runs on GPUs, and how a run is found to need one.

Conventions (the GPU assets carry the first two themselves):

* ``op_tags={"polydag/gpu": "1"}`` on every asset that should run on a GPU (training,
  generation, ablation);
* ``pool="gpu"`` on the same assets: the instance's ``gpu`` concurrency pool limits their
  steps everywhere, ``dagster asset materialize`` in the CLI included;
* the **run** tag ``polydag/gpu=1``: Dagster's run queue limits runs by run tags only (asset
  op tags do not count), so :class:`polydag.run_coordinator.PolydagRunCoordinator` adds it at
  submission to every run that executes a GPU step. Setting it yourself works too, and
  ``polydag/gpu=0`` on a run forces it onto the CPU;
* ``polydag/cuda_visible_devices``: written by the launcher, the device the run was given
  (``""`` on the CPU). Runs still in progress with this tag hold that device.
"""

from __future__ import annotations

from dagster import DagsterInstance, DagsterRun

GPU_TAG = "polydag/gpu"
GPU_POOL = "gpu"
GPU_OP_TAGS = {GPU_TAG: "1"}  # what every GPU asset carries, with pool=GPU_POOL
DEVICE_TAG = "polydag/cuda_visible_devices"
PLACEMENT_TAG = "polydag/placement"  # gpu | cpu-fallback | cpu
WORKER_PID_TAG = "polydag/worker_pid"
WORKER_HOST_TAG = "polydag/worker_host"

_FALSE = {"0", "false", "no", "off", ""}


def tag_is_true(value: str | None) -> bool:
    return value is not None and value.strip().lower() not in _FALSE


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
