"""Polychromic sweep, evaluation half: adapters -> samples -> metrics -> comparison -> verdict.

Each asset turns config and partition keys into arguments, calls ``polydag.core``, stores
the table and reports a data version computed from its content (the generation cache key
for samples, a table hash for the rest).
"""

import base64
from pathlib import Path

import polars as pl
from dagster import (
    AssetExecutionContext,
    DataVersion,
    MetadataValue,
    Output,
    asset,
)

from polydag.core.evaluation.config import EmbeddingConfig, GenerationConfig, QualityConfig, VerdictThresholds
from polydag.core.evaluation.metrics.registry import PER_PROMPT_METRICS
from polydag.core.ops.cpu_threads import configure_torch_threads
from polydag.core.ops.hashing import keyed_sha256
from polydag.core.ops.jsonable import to_jsonable
from polydag.core.polychromic.lambdas import BASELINE_LAMBDA_KEY
from polydag.core.storage.duck import read_rows
from polydag.core.storage.tables import markdown_table
from polydag.defs.config import run_config
from polydag.defs.decorators import gpu_asset
from polydag.defs.metadata import table_output
from polydag.defs.partitions import LAMBDA_PARTITIONS_NAME, by_lambda
from polydag.defs.storage.costs import CostModel
from polydag.defs.storage.resources import PolydagStorage

GROUP = "evaluation"

GenerationsRunConfig = run_config(
    "GenerationsRunConfig", [GenerationConfig, QualityConfig, EmbeddingConfig], module=__name__,
    doc="Run config of ``generations``: how samples are drawn, which quality checker judges them (its "
        "rules) and the embedding model of the relevance rule (polydag.core.evaluation.config).")
MetricsRunConfig = run_config(
    "MetricsRunConfig", [EmbeddingConfig], module=__name__,
    doc="Run config of ``metrics``: the embedding model of the semantic metrics.")
VerdictRunConfig = run_config(
    "VerdictRunConfig", [VerdictThresholds], module=__name__,
    doc="The researchers' bars as signed relative changes against λ = 0 "
        "(polydag.core.evaluation.config.VerdictThresholds).")


@gpu_asset(group=GROUP, code_version="1", **by_lambda())
def generations(
    context: AssetExecutionContext,
    config: GenerationsRunConfig,
    storage: PolydagStorage,
    cost_model: CostModel,
    reply_pairs: pl.DataFrame,
    lora_checkpoints: pl.DataFrame,
) -> Output[pl.DataFrame]:
    """``n_samples`` replies per test prompt for each λ adapter, batched and seeded per prompt,
    each marked by the quality checker. Rows carry a cache key over the adapter sha256 and the
    generation and checker config: unchanged inputs reuse the stored samples, anything
    changed samples afresh. Finished prompt batches are kept in ``generation_batches`` as they
    finish, so a killed run's rerun samples only the missing prompts."""
    from polydag.core.evaluation.checkers import resolve_checker
    from polydag.core.evaluation.embeddings import embedder_for
    from polydag.core.evaluation.generation import evaluation_prompts, generate_partition
    from polydag.core.polychromic.base_model import resolve_device
    from polydag.core.storage.generation_batches import GenerationBatches

    configure_torch_threads()
    gen_cfg, quality_cfg = config.spec(GenerationConfig), config.spec(QualityConfig)
    prompts = evaluation_prompts(reply_pairs)
    checkpoints = {row["lambda_key"]: row for row in lora_checkpoints.iter_rows(named=True)}
    checker = resolve_checker(quality_cfg, prompts, logger=context.log)
    embedder = None
    if checker.needs_embedder:
        embedder = embedder_for(config.spec(EmbeddingConfig), cache_dir=storage.embedding_cache_dir,
                                logger=context.log)
    batches = GenerationBatches(storage.duckdb_path, logger=context.log)
    parts = {}
    for key in context.partition_keys:
        if key not in checkpoints:
            raise ValueError(
                f"λ={key} has no trained adapter; materialize it first: dagster asset "
                f"materialize -m polydag --select lora_checkpoints --partition {key}"
            )
        cached = read_rows(storage.duckdb_path, "generations", lambda_key=key)
        parts[key] = generate_partition(checkpoints[key], prompts, gen_cfg, quality_cfg, cached=cached,
                                        batches=batches, embedder=embedder, logger=context.log)
    table = pl.concat([part.table for part in parts.values()], how="vertical_relaxed")
    pass_rates = table.group_by("lambda_key").agg(pl.col("passed").mean()).sort("lambda_key")
    costs = cost_model.record(context, storage, device=resolve_device(gen_cfg.device))
    return Output(
        table,
        data_version=DataVersion(keyed_sha256({key: part.cache_key for key, part in parts.items()})),
        metadata={
            **costs,
            "n_rows": table.height,
            "n_prompts": prompts.height,
            "quality_checker": checker.name,
            "ground_truth": ("the verifier labels every sample (reply_intent, reply_topic)" if checker.has_ground_truth
                             else "absent: the test prompts carry no topic/admitted_intents of the default "
                                  "grammar, so reply_intent and reply_topic are null"),
            "reused_partitions": ", ".join(k for k, part in parts.items() if part.reused) or "none",
            "n_resumed_prompts": sum(part.n_resumed_prompts for part in parts.values()),
            "n_generated_prompts": sum(part.n_generated_prompts for part in parts.values()),
            "pass_rate": MetadataValue.md(markdown_table(pass_rates)),
            "examples": MetadataValue.md(
                markdown_table(table.select("lambda_key", "prompt", "text", "passed").head(8))
            ),
        },
    )


@asset(group_name=GROUP, kinds={"duckdb", "polars"}, code_version="1")
def metrics(
    context: AssetExecutionContext,
    config: MetricsRunConfig,
    storage: PolydagStorage,
    generations: pl.DataFrame,
    lora_checkpoints: pl.DataFrame,
) -> Output[pl.DataFrame]:
    """One row per (λ, test prompt): Distinct-1/2, Self-BLEU, semantic diversity, Vendi score,
    n_samples and n_passed, over that prompt's samples."""
    from polydag.core.evaluation.embeddings import embedder_for
    from polydag.core.evaluation.generation import check_coverage
    from polydag.core.evaluation.metrics import per_prompt_metrics, self_bleu_signature

    configure_torch_threads()
    check_coverage(list(context.instance.get_dynamic_partitions(LAMBDA_PARTITIONS_NAME)), generations,
                   lora_checkpoints, BASELINE_LAMBDA_KEY)
    embedder = embedder_for(config.spec(), cache_dir=storage.embedding_cache_dir, logger=context.log)
    # the BLEU signature travels with every row, so a stored Self-BLEU is never compared
    # with one computed under other settings
    table = per_prompt_metrics(generations, embedder, logger=context.log).with_columns(
        self_bleu_signature=pl.lit(self_bleu_signature())
    )
    means = table.group_by("lambda_key").agg(
        pl.col("diversity_weight").first(), *[pl.col(m).mean() for m in PER_PROMPT_METRICS]
    ).sort("diversity_weight")
    return table_output(table, {
        "n_rows": table.height,
        "self_bleu_signature": self_bleu_signature(),
        "embedding_model": embedder.model_id,
        "means": MetadataValue.md(markdown_table(means)),
    })


@asset(group_name=GROUP, kinds={"duckdb", "polars"}, code_version="1")
def metrics_summary(metrics: pl.DataFrame) -> Output[pl.DataFrame]:
    """Per λ: each metric's mean with a bootstrap standard error, and unbiased pass@1/5/10."""
    from polydag.core.evaluation.metrics import summarize_metrics

    table = summarize_metrics(metrics)
    return table_output(table, {"summary": MetadataValue.md(markdown_table(table))})


@asset(group_name=GROUP, kinds={"duckdb", "polars"}, code_version="1")
def comparison(metrics: pl.DataFrame) -> Output[pl.DataFrame]:
    """Each λ > 0 against λ = 0, per metric, paired by prompt: relative change, paired
    bootstrap CI, Wilcoxon p, Cohen's d_z, Holm-adjusted p across λ."""
    from polydag.core.evaluation.metrics import compare_to_baseline

    table = compare_to_baseline(metrics, baseline_key=BASELINE_LAMBDA_KEY)
    return table_output(table, {"comparison": MetadataValue.md(markdown_table(table))})


@asset(group_name=GROUP, kinds={"duckdb", "polars"}, code_version="1")
def verdict(
    context: AssetExecutionContext,
    config: VerdictRunConfig,
    storage: PolydagStorage,
    comparison: pl.DataFrame,
    metrics_summary: pl.DataFrame,
) -> Output[pl.DataFrame]:
    """Which of the researchers' workshop and main-conference bars each λ meets."""
    from polydag.core.evaluation.metrics import plot_comparison, verdict as build_verdict, verdict_markdown
    from polydag.core.storage.costs import total_sweep_cost

    thresholds = config.spec()
    table = build_verdict(comparison, thresholds)
    plot_path = storage.artifact_path("plots", "verdict.png")
    plot_comparison(metrics_summary, comparison, plot_path)
    encoded = base64.b64encode(Path(plot_path).read_bytes()).decode()
    cost = total_sweep_cost(storage.duckdb_path)
    return table_output(table, {
        "sweep_cost_usd": cost["cost_usd"],
        "sweep_device_hours": cost["device_hours"],
        "sweep_gpu_hours": cost["gpu_hours"],
        "sweep_cost_by_asset": MetadataValue.json(to_jsonable(cost["by_asset"])),
        "verdict": MetadataValue.md(verdict_markdown(table, thresholds)),
        "plot": MetadataValue.md(f"![λ against each metric](data:image/png;base64,{encoded})"),
        "plot_path": MetadataValue.path(str(plot_path)),
    })
