"""The researchers' experiment YAML and JSONL, exactly as written, train a λ partition end to
end on the built-in base: `polydag train --experiment FILE --base-model default
--cpu-without-quantization` in a real subprocess and a real instance."""

import os
import shutil
import subprocess
import sys

import duckdb
import pytest
import yaml

from polydag_tests.e2e.harness import REPO

pytestmark = pytest.mark.e2e

EXPERIMENT = REPO / "config" / "experiments" / "researchers" / "polychromic_0.3_conservative.yaml"


def _env(tmp_path):
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    shutil.copy(REPO / "data" / "dagster_home" / "dagster.yaml", home / "dagster.yaml")
    return dict(os.environ, DAGSTER_HOME=str(home), POLYDAG_DATA_DIR=str(tmp_path / "data"),
                PYTHONPATH=str(REPO), POLYDAG_PROGRESS="0")


def _train(tmp_path, *args):
    return subprocess.run([sys.executable, "-m", "polydag.cli", "train", "--experiment", str(EXPERIMENT), *args],
                          cwd=tmp_path, env=_env(tmp_path), capture_output=True, text=True, timeout=900)


def _tiny_base(path):
    """A small built-in base (the pipeline's builder, tiny sizes): where their file names
    /workspace/models/Qwen3-8B, this machine has this."""
    import json

    from polydag.core.polychromic.base_model import build_default_base_model
    from polydag.core.polychromic.config import BaseModelConfig

    rows = [json.loads(line) for line in (REPO / "data" / "researchers_format" / "train.jsonl").read_text().splitlines()]
    build_default_base_model([(r["tweet"], r["reply"]) for r in rows], path,
                             BaseModelConfig.tiny_for_tests(pretrain_steps=20, max_length=128))
    return path


def test_their_file_trains_a_partition_on_a_builtin_base(tmp_path):
    # their relative paths (data/..., output/...) resolve against the working directory
    shutil.copytree(REPO / "data" / "researchers_format", tmp_path / "data" / "researchers_format")
    refused = _train(tmp_path, "--base-model", "default", "--dry-run")
    assert refused.returncode == 2 and "load_in_4bit needs CUDA" in refused.stderr

    base = _tiny_base(tmp_path / "base")
    done = _train(tmp_path, "--base-model", str(base), "--cpu-without-quantization", "--max-steps", "5")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "quantization ignored on request" in done.stderr and "succeeded" in done.stdout

    con = duckdb.connect(str(tmp_path / "data" / "polydag.duckdb"), read_only=True)
    row = con.execute("SELECT lambda_key, steps, gates_passed, train_config FROM lora_checkpoints").fetchone()
    splits = dict(con.execute("SELECT split, count(DISTINCT prompt_id) FROM reply_pairs GROUP BY 1").fetchall())
    n_log = con.execute("SELECT count(*) FROM training_log WHERE lambda_key = '0.3' AND committed").fetchone()[0]
    con.close()
    assert row[:3] == ("0.3", 5, True) and n_log == 5
    config = yaml.safe_load(row[3])
    assert config["prompt_format"] == "chat" and config["chat_template_kwargs"] == {"enable_thinking": False}
    assert config["lora_r"] == 16 and config["gradient_accumulation_steps"] == 8 and config["seed"] == 42
    # their test_file is the test split; tweets of one tweet_id stay together
    test_tweets = {line.split('"tweet_id": "')[1][:19]
                   for line in (REPO / "data" / "researchers_format" / "test.jsonl").read_text().splitlines()}
    assert splits["test"] == len(test_tweets) and splits["train"] > splits["val"] > 0
    assert (tmp_path / "output" / "experiments" / "polychromic_0.3_conservative" / "lambda-0.3" /
            "adapter_model.safetensors").is_file()  # their output_dir gets the adapter too
    assert list((tmp_path / "data" / "wandb").glob("offline-run-*/run-*.wandb"))  # wandb.enabled, offline
