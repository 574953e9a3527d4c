"""Step importance of continuous thoughts: problems -> model -> per-problem ablations -> summary.

``step_importance`` is partitioned by problem id. Its backfill policy runs a few hundred
problems per run (ranged runs, not one Dagster run per problem), so a sweep is a handful of
runs and a crash loses at most one run's problems: ``polydag sweep step-importance`` (or
"materialize missing" in the UI) then runs only the problems that have no rows yet.
Every asset reports a data version from its content (problem-set hash, weights hash, rows).
"""

import base64
import os
from pathlib import Path

import polars as pl
from dagster import (
    AssetExecutionContext,
    BackfillPolicy,
    DataVersion,
    MetadataValue,
    Output,
    asset,
)

from polydag.core.ops import paths
from polydag.core.ops.cpu_threads import configure_torch_threads
from polydag.core.ops.hashing import file_sha256
from polydag.core.step_importance.config import (
    CodiModelConfig,
    CodiTrainConfig,
    ProblemsConfig,
    StepImportanceConfig,
    StepSummaryConfig,
)
from polydag.core.storage.duck import read_rows
from polydag.core.storage.tables import markdown_table
from polydag.defs.config import run_config
from polydag.defs.decorators import gpu_asset
from polydag.defs.metadata import table_output
from polydag.defs.metadata import jsonable_metadata
from polydag.defs.partitions import PROBLEM_PARTITIONS_NAME, problem_partitions
from polydag.defs.preflight import training_preflight
from polydag.defs.storage.costs import CostModel
from polydag.defs.storage.resources import PolydagStorage

GROUP = "step_importance"
PROBLEMS_PER_RUN = int(os.environ.get("POLYDAG_PROBLEMS_PER_RUN", "200"))

ProblemsRunConfig = run_config(
    "ProblemsRunConfig", [ProblemsConfig], module=__name__,
    doc="Run config of ``problems`` (polydag.core.step_importance.config.ProblemsConfig).")
CodiTrainRunConfig = run_config(
    "CodiTrainRunConfig", [CodiTrainConfig], module=__name__,
    doc="The offline default CODI model and its training run "
        "(polydag.core.step_importance.config.CodiTrainConfig).")
CodiModelRunConfig = run_config(
    "CodiModelRunConfig", [CodiModelConfig], module=__name__,
    doc="Run config of ``codi_model``: a CODI checkpoint, or (empty checkpoint_dir) the offline default.",
    nested={"default_model": (CodiTrainRunConfig, "The offline default model, trained when checkpoint_dir "
                                                  "is empty.")},
)
CodiControlTrainRunConfig = run_config(
    "CodiControlTrainRunConfig", [CodiTrainConfig], module=__name__, exclude=("latent_thoughts",),
    doc="The offline default control model: trained exactly as codi_model's default_model (the same "
        "fields and defaults), with its latent thoughts always constant (CodiTrainConfig.latent_thoughts).")
CodiControlModelRunConfig = run_config(
    "CodiControlModelRunConfig", [CodiModelConfig], module=__name__,
    doc="Run config of ``codi_control_model``: your own control checkpoint (a CODI checkpoint of a model "
        "that does not use its latent thoughts), or (empty checkpoint_dir) the offline default control.",
    nested={"default_model": (CodiControlTrainRunConfig, "The offline default control, trained when "
                                                         "checkpoint_dir is empty.")},
)
StepSummaryRunConfig = run_config(
    "StepSummaryRunConfig", [StepSummaryConfig], module=__name__,
    doc="Run config of ``step_importance_summary`` (polydag.core.step_importance.config.StepSummaryConfig).")
StepImportanceRunConfig = run_config(
    "StepImportanceRunConfig", [StepImportanceConfig], module=__name__,
    doc="Run config of ``step_importance`` (polydag.core.step_importance.config.StepImportanceConfig).")


@asset(group_name=GROUP, kinds={"duckdb", "polars"}, code_version="1")
def problems(context: AssetExecutionContext, config: ProblemsRunConfig) -> Output[pl.DataFrame]:
    """GSM8K-style problems with stable ids, step counts and a difficulty bucket. Registers
    every new problem id as a ``step_importance`` partition."""
    from polydag.core.step_importance.problems import load_problems

    cfg = config.spec()
    source = Path(cfg.path) if cfg.path else paths.shipped_file("gsm8k_synthetic.jsonl")
    table = load_problems(source)
    known = list(context.instance.get_dynamic_partitions(PROBLEM_PARTITIONS_NAME))
    ids = set(table["problem_id"].to_list())
    new_ids = [pid for pid in table["problem_id"].to_list() if pid not in set(known)]
    gone = [pid for pid in known if pid not in ids]
    if new_ids:
        context.instance.add_dynamic_partitions(PROBLEM_PARTITIONS_NAME, new_ids)
    for pid in gone:  # nothing can run them any more; their stored rows stay, outside the summary
        context.instance.delete_dynamic_partition(PROBLEM_PARTITIONS_NAME, pid)
    if gone:
        context.log.warning(f"{len(gone)} registered problems are not in {source} any more; their partitions "
                            "are removed (their step_importance rows stay, left out of the summary)")
    by_difficulty = table.group_by("difficulty").len().sort("difficulty")
    return table_output(table, {
        "source": str(source),
        "source_sha256": file_sha256(source),
        "n_problems": table.height,
        "n_new_partitions": len(new_ids),
        "n_removed_partitions": len(gone),
        "by_difficulty": MetadataValue.md(markdown_table(by_difficulty)),
    })


def _model_output(context: AssetExecutionContext, cfg: CodiModelConfig, train_cfg: CodiTrainConfig,
                  storage: PolydagStorage, cost_model: CostModel, problems: pl.DataFrame) -> Output[pl.DataFrame]:
    """What ``codi_model`` and ``codi_control_model`` do: register ``cfg``'s checkpoint, or
    train the offline default with ``train_cfg`` into ``data/artifacts/<asset>/default``."""
    from dataclasses import asdict

    from polydag.core.polychromic.base_model import resolve_device
    from polydag.core.step_importance import api as codi

    configure_torch_threads()
    training_preflight(context, storage, codi_checkpoint=cfg.checkpoint_dir or None)
    if cfg.checkpoint_dir:
        info = codi.register_checkpoint(cfg)
    else:
        info = codi.train_default(problems, storage.artifact_path(context.asset_key.path[-1], "default"),
                                  train_cfg, logger=context.log)
    row = {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(info).items()}
    costs = cost_model.record(context, storage, device=resolve_device("auto"))
    return Output(pl.DataFrame([row]), data_version=DataVersion(info.sha256),
                  metadata=jsonable_metadata({**row, **costs}))


@gpu_asset(group=GROUP, code_version="1")
def codi_model(
    context: AssetExecutionContext,
    config: CodiModelRunConfig,
    storage: PolydagStorage,
    cost_model: CostModel,
    problems: pl.DataFrame,
) -> Output[pl.DataFrame]:
    """The continuous-thought model: a user's CODI checkpoint (strict key check), or a small
    LLaMA-architecture model trained here through the latent loop, with its held-out
    baseline accuracy."""
    return _model_output(context, config.spec(), config.default_model.spec(), storage, cost_model, problems)


@gpu_asset(group=GROUP, code_version="1")
def codi_control_model(
    context: AssetExecutionContext,
    config: CodiControlModelRunConfig,
    storage: PolydagStorage,
    cost_model: CostModel,
    problems: pl.DataFrame,
) -> Output[pl.DataFrame]:
    """The negative control: a model that cannot use its latent thoughts. Your own control
    checkpoint, or the offline default trained like ``codi_model``'s with every fed thought
    one fixed vector (``latent_thoughts="constant"``); its ablation curve is the floor that
    ``step_importance_summary`` sets the model's against."""
    cfg = config.spec()
    output = _model_output(context, cfg, config.default_model.spec(latent_thoughts="constant"), storage,
                           cost_model, problems)
    if output.value["latent_thoughts"][0] != "constant":
        context.log.warning(f"the control checkpoint {cfg.checkpoint_dir} feeds thoughts that vary with the input "
                            "(its projection is not constant), so it may carry information through them")
    return output


def _ablation_output(context: AssetExecutionContext, cfg: StepImportanceConfig, storage: PolydagStorage,
                     cost_model: CostModel, problems: pl.DataFrame, model: dict) -> Output[pl.DataFrame]:
    """What ``step_importance`` and ``step_importance_control`` do for the run's problem
    partitions with the ``model`` row: every variant through the one batched engine."""
    from polydag.core.polychromic.base_model import resolve_device
    from polydag.core.step_importance import api as codi
    from polydag.core.step_importance.summary import rates_by_mode

    configure_torch_threads()
    selected = codi.select_problems(problems, list(context.partition_keys))
    rows = codi.run_step_importance(model, selected, cfg, all_problems=problems, logger=context.log)
    precision = codi.float32_agreement(model, rows, selected, cfg, all_problems=problems, logger=context.log)
    own = rows.filter(pl.col("protocol") == "codi")  # compat rows have their own baseline
    baseline = own.filter(pl.col("scheme") == "baseline")
    costs = cost_model.record(context, storage, device=resolve_device(cfg.device))
    return table_output(rows, {
        **costs,
        "n_problems": selected.height,
        "n_rows": rows.height,
        "latent_thoughts": str(model.get("latent_thoughts")),
        "baseline_accuracy": float(baseline["correct"].mean()),
        "flip_rate": float(own.filter(pl.col("position") >= 0)["flipped"].mean()),
        "by_mode": MetadataValue.md(markdown_table(rates_by_mode(rows))),
        "dtype": precision["dtype"],
        **({"vs_float32": MetadataValue.json(precision["vs_float32"])} if "vs_float32" in precision else {}),
    })


def _sweep_asset():
    """A problem-partitioned ablation asset: ranged runs of up to PROBLEMS_PER_RUN problems."""
    return gpu_asset(group=GROUP, code_version="1", partitions_def=problem_partitions, partition_column="problem_id",
                     backfill_policy=BackfillPolicy.multi_run(max_partitions_per_run=PROBLEMS_PER_RUN))


@_sweep_asset()
def step_importance(
    context: AssetExecutionContext,
    config: StepImportanceRunConfig,
    storage: PolydagStorage,
    cost_model: CostModel,
    problems: pl.DataFrame,
    codi_model: pl.DataFrame,
) -> Output[pl.DataFrame]:
    """Per problem: the baseline answer, the null control and every ablation variant, all
    through one batched engine; correctness, flips, gold log-prob and KL to the baseline."""
    return _ablation_output(context, config.spec(), storage, cost_model, problems, codi_model.row(0, named=True))


@_sweep_asset()
def step_importance_control(
    context: AssetExecutionContext,
    config: StepImportanceRunConfig,
    storage: PolydagStorage,
    cost_model: CostModel,
    problems: pl.DataFrame,
    codi_control_model: pl.DataFrame,
) -> Output[pl.DataFrame]:
    """The same sweep as ``step_importance`` (same engine, variants and gates) with the control
    model, whose thoughts carry nothing: its importance per position is what ablation shows
    for a model that does not use its latents."""
    return _ablation_output(context, config.spec(), storage, cost_model, problems,
                            codi_control_model.row(0, named=True))


# The control is a dependency, not an input: the IO manager cannot load a table that was never
# written, and the summary must build (saying the control is absent) before any control sweep.
@asset(group_name=GROUP, kinds={"duckdb", "polars"}, code_version="2", deps=[step_importance_control])
def step_importance_summary(
    context: AssetExecutionContext,
    config: StepSummaryRunConfig,
    storage: PolydagStorage,
    step_importance: pl.DataFrame,
    problems: pl.DataFrame,
) -> Output[pl.DataFrame]:
    """Importance by position and variant (Wilson 95% CIs) next to the control model's, with
    the positions that lie within the control's band flagged; by difficulty, early vs late, a
    trend test across positions, and the baseline accuracy; one long table."""
    from polydag.core.step_importance.summary import (
        plot_importance,
        rows_of_current_problems,
        summarize_step_importance,
    )

    # The IO manager loads the registered partitions only; rows of problems whose partitions
    # a changed problem set removed are still stored, so they are counted from the table.
    stored = read_rows(storage.duckdb_path, "step_importance", columns=["problem_id"])
    rows, _ = rows_of_current_problems(step_importance, problems)
    kept_stored, excluded = rows_of_current_problems(stored, problems)
    n_excluded_rows = stored.height - kept_stored.height
    if rows.is_empty():
        raise ValueError(
            "no step_importance rows for the current problems yet; run a sweep first: "
            "polydag sweep step-importance"
            + (f" ({len(excluded)} problems with rows are no longer in the problems table)" if excluded else "")
        )
    if excluded:
        context.log.warning(f"{len(excluded)} problems with step_importance rows are no longer in the problems "
                            f"table (e.g. {excluded[:3]}); their rows are kept but left out of the summary")
    cfg = config.spec()
    # the control's rows of the current problems (an empty frame before any control sweep)
    control_rows = read_rows(storage.duckdb_path, "step_importance_control",
                             problem_id=problems["problem_id"].to_list())
    parts = summarize_step_importance(rows, problems, early_positions=cfg.early_positions,
                                      late_positions=cfg.late_positions, control_rows=control_rows)
    table = pl.concat(
        [frame.with_columns(view=pl.lit(name)) for name, frame in parts.items()],
        how="diagonal_relaxed",
    )
    plot_path = storage.artifact_path("plots", "step_importance.png")
    plot_importance(parts["by_difficulty"], plot_path, parts["by_position"])
    encoded = base64.b64encode(Path(plot_path).read_bytes()).decode()
    return table_output(table, {
        "n_problems": rows["problem_id"].n_unique(),
        **_control_metadata(control_rows, parts["by_position"], storage),
        "n_excluded_problems": len(excluded),
        "n_excluded_rows": n_excluded_rows,
        "excluded_problems": MetadataValue.json(excluded[:100]),
        "excluded_rows_policy": "rows of problems no longer in the problems table are kept in step_importance "
                                "and left out of this summary",
        **{name: MetadataValue.md(markdown_table(frame)) for name, frame in parts.items()},
        "plot": MetadataValue.md(f"![importance by position](data:image/png;base64,{encoded})"),
    })


MODEL_COLUMNS = ["kind", "latent_thoughts", "train_steps", "train_wall_s", "heldout_accuracy", "n_heldout", "sha256"]


def _control_metadata(control_rows: pl.DataFrame, by_position: pl.DataFrame, storage: PolydagStorage) -> dict:
    """Whether the control model's curve is in the summary, over how many problems, how many
    positions of the model it cannot be told apart from, and the two models side by side: the
    training time budget can end their runs after different numbers of steps on a busy
    machine, and a control that trained less is a weaker control."""
    if control_rows.is_empty():
        return {"control": "absent: step_importance_control has no rows for the current problems "
                           "(polydag sweep step-importance --control); the control columns are null",
                "n_control_problems": 0}
    compared = by_position.filter(pl.col("within_control_band").is_not_null())
    models = pl.concat([read_rows(storage.duckdb_path, name).with_columns(asset=pl.lit(name))
                        for name in ("codi_model", "codi_control_model")], how="diagonal_relaxed")
    return {
        "control": "present",
        "n_control_problems": control_rows["problem_id"].n_unique(),
        "n_positions_compared": compared.height,
        "n_positions_within_control_band": int(compared["within_control_band"].sum()),
        "models": MetadataValue.md(markdown_table(models, ["asset"] + [c for c in MODEL_COLUMNS if c in models.columns])),
    }
