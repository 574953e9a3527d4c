"""The researchers' experiment YAML, as written, translated into polydag run config."""

import copy
from pathlib import Path

import pytest
import yaml

from polydag.core.polychromic.config import PolychromicTrainConfig, ReplyPairsConfig
from polydag.core.polychromic.experiment import ExperimentError, load_experiment, translate_experiment

FILE = Path(__file__).resolve().parents[2] / "config" / "experiments" / "researchers" / "polychromic_0.3_conservative.yaml"
DOC = yaml.safe_load(FILE.read_text())


def _translate(doc=None, **kwargs):
    kwargs.setdefault("cuda_available", True)
    return translate_experiment(copy.deepcopy(doc or DOC), **kwargs)


def test_every_section_maps_onto_settings_that_validate():
    import importlib.util

    exp = _translate(cpu_without_quantization=importlib.util.find_spec("bitsandbytes") is None)
    assert exp.partition_key == "0.3"
    train = PolychromicTrainConfig.for_partition(exp.partition_key, exp.op_config("lora_checkpoints"))
    assert (train.seed, train.lora_r, train.lora_alpha, train.lora_dropout) == (42, 16, 32, 0.1)
    assert len(train.target_modules) == 7 and train.diversity_metric == "semantic"
    assert (train.temperature, train.top_p, train.max_new_tokens) == (0.9, 0.95, 100)
    assert (train.compute_diversity_every_n_steps, train.max_examples_for_diversity, train.n_generations) == (5, 4, 3)
    assert (train.num_train_epochs, train.max_steps) == (2, -1)
    assert (train.per_device_train_batch_size, train.gradient_accumulation_steps) == (2, 8)
    assert (train.lr_scheduler_type, train.warmup_ratio, train.bf16, train.gradient_checkpointing) == \
        ("cosine", 0.03, True, True)
    assert (train.eval_strategy, train.eval_steps, train.save_steps, train.save_total_limit) == ("steps", 200, 200, 3)
    assert (train.early_stopping_patience, train.early_stopping_threshold) == (3, 0.01)
    assert train.load_best_model_at_end and train.metric_for_best_model == "eval_loss" and not train.greater_is_better
    assert train.max_length == 512 and train.prompt_format == "chat"
    assert train.chat_template_kwargs == {"enable_thinking": False}
    assert train.report_to == ("wandb",) and train.wandb_project == "qwen3-twitter-polychromic"
    assert train.run_name == "polychromic_0.3_conservative" and "lambda-0.3" in train.wandb_tags
    assert train.export_dir == "output/experiments/polychromic_0.3_conservative"
    pairs = ReplyPairsConfig(**exp.op_config("reply_pairs"))
    assert (pairs.prompt_column, pairs.reply_column, pairs.group_column) == ("tweet", "reply", "tweet_id")
    assert pairs.path.endswith("train.jsonl") and pairs.test_path.endswith("test.jsonl")
    assert exp.op_config("base_model") == {"local_path": "/workspace/models/Qwen3-8B"}


def test_an_unknown_key_is_named():
    doc = copy.deepcopy(DOC)
    doc["training"]["warmup_epochs"] = 1
    with pytest.raises(ExperimentError, match=r"unknown key\(s\) training\.warmup_epochs"):
        _translate(doc)
    doc = copy.deepcopy(DOC)
    doc["inference"] = {}
    with pytest.raises(ExperimentError, match=r"unknown key\(s\) experiment file\.inference"):
        _translate(doc)


def test_4bit_without_cuda_is_an_error_unless_overridden():
    with pytest.raises(ExperimentError, match="load_in_4bit needs CUDA.*--cpu-without-quantization"):
        _translate(cuda_available=False)
    exp = _translate(cuda_available=False, cpu_without_quantization=True)
    assert "load_in_4bit" not in exp.op_config("lora_checkpoints")
    assert any("quantization ignored" in note for note in exp.notes)


def test_lambda_comes_from_the_file_or_the_partition_and_they_must_agree():
    assert _translate(partition_key="0.3", cpu_without_quantization=True).partition_key == "0.3"
    with pytest.raises(ExperimentError, match="contradicts the λ partition 1.0"):
        _translate(partition_key="1.0", cpu_without_quantization=True)
    doc = copy.deepcopy(DOC)
    del doc["polychromic"]["diversity_weight"]
    assert _translate(doc, partition_key="2.0", cpu_without_quantization=True).partition_key == "2.0"


def test_what_polydag_cannot_honour_is_refused():
    for section, key, value, match in [("lora", "bias", "all", "without bias"),
                                       ("lora", "task_type", "SEQ_CLS", "causal LMs"),
                                       ("training", "save_strategy", "epoch", "by steps"),
                                       ("polychromic", "diversity_encoder_model", "BAAI/bge-large", "neither")]:
        doc = copy.deepcopy(DOC)
        doc[section][key] = value
        with pytest.raises(ExperimentError, match=match):
            _translate(doc, cpu_without_quantization=True)


def test_load_names_the_file(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("training: [1, 2")
    with pytest.raises(ExperimentError, match="bad.yaml is not valid YAML"):
        load_experiment(bad)
    with pytest.raises(FileNotFoundError):
        load_experiment(tmp_path / "missing.yaml")
