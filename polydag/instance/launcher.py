"""A Dagster run launcher that starts each run as its own process on a free GPU.

Named in the instance config (``data/dagster_home/dagster.yaml``)::

    run_launcher:
      module: polydag.instance.launcher
      class: PolydagRunLauncher
      config:
        devices: ["0", "1"]   # optional; default: CUDA_VISIBLE_DEVICES, nvidia-smi, torch
        require_gpu: false    # true: a GPU run on a machine without a GPU fails instead

Each run is ``dagster api execute_run`` (the command Dagster's Docker launcher runs), started
with ``Popen`` in its own session. A run that needs a GPU (:func:`polydag.instance.placement.run_needs_gpu`)
gets ``CUDA_VISIBLE_DEVICES`` set to one device that no other in-progress run holds; the
assignment is written to the run's tags (``polydag/cuda_visible_devices``) under a file lock
in DAGSTER_HOME, so every launcher process (daemon, webserver) sees the same assignments and
a daemon restart loses nothing. Runs wait in the queue rather than here: the run coordinator
limits in-progress GPU runs to the number of devices (:mod:`polydag.instance.run_coordinator`).

Without a GPU, a GPU run runs on the CPU with a WARNING in its event log, or fails with a
clear error when ``require_gpu`` is set. Runs that need no GPU get ``CUDA_VISIBLE_DEVICES=""``
(``hide_gpus_from_cpu_runs``) so they never take memory on a device another run was given.

Every child is waited for by a thread, so finished workers never linger as zombies. Health
checks (run monitoring) and terminate find a worker by the host, pid and process start time
in the run's tags (:func:`polydag.instance.workers.worker_state`), so a recycled pid is never
mistaken for it. That covers runs this launcher did not start too: polydag's executor records
the worker of every run, ``dagster asset materialize`` and ``polydag sweep`` runs included, so
run monitoring fails those whose process died on this host. Runs on another host, and runs
with no recorded worker, report RUNNING (unchecked) rather than be failed while they may be
running. Linux only (/proc).
"""

from __future__ import annotations

import fcntl
import logging
import os
import signal
import socket
import subprocess
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Mapping

from dagster import DagsterEvent, DagsterEventType, DagsterRun, Field, Noneable, RunsFilter

from polydag.core.ops.devices import DeviceInventory, detect_devices, parse_device_list
from polydag.instance.constants import DEVICE_TAG, PLACEMENT_TAG, WORKER_HOST_TAG, WORKER_PID_TAG
from polydag.instance.dagster_internals import (
    IN_PROGRESS_RUN_STATUSES,
    CheckRunHealthResult,
    ConfigurableClass,
    ConfigurableClassData,
    EngineEventData,
    ExecuteRunArgs,
    LaunchRunContext,
    RunLauncher,
    WorkerStatus,
)
from polydag.instance.placement import run_needs_gpu
from polydag.instance.workers import ALIVE, DEAD, worker_state

_log = logging.getLogger(__name__)


class GpuUnavailableError(RuntimeError):
    """A GPU run cannot be placed: no GPU with ``require_gpu``, or every device is held."""


class PolydagRunLauncher(RunLauncher, ConfigurableClass):
    def __init__(
        self,
        devices=None,
        require_gpu: bool = False,
        hide_gpus_from_cpu_runs: bool = True,
        terminate_grace_seconds: float = 20.0,
        device_release_wait_seconds: float = 30.0,
        inst_data: ConfigurableClassData | None = None,
    ):
        self._inst_data = inst_data
        self._configured_devices = None if devices is None else parse_device_list(devices)
        self.require_gpu = bool(require_gpu)
        self.hide_gpus_from_cpu_runs = bool(hide_gpus_from_cpu_runs)
        self.terminate_grace_seconds = float(terminate_grace_seconds)
        self.device_release_wait_seconds = float(device_release_wait_seconds)
        self._inventory: DeviceInventory | None = None  # detected lazily: construction stays cheap
        self._lock = threading.Lock()  # guards _children and _exit_codes
        self._assign_lock = threading.Lock()  # one assignment at a time in this process
        self._children: dict[str, tuple[subprocess.Popen, str | None]] = {}  # run_id -> (proc, device)
        self._exit_codes: dict[str, int] = {}
        super().__init__()

    # -- ConfigurableClass ------------------------------------------------------------------
    @property
    def inst_data(self):
        return self._inst_data

    @classmethod
    def config_type(cls):
        return {
            "devices": Field(Noneable([str]), is_required=False, default_value=None,
                             description="CUDA device ids to hand out; default: detected."),
            "require_gpu": Field(bool, is_required=False, default_value=False,
                                 description="Fail GPU runs on a machine without a GPU."),
            "hide_gpus_from_cpu_runs": Field(bool, is_required=False, default_value=True),
            "terminate_grace_seconds": Field(float, is_required=False, default_value=20.0),
            "device_release_wait_seconds": Field(float, is_required=False, default_value=30.0),
        }

    @classmethod
    def from_config_value(cls, inst_data: ConfigurableClassData, config_value: Mapping[str, Any]):
        return cls(inst_data=inst_data, **config_value)

    # -- inventory and assignment -------------------------------------------------------------
    def inventory(self) -> DeviceInventory:
        if self._inventory is None:
            self._inventory = detect_devices(self._configured_devices)
        return self._inventory

    @contextmanager
    def _assignment_lock(self):
        """Serialises device assignment across threads and across launcher processes."""
        path = Path(self._instance.root_directory) / ".polydag-launcher.lock"
        path.parent.mkdir(parents=True, exist_ok=True)
        with self._assign_lock, open(path, "a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def held_devices(self, exclude_run_id: str | None = None) -> dict[str, str]:
        """device -> run id, for devices held by in-progress runs or by workers still exiting."""
        held = {}
        for run in self._instance.get_runs(RunsFilter(statuses=IN_PROGRESS_RUN_STATUSES)):
            device = run.tags.get(DEVICE_TAG)
            if device and run.run_id != exclude_run_id:
                held[device] = run.run_id
        with self._lock:
            children = list(self._children.items())
        for run_id, (proc, device) in children:
            if device and run_id != exclude_run_id and proc.poll() is None:
                held.setdefault(device, run_id)
        return held

    def _pick_device(self, run: DagsterRun) -> str:
        devices = self.inventory().devices
        deadline = time.monotonic() + self.device_release_wait_seconds
        while True:
            held = self.held_devices(exclude_run_id=run.run_id)
            free = [d for d in devices if d not in held]
            if free:
                return free[0]
            # Only wait for workers whose run already finished (they are exiting); a device
            # held by a run in progress will not free up soon.
            in_progress = {r.run_id for r in self._instance.get_runs(
                RunsFilter(run_ids=list(set(held.values())), statuses=IN_PROGRESS_RUN_STATUSES))}
            if in_progress >= set(held.values()) or time.monotonic() > deadline:
                raise GpuUnavailableError(
                    f"run {run.run_id} needs a GPU but every device is held: "
                    + ", ".join(f"{d} by run {r}" for d, r in sorted(held.items()))
                    + ". The run coordinator should have kept it queued: use "
                    "polydag.instance.run_coordinator.PolydagRunCoordinator in dagster.yaml."
                )
            time.sleep(0.2)

    # -- launch -----------------------------------------------------------------------------
    def launch_run(self, context: LaunchRunContext) -> None:
        run = context.dagster_run
        job_origin = run.job_code_origin
        if job_origin is None:
            raise ValueError(f"run {run.run_id} has no job code origin to execute")
        needs_gpu = run_needs_gpu(self._instance, run)
        inventory = self.inventory()
        if needs_gpu and not inventory.devices and self.require_gpu:
            raise GpuUnavailableError(
                f"run {run.run_id} needs a GPU (a step carries polydag/gpu or pool 'gpu') but "
                f"this machine has none: {inventory.describe()}. Set require_gpu: false in the "
                "run_launcher config to run it on the CPU, or list devices: [...]."
            )
        command = ExecuteRunArgs(
            job_origin=job_origin, run_id=run.run_id, instance_ref=self._instance.get_ref()
        ).get_command_args()
        log_path = Path(self._instance.root_directory) / "run_workers" / f"{run.run_id}.log"
        log_path.parent.mkdir(parents=True, exist_ok=True)
        pointer = job_origin.repository_origin.code_pointer
        cwd = getattr(pointer, "working_directory", None) or None

        with self._assignment_lock():
            if needs_gpu and inventory.devices:
                device, placement = self._pick_device(run), "gpu"
            else:
                device, placement = "", ("cpu-fallback" if needs_gpu else "cpu")
            visible = device if (needs_gpu or self.hide_gpus_from_cpu_runs) else None
            self._instance.add_run_tags(
                run.run_id, {DEVICE_TAG: device, PLACEMENT_TAG: placement}
            )
            env = dict(os.environ)
            if visible is not None:
                env["CUDA_VISIBLE_DEVICES"] = visible
            log_file = open(log_path, "ab")
            try:
                proc = subprocess.Popen(
                    command, env=env, cwd=cwd, stdout=log_file, stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL, start_new_session=True,
                )
            except BaseException:
                log_file.close()
                raise
            with self._lock:
                self._children[run.run_id] = (proc, device or None)
            self._instance.add_run_tags(
                run.run_id, {WORKER_PID_TAG: str(proc.pid), WORKER_HOST_TAG: socket.gethostname()}
            )
        threading.Thread(
            target=self._reap, args=(run.run_id, proc, log_file), daemon=True,
            name=f"polydag-reap-{run.run_id[:8]}",
        ).start()

        where = f"GPU {device}" if placement == "gpu" else "the CPU"
        message = (f"Launched run worker pid {proc.pid} on {where} "
                   f"(CUDA_VISIBLE_DEVICES={visible!r}); worker log: {log_path}")
        if placement == "cpu-fallback":
            message = (f"WARNING: run needs a GPU but this machine has none "
                       f"({inventory.describe()}): running on the CPU. " + message)
        self._report(run, message, logging.WARNING if placement == "cpu-fallback" else logging.INFO,
                     {"device": device or "cpu", "placement": placement, "pid": str(proc.pid)})

    def _report(self, run: DagsterRun, message: str, level: int, metadata: Mapping[str, str]):
        event = DagsterEvent(
            event_type_value=DagsterEventType.ENGINE_EVENT.value,
            job_name=run.job_name,
            message=f"[{type(self).__name__}] {message}",
            event_specific_data=EngineEventData(dict(metadata)),
        )
        self._instance.report_dagster_event(event, run_id=run.run_id, log_level=level)

    def _reap(self, run_id: str, proc: subprocess.Popen, log_file) -> None:
        code = proc.wait()
        log_file.close()
        with self._lock:
            self._children.pop(run_id, None)
            self._exit_codes[run_id] = code

    # -- finding a worker ---------------------------------------------------------------------
    def _worker_pid(self, run: DagsterRun) -> int | None:
        """The pid of ``run``'s live worker on this host, or None."""
        with self._lock:
            child = self._children.get(run.run_id)
        if child is not None:
            return child[0].pid if child[0].poll() is None else None
        state = worker_state(run.run_id, run.tags)
        return state.pid if state.status == ALIVE else None

    def can_terminate(self, run_id: str) -> bool:
        """Whether ``run_id`` is in progress with a live worker this launcher can signal."""
        run = self._instance.get_run_by_id(run_id)
        return bool(run and not run.is_finished and self._worker_pid(run) is not None)

    def terminate(self, run_id: str) -> bool:
        run = self._instance.get_run_by_id(run_id)
        if not run or run.is_finished:
            return False
        pid = self._worker_pid(run)
        if pid is None:
            self._report(run, "terminate: no live run worker found on this host", logging.WARNING, {})
            return False
        self._instance.report_run_canceling(run)
        os.kill(pid, signal.SIGTERM)  # dagster maps SIGTERM to SIGINT: the run stops cleanly
        deadline = time.monotonic() + self.terminate_grace_seconds
        while time.monotonic() < deadline and self._worker_pid(run) == pid:
            time.sleep(0.2)
        if self._worker_pid(run) == pid:
            # a launched worker leads its own session and group; a CLI run's process does not
            leader = os.getpgid(pid) == pid
            (os.killpg if leader else os.kill)(pid, signal.SIGKILL)
            self._report(run, f"worker pid {pid} ignored SIGTERM for "
                         f"{self.terminate_grace_seconds:.0f}s; killed "
                         + ("its process group" if leader else "it"), logging.WARNING, {})
        run = self._instance.get_run_by_id(run_id)
        if run and not run.is_finished:
            self._instance.report_run_canceled(run, message="Run worker terminated by polydag launcher")
        return True

    # -- health ------------------------------------------------------------------------------
    @property
    def supports_check_run_worker_health(self) -> bool:
        return True

    def check_run_worker_health(self, run: DagsterRun) -> CheckRunHealthResult:
        with self._lock:
            child = self._children.get(run.run_id)
            code = self._exit_codes.get(run.run_id)
        if child is not None:
            code = child[0].poll()
            if code is None:
                return CheckRunHealthResult(WorkerStatus.RUNNING, run_worker_id=str(child[0].pid))
        if code is not None:
            status = WorkerStatus.SUCCESS if code == 0 else WorkerStatus.FAILED
            return CheckRunHealthResult(status, f"run worker exited with code {code}")
        # Another launcher process's worker, or a run this launcher never started (`dagster
        # asset materialize`, `polydag sweep`): judged by the worker its executor recorded.
        state = worker_state(run.run_id, run.tags)
        if state.status == ALIVE:
            return CheckRunHealthResult(WorkerStatus.RUNNING, state.reason,
                                        run_worker_id=str(state.pid))
        if state.status == DEAD:
            return CheckRunHealthResult(WorkerStatus.FAILED, state.reason)
        # Another machine's run, or no worker recorded. Run monitoring fails every run whose
        # status is not RUNNING/SUCCESS, so say RUNNING rather than fail a run we cannot see.
        return CheckRunHealthResult(WorkerStatus.RUNNING, f"not checked: {state.reason}")

    def get_run_worker_debug_info(self, run: DagsterRun, include_container_logs: bool | None = True):
        path = Path(self._instance.root_directory) / "run_workers" / f"{run.run_id}.log"
        if not path.is_file():
            return None
        return f"worker log {path} (last 4 kB):\n" + path.read_bytes()[-4096:].decode(errors="replace")

    def join(self, timeout: float = 30) -> None:
        """Wait for this launcher's workers to exit (tests; the daemon never calls it)."""
        deadline = time.monotonic() + timeout
        while True:
            with self._lock:
                procs = [proc for proc, _ in self._children.values()]
            if not procs:
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"run workers still running: {[p.pid for p in procs]}")
            time.sleep(0.1)

