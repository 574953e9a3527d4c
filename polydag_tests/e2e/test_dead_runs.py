"""kill -9 of a GPU-pool run must not block the pipeline: polydag's real assets, run as users
run them (``dagster asset materialize`` and ``polydag sweep`` processes) against a copy of the
shipped ``dagster.yaml``, so the ``gpu`` pool's limit of 1 applies.

Each test kills a process with SIGKILL while its GPU step holds the pool slot, checks that the
dead run is left STARTED holding the slot (what used to block every later GPU run forever),
then runs the same thing again: the new run reaps the dead one when it starts, so it never
waits for the slot, completes, and stores exactly the rows it should; the dead run is FAILED
with a message naming its dead worker. Time bounds only guard against hangs.
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from dagster import AssetKey, DagsterEventType, DagsterInstance, DagsterRunStatus

from polydag_tests.e2e.harness import add_sweep, REPO, TINY_BASE, TINY_LORA, Pipeline, write_reply_pairs
from polydag_tests.e2e.test_step_importance import write_problems

LAMBDA = "2.0"
N_PROBLEMS = 16
GEN = {"n_samples": 4, "max_new_tokens": 8, "device": "cpu"}
SLOW_GEN = {"n_samples": 400, "max_new_tokens": 64, "prompt_batch_size": 1, "device": "cpu"}
SLOW_LORA = dict(TINY_LORA, max_steps=5000)
NEXT_RUN_BOUND_S = 120  # generous: guards against waiting forever, not a performance claim
MAX_POOL_WAIT_S = 5


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A DAGSTER_HOME with the shipped dagster.yaml and a data dir holding reply pairs, a tiny
    base model, problems and a tiny CODI model (built in process, before any kill)."""
    home = tmp_path_factory.mktemp("home")
    shutil.copy(REPO / "data" / "dagster_home" / "dagster.yaml", home / "dagster.yaml")
    data_dir = tmp_path_factory.mktemp("data")
    pairs = write_reply_pairs(data_dir / "pairs.jsonl")
    problems = write_problems(data_dir / "problems.jsonl", N_PROBLEMS)
    with DagsterInstance.from_config(str(home)) as instance:
        add_sweep(instance, [LAMBDA])
        pipe = Pipeline(data_dir, instance)
        config = {"reply_pairs": {"path": str(pairs), "max_test_prompts": 4},
                  "base_model": TINY_BASE, "problems": {"path": str(problems)},
                  "codi_model": {"default_model": {"steps": 20}}}
        assert pipe.run(["reply_pairs", "base_model"], config).success
        assert pipe.run(["problems", "codi_model"], config).success
        env = dict(os.environ, DAGSTER_HOME=str(home), POLYDAG_DATA_DIR=str(data_dir),
                   PYTHONUNBUFFERED="1")
        yield pipe, env, home


def _materialize_cmd(asset: str, config: dict) -> list[str]:
    return [sys.executable, "-m", "dagster", "asset", "materialize", "-m", "polydag",
            "--select", asset, "--partition", f"{LAMBDA}|0",
            "--config-json", json.dumps({"ops": {asset: {"config": config}}})]


SWEEP = [sys.executable, "-m", "polydag.cli", "sweep", "step-importance",
         "--max-problems", str(N_PROBLEMS)]


def _start(pipe, cmd, env, log: Path) -> subprocess.Popen:
    before = {r.run_id for r in pipe.instance.get_runs()}
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=open(log, "wb"),
                            stderr=subprocess.STDOUT, start_new_session=True)
    proc.runs_before = before
    return proc


def _runs_of(instance, proc):
    """The runs ``proc`` created, newest first (found without polydag's worker tags)."""
    return [r for r in instance.get_runs() if r.run_id not in proc.runs_before]


def _events(instance, run_id, event_type):
    return [e for e in instance.all_logs(run_id, of_type=event_type)]


def _kill_while_holding_the_slot(pipe, proc, step: str, log: Path, after_s: float):
    """SIGKILL ``proc`` ``after_s`` seconds into its ``step``; returns its run."""
    instance = pipe.instance
    deadline = time.monotonic() + 240
    while True:
        assert proc.poll() is None, log.read_text()[-3000:]
        assert time.monotonic() < deadline, "the GPU step never started"
        runs = _runs_of(instance, proc)
        if runs and any(e.step_key == step for e in
                        _events(instance, runs[0].run_id, DagsterEventType.STEP_START)):
            break
        time.sleep(0.2)
    time.sleep(after_s)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    dead = instance.get_run_by_id(runs[0].run_id)
    # the state that used to block every later GPU run for good
    assert dead.status == DagsterRunStatus.STARTED, log.read_text()[-3000:]
    holders = instance.event_log_storage.get_concurrency_info("gpu").active_run_ids
    assert holders == {dead.run_id}
    return dead


def _run_again(pipe, cmd, env, log: Path):
    """Run ``cmd`` to completion; returns its runs and how long it took."""
    started = time.monotonic()
    proc = _start(pipe, cmd, env, log)
    try:
        code = proc.wait(timeout=NEXT_RUN_BOUND_S)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        pytest.fail(f"the next run did not finish within {NEXT_RUN_BOUND_S}s:\n"
                    + log.read_text()[-3000:])
    wall = time.monotonic() - started
    assert code == 0, log.read_text()[-3000:]
    runs = _runs_of(pipe.instance, proc)
    assert runs and all(r.status == DagsterRunStatus.SUCCESS for r in runs)
    return runs, wall


def _pool_waits(instance, run_id) -> list[float]:
    """Seconds each step of the run waited for a pool slot (blocked event to its start)."""
    logs = instance.all_logs(run_id)
    blocked = {}
    for entry in logs:
        if entry.message and entry.message.startswith("Step blocked by limit for pool"):
            blocked.setdefault(entry.step_key, entry.timestamp)
    starts = {e.step_key: e.timestamp for e in logs
              if e.dagster_event and e.dagster_event.event_type == DagsterEventType.STEP_START}
    return [starts[key] - at for key, at in blocked.items()]


def _check_recovered(pipe, dead, killed_pid, new_runs, step, wall):
    instance = pipe.instance
    first = new_runs[-1]  # get_runs is newest first
    waits = [w for run in new_runs for w in _pool_waits(instance, run.run_id)]
    assert all(w <= MAX_POOL_WAIT_S for w in waits), waits
    reaped = [e.message for e in instance.all_logs(first.run_id)
              if e.level == 30 and e.message.startswith(f"Reaped run {dead.run_id}")]
    assert reaped, "the next run did not reap the dead one"
    run_start = _events(instance, first.run_id, DagsterEventType.RUN_START)[0].timestamp
    step_start = next(e.timestamp for e in _events(instance, first.run_id,
                                                     DagsterEventType.STEP_START)
                      if e.step_key == step)
    print(f"\n[measured] {step}: next run wall {wall:.1f}s, run start to GPU step start "
          f"{step_start - run_start:.2f}s, pool waits {waits}")
    dead = instance.get_run_by_id(dead.run_id)
    assert dead.status == DagsterRunStatus.FAILURE
    failure = _events(instance, dead.run_id, DagsterEventType.RUN_FAILURE)
    assert len(failure) == 1 and f"worker pid {killed_pid}" in failure[0].message
    assert instance.event_log_storage.get_concurrency_info("gpu").active_slot_count == 0


def test_killed_training_run_frees_the_gpu_pool(world, tmp_path):
    pipe, env, _ = world
    proc = _start(pipe, _materialize_cmd("lora_checkpoints", SLOW_LORA), env,
                  tmp_path / "killed.log")
    dead = _kill_while_holding_the_slot(pipe, proc, "lora_checkpoints", tmp_path / "killed.log", 3)
    assert not pipe.table_exists("lora_checkpoints")

    runs, wall = _run_again(pipe, _materialize_cmd("lora_checkpoints", TINY_LORA), env,
                            tmp_path / "next.log")
    _check_recovered(pipe, dead, proc.pid, runs, "lora_checkpoints", wall)
    rows = pipe.sql("SELECT lambda_key FROM lora_checkpoints")
    assert rows["lambda_key"].to_list() == [LAMBDA]


def test_killed_generation_run_frees_the_gpu_pool(world, tmp_path):
    pipe, env, _ = world
    if not pipe.table_exists("lora_checkpoints"):
        pytest.skip("needs the adapter of the training test")
    proc = _start(pipe, _materialize_cmd("generations", SLOW_GEN), env, tmp_path / "killed.log")
    dead = _kill_while_holding_the_slot(pipe, proc, "generations", tmp_path / "killed.log", 3)
    assert not pipe.table_exists("generations")

    runs, wall = _run_again(pipe, _materialize_cmd("generations", GEN), env, tmp_path / "next.log")
    _check_recovered(pipe, dead, proc.pid, runs, "generations", wall)
    n_test = pipe.sql("SELECT count(DISTINCT prompt_id) FROM reply_pairs WHERE split='test'").item()
    rows = pipe.sql("SELECT lambda_key, prompt_id, sample_idx FROM generations")
    assert rows.height == n_test * GEN["n_samples"]
    assert rows.unique().height == rows.height and set(rows["lambda_key"]) == {LAMBDA}


def test_killed_sweep_frees_the_gpu_pool(world, tmp_path):
    pipe, env, _ = world
    proc = _start(pipe, [*SWEEP, "--problems-per-run", str(N_PROBLEMS)], env,
                  tmp_path / "killed.log")
    dead = _kill_while_holding_the_slot(pipe, proc, "step_importance", tmp_path / "killed.log", 1)
    assert not pipe.instance.get_materialized_partitions(AssetKey("step_importance"))

    runs, wall = _run_again(pipe, [*SWEEP, "--problems-per-run", str(N_PROBLEMS // 2)], env,
                            tmp_path / "next.log")
    assert len(runs) == 2
    _check_recovered(pipe, dead, proc.pid, runs, "step_importance", wall)
    wanted = set(pipe.instance.get_dynamic_partitions("problem"))
    assert len(wanted) == N_PROBLEMS
    assert pipe.instance.get_materialized_partitions(AssetKey("step_importance")) == wanted
    rows = pipe.sql("SELECT problem_id, variant FROM step_importance")
    n_variants = rows["variant"].n_unique()
    assert rows.height == N_PROBLEMS * n_variants
    assert rows.unique().height == rows.height, "duplicate rows"
    assert set(rows["problem_id"]) == wanted
