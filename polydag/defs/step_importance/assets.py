"""Step importance of continuous thoughts: problems -> model -> per-problem ablations -> summary.

``step_importance`` is partitioned by problem id. Its backfill policy runs a few hundred
problems per run (ranged runs, not one Dagster run per problem), so a sweep is a handful of
runs and a crash loses at most one run's problems: ``polydag sweep step-importance`` (or
"materialize missing" in the UI) then runs only the problems that have no rows yet.
"""

import base64
import os
from pathlib import Path
from typing import List, Optional

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
from polydag.core.ops.cpu_threads import configure_torch_threads
from polydag.core.storage.tables import markdown_table
from polydag.defs.partitions import PROBLEM_PARTITIONS_NAME, problem_partitions
from polydag.core.ops.hashing import file_sha256
from polydag.instance.constants import GPU_OP_TAGS, GPU_POOL
from polydag.defs.storage.costs import CostModel
from polydag.defs.metadata import jsonable_metadata
from polydag.defs.preflight import training_preflight
from polydag.defs.storage.resources import PolydagStorage

GROUP = "step_importance"
PROBLEMS_PER_RUN = int(os.environ.get("POLYDAG_PROBLEMS_PER_RUN", "200"))


class ProblemsConfig(Config):
    path: str = Field(
        default="",
        description="GSM8K-format JSONL, or a JSON list of {question, answer, reasoning_steps}. "
        "Empty: the synthetic set shipped in data/gsm8k_synthetic.jsonl.",
    )


@asset(group_name=GROUP, kinds={"duckdb", "polars"})
def problems(context: AssetExecutionContext, config: ProblemsConfig) -> Output[pl.DataFrame]:
    """GSM8K-style problems with stable ids, step counts and a difficulty bucket. Registers
    every new problem id as a ``step_importance`` partition."""
    from polydag.core.step_importance.problems import load_problems

    source = Path(config.path) if config.path else paths.shipped_file("gsm8k_synthetic.jsonl")
    table = load_problems(source)
    known = set(context.instance.get_dynamic_partitions(PROBLEM_PARTITIONS_NAME))
    new_ids = [pid for pid in table["problem_id"].to_list() if pid not in known]
    if new_ids:
        context.instance.add_dynamic_partitions(PROBLEM_PARTITIONS_NAME, new_ids)
    by_difficulty = table.group_by("difficulty").len().sort("difficulty")
    return Output(
        table,
        metadata={
            "source": str(source),
            "source_sha256": file_sha256(source),
            "n_problems": table.height,
            "n_new_partitions": len(new_ids),
            "by_difficulty": MetadataValue.md(markdown_table(by_difficulty)),
        },
    )


class CodiModelConfig(Config):
    checkpoint_dir: Optional[str] = Field(
        default=None,
        description="A CODI checkpoint directory (model.safetensors or pytorch_model.bin in "
        "CODI's key layout). Empty: train the small offline default here.",
    )
    base_model_path: Optional[str] = Field(
        default=None, description="Local base model of the CODI checkpoint (e.g. LLaMA-3.2-1B)."
    )
    lora_r: int = 128
    lora_alpha: int = 32
    target_modules: List[str] = Field(
        default=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    )
    prj_dim: int = 2048
    num_latent: int = 6
    train_steps: Optional[int] = Field(
        default=None, description="Training steps of the offline default (None: core default)."
    )
    seed: int = 0


@asset(group_name=GROUP, kinds={"pytorch", "duckdb"}, op_tags=GPU_OP_TAGS, pool=GPU_POOL)
def codi_model(
    context: AssetExecutionContext,
    config: CodiModelConfig,
    storage: PolydagStorage,
    cost_model: CostModel,
    problems: pl.DataFrame,
) -> Output[pl.DataFrame]:
    """The continuous-thought model: a user's CODI checkpoint (strict key check), or a small
    LLaMA-architecture model trained here through the latent loop, with its held-out
    baseline accuracy."""
    from dataclasses import asdict

    from polydag.core.step_importance import api as codi

    configure_torch_threads()

    training_preflight(context, storage, codi_checkpoint=config.checkpoint_dir or None)
    if config.checkpoint_dir:
        info = codi.register_checkpoint(
            config.checkpoint_dir,
            base_model_path=config.base_model_path,
            lora_r=config.lora_r,
            lora_alpha=config.lora_alpha,
            target_modules=list(config.target_modules),
            prj_dim=config.prj_dim,
            num_latent=config.num_latent,
        )
    else:
        info = codi.train_default(
            problems,
            storage.artifact_path("codi_model", "default"),
            train_steps=config.train_steps,
            seed=config.seed,
            logger=context.log,
        )
    from polydag.core.polychromic.base_model import resolve_device

    row = {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(info).items()}
    costs = cost_model.record(context, storage, device=resolve_device("auto"))
    return Output(pl.DataFrame([row]), metadata=jsonable_metadata({**row, **costs}))


class StepImportanceConfig(Config):
    schemes: List[str] = Field(default=["prefix", "single"], description="prefix | single")
    modes: List[str] = Field(default=["zero"], description="zero | mean | resample")
    sites: List[str] = Field(default=["input"], description="input | layer:L")
    compat_researchers: bool = Field(
        default=False,
        description="Also run the researchers' protocol (layer-8 zeroing, BOT as step 0, "
        "five fed thoughts; without their double-EOT bug).",
    )
    chunk_size: int = Field(default=32, description="Problems per batched forward.")
    seed: int = 0
    device: str = "auto"


@asset(
    group_name=GROUP,
    partitions_def=problem_partitions,
    backfill_policy=BackfillPolicy.multi_run(max_partitions_per_run=PROBLEMS_PER_RUN),
    metadata={"partition_expr": "problem_id"},
    kinds={"pytorch", "duckdb"},
    op_tags=GPU_OP_TAGS,
    pool=GPU_POOL,
)
def step_importance(
    context: AssetExecutionContext,
    config: StepImportanceConfig,
    storage: PolydagStorage,
    cost_model: CostModel,
    problems: pl.DataFrame,
    codi_model: pl.DataFrame,
) -> Output[pl.DataFrame]:
    """Per problem: the baseline answer, the null control and every ablation variant, all
    through one batched engine; correctness, flips, gold log-prob and KL to the baseline."""
    from polydag.core.step_importance import api as codi

    configure_torch_threads()

    keys = list(context.partition_keys)
    selected = problems.filter(pl.col("problem_id").is_in(keys))
    unknown = sorted(set(keys) - set(selected["problem_id"].to_list()))
    if unknown:
        raise ValueError(
            f"{len(unknown)} problem partition(s) are not in the problems table "
            f"(e.g. {unknown[:3]}); re-materialize `problems` or delete those partitions"
        )
    rows = codi.run_step_importance(
        codi_model.row(0, named=True),
        selected,
        all_problems=problems,
        schemes=list(config.schemes),
        modes=list(config.modes),
        sites=list(config.sites),
        compat_researchers=config.compat_researchers,
        chunk_size=config.chunk_size,
        seed=config.seed,
        device=config.device,
        logger=context.log,
    )
    from polydag.core.polychromic.base_model import resolve_device

    own = rows.filter(pl.col("protocol") == "codi")  # compat rows have their own baseline
    baseline = own.filter(pl.col("scheme") == "baseline")
    costs = cost_model.record(context, storage, device=resolve_device(config.device))
    return Output(
        rows,
        metadata={
            **costs,
            "n_problems": selected.height,
            "n_rows": rows.height,
            "baseline_accuracy": float(baseline["correct"].mean()),
            "flip_rate": float(own.filter(pl.col("position") >= 0)["flipped"].mean()),
        },
    )


@asset(group_name=GROUP, kinds={"duckdb", "polars"})
def step_importance_summary(
    context: AssetExecutionContext,
    storage: PolydagStorage,
    step_importance: pl.DataFrame,
    problems: pl.DataFrame,
) -> Output[pl.DataFrame]:
    """Importance by position and variant (Wilson 95% CIs), by difficulty, early vs late, a
    trend test across positions, and the baseline accuracy; one long table."""
    from polydag.core.step_importance.summary import plot_importance, summarize_step_importance

    if step_importance.is_empty():
        raise ValueError(
            "no step_importance rows yet; run a sweep first: polydag sweep step-importance"
        )
    parts = summarize_step_importance(step_importance, problems)
    table = pl.concat(
        [frame.with_columns(view=pl.lit(name)) for name, frame in parts.items()],
        how="diagonal_relaxed",
    )
    plot_path = storage.artifact_path("plots", "step_importance.png")
    plot_importance(parts["by_difficulty"], plot_path)
    encoded = base64.b64encode(Path(plot_path).read_bytes()).decode()
    return Output(
        table,
        metadata={
            "n_problems": step_importance["problem_id"].n_unique(),
            **{
                name: MetadataValue.md(markdown_table(frame))
                for name, frame in parts.items()
            },
            "plot": MetadataValue.md(f"![importance by position](data:image/png;base64,{encoded})"),
        },
    )
