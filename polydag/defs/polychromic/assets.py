"""Polychromic sweep, training half: reply pairs -> base model -> one LoRA adapter per λ.

Each asset turns its config and partition keys into plain arguments, calls one
``polydag.core`` function, and returns a polars DataFrame that the DuckDB IO manager stores as
the table of the same name, with a data version computed from the content (dataset hash,
weights hash, adapter hashes) so that Dagster's staleness follows content, not run order.
"""

import base64
from pathlib import Path
from typing import Optional

import polars as pl
from dagster import (
    AssetExecutionContext,
    DataVersion,
    MetadataValue,
    Output,
    asset,
)

from polydag.core.ops import paths
from polydag.core.ops.cpu_threads import configure_torch_threads
from polydag.core.ops.hashing import file_sha256, frame_sha256, keyed_sha256
from polydag.core.polychromic.config import BaseModelConfig, PolychromicTrainConfig, ReplyPairsConfig
from polydag.core.storage.tables import markdown_table
from polydag.defs.config import run_config
from polydag.defs.decorators import gpu_asset
from polydag.defs.metadata import jsonable_metadata
from polydag.defs.partitions import by_lambda_and_seed, sweep_key
from polydag.defs.preflight import training_preflight
from polydag.defs.storage.costs import CostModel
from polydag.defs.storage.resources import PolydagStorage

GROUP = "polychromic"

ReplyPairsRunConfig = run_config(
    "ReplyPairsRunConfig", [ReplyPairsConfig], module=__name__,
    doc="Run config of ``reply_pairs`` (polydag.core.polychromic.config.ReplyPairsConfig).")
BaseModelRunConfig = run_config(
    "BaseModelRunConfig", [BaseModelConfig], module=__name__,
    doc="Run config of ``base_model`` (polydag.core.polychromic.config.BaseModelConfig).")
LoraCheckpointsRunConfig = run_config(
    "LoraCheckpointsRunConfig", [PolychromicTrainConfig], module=__name__,
    doc="Run config of ``lora_checkpoints``; field names follow the researchers' experiment YAML "
        "(polydag.core.polychromic.config.PolychromicTrainConfig).",
    overrides={"diversity_weight": (Optional[float], None,
                                    "λ. Taken from the partition key; if given it must equal the key."),
               "seed": (Optional[int], None,
                        "The training seed. Taken from the seed partition key; if given it must equal the key.")},
)


def train_pairs(reply_pairs: pl.DataFrame) -> list[tuple[str, str]]:
    train = reply_pairs.filter(pl.col("split") == "train")
    return list(zip(train["prompt"].to_list(), train["reply"].to_list()))


@asset(group_name=GROUP, kinds={"duckdb", "polars"}, code_version="1")
def reply_pairs(context: AssetExecutionContext, config: ReplyPairsRunConfig) -> Output[pl.DataFrame]:
    """(prompt, reply) pairs, validated and split by prompt into train/val/test."""
    from polydag.core.polychromic.reply_pairs import load_and_split

    cfg = config.spec()
    source = Path(cfg.path) if cfg.path else paths.shipped_file("reply_pairs.jsonl")
    split, n_skipped = load_and_split(source, cfg, logger=context.log)
    counts = dict(split.group_by("split").len().iter_rows())
    return Output(
        split,
        data_version=DataVersion(frame_sha256(split)),
        metadata={
            "source": str(source),
            "source_sha256": file_sha256(source),
            "n_rows": split.height,
            "n_skipped_bad_rows": n_skipped,
            "n_prompts": split["prompt_id"].n_unique(),
            **{f"n_{name}": int(count) for name, count in sorted(counts.items())},
        },
    )


@gpu_asset(group=GROUP, code_version="1")
def base_model(
    context: AssetExecutionContext,
    config: BaseModelRunConfig,
    storage: PolydagStorage,
    cost_model: CostModel,
    reply_pairs: pl.DataFrame,
) -> Output[pl.DataFrame]:
    """The causal LM every λ adapter starts from: a local checkpoint, or a tiny model
    built from config, with a tokenizer trained on the data, pretrained inside the pipeline."""
    from dataclasses import asdict

    from polydag.core.polychromic.base_model import provide_base_model

    configure_torch_threads()
    cfg = config.spec()
    training_preflight(context, storage, base_model=cfg.local_path or None)
    info = provide_base_model(cfg, train_pairs(reply_pairs), storage.artifacts_dir / "base_model",
                              logger=context.log)
    row = asdict(info)
    costs = cost_model.record(context, storage, device=info.device)
    return Output(pl.DataFrame([row]), data_version=DataVersion(info.weights_sha256),
                  metadata=jsonable_metadata({**row, **costs}))


@gpu_asset(group=GROUP, code_version="1", **by_lambda_and_seed())
def lora_checkpoints(
    context: AssetExecutionContext,
    config: LoraCheckpointsRunConfig,
    storage: PolydagStorage,
    cost_model: CostModel,
    reply_pairs: pl.DataFrame,
    base_model: pl.DataFrame,
) -> Output[pl.DataFrame]:
    """One peft LoRA adapter per λ and seed, trained with the polychromic objective from the same
    base (every λ of a seed shares its data order and LoRA init), on transformers' Trainer.
    Adapters are saved with ``save_pretrained`` under
    ``data/artifacts/lora/<λ>/seed-<seed>/<training>/run-<run id>``; a run killed mid-training
    resumes from its last checkpoint when the partition is materialized again. This table
    records where the adapter is, and how training went."""
    from polydag.core.polychromic.trainer import train_partitions

    configure_torch_threads()
    values = config.model_dump()
    # λ and seed enter here, once per key, from the partition (every key validated before any work)
    units = [sweep_key(key) for key in context.partition_keys]
    cfgs = {unit: PolychromicTrainConfig.for_partition(unit.lambda_key, values, unit.seed_key) for unit in units}
    base_row = base_model.row(0, named=True)
    training_preflight(context, storage, base_model=base_row["path"])
    run_id = context.run.run_id
    validation = reply_pairs.filter(pl.col("split") == "val")
    rows = train_partitions(
        base_row, train_pairs(reply_pairs), cfgs, storage.artifacts_dir / "lora",
        db_path=storage.duckdb_path, run_id=run_id, logger=context.log,
        eval_pairs=list(zip(validation["prompt"].to_list(), validation["reply"].to_list())) or None,
        launch=_pipes_launch(context),
    )
    table = pl.DataFrame(rows)
    costs = cost_model.record(context, storage, device=rows[-1]["device"])
    version = keyed_sha256({f"{lam}|{seed}": sha for lam, seed, sha in
                            table.select("lambda_key", "seed_key", "adapter_sha256").iter_rows()})
    curves = _curves_metadata(storage, sorted({unit.lambda_key for unit in units}))
    return Output(table, data_version=DataVersion(version),
                  metadata={**_checkpoint_metadata(table), **curves, **jsonable_metadata(costs)})


def _pipes_launch(context: AssetExecutionContext):
    """Run a multi-process training's torchrun command through dagster-pipes: the child's log
    lines and its result message stream into this run."""
    from dagster import PipesSubprocessClient

    def launch(command: list[str], env: dict) -> None:
        PipesSubprocessClient(env=env).run(command=command, context=context)

    return launch


def _curves_metadata(storage: PolydagStorage, lambda_keys: list[str]) -> dict:
    """The training curves of these λ, one PNG per λ with a line per seed (every seed trained
    so far, not only this run's), shown in the UI (W&B-style)."""
    from polydag.core.polychromic.curves import plot_training_curves
    from polydag.core.storage.duck import read_rows

    metadata = {}
    for key in lambda_keys:
        log = read_rows(storage.duckdb_path, "training_log", lambda_key=[key], committed=True)
        path = plot_training_curves(log, storage.artifact_path("plots", f"training_curves_lambda_{key}.png"))
        encoded = base64.b64encode(path.read_bytes()).decode()
        metadata[f"training_curves λ={key}"] = MetadataValue.md(
            f"![training curves λ={key}](data:image/png;base64,{encoded})")
        metadata[f"training_curves_path λ={key}"] = MetadataValue.path(str(path))
    return metadata


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
    "n_effective_diversity_steps",
    "mean_advantage_std",
    "kl_to_base",
)


def _checkpoint_metadata(table: pl.DataFrame) -> dict:
    metadata = {
        f"λ={row['lambda_key']} seed={row['seed_key']} {field}": row.get(field)
        for row in table.iter_rows(named=True)
        for field in _METADATA_FIELDS
    }
    metadata["summary"] = MetadataValue.md(markdown_table(table, ["lambda_key", "seed_key", *_METADATA_FIELDS]))
    return jsonable_metadata(metadata)
