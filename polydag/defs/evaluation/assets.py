"""Polychromic sweep, evaluation half: adapters -> samples -> metrics -> comparison, dose
response, metric validity -> verdict.

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

from polydag.core.evaluation.config import (
    DistinctClassesConfig,
    EmbeddingConfig,
    GenerationConfig,
    QualityConfig,
    VerdictThresholds,
)
from polydag.core.evaluation.metrics.registry import PER_PROMPT_METRICS, class_metric_columns
from polydag.core.ops.cpu_threads import configure_torch_threads
from polydag.core.ops.hashing import keyed_sha256
from polydag.core.ops.jsonable import to_jsonable
from polydag.core.polychromic.lambdas import BASELINE_LAMBDA_KEY, SweepKey
from polydag.core.storage.duck import unit_rows
from polydag.core.storage.tables import markdown_table
from polydag.defs.config import run_config
from polydag.defs.decorators import gpu_asset
from polydag.defs.metadata import table_output
from polydag.defs.partitions import by_lambda_and_seed, partition_key_of, registered_units, sweep_key
from polydag.defs.storage.costs import CostModel
from polydag.defs.storage.resources import PolydagStorage

GROUP = "evaluation"

GenerationsRunConfig = run_config(
    "GenerationsRunConfig", [GenerationConfig, QualityConfig, EmbeddingConfig], module=__name__,
    doc="Run config of ``generations``: how samples are drawn, which quality checker judges them (its "
        "rules) and the embedding model of the relevance rule (polydag.core.evaluation.config).")
MetricsRunConfig = run_config(
    "MetricsRunConfig", [EmbeddingConfig, DistinctClassesConfig], module=__name__,
    doc="Run config of ``metrics``: the embedding model of the semantic metrics, and the class metrics "
        "(distinct_k's embedding partition for data without intents, pass_at_<k>_distinct_<m>).")
VerdictRunConfig = run_config(
    "VerdictRunConfig", [VerdictThresholds], module=__name__,
    doc="The researchers' bars as signed relative changes against λ = 0 "
        "(polydag.core.evaluation.config.VerdictThresholds).")


@gpu_asset(group=GROUP, code_version="1", **by_lambda_and_seed())
def generations(
    context: AssetExecutionContext,
    config: GenerationsRunConfig,
    storage: PolydagStorage,
    cost_model: CostModel,
    reply_pairs: pl.DataFrame,
    lora_checkpoints: pl.DataFrame,
) -> Output[pl.DataFrame]:
    """``n_samples`` replies per test prompt for each λ × seed adapter, batched and seeded per prompt,
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
    checkpoints = {SweepKey(row["lambda_key"], row.get("seed_key") or "0"): row
                   for row in lora_checkpoints.iter_rows(named=True)}
    checker = resolve_checker(quality_cfg, prompts, logger=context.log)
    embedder = None
    if checker.needs_embedder:
        embedder = embedder_for(config.spec(EmbeddingConfig), cache_dir=storage.embedding_cache_dir,
                                logger=context.log)
    batches = GenerationBatches(storage.duckdb_path, logger=context.log)
    parts = {}
    for unit in map(sweep_key, context.partition_keys):
        if unit not in checkpoints:
            raise ValueError(
                f"{unit.label} has no trained adapter; materialize it first: dagster asset "
                f"materialize -m polydag --select lora_checkpoints --partition '{partition_key_of(unit)}'"
            )
        cached = unit_rows(storage.duckdb_path, "generations", unit)
        parts[unit] = generate_partition(checkpoints[unit], prompts, gen_cfg, quality_cfg, cached=cached,
                                         batches=batches, embedder=embedder, logger=context.log)
    table = pl.concat([part.table for part in parts.values()], how="vertical_relaxed")
    pass_rates = table.group_by("lambda_key", "seed_key").agg(pl.col("passed").mean()).sort("lambda_key", "seed_key")
    costs = cost_model.record(context, storage, device=resolve_device(gen_cfg.device))
    return Output(
        table,
        data_version=DataVersion(keyed_sha256({partition_key_of(u): part.cache_key for u, part in parts.items()})),
        metadata={
            **costs,
            "n_rows": table.height,
            "n_prompts": prompts.height,
            "quality_checker": checker.name,
            "ground_truth": ("the verifier labels every sample (reply_intent, reply_topic)" if checker.has_ground_truth
                             else "absent: the test prompts carry no topic/admitted_intents of the default "
                                  "grammar, so reply_intent and reply_topic are null"),
            "reused_partitions": ", ".join(partition_key_of(u) for u, part in parts.items() if part.reused) or "none",
            "n_resumed_prompts": sum(part.n_resumed_prompts for part in parts.values()),
            "n_generated_prompts": sum(part.n_generated_prompts for part in parts.values()),
            "pass_rate": MetadataValue.md(markdown_table(pass_rates)),
            "examples": MetadataValue.md(
                markdown_table(table.select("lambda_key", "seed_key", "prompt", "text", "passed").head(8))
            ),
        },
    )


def _png_markdown(path, alt: str) -> MetadataValue:
    encoded = base64.b64encode(Path(path).read_bytes()).decode()
    return MetadataValue.md(f"![{alt}](data:image/png;base64,{encoded})")


@asset(group_name=GROUP, kinds={"duckdb", "polars"}, code_version="2")
def metrics(
    context: AssetExecutionContext,
    config: MetricsRunConfig,
    storage: PolydagStorage,
    generations: pl.DataFrame,
    lora_checkpoints: pl.DataFrame,
    reply_pairs: pl.DataFrame,
) -> Output[pl.DataFrame]:
    """One row per (λ, seed, test prompt): Distinct-1/2, Self-BLEU, semantic diversity, Vendi
    score over that prompt's samples; distinct_k, coverage and pass@k over distinct classes of
    its quality replies (ground-truth intents when the samples carry them, else an embedding
    partition); n_samples and n_passed."""
    from polydag.core.evaluation.embeddings import embedder_for
    from polydag.core.evaluation.generation import check_coverage
    from polydag.core.evaluation.metrics import per_prompt_metrics, prompt_truth_from_reply_pairs, self_bleu_signature

    configure_torch_threads()
    check_coverage(registered_units(context.instance), generations, lora_checkpoints, BASELINE_LAMBDA_KEY)
    embedder = embedder_for(config.spec(EmbeddingConfig), cache_dir=storage.embedding_cache_dir, logger=context.log)
    classes = config.spec(DistinctClassesConfig)
    prompt_truth = prompt_truth_from_reply_pairs(reply_pairs)
    # the BLEU signature travels with every row, so a stored Self-BLEU is never compared
    # with one computed under other settings
    table = per_prompt_metrics(generations, embedder, prompt_truth=prompt_truth, classes=classes,
                               logger=context.log).with_columns(self_bleu_signature=pl.lit(self_bleu_signature()))
    source = table.get_column("distinct_k_source")[0]
    shown = [*PER_PROMPT_METRICS, *class_metric_columns(table.columns)]
    means = table.group_by("lambda_key", "seed_key").agg(
        pl.col("diversity_weight").first(), *[pl.col(m).mean() for m in shown]
    ).sort("diversity_weight", "seed_key")
    if source == "intent":
        truth_note = ("distinct_k and coverage count ground-truth reply intents among the quality replies"
                      if prompt_truth is not None else
                      "distinct_k counts ground-truth reply intents; coverage is null: the data has no "
                      "admitted_intents per prompt")
    else:
        truth_note = (f"no ground truth (the samples carry no reply intents): distinct_k counts classes of an "
                      f"embedding partition at cosine ≥ {classes.class_similarity_threshold}, and coverage is null")
    return table_output(table, {
        "n_rows": table.height,
        "n_seeds": table.get_column("seed_key").n_unique(),
        "self_bleu_signature": self_bleu_signature(),
        "embedding_model": embedder.model_id,
        "distinct_k_source": source,
        "ground_truth": truth_note,
        "means": MetadataValue.md(markdown_table(means)),
    })


@asset(group_name=GROUP, kinds={"duckdb", "polars"}, code_version="2")
def metrics_summary(metrics: pl.DataFrame) -> Output[pl.DataFrame]:
    """Per (λ, seed) and pooled per λ: each metric's mean with a bootstrap standard error, and
    unbiased pass@1/5/10."""
    from polydag.core.evaluation.metrics import summarize_metrics

    table = summarize_metrics(metrics)
    return table_output(table, {"summary": MetadataValue.md(markdown_table(table))})


@asset(group_name=GROUP, kinds={"duckdb", "polars"}, code_version="2")
def comparison(metrics: pl.DataFrame) -> Output[pl.DataFrame]:
    """Each λ > 0 against λ = 0, per metric, paired by prompt: per seed (against λ = 0 of the
    same seed) and pooled (each prompt averaged over seeds, then the paired test); relative
    change, paired bootstrap CI, Wilcoxon p, Cohen's d_z, Holm-adjusted p across λ."""
    from polydag.core.evaluation.metrics import compare_to_baseline

    table = compare_to_baseline(metrics, baseline_key=BASELINE_LAMBDA_KEY)
    return table_output(table, {"comparison": MetadataValue.md(markdown_table(table))})


# Two unpartitioned tables over every (λ, seed) of ``metrics``: the trend across λ (read by the
# verdict) and the validity of the diversity metrics against ground truth (read by people).
@asset(group_name=GROUP, kinds={"duckdb", "polars"}, code_version="1")
def dose_response(metrics: pl.DataFrame) -> Output[pl.DataFrame]:
    """Does each metric move monotonically with λ? Page's L trend test over the λ values in
    ascending order, blocks = test prompts, per seed and pooled over seeds."""
    from polydag.core.evaluation.metrics.significance import default_comparison_metrics
    from polydag.core.evaluation.metrics.summary import DEFAULT_KS, with_pass_at_k
    from polydag.core.evaluation.metrics.trend import dose_response_trends

    table = dose_response_trends(with_pass_at_k(metrics, DEFAULT_KS), default_comparison_metrics(metrics))
    return table_output(table, {"trend": MetadataValue.md(markdown_table(table))})


@asset(group_name=GROUP, kinds={"duckdb", "polars"}, code_version="1")
def metric_validity(storage: PolydagStorage, metrics: pl.DataFrame) -> Output[pl.DataFrame]:
    """Which cheap diversity metric tracks real diversity: the Spearman rank correlation of
    Distinct-1/2, Self-BLEU, semantic diversity and Vendi with the ground-truth distinct_k
    across (prompt, λ, seed) rows, with prompt-bootstrap 95% CIs. Without ground truth the
    correlations are null and the metadata says why."""
    from polydag.core.evaluation.metrics import metric_validity as validity_of, plot_validity
    from polydag.core.evaluation.metrics.validity import NO_GROUND_TRUTH

    table = validity_of(metrics)
    has_truth = table.get_column("n_rows").sum() > 0
    plot_path = plot_validity(table, metrics, storage.artifact_path("plots", "metric_validity.png"))
    return table_output(table, {
        "ground_truth": "distinct_k from ground-truth reply intents" if has_truth else NO_GROUND_TRUTH,
        "n_rows": int(table.get_column("n_rows").max() or 0),
        "validity": MetadataValue.md(markdown_table(table.drop("note") if has_truth else table)),
        "plot": _png_markdown(plot_path, "Spearman rho of each diversity metric with distinct_k"),
        "plot_path": MetadataValue.path(str(plot_path)),
    })


@asset(group_name=GROUP, kinds={"duckdb", "polars"}, code_version="2")
def verdict(
    context: AssetExecutionContext,
    config: VerdictRunConfig,
    storage: PolydagStorage,
    comparison: pl.DataFrame,
    metrics_summary: pl.DataFrame,
    dose_response: pl.DataFrame,
) -> Output[pl.DataFrame]:
    """Which of the researchers' workshop and main-conference bars each λ meets, whether the
    change is consistent across seeds (main conference needs it), and the dose-response trend."""
    from polydag.core.evaluation.metrics import plot_comparison, verdict as build_verdict, verdict_markdown
    from polydag.core.evaluation.metrics.verdict import trend_markdown, with_trend
    from polydag.core.polychromic.diagnostics import diagnostics_markdown, training_diagnostics
    from polydag.core.storage.costs import total_sweep_cost
    from polydag.core.storage.duck import read_rows

    thresholds = config.spec()
    table = with_trend(build_verdict(comparison, thresholds), dose_response, thresholds)
    plot_path = storage.artifact_path("plots", "verdict.png")
    plot_comparison(metrics_summary, comparison, plot_path)
    cost = total_sweep_cost(storage.duckdb_path)
    return table_output(table, {
        "sweep_cost_usd": cost["cost_usd"],
        "sweep_device_hours": cost["device_hours"],
        "sweep_gpu_hours": cost["gpu_hours"],
        "sweep_cost_by_asset": MetadataValue.json(to_jsonable(cost["by_asset"])),
        "verdict": MetadataValue.md(verdict_markdown(table, thresholds)),
        "trend": MetadataValue.md(trend_markdown(dose_response, thresholds)),
        # a null result comes with its reasons: how far training moved each adapter, and how
        # much of that the diversity term drove (polydag.core.polychromic.diagnostics)
        "training_diagnostics": MetadataValue.md(diagnostics_markdown(
            training_diagnostics(read_rows(storage.duckdb_path, "lora_checkpoints")))),
        "plot": _png_markdown(plot_path, "λ against each metric"),
        "plot_path": MetadataValue.path(str(plot_path)),
    })
