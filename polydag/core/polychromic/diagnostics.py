"""Why λ did (or did not) change anything: the training's own numbers, per λ and seed.

A diversity objective can only move the samples as far as its training moved the policy. The
numbers that say how far, from the ``lora_checkpoints`` rows (the trainer records them):

- ``mean_diversity_grad_share``: the diversity term's share of the gradient norm on diversity
  steps (0 at λ = 0, and for the researchers' float-valued term);
- ``n_effective_diversity_steps`` of ``n_diversity_steps``: diversity steps whose advantages
  were not all zero. A prompt whose samples are identical, or all equally far apart, gives
  every sample advantage 0 and so no diversity gradient, whatever λ is;
- ``mean_advantage_std``: how large the score-function signal was (the standard deviation of
  the per-sample advantages A_i; the term's gradient scales with λ times it);
- ``kl_to_base`` and ``kl_vs_lambda0``: how far the adapter moved from the base in nats per
  reply token, and that over λ = 0's of the same seed. A ratio near 1 means cross-entropy did
  the moving and the diversity term added little.

These are facts about training, reported next to the verdict so a null result comes with its
reasons; no bar or test depends on them.
"""

from __future__ import annotations

import polars as pl

from polydag.core.polychromic.lambdas import lambda_value

DIAGNOSTIC_COLUMNS = ("n_diversity_steps", "n_effective_diversity_steps", "mean_diversity_grad_share",
                      "mean_advantage_std", "kl_to_base")


def training_diagnostics(checkpoints: pl.DataFrame) -> pl.DataFrame:
    """One row per (λ, seed) of ``checkpoints`` (``lora_checkpoints`` rows): the columns of
    :data:`DIAGNOSTIC_COLUMNS` and ``kl_vs_lambda0``, sorted by λ then seed. Rows from before
    these numbers were recorded have them null."""
    if checkpoints.is_empty():
        return pl.DataFrame()
    present = [c for c in DIAGNOSTIC_COLUMNS if c in checkpoints.columns]
    table = checkpoints.select(
        "lambda_key", "seed_key",
        *present,
        *[pl.lit(None, dtype=pl.Float64).alias(c) for c in DIAGNOSTIC_COLUMNS if c not in present],
    ).with_columns(pl.col("lambda_key").map_elements(lambda_value, return_dtype=pl.Float64)
                   .alias("diversity_weight"))
    baseline = (table.filter(pl.col("diversity_weight") == 0)
                .select("seed_key", pl.col("kl_to_base").alias("_kl0")))
    table = table.join(baseline, on="seed_key", how="left").with_columns(
        (pl.col("kl_to_base") / pl.col("_kl0")).alias("kl_vs_lambda0"))
    return table.drop("_kl0").sort("diversity_weight", "seed_key").select(
        "lambda_key", "seed_key", "diversity_weight", *DIAGNOSTIC_COLUMNS, "kl_vs_lambda0")


def _num(value, fmt: str) -> str:
    return "–" if value is None else format(value, fmt)


def diagnostics_markdown(diagnostics: pl.DataFrame) -> str:
    """The diagnostics as a Markdown table, with one line on how to read it."""
    if diagnostics.is_empty():
        return "No trained adapters yet."
    header = ["λ", "seed", "diversity steps (effective / all)", "grad share", "advantage std",
              "KL to base (nats/token)", "KL ÷ λ = 0's"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for r in diagnostics.iter_rows(named=True):
        lines.append("| " + " | ".join([
            r["lambda_key"], r["seed_key"],
            f"{_num(r['n_effective_diversity_steps'], 'd')} / {_num(r['n_diversity_steps'], 'd')}",
            _num(r["mean_diversity_grad_share"], ".3f"), _num(r["mean_advantage_std"], ".4f"),
            _num(r["kl_to_base"], ".4f"), _num(r["kl_vs_lambda0"], ".2f"),
        ]) + " |")
    lines += ["", "How far training moved each adapter, and how much of that the diversity term drove: "
              "an effective diversity step has some non-zero advantage; the gradient of the term scales with "
              "λ × the advantages' spread; KL ÷ λ = 0's near 1 means cross-entropy did the moving."]
    return "\n".join(lines)
