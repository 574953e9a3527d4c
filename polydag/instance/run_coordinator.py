"""The run queue that keeps GPU runs waiting until a device is free.

Dagster's queue limits runs by **run** tags; the GPU assets carry op tags and a pool, which the
queue does not count. This coordinator is Dagster's ``QueuedRunCoordinator`` plus two things:

* at submission, a run that executes a GPU step (:func:`polydag.instance.placement.run_needs_gpu`) gets
  the run tag ``polydag/gpu=1``, whoever launched it (UI, backfill, sensor, GraphQL), plus
  any ``gpu_run_tags`` (on Kubernetes: the ``dagster-k8s/config`` GPU request, see
  ``deploy/README.md``);
* the queue limits runs tagged ``polydag/gpu=1`` to the number of devices of the
  :class:`polydag.instance.launcher.PolydagRunLauncher` inventory (1 without a GPU, so CPU fallback runs
  one at a time), or to ``gpu_run_limit`` when set; and it keeps the ``gpu`` concurrency pool
  at the same limit (``sync_gpu_pool``), so ``dagster asset materialize`` GPU steps are limited
  alike.

Instance config::

    run_coordinator:
      module: polydag.instance.run_coordinator
      class: PolydagRunCoordinator
      config:
        dequeue_interval_seconds: 2   # any QueuedRunCoordinator option works here
        # gpu_run_limit: 2            # default: number of devices in the launcher inventory
"""

from __future__ import annotations

import logging

from dagster import Field, Map, Noneable, QueuedRunCoordinator, SubmitRunContext

from polydag.instance.constants import GPU_POOL, GPU_TAG
from polydag.instance.placement import run_needs_gpu

_log = logging.getLogger(__name__)


class PolydagRunCoordinator(QueuedRunCoordinator):
    def __init__(self, gpu_run_limit: int | None = None, sync_gpu_pool: bool = True,
                 gpu_run_tags: dict | None = None, **kwargs):
        self._gpu_run_limit = gpu_run_limit
        self._sync_gpu_pool = sync_gpu_pool
        self._gpu_run_tags = dict(gpu_run_tags or {})
        self._synced_pool_limit: int | None = None
        super().__init__(**kwargs)

    @classmethod
    def config_type(cls):
        return {
            **QueuedRunCoordinator.config_type(),
            "gpu_run_limit": Field(Noneable(int), is_required=False, default_value=None,
                                   description="GPU runs in progress at once (default: devices)."),
            "sync_gpu_pool": Field(bool, is_required=False, default_value=True,
                                   description="Keep the 'gpu' concurrency pool at the same limit."),
            "gpu_run_tags": Field(Noneable(Map(str, str)), is_required=False, default_value=None,
                                  description="More run tags for GPU runs, e.g. dagster-k8s/config."),
        }

    @classmethod
    def from_config_value(cls, inst_data, config_value):
        # every config key is a keyword of QueuedRunCoordinator.__init__ or of ours
        return cls(inst_data=inst_data, **config_value)

    def gpu_run_limit(self) -> int:
        """How many GPU runs may be in progress at once."""
        if self._gpu_run_limit is not None:
            return int(self._gpu_run_limit)
        from polydag.instance.launcher import PolydagRunLauncher

        launcher = self._instance.run_launcher
        if isinstance(launcher, PolydagRunLauncher):
            return max(1, len(launcher.inventory().devices))
        return 1

    def get_run_queue_config(self):
        config = super().get_run_queue_config()
        limits = list(config.tag_concurrency_limits or [])
        if not any(limit.get("key") == GPU_TAG for limit in limits):
            limits.append({"key": GPU_TAG, "value": "1", "limit": self.gpu_run_limit()})
        return config._replace(tag_concurrency_limits=limits)

    def sync_gpu_pool(self) -> None:
        """Set the ``gpu`` pool's limit to :meth:`gpu_run_limit` if it differs."""
        limit = self.gpu_run_limit()
        if not self._sync_gpu_pool or self._synced_pool_limit == limit:
            return
        storage = self._instance.event_log_storage
        if storage.supports_global_concurrency_limits:
            current = {pool.name: pool.limit for pool in storage.get_pool_limits()}
            if current.get(GPU_POOL) != limit:
                storage.set_concurrency_slots(GPU_POOL, limit)
                _log.info("set concurrency pool %r to %d (GPU devices)", GPU_POOL, limit)
        self._synced_pool_limit = limit

    def submit_run(self, context: SubmitRunContext):
        run = context.dagster_run
        if run_needs_gpu(self._instance, run):
            # tags the run already has (set by whoever launched it) win
            wanted = {GPU_TAG: "1", **self._gpu_run_tags}
            new = {key: value for key, value in wanted.items() if key not in run.tags}
            if new:
                self._instance.add_run_tags(run.run_id, new)
                run = self._instance.get_run_by_id(run.run_id)
        self.sync_gpu_pool()
        return super().submit_run(SubmitRunContext(run, context.workspace))
