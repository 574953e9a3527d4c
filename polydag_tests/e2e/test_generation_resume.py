"""A `generations` run killed with SIGKILL mid-draw keeps its finished prompt batches; the rerun
samples only the missing prompts and stores the table an uninterrupted run stores."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
from dagster import AssetKey, instance_for_test

from polydag.core.storage.duck import connect, table_exists
from polydag_tests.e2e.harness import add_sweep, TINY_BASE, TINY_LORA, Pipeline, write_reply_pairs

pytestmark = pytest.mark.e2e

# 16 test prompts in batches of 2: eight generate calls, so the kill lands between batches
GEN = {"n_samples": 10, "max_new_tokens": 24, "prompt_batch_size": 2, "device": "cpu", "min_relevance": None}
ROWS = "SELECT prompt_id, sample_idx, text, passed, quality_reasons, cache_key FROM generations " \
       "WHERE lambda_key = '0.0' ORDER BY prompt_id, sample_idx"


def _kept_prompts(db) -> int:
    """Prompts with all their samples in generation_batches (0 while the table does not exist)."""
    with connect(db, read_only=True, timeout_s=60) as con:
        if not table_exists(con, "generation_batches"):
            return 0
        return con.execute(
            "SELECT count(*) FROM (SELECT prompt_id FROM generation_batches WHERE lambda_key = '0.0' "
            "GROUP BY prompt_id HAVING count(*) = ?)", [GEN["n_samples"]]).fetchone()[0]


def _materialize(env, config):
    return [sys.executable, "-m", "dagster", "asset", "materialize", "-m", "polydag", "--select", "generations",
            "--partition", "0.0|0", "--config-json", json.dumps({"ops": {"generations": {"config": config}}})]


def test_a_killed_generations_run_resumes_with_the_uninterrupted_table(tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("resume")
    home = tmp_path_factory.mktemp("home")
    db = data_dir / "polydag.duckdb"
    source = write_reply_pairs(data_dir / "pairs.jsonl")
    with instance_for_test(temp_dir=str(home)) as instance:
        add_sweep(instance, ["0.0"])
        pipe = Pipeline(data_dir, instance)
        config = {"reply_pairs": {"path": str(source), "test_fraction": 0.4, "max_test_prompts": 16},
                  "base_model": TINY_BASE, "lora_checkpoints": TINY_LORA, "generations": GEN}
        assert pipe.run(["reply_pairs", "base_model"], config).success
        assert pipe.run(["lora_checkpoints"], config, partition_key="0.0|0").success
        n_test = pipe.sql("SELECT count(DISTINCT prompt_id) FROM reply_pairs WHERE split = 'test'").item()
        assert n_test >= 8

        # the uninterrupted run, then its samples are forgotten (partition and side rows)
        result = pipe.run(["generations"], config, partition_key="0.0|0")
        meta = result.asset_materializations_for_node("generations")[0].metadata
        assert (meta["n_resumed_prompts"].value, meta["n_generated_prompts"].value) == (0, n_test)
        reference = pipe.sql(ROWS)
        assert reference.height == n_test * GEN["n_samples"] and reference["text"].n_unique() > n_test
        with connect(db) as con:
            con.execute("DELETE FROM generations WHERE lambda_key = '0.0'")
            con.execute("DELETE FROM generation_batches")

        # a real CLI run, killed (the whole process group, SIGKILL) once a batch is kept
        env = dict(os.environ, DAGSTER_HOME=str(home), POLYDAG_DATA_DIR=str(data_dir))
        log = (data_dir / "killed.log").open("w")
        proc = subprocess.Popen(_materialize(env, GEN), env=env, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)
        try:
            deadline = time.monotonic() + 600
            while _kept_prompts(db) == 0:
                assert proc.poll() is None, (data_dir / "killed.log").read_text()[-3000:]
                assert time.monotonic() < deadline, "no batch was kept within 10 minutes"
                time.sleep(0.02)
            os.killpg(proc.pid, signal.SIGKILL)
            assert proc.wait(timeout=60) == -signal.SIGKILL
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
            log.close()
        kept = _kept_prompts(db)
        print(f"killed after {kept} of {n_test} prompts were kept")
        assert 0 < kept < n_test, f"the kill came after {kept} of {n_test} prompts: not mid-draw"
        assert pipe.sql("SELECT count(*) FROM generations WHERE lambda_key = '0.0'").item() == 0

        # the rerun: only the missing prompts are sampled, and the table is the uninterrupted one
        done = subprocess.run(_materialize(env, GEN), env=env, capture_output=True, text=True, timeout=900)
        assert done.returncode == 0, done.stderr[-3000:]
        assert f"{kept} of {n_test} prompts already drawn" in done.stderr
        event = instance.get_latest_materialization_event(AssetKey("generations"))
        meta = event.asset_materialization.metadata
        assert (meta["n_resumed_prompts"].value, meta["n_generated_prompts"].value) == (kept, n_test - kept)
        resumed = pipe.sql(ROWS)
        assert resumed.equals(reference)
