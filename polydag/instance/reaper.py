"""Runs whose worker died, and the concurrency slots they still hold: find them, and clear
them with Dagster's own API.

A run killed with SIGKILL, by the OOM killer or by a power loss reports nothing: it stays
STARTED, and the ``gpu`` pool slot its step claimed stays claimed, so every later GPU step
waits for it forever. Dagster's run monitoring fails dead runs only through the run launcher
(``check_run_worker_health``) and only while the daemon runs; ``dagster asset materialize`` and
``execute_in_process`` never go through a launcher.

:func:`reap_dead_runs` is called by polydag's executor at the start of every run and again
every few seconds while a step waits for a slot (:mod:`polydag.instance.executor`), by
``polydag runs reap`` and through :func:`polydag.instance.workers.worker_state` by the
launcher's health check. It

* reports FAILED (CANCELED, for a run that was being cancelled) every in-progress run of
  **this host** whose worker is dead (:mod:`polydag.instance.workers`), with a message naming
  the dead pid, and frees its slots and pending claims
  (``event_log_storage.free_concurrency_slots_for_run``, what the UI's "free slots" does);
* frees the slots of runs that are already finished (or deleted) but still hold some, unless
  their worker is still alive here;
* never touches a run on another host, a run whose worker is alive, or a run with no
  recorded worker, unless ``force_run_ids`` names it (``polydag runs reap --run ID``), and never
  a live one even then.

:func:`inspect_runs` is the read-only half, for ``polydag doctor`` and the waiting step's
WARNING. Linux only, like the launcher (``/proc``).
"""

from __future__ import annotations

import fcntl
import logging
import os
import socket
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from dagster import DagsterEventType, DagsterInstance, DagsterRun, DagsterRunStatus, RunsFilter

from polydag.instance.dagster_internals import JobFailureData, RunFailureReason
from polydag.instance.workers import ALIVE, DEAD, UNKNOWN, WorkerState, worker_state

_log = logging.getLogger(__name__)

# statuses in which a run has a worker process (QUEUED and NOT_STARTED runs have none yet)
WORKER_STATUSES = [DagsterRunStatus.STARTING, DagsterRunStatus.STARTED, DagsterRunStatus.CANCELING]
FINISHED = {DagsterRunStatus.SUCCESS, DagsterRunStatus.FAILURE, DagsterRunStatus.CANCELED}
PARTITION_TAG = "dagster/partition"
RANGE_START_TAG, RANGE_END_TAG = "dagster/asset_partition_range_start", "dagster/asset_partition_range_end"
REAP_COMMAND = "polydag runs reap"


@dataclass(frozen=True)
class Holding:
    """One slot claimed (or one claim waiting, ``claimed=False``) in a concurrency pool."""

    pool: str
    step_key: str
    claimed: bool


@dataclass
class RunView:
    run_id: str
    status: str  # the run's status, or "DELETED" for a run the instance no longer has
    worker: WorkerState
    partition: str | None = None
    holdings: list[Holding] = field(default_factory=list)

    @property
    def short_id(self) -> str:
        return self.run_id[:8]

    @property
    def finished(self) -> bool:
        return self.status in {s.value for s in FINISHED} or self.status == "DELETED"

    @property
    def in_progress(self) -> bool:
        return self.status in {s.value for s in WORKER_STATUSES}

    @property
    def dead(self) -> bool:
        """In progress, and its worker on this host is gone."""
        return self.in_progress and self.worker.status == DEAD

    @property
    def stale_holder(self) -> bool:
        """Holds or waits for a slot it will never give back: finished, or its worker is dead."""
        return bool(self.holdings) and (self.dead or (self.finished and self.worker.status != ALIVE))

    @property
    def steps(self) -> str:
        return ", ".join(sorted({h.step_key for h in self.holdings})) or "-"

    def describe(self) -> str:
        what = f"run {self.run_id} ({self.status}"
        if self.holdings:
            what += f", step {self.steps}"
        if self.partition:
            what += f", partition {self.partition}"
        return what + f"; {self.worker.reason})"


@dataclass
class Inspection:
    runs: dict[str, RunView]
    pools: dict[str, tuple[int | None, int]]  # pool -> (limit, slots claimed)

    @property
    def dead_runs(self) -> list[RunView]:
        return [r for r in self.runs.values() if r.dead]

    @property
    def stale_holders(self) -> list[RunView]:
        return [r for r in self.runs.values() if r.stale_holder]

    def holders(self, pool: str, *, claimed_only: bool = True) -> list[RunView]:
        return [r for r in self.runs.values()
                if any(h.pool == pool and (h.claimed or not claimed_only) for h in r.holdings)]


@dataclass
class Reaped:
    run_id: str
    previous_status: str
    new_status: str | None  # None: only its slots were freed (it was already finished)
    reason: str
    freed: list[Holding]

    def describe(self) -> str:
        freed = ", ".join(f"{h.pool}:{h.step_key}{'' if h.claimed else ' (waiting)'}"
                          for h in self.freed) or "none"
        if self.new_status:
            return (f"run {self.run_id}: {self.previous_status} -> {self.new_status} "
                    f"({self.reason}); freed slots: {freed}")
        return f"run {self.run_id} ({self.previous_status}): freed slots {freed}"


def _partition(run: DagsterRun | None) -> str | None:
    if run is None:
        return None
    if PARTITION_TAG in run.tags:
        return run.tags[PARTITION_TAG]
    if RANGE_START_TAG in run.tags:
        return f"{run.tags[RANGE_START_TAG]}...{run.tags.get(RANGE_END_TAG, '?')}"
    return None


def _holdings(instance: DagsterInstance) -> tuple[dict[str, list[Holding]], dict[str, tuple[int | None, int]]]:
    storage = instance.event_log_storage
    if not storage.supports_global_concurrency_limits:
        return {}, {}
    keys = sorted(storage.get_concurrency_keys())
    by_run: dict[str, list[Holding]] = {}
    pools = {}
    for key, info in storage.get_concurrency_infos(keys).items():
        pools[key] = (info.limit, len(info.claimed_slots))
        claimed = {(slot.run_id, slot.step_key) for slot in info.claimed_slots}
        for run_id, step_key in sorted(claimed):
            by_run.setdefault(run_id, []).append(Holding(key, step_key, True))
        for step in info.pending_steps:
            if (step.run_id, step.step_key) not in claimed:
                by_run.setdefault(step.run_id, []).append(Holding(key, step.step_key, False))
    return by_run, pools


def _logged_pid(instance: DagsterInstance, run_id: str) -> str | None:
    """The pid in a run's "Executing steps in process (pid: N)" engine event, if any."""
    records = instance.get_records_for_run(run_id, of_type=DagsterEventType.ENGINE_EVENT,
                                           limit=20).records
    for record in records:
        data = record.event_log_entry.dagster_event.event_specific_data
        pid = (getattr(data, "metadata", None) or {}).get("pid")
        if pid is not None:
            return str(getattr(pid, "value", pid))
    return None


def _view(run_id: str, run: DagsterRun | None, holdings: list[Holding],
          instance: DagsterInstance | None = None) -> RunView:
    if run is None:
        return RunView(run_id, "DELETED", WorkerState(UNKNOWN, "the run no longer exists"),
                       None, holdings)
    state = worker_state(run_id, run.tags)
    if state.status == UNKNOWN and instance is not None and not run.is_finished:
        # a run started before polydag recorded workers: its event log still names the pid
        pid = _logged_pid(instance, run_id)
        if pid:
            state = WorkerState(UNKNOWN, f"no worker recorded in its tags; its event log names "
                                f"pid {pid}, host unknown")
    return RunView(run_id, run.status.value, state, _partition(run), holdings)


def inspect_runs(instance: DagsterInstance) -> Inspection:
    """Every run that has a worker or holds (or waits for) a concurrency slot, with the state
    of its worker, and each pool's limit and claimed slots. Reads only."""
    holdings, pools = _holdings(instance)
    runs = {run.run_id: run for run in instance.get_runs(RunsFilter(statuses=WORKER_STATUSES))}
    missing = [run_id for run_id in holdings if run_id not in runs]
    if missing:
        runs.update({run.run_id: run for run in instance.get_runs(RunsFilter(run_ids=missing))})
    views = {run_id: _view(run_id, runs.get(run_id), holdings.get(run_id, []), instance)
             for run_id in dict.fromkeys([*runs, *holdings])}
    return Inspection(views, pools)


@contextmanager
def _reaper_lock(instance: DagsterInstance):
    """One reaper at a time per instance, so a dead run is reported failed once."""
    root = getattr(instance, "root_directory", None)
    if not root:
        yield
        return
    path = Path(root) / ".polydag-reaper.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def reap_dead_runs(
    instance: DagsterInstance,
    *,
    by: str | None = None,
    force_run_ids: tuple[str, ...] | list[str] = (),
    exclude_run_id: str | None = None,
    dry_run: bool = False,
) -> list[Reaped]:
    """Fail the in-progress runs of this host whose worker is dead and free their slots, and
    free the slots still held by finished runs (see the module docstring). ``by`` says who did
    it in the run's failure message. Returns what was (with ``dry_run``: would be) done."""
    by = by or f"polydag (pid {os.getpid()} on host {socket.gethostname()})"
    force = set(force_run_ids)
    first = inspect_runs(instance)
    candidates = [v for v in first.runs.values()
                  if v.run_id != exclude_run_id
                  and (v.dead or v.stale_holder or (v.run_id in force and v.in_progress))]
    for run_id in force - set(first.runs):
        run = instance.get_run_by_id(run_id)
        if run is None:
            raise ValueError(f"no run {run_id} in this instance")
        if not run.is_finished:
            candidates.append(_view(run_id, run, []))
    if not candidates:
        return []
    done: list[Reaped] = []
    with _reaper_lock(instance):
        for candidate in candidates:
            # look again under the lock: another reaper, or the run itself, may have moved on
            run = instance.get_run_by_id(candidate.run_id)
            view = _view(candidate.run_id, run, candidate.holdings, instance)
            if view.worker.status == ALIVE:
                if view.run_id in force:
                    _log.warning("not reaping run %s: %s; stop it instead", view.run_id,
                                 view.worker.reason)
                continue
            new_status = None
            if run is not None and view.in_progress:
                if not (view.dead or view.run_id in force):
                    continue
                canceling = run.status == DagsterRunStatus.CANCELING
                new_status = (DagsterRunStatus.CANCELED if canceling else DagsterRunStatus.FAILURE).value
                reason = view.worker.reason
                if view.run_id in force and not view.dead:
                    reason = f"marked dead by hand ({reason})"
                message = (f"The run's worker died: {reason}. Marked "
                           f"{new_status.lower()} by {by}"
                           + (f", which freed its concurrency slots ({view.steps})."
                              if view.holdings else "."))
                if not dry_run:
                    if canceling:
                        instance.report_run_canceled(run, message=message)
                    else:
                        instance.report_run_failed(run, message, JobFailureData(
                            error=None, failure_reason=RunFailureReason.UNEXPECTED_TERMINATION))
            elif view.finished and view.holdings:
                reason = f"{view.status.lower()} run still held slots"
            else:
                continue
            if view.holdings and not dry_run:
                instance.event_log_storage.free_concurrency_slots_for_run(view.run_id)
            entry = Reaped(view.run_id, view.status, new_status, reason, list(view.holdings))
            _log.info("%s%s", "would reap " if dry_run else "reaped ", entry.describe())
            done.append(entry)
    return done


def blocking_message(instance: DagsterInstance, pool: str, waiting_run_id: str) -> str:
    """What a step waiting for a slot of ``pool`` logs: who holds the slots, and how to stop
    them or raise the limit."""
    inspection = inspect_runs(instance)
    limit, claimed = inspection.pools.get(pool, (None, 0))
    holders = [v for v in inspection.holders(pool) if v.run_id != waiting_run_id]
    lines = [f"Waiting for a slot of concurrency pool '{pool}' (limit {limit}, {claimed} claimed)."]
    if not holders:
        lines.append("No run holds one now: the slot is being handed over.")
    for view in holders:
        lines.append(f"Held by {view.describe()}.")
        if view.worker.status == ALIVE:
            lines.append(f"This run starts when it ends. To stop it: kill -TERM {view.worker.pid} "
                         f"on host {view.worker.host} (or Ctrl-C in its terminal), or Terminate "
                         f"run {view.short_id} in the UI (Runs).")
        elif view.stale_holder:
            lines.append(f"That run's worker is gone; it is freed within seconds here, or now "
                         f"with: {REAP_COMMAND}")
        else:
            lines.append(f"Its worker cannot be checked from this host. If it is dead: "
                         f"{REAP_COMMAND} --run {view.run_id} (on its host: {REAP_COMMAND}).")
    lines.append(f"More slots: dagster instance concurrency set {pool} N.")
    return " ".join(lines)
