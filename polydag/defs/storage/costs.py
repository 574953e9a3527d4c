"""The ``cost_model`` resource: prices per device-hour, and the one call a heavy asset makes.

In an asset body (the asset requires ``cost_model: CostModel`` and ``storage: PolydagStorage``)::

    costs = cost_model.record(context, storage, device=row["device"])        # wall time: step so far
    costs = cost_model.record(context, storage, device=dev, wall_s=result.wall_s)  # or measured
    return Output(table, metadata={**metadata, **costs})

It appends a row to the ``costs`` table (``polydag.core.storage.costs``) and returns metadata values
(``cost/wall_s``, ``cost/device``, ``cost/gpu_hours``, ``cost/cost_usd`` ...) to merge into the
Output. Without ``wall_s`` the step's elapsed time is read from its STEP_START event, so the
call at the end of the body covers the whole step.
"""

from __future__ import annotations

import time
from typing import Optional

from dagster import ConfigurableResource, DagsterEventType
from pydantic import Field

from polydag.core.storage import costs as core


class CostModel(ConfigurableResource):
    """Estimated price per device-hour (on-demand rental). Defaults are rough November-2026
    cloud prices; set them per deployment (build_resources reads POLYDAG_CPU_HOUR_USD and
    POLYDAG_GPU_HOUR_USD)."""

    cpu_hour_usd: float = Field(default=0.05, description="USD per CPU-machine hour")
    gpu_hour_usd: float = Field(default=2.50, description="USD per GPU hour (one device)")

    def estimate(self, wall_s: float, device: str, n_devices: int = 1) -> core.CostEstimate:
        return core.estimate_cost(
            wall_s, device, cpu_hour_usd=self.cpu_hour_usd, gpu_hour_usd=self.gpu_hour_usd,
            n_devices=n_devices,
        )

    def record(
        self,
        context,
        storage,
        *,
        device: str,
        wall_s: Optional[float] = None,
        n_devices: int = 1,
    ) -> dict:
        """Record this step's cost in ``costs`` and return it as ``cost/*`` metadata."""
        if wall_s is None:
            wall_s = step_elapsed_s(context)
        estimate = self.estimate(wall_s, device, n_devices)
        keys = list(context.partition_keys) if context.has_partition_key_range or \
            context.has_partition_key else []
        asset = "/".join(context.asset_key.path)
        row = core.record_cost(
            storage.duckdb_path, estimate, run_id=context.run.run_id, asset=asset,
            partition_keys=keys, logger=context.log,
        )
        return {f"cost/{k}": row[k] for k in
                ("wall_s", "device", "n_devices", "device_hours", "gpu_hours", "price_per_hour",
                 "cost_usd")}


def step_elapsed_s(context) -> float:
    """Seconds since this step's STEP_START event (Dagster's own record of when it began)."""
    step_key = context.op_execution_context.get_step_execution_context().step.key
    for entry in context.instance.all_logs(context.run.run_id, of_type=DagsterEventType.STEP_START):
        if entry.step_key == step_key:
            return max(0.0, time.time() - entry.timestamp)
    raise RuntimeError(
        f"no STEP_START event for step {step_key!r} of run {context.run.run_id}; pass wall_s "
        "explicitly"
    )
