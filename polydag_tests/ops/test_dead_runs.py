"""Runs whose worker died must not hold the ``gpu`` pool for good, and a run waiting for a slot
must sleep, say who holds it and stop on SIGTERM/SIGINT.

The first tests judge hand-made runs (tags of real processes: alive, killed, a pid now owned
by another process, another host) with the reaper, the doctor, ``polydag runs`` and the
launcher's health check. The last one runs ``dagster asset materialize`` processes of a GPU-pool
probe asset under polydag's executor against a copy of the shipped ``dagster.yaml`` (gpu pool
limit 1) and kills them. The same with polydag's real assets is ``e2e/test_dead_runs.py``.
"""

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import psutil
import pytest
from dagster import DagsterEventType, DagsterInstance, DagsterRun, DagsterRunStatus

from polydag import cli
from polydag.instance.constants import WORKER_HOST_TAG, WORKER_PID_TAG, WORKER_STARTED_TAG
from polydag.instance.dagster_internals import WorkerStatus
from polydag.instance.doctor import check_runs
from polydag.instance.launcher import PolydagRunLauncher
from polydag.instance.reaper import inspect_runs, reap_dead_runs
from polydag.instance.workers import (
    ALIVE,
    DEAD,
    REMOTE,
    UNKNOWN,
    boot_id,
    process_start_ticks,
    worker_state,
)

REPO = Path(__file__).resolve().parents[2]
LOCATION = "polydag_tests.ops.guarded_probe_location"


def _home(tmp_path: Path) -> Path:
    home = tmp_path / "home"
    home.mkdir()
    shutil.copy(REPO / "data" / "dagster_home" / "dagster.yaml", home / "dagster.yaml")
    return home


def _identity(pid: int, *, host: str | None = None, ticks: int | None = None) -> dict:
    ticks = process_start_ticks(pid) if ticks is None else ticks
    return {WORKER_HOST_TAG: host or socket.gethostname(), WORKER_PID_TAG: str(pid),
            WORKER_STARTED_TAG: f"{boot_id()}:{ticks}"}


@pytest.fixture
def processes():
    """Start ``sleep`` processes; every one is killed at the end."""
    started = []

    def start():
        proc = subprocess.Popen(["sleep", "120"])
        started.append(proc)
        return proc

    yield start
    for proc in started:
        if proc.poll() is None:
            proc.kill()
        proc.wait()


def _dead_identity(start) -> dict:
    proc = start()
    identity = _identity(proc.pid)
    proc.kill()
    proc.wait()
    return identity


def _add_run(instance, tags, status=DagsterRunStatus.STARTED, claim: str | None = "lora_checkpoints"):
    run = instance.add_run(DagsterRun(job_name="__ASSET_JOB", run_id=str(uuid.uuid4()),
                                      status=status, tags=tags))
    if claim:
        instance.event_log_storage.claim_concurrency_slot("gpu", run.run_id, claim)
    return run


def test_liveness_tells_a_recycled_pid_and_a_reboot_from_the_worker(processes):
    live = processes()
    me = os.getpid()
    assert worker_state("r", _identity(live.pid)).status == ALIVE
    # our own pid with another start time: the worker died and the pid went to us
    recycled = worker_state("r", _identity(me, ticks=process_start_ticks(me) - 1))
    assert recycled.status == DEAD and "another process" in recycled.reason
    rebooted = dict(_identity(live.pid), **{WORKER_STARTED_TAG: f"old-boot:{process_start_ticks(live.pid)}"})
    assert worker_state("r", rebooted).status == DEAD
    assert "restarted" in worker_state("r", rebooted).reason
    killed = _dead_identity(processes)
    state = worker_state("r", killed)
    assert state.status == DEAD and f"worker pid {killed[WORKER_PID_TAG]}" in state.reason
    assert worker_state("r", _identity(me, host="gpu-box-7")).status == REMOTE
    assert worker_state("r", {}).status == UNKNOWN
    # only the launcher's tags (the worker died before its executor ran): the command line
    # must name the run; a live pid running something else is not the worker
    launcher_only = {WORKER_HOST_TAG: socket.gethostname(), WORKER_PID_TAG: str(live.pid)}
    assert worker_state("some-run-id", launcher_only).status == DEAD


def test_reaper_fails_only_dead_local_runs_and_frees_their_slots(tmp_path, processes, monkeypatch, capsys):
    home = _home(tmp_path)
    with DagsterInstance.from_config(str(home)) as instance:
        storage = instance.event_log_storage
        storage.set_concurrency_slots("gpu", 5)
        live = processes()
        dead = _add_run(instance, _dead_identity(processes))
        recycled = _add_run(instance, _identity(os.getpid(), ticks=process_start_ticks(os.getpid()) - 1),
                            claim="generations")
        alive = _add_run(instance, _identity(live.pid), claim="step_importance")
        remote = _add_run(instance, dict(_dead_identity(processes), **{WORKER_HOST_TAG: "gpu-box-7"}),
                          claim="codi_model")
        finished = _add_run(instance, _identity(live.pid), status=DagsterRunStatus.FAILURE, claim=None)
        finished_holder = _add_run(instance, _dead_identity(processes),
                                   status=DagsterRunStatus.SUCCESS, claim="base_model")
        assert len(storage.get_concurrency_info("gpu").claimed_slots) == 5

        doctor = check_runs(home)
        assert doctor.status == "fail" and "polydag runs reap" in doctor.fix
        assert dead.run_id in doctor.detail and finished_holder.run_id in doctor.detail
        assert alive.run_id not in doctor.data["stale_holders"]

        monkeypatch.setenv("DAGSTER_HOME", str(home))
        assert cli.main(["runs", "reap", "--dry-run"]) == 0
        assert "would reap" in capsys.readouterr().out
        assert instance.get_run_by_id(dead.run_id).status == DagsterRunStatus.STARTED

        assert cli.main(["runs", "reap"]) == 0
        out = capsys.readouterr().out
        assert out.count("reaped run") == 3, out

        status = {r.run_id: instance.get_run_by_id(r.run_id).status
                  for r in (dead, recycled, alive, remote, finished, finished_holder)}
        assert status[dead.run_id] == status[recycled.run_id] == DagsterRunStatus.FAILURE
        assert status[alive.run_id] == status[remote.run_id] == DagsterRunStatus.STARTED
        assert status[finished_holder.run_id] == DagsterRunStatus.SUCCESS
        holders = {s.run_id for s in storage.get_concurrency_info("gpu").claimed_slots}
        assert holders == {alive.run_id, remote.run_id}
        failure = [e for e in instance.all_logs(dead.run_id)
                   if e.dagster_event and e.dagster_event.event_type == DagsterEventType.RUN_FAILURE]
        assert len(failure) == 1
        assert f"worker pid {dead.tags[WORKER_PID_TAG]}" in failure[0].message
        assert "freed its concurrency slots" in failure[0].message
        recycled_failure = [e.message for e in instance.all_logs(recycled.run_id)
                            if e.dagster_event and e.dagster_event.event_type == DagsterEventType.RUN_FAILURE]
        assert "another process" in recycled_failure[0]

        # nothing left to do; the remote run is reaped only when named, the live one never
        assert reap_dead_runs(instance) == []
        assert cli.main(["runs", "reap", "--run", alive.run_id]) == 1
        assert instance.get_run_by_id(alive.run_id).status == DagsterRunStatus.STARTED
        assert cli.main(["runs", "reap", "--run", remote.run_id]) == 0
        assert instance.get_run_by_id(remote.run_id).status == DagsterRunStatus.FAILURE
        assert check_runs(home).status == "ok"
        assert [v.run_id for v in inspect_runs(instance).holders("gpu")] == [alive.run_id]


def test_launcher_health_check_fails_dead_cli_runs_of_this_host_only(tmp_path, processes):
    with DagsterInstance.from_config(str(_home(tmp_path))) as instance:
        launcher = instance.run_launcher
        assert isinstance(launcher, PolydagRunLauncher)
        live = processes()
        dead = _add_run(instance, _dead_identity(processes), claim=None)
        health = launcher.check_run_worker_health(dead)
        assert health.status == WorkerStatus.FAILED and f"pid {dead.tags[WORKER_PID_TAG]}" in health.msg
        alive = _add_run(instance, _identity(live.pid), claim=None)
        assert launcher.check_run_worker_health(alive).status == WorkerStatus.RUNNING
        remote = _add_run(instance, dict(dead.tags, **{WORKER_HOST_TAG: "gpu-box-7"}), claim=None)
        health = launcher.check_run_worker_health(remote)
        assert health.status == WorkerStatus.RUNNING and "not checked" in health.msg
        assert launcher.can_terminate(alive.run_id) and not launcher.can_terminate(dead.run_id)


# -- real processes ----------------------------------------------------------------------------

def _materialize(home: Path, tmp_path: Path, name: str, sleep_s: float) -> subprocess.Popen:
    env = dict(os.environ, DAGSTER_HOME=str(home), POLYDAG_PROBE_DIR=str(tmp_path),
               POLYDAG_PROBE_SLEEP_S=str(sleep_s))
    log = open(tmp_path / f"{name}.log", "wb")
    return subprocess.Popen(
        [sys.executable, "-m", "dagster", "asset", "materialize", "-m", LOCATION,
         "--select", "gpu_probe"],
        cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


def _wait(predicate, timeout_s, what):
    deadline = time.monotonic() + timeout_s
    while not (value := predicate()):
        assert time.monotonic() < deadline, f"gave up after {timeout_s}s waiting for {what}"
        time.sleep(0.2)
    return value


def _run_of(instance, pid):
    for run in instance.get_runs():
        if run.tags.get(WORKER_PID_TAG) == str(pid):
            return run
    return None


def _warnings(instance, run_id):
    return [e.message for e in instance.all_logs(run_id) if e.level == 30]


def _cpu_percent(pid: int, seconds: float = 3.0) -> float:
    proc = psutil.Process(pid)
    before = proc.cpu_times()
    time.sleep(seconds)
    after = proc.cpu_times()
    return 100 * (after.user + after.system - before.user - before.system) / seconds


def test_waiting_runs_sleep_name_the_holder_stop_on_signals_and_take_a_dead_holders_slot(tmp_path):
    home = _home(tmp_path)
    procs = []
    try:
        with DagsterInstance.from_config(str(home)) as instance:
            holder = _materialize(home, tmp_path, "holder", 300)
            procs.append(holder)

            def _holds():
                run = _run_of(instance, holder.pid)
                info = instance.event_log_storage.get_concurrency_info("gpu")
                return run if run and run.run_id in info.active_run_ids else None

            held = _wait(_holds, 90, "the holder to claim the gpu slot")
            term, intr, ui = (_materialize(home, tmp_path, n, 1) for n in ("term", "intr", "ui"))
            procs += [term, intr, ui]
            for waiter in (term, intr, ui):
                run = _wait(lambda: _run_of(instance, waiter.pid), 90, "the waiter to start")
                _wait(lambda: any("Waiting for a slot" in m for m in _warnings(instance, run.run_id)),
                      60, "the waiter's WARNING")
            warning = next(m for m in _warnings(instance, run.run_id) if "Waiting for a slot" in m)
            assert held.run_id in warning and f"kill -TERM {holder.pid}" in warning
            assert "step gpu_probe" in warning

            assert _cpu_percent(term.pid) < 25  # Dagster's own wait loop: ~100% of a core

            for waiter, sig in ((term, signal.SIGTERM), (intr, signal.SIGINT)):
                run = _run_of(instance, waiter.pid)
                waiter.send_signal(sig)
                waiter.wait(timeout=20)  # raises TimeoutExpired if the signal is ignored
                assert waiter.returncode != 0
                run = instance.get_run_by_id(run.run_id)
                assert run.status == DagsterRunStatus.FAILURE
                assert any("Received SIGTERM or SIGINT while step gpu_probe waited" in m
                           for m in _warnings(instance, run.run_id))
                assert not (tmp_path / f"{run.run_id}.json").exists()  # the step never ran

            # Terminate in the UI reaches a CLI run too: the launcher finds it by its tags
            run = _run_of(instance, ui.pid)
            assert instance.run_launcher.terminate(run.run_id)
            ui.wait(timeout=20)
            assert instance.get_run_by_id(run.run_id).status == DagsterRunStatus.CANCELED

            # a holder killed while a run waits: the waiter reaps it and takes the slot
            waiter = _materialize(home, tmp_path, "waiter", 0.1)
            procs.append(waiter)
            run = _wait(lambda: _run_of(instance, waiter.pid), 90, "the last waiter to start")
            _wait(lambda: any("Waiting for a slot" in m for m in _warnings(instance, run.run_id)),
                  60, "the last waiter to block")
            os.killpg(holder.pid, signal.SIGKILL)
            holder.wait()
            killed_at = time.monotonic()
            assert waiter.wait(timeout=60) == 0
            took = time.monotonic() - killed_at
            assert took < 45, took  # guards against a hang, not a performance claim
            dead = instance.get_run_by_id(held.run_id)
            assert dead.status == DagsterRunStatus.FAILURE
            failure = [e.message for e in instance.all_logs(dead.run_id) if e.dagster_event
                       and e.dagster_event.event_type == DagsterEventType.RUN_FAILURE]
            assert f"worker pid {holder.pid}" in failure[0] and run.run_id in failure[0]
            assert instance.event_log_storage.get_concurrency_info("gpu").active_slot_count == 0
            assert check_runs(home).status == "ok"
    finally:
        for proc in procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
