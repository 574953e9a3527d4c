"""Which process executes a run, and whether it still does: the one liveness test of polydag.

Every run of the code location records its worker in run tags when its executor starts
(:mod:`polydag.instance.executor`): ``polydag/worker_host``, ``polydag/worker_pid`` and
``polydag/worker_started``, the kernel's boot id and the process's start time in clock ticks
since boot (``/proc/<pid>/stat`` field 22). The launcher writes host and pid already when it
starts a worker, before the worker has run any code.

A worker is **alive** while, on its own host, the same boot still runs a process with that
pid *and that start time* that is not a zombie. A pid reused by another program has another
start time; after a reboot (power loss) the boot id differs. So a recycled pid is never taken
for the run's worker, and a live worker is never declared dead. When only the launcher's tags
exist (the worker died before its executor started), the worker is alive while that pid's
command line names the run id (``dagster api execute_run`` carries it).

A run on another host is **remote** and is never judged from here; a run with no recorded
worker (started before polydag recorded workers, or killed in the instant between its start
and its executor's) is **unknown** and is never reaped automatically. Linux only (``/proc``);
elsewhere every worker is unknown. Nothing here imports dagster.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from typing import Mapping

from polydag.instance.constants import WORKER_HOST_TAG, WORKER_PID_TAG, WORKER_STARTED_TAG

ALIVE = "alive"
DEAD = "dead"
REMOTE = "remote"
UNKNOWN = "unknown"

_BOOT_ID = "/proc/sys/kernel/random/boot_id"


def boot_id() -> str | None:
    try:
        with open(_BOOT_ID) as handle:
            return handle.read().strip()
    except OSError:
        return None


def _stat_fields(pid: int) -> list[bytes] | None:
    """The fields of ``/proc/<pid>/stat`` after the command name (state first), or None."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            return handle.read().rsplit(b")", 1)[1].split()
    except (OSError, IndexError):
        return None


def process_start_ticks(pid: int) -> int | None:
    """When ``pid`` started, in clock ticks since boot; None when there is no such process or
    it is a zombie (it has exited and only waits to be reaped)."""
    fields = _stat_fields(pid)
    if not fields or len(fields) < 20 or fields[0] == b"Z":
        return None
    return int(fields[19])


def _cmdline(pid: int) -> bytes | None:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            return handle.read()
    except OSError:
        return None


def is_launched_worker(pid: int, run_id: str) -> bool:
    """True while ``pid`` runs ``dagster api execute_run`` for ``run_id`` (not a zombie)."""
    if process_start_ticks(pid) is None:
        return False
    cmdline = _cmdline(pid)
    return cmdline is not None and run_id.encode() in cmdline


def this_process_tags() -> dict[str, str]:
    """The worker tags of the calling process (empty where /proc is missing)."""
    pid = os.getpid()
    ticks, boot = process_start_ticks(pid), boot_id()
    if ticks is None or boot is None:
        return {}
    return {WORKER_HOST_TAG: socket.gethostname(), WORKER_PID_TAG: str(pid),
            WORKER_STARTED_TAG: f"{boot}:{ticks}"}


@dataclass(frozen=True)
class WorkerState:
    status: str  # alive | dead | remote | unknown
    reason: str
    pid: int | None = None
    host: str | None = None

    @property
    def where(self) -> str:
        if self.pid is None:
            return "no recorded worker"
        return f"worker pid {self.pid} on host {self.host}"


def worker_state(run_id: str, tags: Mapping[str, str]) -> WorkerState:
    """Whether the worker recorded in a run's ``tags`` still runs (see the module docstring)."""
    host, pid_text = tags.get(WORKER_HOST_TAG), tags.get(WORKER_PID_TAG)
    if not host or not pid_text:
        return WorkerState(UNKNOWN, "no worker host and pid recorded in the run's tags")
    try:
        pid = int(pid_text)
    except ValueError:
        return WorkerState(UNKNOWN, f"unreadable worker pid tag {pid_text!r}", None, host)
    if host != socket.gethostname():
        return WorkerState(REMOTE, f"the worker runs on host {host}, not this one", pid, host)
    started = tags.get(WORKER_STARTED_TAG)
    if started:
        recorded_boot, _, recorded_ticks = started.rpartition(":")
        current_boot = boot_id()
        if current_boot is None:
            return WorkerState(UNKNOWN, "this machine has no /proc to check the worker", pid, host)
        if recorded_boot != current_boot:
            return WorkerState(DEAD, f"worker pid {pid} is gone: host {host} has restarted since "
                               "the run started (power loss or reboot)", pid, host)
        ticks = process_start_ticks(pid)
        if ticks is None:
            return WorkerState(DEAD, f"worker pid {pid} on host {host} no longer exists (killed: "
                               "SIGKILL, OOM or a crash)", pid, host)
        if str(ticks) != recorded_ticks:
            return WorkerState(DEAD, f"worker pid {pid} on host {host} is gone; the pid now "
                               "belongs to another process (started later)", pid, host)
        return WorkerState(ALIVE, f"worker pid {pid} on host {host} is running", pid, host)
    # only the launcher's tags: the worker never reached its executor
    if boot_id() is None:
        return WorkerState(UNKNOWN, "this machine has no /proc to check the worker", pid, host)
    if is_launched_worker(pid, run_id):
        return WorkerState(ALIVE, f"worker pid {pid} on host {host} is running", pid, host)
    return WorkerState(DEAD, f"launched worker pid {pid} on host {host} no longer runs this "
                       "run (killed or crashed before it started executing)", pid, host)
