"""Dose-response: does a metric move monotonically with λ? Page's L test on per-prompt values.

The pairwise comparisons ask "does this λ differ from λ = 0"; a dose-response test asks the
question a diversity weight should answer: more λ, more diversity. Page's test
(``scipy.stats.page_trend_test``) fits the design exactly: blocks are the test prompts (each
sampled under every λ), treatments are the λ values in ascending order, and the alternative is
an ordered one (m_λ1 ≤ m_λ2 ≤ ...), so it has more power against a trend than Friedman's test
and uses every λ at once.

Values are oriented so that larger is better (Self-BLEU is negated), so:

- ``p_better``: one-sided p of "the metric gets better as λ grows";
- ``p_worse``: the same test with the λ order reversed ("gets worse as λ grows");
- ``page_l``: Page's L of the "better" ordering.

Rows: one per seed (the λ values that have that seed, prompts with a value under each), and
pooled (``seed_key = "pooled"``): per prompt and λ, the mean over the seeds every λ has. A
test needs ≥ 3 λ values and ≥ 2 prompts; otherwise its p-values are null and ``note`` says
why. Within-prompt ties (discrete metrics such as ``distinct_k`` or pass@1) get average ranks;
scipy's exact null distribution assumes untied ranks, so with ties the asymptotic p is used,
which is conservative (ties shrink L's variance below the untied one). The p-values are not
adjusted across metrics.
"""

from __future__ import annotations

import warnings
from typing import Sequence

import numpy as np
import polars as pl

from polydag.core.polychromic.lambdas import lambda_value
from polydag.core.evaluation.metrics.registry import metric_info
from polydag.core.evaluation.metrics.seeds import POOLED_SEED_KEY, seed_order, with_seed_columns
from polydag.core.evaluation.metrics.summary import _require_columns

TREND_SCHEMA = {
    "seed_key": pl.String,
    "n_seeds": pl.Int64,
    "metric": pl.String,
    "higher_is_better": pl.Boolean,
    "lambda_keys": pl.String,
    "n_lambdas": pl.Int64,
    "n_prompts": pl.Int64,
    "page_l": pl.Float64,
    "p_better": pl.Float64,
    "p_worse": pl.Float64,
    "method": pl.String,
    "note": pl.String,
}

MIN_LAMBDAS, MIN_PROMPTS = 3, 2


def page_trend(blocks: np.ndarray) -> tuple[float, float, float, str]:
    """(L, p increasing, p decreasing, method) of an m prompts × n ordered treatments array."""
    from scipy.stats import page_trend_test

    ranks_tied = any(len(np.unique(row)) < row.size for row in blocks)
    method = "asymptotic" if ranks_tied else "auto"
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=RuntimeWarning)
        up = page_trend_test(blocks, method=method)
        down = page_trend_test(blocks[:, ::-1], method=method)
    return float(up.statistic), float(up.pvalue), float(down.pvalue), str(up.method)


def _trend_row(wide: pl.DataFrame, lambda_keys: list[str], metric: str, seed_key: str, n_seeds: int) -> dict:
    info = metric_info(metric)
    row = {"seed_key": seed_key, "n_seeds": n_seeds, "metric": metric, "higher_is_better": info.higher_is_better,
           "lambda_keys": ",".join(lambda_keys), "n_lambdas": len(lambda_keys), "n_prompts": 0,
           "page_l": None, "p_better": None, "p_worse": None, "method": None, "note": None}
    if len(lambda_keys) < MIN_LAMBDAS:
        row["note"] = f"needs ≥ {MIN_LAMBDAS} λ values, has {len(lambda_keys)}"
        return row
    columns = [f"{metric}@{k}" for k in lambda_keys]
    blocks = wide.select(columns).drop_nulls().drop_nans().to_numpy().astype(np.float64)
    row["n_prompts"] = int(blocks.shape[0])
    if blocks.shape[0] < MIN_PROMPTS:
        row["note"] = f"needs ≥ {MIN_PROMPTS} prompts with a value under every λ, has {blocks.shape[0]}"
        return row
    oriented = blocks if info.higher_is_better else -blocks
    row["page_l"], row["p_better"], row["p_worse"], row["method"] = page_trend(oriented)
    return row


def _wide(frame: pl.DataFrame, metrics: Sequence[str], lambda_keys: list[str]) -> pl.DataFrame:
    """prompt_id × (metric@λ) from one value per (λ, prompt)."""
    out = None
    for key in lambda_keys:
        part = frame.filter(pl.col("lambda_key") == key).select(
            "prompt_id", *[pl.col(m).cast(pl.Float64).fill_nan(None).alias(f"{m}@{key}") for m in metrics])
        out = part if out is None else out.join(part, on="prompt_id", how="inner")
    return out


def dose_response_trends(metrics_df: pl.DataFrame, metrics: Sequence[str]) -> pl.DataFrame:
    """One row per (seed, metric) and per (pooled, metric) with Page's test (see module doc).

    ``metrics_df`` is the per-prompt table (``lambda_key``, ``prompt_id``, optional ``seed_key``
    and the metric columns); pass@k columns must already be there (``with_pass_at_k``).
    """
    _require_columns(metrics_df, ["lambda_key", "prompt_id", *metrics], "metrics table")
    table = with_seed_columns(metrics_df)
    rows = []
    all_keys = sorted(table.get_column("lambda_key").unique().to_list(), key=lambda_value)
    seed_keys = seed_order(table.get_column("seed_key").to_list())
    for seed_key in seed_keys:
        one = table.filter(pl.col("seed_key") == seed_key)
        keys = sorted(one.get_column("lambda_key").unique().to_list(), key=lambda_value)
        wide = _wide(one, metrics, keys)
        rows += [_trend_row(wide, keys, metric, seed_key, 1) for metric in metrics]
    seeds_of = {k: set(table.filter(pl.col("lambda_key") == k).get_column("seed_key").to_list()) for k in all_keys}
    common = set.intersection(*seeds_of.values()) if seeds_of else set()
    pooled = (table.filter(pl.col("seed_key").is_in(sorted(common)))
              .group_by("lambda_key", "prompt_id", maintain_order=True)
              .agg([pl.col(m).cast(pl.Float64).fill_nan(None).mean() for m in metrics]))
    wide = _wide(pooled, metrics, all_keys)
    for metric in metrics:
        row = _trend_row(wide, all_keys, metric, POOLED_SEED_KEY, len(common))
        if not common:
            row.update(page_l=None, p_better=None, p_worse=None, method=None, n_prompts=0,
                       note="no seed is shared by every λ")
        rows.append(row)
    return pl.DataFrame(rows, schema=TREND_SCHEMA)
