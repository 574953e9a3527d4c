"""Per-(λ, seed) and per-λ summary of the per-prompt metrics: means with bootstrap standard
errors, and pass@k.

Rows: one per (λ, seed) (``seed_key`` as in the metrics table; a table without seeds is seed
"0"), then one pooled row per λ (``seed_key = "pooled"``, ``seed`` null, ``n_seeds`` the seeds
pooled). The pooled row first averages each prompt's values over the λ's seeds, then treats
those per-prompt means like one seed's values: prompts stay the resampled unit, seeds are
averaged (the same pooling as the pooled comparison).

For each row and metric m over the prompts where m is defined (non-null):

    m      = mean over prompts
    m_se   = bootstrap standard error: the standard deviation (ddof=1) of the means of
             ``n_boot`` resamples of the prompts with replacement (NaN with < 2 prompts)
    m_n    = number of prompts where m is defined

pass@k per prompt is the unbiased estimator from ``n_samples`` and ``n_passed`` (Chen et al.
2021; :func:`polydag.core.evaluation.metrics.pass_at_k.pass_at_k`), and ``pass_at_k`` is its mean over
prompts (with ``pass_at_k_se``). A k larger than some prompt's number of samples is refused
with an error naming the λ and prompt.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import polars as pl

from polydag.core.polychromic.lambdas import lambda_value
from polydag.core.evaluation.metrics.pass_at_k import pass_at_k
from polydag.core.evaluation.metrics.registry import (
    PER_PROMPT_METRICS,
    class_metric_columns,
    metric_info,
    pass_at_k_column,
)
from polydag.core.evaluation.metrics.seeds import POOLED_SEED_KEY, seed_order, with_seed_columns

DEFAULT_KS = (1, 5, 10)


def _require_columns(df: pl.DataFrame, columns: Sequence[str], what: str) -> None:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise ValueError(f"{what} lacks columns {missing}; it has {df.columns}")
    if df.height == 0:
        raise ValueError(f"{what} is empty")


def with_pass_at_k(metrics_df: pl.DataFrame, ks: Sequence[int] = DEFAULT_KS) -> pl.DataFrame:
    """``metrics_df`` plus one per-prompt ``pass_at_<k>`` column for each k."""
    _require_columns(metrics_df, ["lambda_key", "prompt_id", "n_samples", "n_passed"], "metrics table")
    n = metrics_df.get_column("n_samples").to_list()
    c = metrics_df.get_column("n_passed").to_list()
    impossible = [i for i, (ni, ci) in enumerate(zip(n, c)) if ni is None or ci is None or ci > ni or ci < 0]
    if impossible:
        row = metrics_df.row(impossible[0], named=True)
        raise ValueError(
            f"{len(impossible)} metric rows have n_passed > n_samples, a negative or a missing count "
            f"(e.g. lambda_key={row['lambda_key']!r}, prompt_id={row['prompt_id']!r}: "
            f"n_samples={row['n_samples']}, n_passed={row['n_passed']})"
        )
    columns = {}
    for k in ks:
        too_few = [i for i, ni in enumerate(n) if ni < k]
        if too_few:
            row = metrics_df.row(too_few[0], named=True)
            raise ValueError(
                f"pass@{k} needs at least {k} samples per prompt, but {len(too_few)} prompts have "
                f"fewer (e.g. lambda_key={row['lambda_key']!r}, prompt_id={row['prompt_id']!r}: "
                f"n_samples={row['n_samples']}); raise GenerationConfig.n_samples to ≥ {k} or "
                f"drop k={k} from ks"
            )
        columns[pass_at_k_column(k)] = [pass_at_k(int(ni), int(ci), int(k)) for ni, ci in zip(n, c)]
    return metrics_df.with_columns(pl.Series(name, values, dtype=pl.Float64) for name, values in columns.items())


def bootstrap_se(values: np.ndarray, n_boot: int, seed: int) -> float:
    """Bootstrap standard error of the mean of ``values`` (NaN with fewer than 2 values)."""
    values = np.asarray(values, dtype=np.float64)
    if values.size < 2:
        return float("nan")
    if n_boot < 2:
        raise ValueError(f"n_boot must be ≥ 2, got {n_boot}")
    rng = np.random.default_rng(seed)
    means = np.empty(n_boot)
    chunk = max(1, 2_000_000 // values.size)  # bound the index matrix to ~16 MB
    for start in range(0, n_boot, chunk):
        stop = min(n_boot, start + chunk)
        idx = rng.integers(0, values.size, size=(stop - start, values.size))
        means[start:stop] = values[idx].mean(axis=1)
    return float(means.std(ddof=1))


def _summary_row(part: pl.DataFrame, metric_names, n_boot: int, seed: int) -> dict:
    row = {}
    for m_index, name in enumerate(metric_names):
        if metric_info(name).aggregation != "mean":  # the registry's only aggregation today
            raise ValueError(f"summary cannot aggregate {name!r} by {metric_info(name).aggregation!r}")
        values = part.get_column(name).drop_nulls().drop_nans().to_numpy().astype(np.float64)
        row[name] = float(values.mean()) if values.size else None
        se = bootstrap_se(values, n_boot, seed + m_index)
        row[f"{name}_se"] = None if np.isnan(se) else se
        row[f"{name}_n"] = int(values.size)
    return row


def summarize_metrics(
    metrics_df: pl.DataFrame,
    ks: Sequence[int] = DEFAULT_KS,
    n_boot: int = 1000,
    seed: int = 0,
) -> pl.DataFrame:
    """Per (lambda_key, seed_key) and pooled per lambda_key: ``n_seeds``, ``n_prompts``,
    ``n_samples``, ``n_passed`` (totals), and for each diversity metric, each class metric the
    table has (``distinct_k``, ``coverage``, ``pass_at_<k>_distinct_<m>``) and ``pass_at_<k>``:
    the mean, ``<m>_se`` and ``<m>_n`` (see module doc)."""
    _require_columns(metrics_df, ["lambda_key", "prompt_id", *PER_PROMPT_METRICS], "metrics table")
    table = with_seed_columns(with_pass_at_k(metrics_df, ks))
    metric_names = [*PER_PROMPT_METRICS, *class_metric_columns(table.columns), *(pass_at_k_column(k) for k in ks)]
    rows = []
    for lambda_key in sorted(table.get_column("lambda_key").unique().to_list(), key=lambda_value):
        part = table.filter(pl.col("lambda_key") == lambda_key)
        seed_keys = seed_order(part.get_column("seed_key").to_list())
        for seed_key in seed_keys:
            one = part.filter(pl.col("seed_key") == seed_key)
            rows.append({
                "lambda_key": lambda_key,
                "diversity_weight": lambda_value(lambda_key),
                "seed_key": seed_key,
                "seed": one.get_column("seed")[0],
                "n_seeds": 1,
                "n_prompts": one.height,
                "n_samples": int(one.get_column("n_samples").sum()),
                "n_passed": int(one.get_column("n_passed").sum()),
                **_summary_row(one, metric_names, n_boot, seed),
            })
        # per prompt, the mean over seeds (nulls left out), then the same statistics
        per_prompt = part.group_by("prompt_id", maintain_order=True).agg(
            [pl.col(name).cast(pl.Float64).fill_nan(None).mean() for name in metric_names]
        )
        rows.append({
            "lambda_key": lambda_key,
            "diversity_weight": lambda_value(lambda_key),
            "seed_key": POOLED_SEED_KEY,
            "seed": None,
            "n_seeds": len(seed_keys),
            "n_prompts": per_prompt.height,
            "n_samples": int(part.get_column("n_samples").sum()),
            "n_passed": int(part.get_column("n_passed").sum()),
            **_summary_row(per_prompt, metric_names, n_boot, seed),
        })
    schema = {"lambda_key": pl.String, "diversity_weight": pl.Float64, "seed_key": pl.String, "seed": pl.Int64,
              "n_seeds": pl.Int64, "n_prompts": pl.Int64, "n_samples": pl.Int64, "n_passed": pl.Int64}
    for name in metric_names:
        schema.update({name: pl.Float64, f"{name}_se": pl.Float64, f"{name}_n": pl.Int64})
    return pl.DataFrame(rows, schema=schema)


def pooled_rows(summary_df: pl.DataFrame) -> pl.DataFrame:
    """The pooled (one per λ) rows of a summary table; a table without seeds is all pooled."""
    if "seed_key" not in summary_df.columns:
        return summary_df
    return summary_df.filter(pl.col("seed_key") == POOLED_SEED_KEY)
