"""The tag and pool conventions that place runs on GPUs (how a run is found to need one is
:func:`polydag.instance.placement.run_needs_gpu`).

Conventions (the GPU assets carry the first two themselves):

* ``op_tags={"polydag/gpu": "1"}`` on every asset that should run on a GPU (training,
  generation, ablation);
* ``pool="gpu"`` on the same assets: the instance's ``gpu`` concurrency pool limits their
  steps everywhere, ``dagster asset materialize`` in the CLI included;
* the **run** tag ``polydag/gpu=1``: Dagster's run queue limits runs by run tags only (asset
  op tags do not count), so :class:`polydag.instance.run_coordinator.PolydagRunCoordinator` adds it at
  submission to every run that executes a GPU step. Setting it yourself works too, and
  ``polydag/gpu=0`` on a run forces it onto the CPU;
* ``polydag/cuda_visible_devices``: written by the launcher, the device the run was given
  (``""`` on the CPU). Runs still in progress with this tag hold that device.
* ``polydag/worker_host``, ``polydag/worker_pid``, ``polydag/worker_started``: the process
  that executes the run, written by polydag's executor in every run (and host and pid by the
  launcher at launch); :mod:`polydag.instance.workers` tells from them whether it still runs.
"""

from __future__ import annotations

# Plain constants, no dagster import: the asset decorators read these at import time.

GPU_TAG = "polydag/gpu"
GPU_POOL = "gpu"
GPU_OP_TAGS = {GPU_TAG: "1"}  # what every GPU asset carries, with pool=GPU_POOL
DEVICE_TAG = "polydag/cuda_visible_devices"
PLACEMENT_TAG = "polydag/placement"  # gpu | cpu-fallback | cpu
WORKER_PID_TAG = "polydag/worker_pid"
WORKER_HOST_TAG = "polydag/worker_host"
# "<boot id>:<start time in clock ticks>" of the worker process: with host and pid, what tells
# a live worker from a dead one whose pid was reused (polydag.instance.workers)
WORKER_STARTED_TAG = "polydag/worker_started"

_FALSE = {"0", "false", "no", "off", ""}


def tag_is_true(value: str | None) -> bool:
    return value is not None and value.strip().lower() not in _FALSE
