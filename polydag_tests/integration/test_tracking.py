"""report_to W&B (offline) and MLflow (a local SQLite store), read back from what they wrote."""

import logging
import os
from dataclasses import replace
from pathlib import Path

import pytest

from polydag.core.polychromic.base_model import build_default_base_model
from polydag.core.polychromic.config import BaseModelConfig, PolychromicTrainConfig
from polydag.core.polychromic.trainer import train_lora_adapter
from polydag_tests.integration.test_lora_training import PAIRS
from polydag_tests.integration.wandb_offline import history_and_config

CURVES = ("quality_loss", "diversity_score", "combined_loss", "diversity_grad_share", "learning_rate")


def test_wandb_offline_and_mlflow_log_the_curves_and_the_config(tmp_path, monkeypatch):
    monkeypatch.setenv("POLYDAG_DATA_DIR", str(tmp_path / "data"))
    for var in ("WANDB_MODE", "WANDB_DIR", "MLFLOW_TRACKING_URI", "MLFLOW_EXPERIMENT_NAME"):
        monkeypatch.delenv(var, raising=False)
    base = tmp_path / "base"
    build_default_base_model(PAIRS * 4, base, BaseModelConfig.tiny_for_tests(pretrain_steps=8))
    cfg = PolychromicTrainConfig(diversity_weight=1.0, n_generations=3, max_examples_for_diversity=2,
                                 compute_diversity_every_n_steps=2, diversity_metric="distinct", max_new_tokens=8,
                                 max_steps=4, per_device_train_batch_size=4, device="cpu",
                                 report_to=("wandb", "mlflow"), wandb_project="polydag-test", wandb_tags=("lambda-1",),
                                 run_name="tracked")
    train_lora_adapter(base, PAIRS, cfg, tmp_path / "adapter", logger=logging.getLogger("test"))

    assert "WANDB_MODE" not in os.environ  # offline for that training only
    (run_file,) = (tmp_path / "data" / "wandb").glob("offline-run-*/run-*.wandb")
    history, config, tags = history_and_config(run_file)
    logged = {k.removeprefix("train/"): v for row in history for k, v in row.items()}
    assert set(CURVES) <= set(logged)
    steps = [int(row["train/global_step"]) for row in history if "train/quality_loss" in row]
    assert steps == [1, 2, 3, 4]
    assert config["learning_rate"] == str(cfg.learning_rate) and tags == ["lambda-1"]

    import mlflow

    store = tmp_path / "data" / "mlflow.db"
    assert store.is_file()
    client = mlflow.tracking.MlflowClient(f"sqlite:///{store.resolve()}")
    (run,) = client.search_runs([client.get_experiment_by_name("polydag").experiment_id])
    for curve in CURVES:
        assert curve in run.data.metrics, curve
    assert [m.step for m in client.get_metric_history(run.info.run_id, "quality_loss")] == [1, 2, 3, 4]
    assert [m.step for m in client.get_metric_history(run.info.run_id, "diversity_score")] == [2, 4]
    assert float(run.data.params["learning_rate"]) == cfg.learning_rate


def test_a_tracker_that_is_not_installed_is_a_clear_error(tmp_path, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "mlflow" else real(name, *a))
    cfg = replace(PolychromicTrainConfig(device="cpu"), report_to=("mlflow",))
    from polydag.core.polychromic.trainer import _training_arguments

    with pytest.raises(ValueError, match=r"report_to mlflow needs the mlflow package"):
        _training_arguments(cfg, tmp_path, "cpu", resumable=False, has_eval=False)


def test_a_training_leaves_the_process_environment_as_it_found_it(tmp_path, monkeypatch):
    """W&B's directory and project are set for one training only: a later training (or a
    subprocess such as `polydag train`) must not inherit this one's WANDB_DIR."""
    import os

    from polydag.core.polychromic.trainer import _tracker_environment

    monkeypatch.delenv("WANDB_DIR", raising=False)
    cfg = replace(PolychromicTrainConfig(device="cpu"), report_to=("wandb", "mlflow"))
    before = dict(os.environ)
    with _tracker_environment(cfg, tmp_path):
        assert os.environ["WANDB_MODE"] == "offline" and "WANDB_DIR" in os.environ
    assert dict(os.environ) == before
