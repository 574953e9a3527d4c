"""polydag's executor: Dagster's in-process executor, made safe against runs that died.

Every run of the code location uses it (``polydag/definitions.py``): ``dagster asset
materialize``, runs launched by the daemon or the UI (``dagster api execute_run``), and the
sweep's ranged runs (:func:`execute_in_process`, because ``JobDefinition.execute_in_process``
always swaps in a plain in-process executor). It executes steps exactly as
``in_process_executor`` does, with the same config, plus:

* **it records its worker**: host, pid and process start time in the run's tags
  (:mod:`polydag.instance.workers`), so every other process can tell whether the run still
  executes, and a recycled pid is never taken for it;
* **it reaps dead runs first** (:func:`polydag.instance.reaper.reap_dead_runs`): in-progress
  runs of this host whose worker is gone are reported failed with a message naming the dead
  pid, and their concurrency slots are freed, so a run killed with SIGKILL, by the OOM killer
  or a power loss no longer blocks the ``gpu`` pool for good;
* **a step waiting for a pool slot** sleeps instead of spinning (Dagster 1.13's wait loop
  never sleeps: ``InstanceConcurrencyContext.interval_to_next_pending_claim_check`` returns
  ``min(0, ...)``), re-checks the slot at least every 5 s, reaps again every 5 s (a holder
  that dies while we wait frees its slot), logs at WARNING which run holds the slot (id,
  step, partition, pid, host) and how to stop it, and stops within a second on SIGTERM or
  SIGINT, which Dagster otherwise only notices once a step starts.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from typing import Any, Iterator, Mapping, Sequence

from dagster import (
    AssetKey,
    DagsterEvent,
    DagsterEventType,
    DagsterExecutionInterruptedError,
    DagsterInstance,
    DagsterRun,
    ExecuteInProcessResult,
    JobDefinition,
    executor,
    in_process_executor,
)

from polydag.instance.dagster_internals import (
    EngineEventData,
    ExecuteRunWithPlanIterable,
    InMemoryJob,
    InProcessExecutor,
    InstanceConcurrencyContext,
    PlanExecutionContextManager,
    check_captured_interrupt,
    core_execute_in_process,
    inner_plan_execution_iterator,
    merge_run_tags,
    type_check_and_normalize_args,
)
from polydag.instance.reaper import blocking_message, inspect_runs, reap_dead_runs
from polydag.instance.workers import this_process_tags

_log = logging.getLogger(__name__)

WAIT_POLL_S = 0.5  # longest sleep of a waiting step: how soon SIGTERM/SIGINT is noticed
MAX_RECHECK_S = 5.0  # Dagster backs off to 15 s between claims; take a freed slot sooner
REAP_WHILE_WAITING_S = 5.0
WARN_AGAIN_S = 300.0  # Dagster repeats its DEBUG "still blocked" line as often


def _log_event(log, run: DagsterRun, level: int, message: str, metadata: Mapping[str, str],
               step_key: str | None = None) -> None:
    event = DagsterEvent(
        event_type_value=DagsterEventType.ENGINE_EVENT.value,
        job_name=run.job_name,
        message=message,
        event_specific_data=EngineEventData({k: str(v) for k, v in metadata.items()}),
        step_key=step_key,
    )
    log.log_dagster_event(level=level, msg=message, dagster_event=event)


class GuardedConcurrencyContext(InstanceConcurrencyContext):
    """Dagster's per-run pool-slot bookkeeping, with the waiting behaviour described in the
    module docstring. Uses the base class's ``_pending_claims`` and ``_pending_timeouts``."""

    def __init__(self, instance: DagsterInstance, dagster_run: DagsterRun, log):
        super().__init__(instance, dagster_run)
        self._run = dagster_run
        self._log = log
        self._next_reap = time.monotonic() + REAP_WHILE_WAITING_S  # the executor just reaped
        self._warned: dict[str, tuple[float, frozenset[str]]] = {}
        self._waiting_since: dict[str, float] = {}

    def claim(self, concurrency_key: str, step_key: str, step_priority: int = 0) -> bool:
        if check_captured_interrupt() and step_key in self._pending_claims:
            waited = time.monotonic() - self._waiting_since.get(step_key, time.monotonic())
            message = (f"Received SIGTERM or SIGINT while step {step_key} waited {waited:.0f}s "
                       f"for a slot of pool '{concurrency_key}': stopping the run before the "
                       "step started (nothing of it ran).")
            _log_event(self._log, self._run, logging.WARNING, message,
                       {"pool": concurrency_key}, step_key)
            raise DagsterExecutionInterruptedError(message)
        if super().claim(concurrency_key, step_key, step_priority):
            self._done_waiting(step_key, concurrency_key)
            return True
        if step_key not in self._pending_claims:
            return False
        first_wait = step_key not in self._waiting_since
        self._waiting_since.setdefault(step_key, time.monotonic())
        recheck_at = time.time() + MAX_RECHECK_S
        if self._pending_timeouts.get(step_key, 0.0) > recheck_at:
            self._pending_timeouts[step_key] = recheck_at
        # the loop calls claim every WAIT_POLL_S; look at the other runs only every few seconds
        if not first_wait and time.monotonic() < self._next_reap:
            return False
        self._next_reap = time.monotonic() + REAP_WHILE_WAITING_S
        if not first_wait and self._reap(concurrency_key, step_key):
            self._pending_timeouts[step_key] = 0.0  # a slot may be free: claim again now
            if super().claim(concurrency_key, step_key, step_priority):
                self._done_waiting(step_key, concurrency_key)
                return True
        self._maybe_warn(concurrency_key, step_key)
        return False

    def interval_to_next_pending_claim_check(self) -> float:
        if not self._pending_claims:
            return 0.0
        now = time.time()
        soonest = min((self._pending_timeouts.get(key, 0.0) for key in self._pending_claims),
                      default=now)
        return max(0.0, min(soonest - now, WAIT_POLL_S))

    def _done_waiting(self, step_key: str, pool: str) -> None:
        started = self._waiting_since.pop(step_key, None)
        if self._warned.pop(step_key, None) is not None and started is not None:
            _log_event(self._log, self._run, logging.INFO,
                       f"Got a slot of pool '{pool}' after waiting "
                       f"{time.monotonic() - started:.0f}s.", {"pool": pool}, step_key)

    def _reap(self, pool: str, step_key: str) -> bool:
        try:
            reaped = reap_dead_runs(
                self._instance, exclude_run_id=self._run.run_id,
                by=f"run {self._run.run_id} (pid {os.getpid()}) while waiting for pool '{pool}'")
        except Exception:  # never let bookkeeping fail the run: keep waiting
            _log.exception("reaping dead runs failed")
            return False
        for entry in reaped:
            _log_event(self._log, self._run, logging.WARNING, f"Reaped {entry.describe()}",
                       {"reaped_run_id": entry.run_id}, step_key)
        return any(entry.freed for entry in reaped)

    def _maybe_warn(self, pool: str, step_key: str) -> None:
        try:
            holders = frozenset(v.run_id for v in inspect_runs(self._instance).holders(pool))
        except Exception:
            _log.exception("reading the holders of pool %r failed", pool)
            return
        last = self._warned.get(step_key)
        now = time.monotonic()
        if last is not None and last[1] == holders and now - last[0] < WARN_AGAIN_S:
            return
        self._warned[step_key] = (now, holders)
        try:
            message = blocking_message(self._instance, pool, self._run.run_id)
        except Exception:
            _log.exception("describing the holders of pool %r failed", pool)
            message = f"Waiting for a slot of concurrency pool '{pool}'."
        _log_event(self._log, self._run, logging.WARNING, message,
                   {"pool": pool, "held_by": ",".join(sorted(holders))}, step_key)


def _guarded_execution_iterator(job_context, execution_plan, instance_concurrency_context=None):
    with GuardedConcurrencyContext(
        job_context.instance, job_context.dagster_run, job_context.log
    ) as context:
        yield from inner_plan_execution_iterator(job_context, execution_plan, context)


class PolydagInProcessExecutor(InProcessExecutor):
    """``InProcessExecutor`` that records its worker, reaps dead runs and waits safely."""

    def execute(self, plan_context, execution_plan) -> Iterator[DagsterEvent]:
        instance, run = plan_context.instance, plan_context.dagster_run
        tags = this_process_tags()
        if tags:
            instance.add_run_tags(run.run_id, tags)
        try:
            reaped = reap_dead_runs(instance, exclude_run_id=run.run_id,
                                    by=f"run {run.run_id} (pid {os.getpid()}) at its start")
        except Exception:
            plan_context.log.exception("reaping dead runs failed; continuing")
            reaped = []
        for entry in reaped:
            _log_event(plan_context.log, run, logging.WARNING, f"Reaped {entry.describe()}",
                       {"reaped_run_id": entry.run_id})

        step_keys = execution_plan.step_keys_to_execute
        yield DagsterEvent.engine_event(
            plan_context,
            f"Executing steps in process (pid: {os.getpid()}, host: {socket.gethostname()})",
            event_specific_data=EngineEventData.in_process(os.getpid(), step_keys),
        )
        started = time.monotonic()
        yield from iter(
            ExecuteRunWithPlanIterable(
                execution_plan=plan_context.execution_plan,
                iterator=_guarded_execution_iterator,
                execution_context_manager=PlanExecutionContextManager(
                    job=plan_context.job,
                    retry_mode=plan_context.retry_mode,
                    execution_plan=plan_context.execution_plan,
                    run_config=plan_context.run_config,
                    dagster_run=plan_context.dagster_run,
                    instance=plan_context.instance,
                    raise_on_error=plan_context.raise_on_error,
                    output_capture=plan_context.output_capture,
                    step_dependency_config=self.step_dependency_config,
                ),
            )
        )
        yield DagsterEvent.engine_event(
            plan_context,
            f"Finished steps in process (pid: {os.getpid()}) in {time.monotonic() - started:.1f}s",
            event_specific_data=EngineEventData.in_process(os.getpid(), step_keys),
        )


@executor(name="in_process", config_schema=in_process_executor.config_schema)
def polydag_executor(init_context):
    """Dagster's in-process executor (same config: ``retries``, ``step_dependency_config``)
    that records its worker, reaps dead runs of this host and waits for pool slots safely."""
    base = in_process_executor.executor_creation_fn(init_context)
    return PolydagInProcessExecutor(retries=base.retries,
                                    step_dependency_config=base.step_dependency_config,
                                    marker_to_close=base.marker_to_close)


def execute_in_process(
    job: JobDefinition,
    *,
    instance: DagsterInstance,
    asset_selection: Sequence[AssetKey] | None = None,
    run_config: Mapping[str, Any] | None = None,
    tags: Mapping[str, str] | None = None,
    partition_key: str | None = None,
    raise_on_error: bool = True,
) -> ExecuteInProcessResult:
    """``job.execute_in_process(...)`` with polydag's executor (Dagster's own always uses a
    plain in-process executor, which neither reaps dead runs nor waits safely)."""
    run_config, _, asset_selection, resource_defs, partition_key, input_values = (
        type_check_and_normalize_args(run_config=run_config, partition_key=partition_key,
                                      asset_selection=asset_selection)
    )
    ephemeral = job.as_ephemeral_job(
        resource_defs=resource_defs, input_values=input_values, asset_selection=asset_selection,
    ).with_executor_def(polydag_executor)
    # merge_run_tags validates partition_key against the job, as execute_in_process does
    if not run_config and ephemeral.partitioned_config and partition_key:
        run_config = ephemeral.partitioned_config.get_run_config_for_partition_key(partition_key)
    return core_execute_in_process(
        job=InMemoryJob(job_def=ephemeral),
        run_config=run_config,
        instance=instance,
        output_capturing_enabled=True,
        raise_on_error=raise_on_error,
        run_tags=merge_run_tags(job_def=job, partition_key=partition_key, tags=tags,
                                asset_selection=asset_selection, instance=instance,
                                run_config=run_config),
        asset_selection=frozenset(asset_selection),
    )
