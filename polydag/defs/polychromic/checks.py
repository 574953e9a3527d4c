"""Asset checks of the training half. Each calls a plain validation function from core."""


import polars as pl
from dagster import (
    AssetCheckExecutionContext,
    AssetCheckResult,
    AssetCheckSeverity,
    MetadataValue,
    asset_check,
)

from polydag.core.storage.duck import read_rows
from polydag.defs.partitions import sweep_key
from polydag.core.storage.tables import markdown_table
from polydag.defs.polychromic.assets import lora_checkpoints, reply_pairs
from polydag.defs.storage.resources import PolydagStorage


def _rows_result(bad: pl.DataFrame, what: str, severity: AssetCheckSeverity) -> AssetCheckResult:
    return AssetCheckResult(
        passed=bad.is_empty(),
        severity=severity,
        description=f"{bad.height} row(s) with {what}" if bad.height else f"no {what}",
        metadata={
            "n_bad_rows": bad.height,
            "examples": MetadataValue.md(markdown_table(bad.head(10)) if bad.height else "none"),
        },
    )


@asset_check(asset=reply_pairs, blocking=True, description="No empty prompt or reply text.")
def reply_pairs_no_empty_texts(reply_pairs: pl.DataFrame) -> AssetCheckResult:
    from polydag.core.polychromic.reply_pairs import find_empty_texts

    return _rows_result(find_empty_texts(reply_pairs), "empty text", AssetCheckSeverity.ERROR)


@asset_check(asset=reply_pairs, description="No exact duplicate (prompt, reply) pairs.")
def reply_pairs_no_exact_duplicates(reply_pairs: pl.DataFrame) -> AssetCheckResult:
    from polydag.core.polychromic.reply_pairs import find_exact_duplicates

    return _rows_result(
        find_exact_duplicates(reply_pairs), "exact duplicates", AssetCheckSeverity.WARN
    )


@asset_check(
    asset=reply_pairs, blocking=True, description="No prompt appears in more than one split."
)
def reply_pairs_no_prompt_leakage(reply_pairs: pl.DataFrame) -> AssetCheckResult:
    from polydag.core.polychromic.reply_pairs import find_prompt_leakage

    return _rows_result(
        find_prompt_leakage(reply_pairs), "prompt leakage across splits", AssetCheckSeverity.ERROR
    )


@asset_check(
    asset=lora_checkpoints,
    blocking=True,
    description="Every λ > 0 adapter was trained with a diversity gradient that is not zero "
    "(a float-valued diversity term, the researchers' bug, has none).",
)
def lora_diversity_gradient_nonzero(
    context: AssetCheckExecutionContext, storage: PolydagStorage
) -> AssetCheckResult:
    from polydag.core.polychromic.gradient_audit import zero_gradient_lambdas

    units = [sweep_key(key) for key in context.partition_keys]
    keys = sorted({unit.lambda_key for unit in units})
    log = read_rows(storage.duckdb_path, "training_log",
                    columns=["lambda_key", "seed_key", "diversity_grad_share"], lambda_key=keys,
                    seed_key=sorted({unit.seed_key for unit in units}), committed=True)
    audit = zero_gradient_lambdas(log, keys)
    failing = audit.filter(~pl.col("ok"))
    return AssetCheckResult(
        passed=failing.is_empty(),
        description=(
            "λ " + ", ".join(failing["lambda_key"].to_list()) + " trained with a zero diversity "
            "gradient: the diversity term does not reach the weights"
            if failing.height
            else "every λ > 0 has a non-zero diversity gradient share"
        ),
        metadata={"audit": MetadataValue.md(markdown_table(audit))},
    )
