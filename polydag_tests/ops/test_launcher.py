"""The GPU run launcher and run coordinator, on real Dagster instances and real processes.

Nothing here needs a GPU: the inventory is configured (two fake devices, or none), and what is
checked is what the launcher controls: which ``CUDA_VISIBLE_DEVICES`` each run process sees,
when runs may start, and that no worker process is left behind. The probe assets record what
their process saw (``gpu_probe_location.py``).
"""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
import yaml
from dagster import DagsterEventType, DagsterInstance, DagsterRunStatus, materialize
from dagster._core.definitions.reconstruct import ReconstructableRepository
from dagster._core.execution.api import create_execution_plan
from dagster._core.launcher import WorkerStatus
from dagster._core.remote_origin import (
    InProcessCodeLocationOrigin,
    RemoteJobOrigin,
    RemoteRepositoryOrigin,
)
from dagster._core.run_coordinator import SubmitRunContext
from dagster._core.types.loadable_target_origin import LoadableTargetOrigin

from polydag.instance.constants import DEVICE_TAG, GPU_TAG, PLACEMENT_TAG, WORKER_PID_TAG
from polydag.instance.placement import run_needs_gpu
from polydag.instance.launcher import GpuUnavailableError, PolydagRunLauncher
from polydag.instance.run_coordinator import PolydagRunCoordinator

REPO_ROOT = Path(__file__).resolve().parents[2]
LOCATION = "polydag_tests.ops.gpu_probe_location"


def _write_home(home: Path, launcher: dict, *, coordinator: dict | None = None,
                pool_limit: int | None = None, monitoring: bool = False) -> Path:
    config = {
        "telemetry": {"enabled": False},
        "run_launcher": {"module": "polydag.instance.launcher", "class": "PolydagRunLauncher",
                         "config": launcher},
    }
    if coordinator is not None:
        config["run_coordinator"] = {"module": "polydag.instance.run_coordinator",
                                     "class": "PolydagRunCoordinator", "config": coordinator}
    if pool_limit is not None:
        config["concurrency"] = {"pools": {"default_limit": pool_limit}}
    if monitoring:
        config["run_monitoring"] = {"enabled": True, "poll_interval_seconds": 2}
    home.mkdir(parents=True, exist_ok=True)
    (home / "dagster.yaml").write_text(yaml.safe_dump(config))
    return home


@pytest.fixture
def probe_env(tmp_path, monkeypatch):
    """Where the probe assets write what they saw (inherited by every run process)."""
    probe_dir = tmp_path / "probe"
    probe_dir.mkdir()
    monkeypatch.setenv("POLYDAG_PROBE_DIR", str(probe_dir))
    monkeypatch.setenv("POLYDAG_PROBE_SLEEP_S", "0.2")
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    return probe_dir


def _instance(home: Path) -> DagsterInstance:
    return DagsterInstance.from_config(str(home))


def _create_run(instance: DagsterInstance, job_name: str, tags=None):
    """A NOT_STARTED run of a probe job with both origins a queued run carries: the code
    origin the launcher executes and the remote origin the queue requires."""
    repo = ReconstructableRepository.for_module(LOCATION, "defs", working_directory=str(REPO_ROOT))
    job = repo.get_reconstructable_job(job_name)
    location = InProcessCodeLocationOrigin(
        LoadableTargetOrigin(executable_path=sys.executable, module_name=LOCATION,
                             working_directory=str(REPO_ROOT), attribute="defs"),
        location_name="probe",
    )
    return instance.create_run_for_job(
        job_def=job.get_definition(),
        execution_plan=create_execution_plan(job),
        job_code_origin=job.get_python_origin(),
        remote_job_origin=RemoteJobOrigin(RemoteRepositoryOrigin(location, "__repository__"),
                                          job_name),
        tags=tags or {},
    )


def _record(probe_dir: Path, run_id: str) -> dict:
    return json.loads((probe_dir / f"{run_id}.json").read_text())


def _engine_messages(instance, run_id):
    return [(e.level, e.message) for e in instance.all_logs(run_id)
            if e.dagster_event and e.dagster_event.event_type == DagsterEventType.ENGINE_EVENT]


# -- which runs need a GPU, and the queue ------------------------------------------------------

def test_run_needs_gpu_from_pool_op_tag_or_run_tag(tmp_path, probe_env):
    with _instance(_write_home(tmp_path / "home", {"devices": ["0", "1"]})) as instance:
        assert run_needs_gpu(instance, _create_run(instance, "gpu_probe_job"))  # pool "gpu"
        assert run_needs_gpu(instance, _create_run(instance, "tagged_probe_job"))  # op tag only
        assert not run_needs_gpu(instance, _create_run(instance, "cpu_probe_job"))
        # an explicit run tag decides either way
        assert not run_needs_gpu(instance, _create_run(instance, "gpu_probe_job", {GPU_TAG: "0"}))
        assert run_needs_gpu(instance, _create_run(instance, "cpu_probe_job", {GPU_TAG: "1"}))


def test_coordinator_tags_gpu_runs_and_limits_them_to_the_device_count(tmp_path, probe_env):
    home = _write_home(tmp_path / "home", {"devices": ["0", "1"]}, coordinator={}, pool_limit=1)
    with _instance(home) as instance:
        coordinator = instance.run_coordinator
        assert isinstance(coordinator, PolydagRunCoordinator)
        # what the queue daemon reads: one GPU run per device
        limits = instance.get_concurrency_config().run_queue_config.tag_concurrency_limits
        assert {"key": GPU_TAG, "value": "1", "limit": 2} in limits

        gpu_run = _create_run(instance, "gpu_probe_job")
        cpu_run = _create_run(instance, "cpu_probe_job")
        assert GPU_TAG not in gpu_run.tags  # launched without any run tag, as from the UI
        for run in (gpu_run, cpu_run):
            coordinator.submit_run(SubmitRunContext(run, workspace=None))
        gpu_run, cpu_run = (instance.get_run_by_id(r.run_id) for r in (gpu_run, cpu_run))
        assert gpu_run.status == DagsterRunStatus.QUEUED
        assert gpu_run.tags[GPU_TAG] == "1"
        assert GPU_TAG not in cpu_run.tags
        # the pool follows the device count, so CLI materializations are limited alike
        pools = {p.name: p.limit for p in instance.event_log_storage.get_pool_limits()}
        assert pools["gpu"] == 2


def test_coordinator_limit_is_one_without_gpu_and_config_overrides(tmp_path):
    with _instance(_write_home(tmp_path / "a", {"devices": []}, coordinator={})) as instance:
        assert instance.run_coordinator.gpu_run_limit() == 1
    home = _write_home(tmp_path / "b", {"devices": ["0", "1"]}, coordinator={"gpu_run_limit": 1})
    with _instance(home) as instance:
        assert instance.run_coordinator.gpu_run_limit() == 1


def test_require_gpu_fails_the_run_with_a_clear_error(tmp_path, probe_env):
    home = _write_home(tmp_path / "home", {"devices": [], "require_gpu": True})
    with _instance(home) as instance:
        run = _create_run(instance, "gpu_probe_job")
        with pytest.raises(GpuUnavailableError, match="needs a GPU .* this machine has none"):
            instance.launch_run(run.run_id, workspace=None)
        assert instance.get_run_by_id(run.run_id).status == DagsterRunStatus.FAILURE
        assert any("require_gpu: false" in message for _, message in
                   _engine_messages(instance, run.run_id))
        assert not (probe_env / f"{run.run_id}.json").exists()  # no process was started


def test_shipped_instance_config_loads_and_cli_materialize_still_works(tmp_path, probe_env):
    """data/dagster_home/dagster.yaml: the launcher and queue load, and an in-process
    materialization (what `dagster asset materialize` does) runs a GPU-pool step under the
    pool limit without touching the launcher."""
    home = tmp_path / "home"
    home.mkdir()
    shutil.copy(REPO_ROOT / "data" / "dagster_home" / "dagster.yaml", home / "dagster.yaml")
    with _instance(home) as instance:
        assert isinstance(instance.run_launcher, PolydagRunLauncher)
        assert isinstance(instance.run_coordinator, PolydagRunCoordinator)
        assert instance.global_op_concurrency_default_limit == 1
        assert instance.run_monitoring_enabled
        from polydag_tests.ops.gpu_probe_location import gpu_probe

        assert instance.event_log_storage.get_pool_limits() == []
        result = materialize([gpu_probe], instance=instance)
        assert result.success
        record = _record(probe_env, result.run_id)
        assert record["pid"] == os.getpid()  # in process: no launcher, no device assignment
        assert DEVICE_TAG not in instance.get_run_by_id(result.run_id).tags
        # the step claimed a slot of the gpu pool (which created it at the default limit of 1)
        # and gave it back
        info = instance.event_log_storage.get_concurrency_info("gpu")
        assert info.slot_count == 1 and info.active_slot_count == 0
        # run monitoring must never fail an in-process run it cannot see
        health = instance.run_launcher.check_run_worker_health(instance.get_run_by_id(result.run_id))
        assert health.status == WorkerStatus.RUNNING and "not checked" in health.msg


# -- real run processes ------------------------------------------------------------------------

@pytest.mark.e2e
def test_cpu_fallback_runs_on_cpu_with_a_warning(tmp_path, probe_env):
    with _instance(_write_home(tmp_path / "home", {"devices": []})) as instance:
        run = _create_run(instance, "gpu_probe_job")
        instance.launch_run(run.run_id, workspace=None)
        instance.run_launcher.join(timeout=120)
        run = instance.get_run_by_id(run.run_id)
        assert run.status == DagsterRunStatus.SUCCESS
        assert run.tags[PLACEMENT_TAG] == "cpu-fallback" and run.tags[DEVICE_TAG] == ""
        assert _record(probe_env, run.run_id)["cuda_visible_devices"] == ""
        warnings = [m for level, m in _engine_messages(instance, run.run_id) if level == 30]
        assert len(warnings) == 1 and "needs a GPU but this machine has none" in warnings[0]


def _wait(predicate, timeout_s: float, what: str):
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what} after {timeout_s:.0f}s")
        time.sleep(0.2)


@pytest.mark.e2e
def test_terminate_health_and_no_zombie(tmp_path, probe_env, monkeypatch):
    monkeypatch.setenv("POLYDAG_PROBE_SLEEP_S", "300")
    home = _write_home(tmp_path / "home", {"devices": ["0", "1"], "terminate_grace_seconds": 30})
    with _instance(home) as instance:
        launcher = instance.run_launcher
        run = _create_run(instance, "gpu_probe_job")
        instance.launch_run(run.run_id, workspace=None)
        _wait(lambda: instance.get_run_by_id(run.run_id).status == DagsterRunStatus.STARTED,
              120, "the run to start")
        run = instance.get_run_by_id(run.run_id)
        pid = int(run.tags[WORKER_PID_TAG])
        assert run.tags[DEVICE_TAG] == "0"
        assert launcher.held_devices() == {"0": run.run_id}
        assert launcher.check_run_worker_health(run).status == WorkerStatus.RUNNING
        # another launcher process (the webserver, a restarted daemon) finds it by its tags
        other = PolydagRunLauncher(devices=["0", "1"])
        other.register_instance(instance)
        assert other.check_run_worker_health(run).status == WorkerStatus.RUNNING
        assert other.can_terminate(run.run_id)

        assert other.terminate(run.run_id)  # SIGTERM: Dagster stops the run cleanly
        run = instance.get_run_by_id(run.run_id)
        assert run.status == DagsterRunStatus.CANCELED
        launcher.join(timeout=60)  # the launching instance's reaper has waited for it
        assert not psutil.pid_exists(pid)  # reaped: gone, not a zombie
        assert launcher.check_run_worker_health(run).status != WorkerStatus.RUNNING
        assert other.check_run_worker_health(run).status == WorkerStatus.FAILED
        assert not other.can_terminate(run.run_id) and not other.terminate(run.run_id)
        assert launcher.held_devices() == {}
        assert not (probe_env / f"{run.run_id}.json").exists()  # it never got to finish


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _events(instance, run_id) -> dict:
    """First timestamp of each run-level event type of ``run_id``."""
    out = {}
    for entry in instance.all_logs(run_id):
        if entry.dagster_event and entry.dagster_event.event_type not in out:
            out[entry.dagster_event.event_type] = entry.timestamp
    return out


@pytest.mark.e2e
def test_three_gpu_runs_on_two_devices_under_daemon_and_webserver(tmp_path, probe_env, monkeypatch):
    """`dagster dev` (webserver + daemon) with a fake inventory of two devices; three runs of a
    GPU asset submitted at once through GraphQL, with no run tags."""
    from dagster_graphql import DagsterGraphQLClient

    monkeypatch.setenv("POLYDAG_PROBE_SLEEP_S", "3")
    home = _write_home(tmp_path / "home", {"devices": ["0", "1"]},
                       coordinator={"dequeue_interval_seconds": 1}, pool_limit=2, monitoring=True)
    (tmp_path / "workspace.yaml").write_text(yaml.safe_dump({"load_from": [{"python_module": {
        "module_name": LOCATION, "location_name": "probe", "working_directory": str(REPO_ROOT)}}]}))
    port = _free_port()
    env = {**os.environ, "DAGSTER_HOME": str(home)}
    log = open(tmp_path / "dev.log", "wb")
    dev = subprocess.Popen(
        [sys.executable, "-m", "dagster", "dev", "-w", str(tmp_path / "workspace.yaml"),
         "-p", str(port)],
        cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        # a shell's background job ignores SIGINT, and children inherit that: restore it so
        # the SIGINT below stops dagster dev
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        client = DagsterGraphQLClient("127.0.0.1", port_number=port, timeout=30)

        def _serving():
            assert dev.poll() is None, (tmp_path / "dev.log").read_text()[-3000:]
            try:
                client._execute("{ version }")
                return True
            except Exception:
                return False

        _wait(_serving, 90, "dagster dev to serve")
        run_ids = [client.submit_job_execution("gpu_probe_job", repository_location_name="probe",
                                               repository_name="__repository__")
                   for _ in range(3)]
        with _instance(home) as instance:
            def _all_done():
                runs = [instance.get_run_by_id(r) for r in run_ids]
                return all(r.is_finished for r in runs)

            _wait(_all_done, 150, "the three runs to finish")
            runs = [instance.get_run_by_id(r) for r in run_ids]
            assert [r.status for r in runs] == [DagsterRunStatus.SUCCESS] * 3, \
                [_engine_messages(instance, r) for r in run_ids]
            records = {r: _record(probe_env, r) for r in run_ids}
            events = {r: _events(instance, r) for r in run_ids}

            for run in runs:
                # the coordinator tagged it; the launcher gave it a device; its process saw it
                assert run.tags[GPU_TAG] == "1"
                assert run.tags[DEVICE_TAG] in {"0", "1"}
                assert records[run.run_id]["cuda_visible_devices"] == run.tags[DEVICE_TAG]
                assert records[run.run_id]["pid"] == int(run.tags[WORKER_PID_TAG])

            # never two runs on one device at once: from launch to success, per device
            spans = sorted((r.tags[DEVICE_TAG], events[r.run_id][DagsterEventType.RUN_STARTING],
                            events[r.run_id][DagsterEventType.RUN_SUCCESS]) for r in runs)
            for (dev_a, _, end_a), (dev_b, start_b, _) in zip(spans, spans[1:]):
                if dev_a == dev_b:
                    assert start_b >= end_a, spans
            assert {r.tags[DEVICE_TAG] for r in runs} == {"0", "1"}  # both devices were used

            # the third run waited in the queue until one of the first two had finished
            # (RUN_STARTING is reported when the queue hands a run to the launcher)
            launched = sorted(run_ids, key=lambda r: events[r][DagsterEventType.RUN_STARTING])
            first_two, third = launched[:2], launched[2]
            first_success = min(events[r][DagsterEventType.RUN_SUCCESS] for r in first_two)
            assert all(DagsterEventType.RUN_ENQUEUED in events[r] for r in run_ids)
            assert all(events[r][DagsterEventType.RUN_STARTING] < first_success for r in first_two)
            assert events[third][DagsterEventType.RUN_STARTING] >= first_success

            # every worker was a child of the daemon, and the daemon reaped them all
            daemon_pids = {rec["ppid"] for rec in records.values()}
            assert len(daemon_pids) == 1
            daemon = psutil.Process(daemon_pids.pop())
            assert "dagster._daemon" in " ".join(daemon.cmdline())

            def _reaped():
                return not any(psutil.pid_exists(rec["pid"]) for rec in records.values())

            _wait(_reaped, 30, "the daemon to reap its run workers")
            assert [c for c in daemon.children() if c.status() == psutil.STATUS_ZOMBIE] == []
    finally:
        if dev.poll() is None:
            dev.send_signal(signal.SIGINT)
            try:
                dev.wait(timeout=40)
            except subprocess.TimeoutExpired:
                os.killpg(dev.pid, signal.SIGKILL)  # the session this test started
                dev.wait(timeout=10)
        log.close()
