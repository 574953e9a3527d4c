"""Polychromic sweep, training half: reply pairs -> base model -> one LoRA adapter per λ.

Each asset turns its config and partition keys into plain arguments, calls ``polydag.core``,
and returns a polars DataFrame that the DuckDB IO manager stores as the table of the same name.
"""


import hashlib
import json
from pathlib import Path
from typing import Optional

import polars as pl
from dagster import (
    AssetExecutionContext,
    BackfillPolicy,
    Config,
    MetadataValue,
    Output,
    asset,
)
from pydantic import Field

from polydag.core.ops import paths
from polydag.core.ops.hashing import file_sha256
from polydag.core.polychromic.lambdas import lambda_value
from polydag.core.ops.cpu_threads import configure_torch_threads
from polydag.core.storage.tables import markdown_table
from polydag.defs.metadata import jsonable_metadata
from polydag.defs.preflight import training_preflight
from polydag.defs.partitions import lambda_partitions
from polydag.defs.storage.costs import CostModel
from polydag.instance.constants import GPU_OP_TAGS, GPU_POOL
from polydag.defs.storage.resources import PolydagStorage

GROUP = "polychromic"


class ReplyPairsConfig(Config):
    path: str = Field(
        default="",
        description="JSONL, CSV or Parquet file with prompt and reply columns (optional id). "
        "Empty: the dataset shipped in data/reply_pairs.jsonl.",
    )
    skip_bad_rows: bool = Field(
        default=False,
        description="Drop malformed rows (and report how many) instead of failing on the first.",
    )
    split_seed: int = Field(default=0, description="Seed of the deterministic train/val/test split.")
    val_fraction: float = 0.1
    test_fraction: float = 0.1
    max_test_prompts: int = Field(
        default=50, description="Cap on test prompts (each is sampled n times per λ)."
    )


@asset(group_name=GROUP, kinds={"duckdb", "polars"})
def reply_pairs(context: AssetExecutionContext, config: ReplyPairsConfig) -> Output[pl.DataFrame]:
    """(prompt, reply) pairs, validated and split by prompt into train/val/test."""
    from polydag.core.polychromic.reply_pairs import load_reply_pairs, split_reply_pairs

    source = Path(config.path) if config.path else paths.shipped_file("reply_pairs.jsonl")
    rows, n_skipped = load_reply_pairs(
        source, skip_bad_rows=config.skip_bad_rows, logger=context.log
    )
    split = split_reply_pairs(
        rows,
        seed=config.split_seed,
        val_fraction=config.val_fraction,
        test_fraction=config.test_fraction,
        max_test_prompts=config.max_test_prompts,
    )
    counts = dict(split.group_by("split").len().iter_rows())
    return Output(
        split,
        metadata={
            "source": str(source),
            "source_sha256": file_sha256(source),
            "n_rows": split.height,
            "n_skipped_bad_rows": n_skipped,
            "n_prompts": split["prompt_id"].n_unique(),
            **{f"n_{name}": int(count) for name, count in sorted(counts.items())},
        },
    )


class BaseModelConfig(Config):
    local_path: Optional[str] = Field(
        default=None,
        description="A local Hugging Face model directory (e.g. Qwen3-8B on a GPU box). "
        "Empty: build the small offline default from config and pretrain it here.",
    )
    architecture: str = Field(default="qwen3", description="qwen3 | llama (offline default only)")
    # Sizes of the offline default; None keeps the core default (polydag.core.polychromic.base_model).
    vocab_size: Optional[int] = None
    hidden_size: Optional[int] = None
    intermediate_size: Optional[int] = None
    num_layers: Optional[int] = None
    num_heads: Optional[int] = None
    num_kv_heads: Optional[int] = None
    max_length: Optional[int] = None
    pretrain_steps: Optional[int] = None
    batch_size: Optional[int] = None
    seed: int = 0
    device: str = "auto"


@asset(group_name=GROUP, kinds={"pytorch", "duckdb"}, op_tags=GPU_OP_TAGS, pool=GPU_POOL)
def base_model(
    context: AssetExecutionContext,
    config: BaseModelConfig,
    storage: PolydagStorage,
    cost_model: CostModel,
    reply_pairs: pl.DataFrame,
) -> Output[pl.DataFrame]:
    """The causal LM every λ adapter starts from: a local checkpoint, or a tiny model
    built from config, with a tokenizer trained on the data, pretrained inside the pipeline."""
    from dataclasses import asdict

    from polydag.core.polychromic.objective import base_model as core

    configure_torch_threads()

    training_preflight(context, storage, base_model=config.local_path or None)
    if config.local_path:
        info = core.resolve_local_base_model(config.local_path)
    else:
        sizes = {k: v for k, v in config.model_dump().items() if v is not None and k != "local_path"}
        cfg = core.BaseModelConfig(**sizes)
        train = reply_pairs.filter(pl.col("split") == "train")
        pairs = list(zip(train["prompt"].to_list(), train["reply"].to_list()))
        fingerprint = hashlib.sha256(
            json.dumps([asdict(cfg), pairs], sort_keys=True).encode()
        ).hexdigest()[:16]
        out_dir = storage.artifact_path("base_model", fingerprint)
        info = core.build_default_base_model(pairs, out_dir, cfg, logger=context.log)
    row = asdict(info)
    row["path"] = str(row["path"])
    costs = cost_model.record(context, storage, device=info.device)
    return Output(pl.DataFrame([row]), metadata=jsonable_metadata({**row, **costs}))


class LoraTrainingConfig(Config):
    """Run config of ``lora_checkpoints``; field names follow the researchers' experiment YAML."""

    diversity_weight: Optional[float] = Field(
        default=None,
        description="λ. Taken from the partition key; if given it must equal the key.",
    )
    n_generations: int = Field(default=4, description="Samples per prompt for the diversity term.")
    max_examples_for_diversity: int = Field(
        default=4, description="Prompts per batch that get a diversity term."
    )
    compute_diversity_every_n_steps: int = Field(
        default=2, description="Diversity term on every n-th step."
    )
    diversity_metric: str = Field(default="bleu", description="semantic | bleu | distinct")
    objective: str = Field(
        default="loo",
        description="loo (leave-one-out diversity advantage) | polychromic_set (Hamid et al.)",
    )
    temperature: float = 0.9
    top_p: float = 0.95
    max_new_tokens: Optional[int] = None
    learning_rate: Optional[float] = None
    max_steps: Optional[int] = None
    batch_size: Optional[int] = None
    lora_r: Optional[int] = None
    lora_alpha: Optional[int] = None
    seed: int = 0
    diversity_seed: int = 1
    device: str = Field(default="auto", description="auto | cpu | cuda")

    def to_core(self, lambda_key: str):
        from dataclasses import fields

        from polydag.core.polychromic.trainer import PolychromicTrainConfig

        weight = lambda_value(lambda_key)
        if self.diversity_weight is not None and float(self.diversity_weight) != weight:
            raise ValueError(
                f"run config sets diversity_weight={self.diversity_weight} but the partition key "
                f"is λ={lambda_key}; λ comes from the partition (drop diversity_weight from the "
                "config, or materialize the partition it names)"
            )
        known = {f.name for f in fields(PolychromicTrainConfig)}
        values = {
            k: v
            for k, v in self.model_dump().items()
            if v is not None and k in known and k != "diversity_weight"
        }
        return PolychromicTrainConfig(diversity_weight=weight, **values)


@asset(
    group_name=GROUP,
    partitions_def=lambda_partitions,
    backfill_policy=BackfillPolicy.single_run(),
    metadata={"partition_expr": "lambda_key"},
    kinds={"pytorch", "duckdb"},
    op_tags=GPU_OP_TAGS,
    pool=GPU_POOL,
)
def lora_checkpoints(
    context: AssetExecutionContext,
    config: LoraTrainingConfig,
    storage: PolydagStorage,
    cost_model: CostModel,
    reply_pairs: pl.DataFrame,
    base_model: pl.DataFrame,
) -> Output[pl.DataFrame]:
    """One peft LoRA adapter per λ, trained with the polychromic objective from the same base,
    data order and seed. Adapters are saved with ``save_pretrained`` under
    ``data/artifacts/lora/<λ>/<sha>``; this table records where, and how training went."""
    from polydag.core.storage import training_log
    from polydag.core.polychromic.trainer import train_lora_adapter

    configure_torch_threads()

    keys = list(context.partition_keys)
    cfgs = {key: config.to_core(key) for key in keys}  # every key validated before any work
    training_preflight(context, storage, base_model=base_model.row(0, named=True)["path"])
    base_row = base_model.row(0, named=True)
    train = reply_pairs.filter(pl.col("split") == "train")
    train_pairs = list(zip(train["prompt"].to_list(), train["reply"].to_list()))
    run_id = context.run.run_id

    rows = []
    try:
        for key in keys:
            writer = training_log.TrainingLogWriter(
                storage.duckdb_path,
                run_id=run_id,
                lambda_key=key,
                diversity_weight=cfgs[key].diversity_weight,
            )
            context.log.info(f"training λ={key} on {len(train_pairs)} pairs")
            result = train_lora_adapter(
                base_row["path"],
                train_pairs,
                cfgs[key],
                storage.artifact_path("lora", key, f"run-{run_id}"),
                log_fn=writer,
                logger=context.log,
            )
            writer.flush()
            rows.append(_checkpoint_row(key, cfgs[key], result, base_row))
    except BaseException:
        training_log.discard_run(storage.duckdb_path, run_id)
        raise
    training_log.commit_runs(storage.duckdb_path, run_id, keys)

    table = pl.DataFrame(rows)
    costs = cost_model.record(context, storage, device=rows[-1]["device"])
    return Output(table, metadata={**_checkpoint_metadata(table), **jsonable_metadata(costs)})


def _checkpoint_row(key: str, cfg, result, base_row: dict) -> dict:
    from dataclasses import asdict

    row = {"lambda_key": key, "diversity_weight": float(cfg.diversity_weight)}
    row.update({k: v for k, v in asdict(result).items()})
    row["adapter_dir"] = str(row["adapter_dir"])
    row["base_model_path"] = base_row["path"]
    row["base_model_sha256"] = base_row.get("weights_sha256")
    row["train_config"] = json.dumps(asdict(cfg), sort_keys=True)
    return row


def _checkpoint_metadata(table: pl.DataFrame) -> dict:
    metadata = {
        f"λ={row['lambda_key']} {field}": row.get(field)
        for row in table.iter_rows(named=True)
        for field in _METADATA_FIELDS
    }
    metadata["summary"] = MetadataValue.md(markdown_table(table, ["lambda_key", *_METADATA_FIELDS]))
    return jsonable_metadata(metadata)


_METADATA_FIELDS = (
    "adapter_sha256",
    "steps",
    "wall_s",
    "device",
    "peak_memory_bytes",
    "final_quality_loss",
    "final_diversity_score",
    "final_combined_loss",
    "mean_diversity_grad_share",
)
