"""The researchers' experiment YAML, exactly as written, as polydag run config.

Their files have eight sections: ``experiment``, ``model`` (with ``quantization``), ``lora``,
``polychromic``, ``training`` (transformers ``TrainingArguments`` names plus ``num_epochs`` and
a nested ``early_stopping``), ``data``, ``output`` and ``wandb``. :func:`translate_experiment`
turns one into the run config of ``reply_pairs``, ``base_model`` and ``lora_checkpoints`` and
the λ partition it trains. Every key is either mapped onto a polydag setting (validated by
that setting's spec, as any run config is) or refused by name: an unknown key is an error,
and so is a key polydag understands but cannot honour here (4-bit quantization without CUDA
and bitsandbytes), unless ``cpu_without_quantization`` says to train unquantized, which is
meant for CPU smoke tests and is reported in the result's notes.

Their JSONL rows are ``tweet_id, tweet, reply, reply_likes, reply_author``: the data columns
default to ``tweet`` (prompt), ``reply`` and ``tweet_id`` (the group of a tweet's replies).
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from polydag.core.polychromic.lambdas import canonical_lambda_key

DEFAULT_ENCODERS = ("all-MiniLM-L6-v2", "sentence-transformers/all-MiniLM-L6-v2")


class ExperimentError(ValueError):
    """A key of the experiment file is unknown, malformed or cannot be honoured here."""


@dataclass
class Experiment:
    """What an experiment file asks polydag to run."""

    name: str
    partition_key: str  # the λ key
    run_config: dict  # {"ops": {asset: {"config": {...}}}}
    notes: list[str] = field(default_factory=list)  # what was mapped specially, for the user to read
    seed_key: str = "0"  # the seed partition: the file's random_seed

    def op_config(self, asset: str) -> dict:
        return self.run_config["ops"][asset]["config"]


def _take(section: Mapping, where: str, known: set[str]) -> dict:
    if section is None:
        return {}
    if not isinstance(section, Mapping):
        raise ExperimentError(f"section {where!r} must be a mapping, got {type(section).__name__}")
    unknown = sorted(set(section) - known)
    if unknown:
        raise ExperimentError(f"unknown key(s) {', '.join(f'{where}.{k}' for k in unknown)}; "
                              f"{where} takes {sorted(known)}")
    return dict(section)


_TRAINING_SAME = ("learning_rate", "warmup_ratio", "weight_decay", "max_grad_norm", "per_device_train_batch_size",
                  "per_device_eval_batch_size", "gradient_accumulation_steps", "optim", "lr_scheduler_type", "bf16",
                  "fp16", "gradient_checkpointing", "eval_strategy", "eval_steps", "logging_steps", "save_steps",
                  "save_total_limit", "load_best_model_at_end", "metric_for_best_model", "greater_is_better",
                  "max_steps")
_POLY = {"n_generations": "n_generations", "diversity_metric": "diversity_metric",
         "diversity_temperature": "temperature", "diversity_top_p": "top_p",
         "max_generation_length": "max_new_tokens",
         "compute_diversity_every_n_steps": "compute_diversity_every_n_steps",
         "max_examples_for_diversity": "max_examples_for_diversity", "diversity_weight": "diversity_weight"}


def translate_experiment(
    document: Mapping[str, Any],
    *,
    partition_key: str | None = None,
    base_model: str | None = None,
    cpu_without_quantization: bool = False,
    cuda_available: bool | None = None,
) -> Experiment:
    """The polydag run config of one experiment document (the parsed YAML).

    ``partition_key`` must agree with ``polychromic.diversity_weight`` when both are given;
    one of them defines λ. ``base_model`` overrides ``model.path`` (``"default"``: the
    built-in offline model, for trying a researchers' file on a machine without their
    weights).
    """
    top = _take(document, "experiment file",
                {"experiment", "model", "lora", "polychromic", "training", "data", "output", "wandb"})
    notes: list[str] = []
    exp = _take(top.get("experiment"), "experiment", {"name", "description", "type", "random_seed"})
    model = _take(top.get("model"), "model", {"name", "path", "quantization"})
    quant = _take(model.get("quantization"), "model.quantization",
                  {"load_in_4bit", "bnb_4bit_compute_dtype", "bnb_4bit_quant_type", "bnb_4bit_use_double_quant"})
    lora = _take(top.get("lora"), "lora", {"rank", "alpha", "dropout", "target_modules", "bias", "task_type"})
    poly = _take(top.get("polychromic"), "polychromic",
                 {"enabled", *_POLY, "diversity_encoder_model", "cache_diversity_encoder"})
    training = _take(top.get("training"), "training", {*_TRAINING_SAME, "num_epochs", "early_stopping",
                                                       "save_strategy", "logging_strategy"})
    stopping = _take(training.pop("early_stopping", None), "training.early_stopping",
                     {"enabled", "patience", "threshold"})
    data = _take(top.get("data"), "data", {"max_length", "train_file", "test_file", "enable_thinking",
                                           "prompt_column", "reply_column", "group_column", "id_column"})
    output = _take(top.get("output"), "output", {"output_dir", "logging_dir"})
    wandb = _take(top.get("wandb"), "wandb", {"enabled", "project", "name", "tags", "entity", "mode"})

    train: dict[str, Any] = {}
    if "random_seed" in exp:
        train["seed"] = exp["random_seed"]
    name = str(exp.get("name") or "experiment")
    train["run_name"] = str(wandb.get("name") or name)

    # the partition: λ from the file, the command line, or both agreeing
    enabled = poly.pop("enabled", True)
    weight = poly.get("diversity_weight", 0.0 if not enabled else None)
    if not enabled and weight not in (None, 0, 0.0):
        raise ExperimentError(f"polychromic.enabled is false but polychromic.diversity_weight is {weight}")
    if weight is None and partition_key is None:
        raise ExperimentError("give polychromic.diversity_weight or a λ partition")
    key = partition_key if partition_key is not None else canonical_lambda_key(weight)
    if weight is not None and canonical_lambda_key(weight) != canonical_lambda_key(key):
        raise ExperimentError(f"polychromic.diversity_weight {weight} contradicts the λ partition {key}")
    for theirs, ours in _POLY.items():
        if theirs in poly and ours != "diversity_weight":
            train[ours] = poly[theirs]
    encoder = poly.get("diversity_encoder_model")
    if encoder is not None and encoder not in DEFAULT_ENCODERS:
        if not Path(str(encoder)).is_dir():
            raise ExperimentError(f"polychromic.diversity_encoder_model {encoder!r} is neither all-MiniLM-L6-v2 "
                                  "(shipped offline) nor a local sentence-transformers directory")
        train["embedding_model_path"] = str(encoder)
    # cache_diversity_encoder: polydag always caches embeddings by text hash; either value is honoured

    for theirs, ours in (("rank", "lora_r"), ("alpha", "lora_alpha"), ("dropout", "lora_dropout"),
                         ("target_modules", "target_modules")):
        if theirs in lora:
            train[ours] = lora[theirs]
    if lora.get("bias", "none") != "none":
        raise ExperimentError(f"lora.bias {lora['bias']!r}: polydag trains LoRA without bias terms (bias: none)")
    if str(lora.get("task_type", "CAUSAL_LM")).upper() != "CAUSAL_LM":
        raise ExperimentError(f"lora.task_type {lora['task_type']!r}: polydag trains causal LMs (CAUSAL_LM)")

    for theirs in _TRAINING_SAME:
        if theirs in training:
            train[theirs] = training[theirs]
    if "num_epochs" in training:
        train["num_train_epochs"] = training["num_epochs"]
        train.setdefault("max_steps", -1)
    for strategy in ("save_strategy", "logging_strategy"):
        if training.get(strategy, "steps") != "steps":
            raise ExperimentError(f"training.{strategy} {training[strategy]!r}: polydag saves and logs by steps")
    if stopping.get("enabled"):
        train["early_stopping_patience"] = stopping.get("patience", 3)
        train["early_stopping_threshold"] = stopping.get("threshold", 0.0)
    if train.get("eval_strategy") == "no":
        train.pop("eval_steps", None)

    if quant.get("load_in_4bit"):
        cuda = _cuda() if cuda_available is None else cuda_available
        bnb = importlib.util.find_spec("bitsandbytes") is not None
        if not (cuda and bnb):
            why = " and ".join(w for w, ok in (("CUDA", cuda), ("bitsandbytes", bnb)) if not ok)
            if not cpu_without_quantization:
                raise ExperimentError(
                    f"model.quantization.load_in_4bit needs {why}, which this machine lacks; train on a CUDA "
                    "machine with bitsandbytes, or pass --cpu-without-quantization for an unquantized smoke test")
            notes.append(f"model.quantization ignored on request (--cpu-without-quantization): no {why} here, "
                         "the base is trained unquantized")
        else:
            train["load_in_4bit"] = True
            for k in ("bnb_4bit_compute_dtype", "bnb_4bit_quant_type", "bnb_4bit_use_double_quant"):
                if k in quant:
                    train[k] = quant[k]

    pairs: dict[str, Any] = {"prompt_column": data.get("prompt_column", "tweet"),
                             "reply_column": data.get("reply_column", "reply"),
                             "group_column": data.get("group_column", "tweet_id"),
                             "id_column": data.get("id_column", "")}
    if "train_file" in data:
        pairs["path"] = str(data["train_file"])
    if "test_file" in data:
        pairs["test_path"] = str(data["test_file"])
    if "random_seed" in exp:
        pairs["split_seed"] = exp["random_seed"]
    if "max_length" in data:
        train["max_length"] = data["max_length"]
    if "enable_thinking" in data:  # their prompts went through Qwen3's chat template
        train["prompt_format"] = "chat"
        train["chat_template_kwargs"] = {"enable_thinking": bool(data["enable_thinking"])}

    base: dict[str, Any] = {}
    path = base_model if base_model is not None else model.get("path")
    if path is None:
        raise ExperimentError("model.path is missing: polydag loads local model directories only (no downloads)")
    if str(path) != "default":
        base["local_path"] = str(path)
    else:
        notes.append(f"model {model.get('name') or model.get('path')!r} replaced by the built-in default base")

    if "output_dir" in output:
        train["export_dir"] = str(output["output_dir"])
    if "logging_dir" in output:
        train["logging_dir"] = str(output["logging_dir"])
    if wandb.get("enabled"):
        train["report_to"] = ["wandb"]
        if "project" in wandb:
            train["wandb_project"] = wandb["project"]
        if "tags" in wandb:
            train["wandb_tags"] = [str(tag) for tag in wandb["tags"]]
        if "entity" in wandb or "mode" in wandb:
            notes.append("wandb.entity/mode: polydag logs W&B offline unless WANDB_MODE is set in the environment")

    run_config = {"ops": {"reply_pairs": {"config": pairs}, "base_model": {"config": base},
                          "lora_checkpoints": {"config": train}}}
    seed = train.get("seed", 0)
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise ExperimentError(f"experiment.random_seed must be a non-negative integer (it names the seed "
                              f"partition), got {seed!r}")
    return Experiment(name=name, partition_key=canonical_lambda_key(key), run_config=run_config, notes=notes,
                      seed_key=str(seed))


def load_experiment(path: str | Path, **kwargs) -> Experiment:
    """:func:`translate_experiment` of a YAML file (errors name the file)."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"experiment file {path} does not exist")
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8-sig"))
    except yaml.YAMLError as exc:
        raise ExperimentError(f"{path} is not valid YAML: {exc}") from exc
    try:
        return translate_experiment(document or {}, **kwargs)
    except ExperimentError as exc:
        raise ExperimentError(f"{path}: {exc}") from exc


def _cuda() -> bool:
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a dependency
        return False
    return torch.cuda.is_available()
