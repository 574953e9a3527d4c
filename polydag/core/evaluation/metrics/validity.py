"""Metric validity: which cheap diversity metric tracks ground-truth diversity on this task?

For each diversity metric (Distinct-1/2, Self-BLEU, semantic diversity, Vendi) the Spearman
rank correlation with the ground-truth ``distinct_k`` (distinct reply intents among the quality
replies) across the rows of the metrics table, one per (prompt, λ, seed), where both are
defined.

- ``spearman_rho``: the correlation as computed; ``rho_oriented`` multiplies it by −1 for a
  metric where lower means more diverse (Self-BLEU), so for every metric a positive
  ``rho_oriented`` means "this metric says more diverse where there are more distinct intents".
- ``ci_low``/``ci_high``: 95% bootstrap CI of ``rho_oriented`` (``scipy.stats.bootstrap``, BCa,
  percentile where BCa is undefined). The resampled unit is the **prompt**, with all of its
  (λ, seed) rows: rows of one prompt share its topic and difficulty, so resampling single rows
  would treat them as independent and give too narrow an interval. No p-value is reported for
  the same reason (spearmanr's assumes independent rows).

Ground truth only: rows whose ``distinct_k_source`` is "intent". With none (user data: classes
from the embedding partition, which is itself a proxy), every correlation is null and
``note`` says so; the asset reports it and never fails.
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path
from typing import Sequence

import numpy as np
import polars as pl

from polydag.core.evaluation.metrics.registry import PER_PROMPT_METRICS, metric_info

TARGET = "distinct_k"
VALIDITY_SCHEMA = {
    "metric": pl.String,
    "higher_is_better": pl.Boolean,
    "target": pl.String,
    "n_rows": pl.Int64,
    "n_prompts": pl.Int64,
    "spearman_rho": pl.Float64,
    "rho_oriented": pl.Float64,
    "ci_low": pl.Float64,
    "ci_high": pl.Float64,
    "ci_method": pl.String,
    "resampled": pl.String,
    "note": pl.String,
}
NO_GROUND_TRUTH = ("no ground truth: the samples carry no reply intents (distinct_k_source is not 'intent'), "
                   "so there is nothing to validate the diversity metrics against")


def _spearman(x: np.ndarray, y: np.ndarray) -> float:
    from scipy.stats import spearmanr

    if x.size < 3 or np.all(x == x[0]) or np.all(y == y[0]):
        return math.nan
    return float(spearmanr(x, y).statistic)


def _bootstrap_ci(x: np.ndarray, y: np.ndarray, groups: list[np.ndarray], sign: float, *, n_boot: int,
                  seed: int, confidence: float) -> tuple[float | None, float | None, str | None]:
    """CI of sign × Spearman ρ(x, y), resampling prompts (``groups``: row indices of each prompt)."""
    from scipy.stats import bootstrap

    if len(groups) < 3:
        return None, None, None

    def statistic(prompt_index):
        rows = np.concatenate([groups[int(i)] for i in prompt_index])
        return sign * _spearman(x[rows], y[rows])

    prompts = np.arange(len(groups), dtype=np.float64)
    for method in ("BCa", "percentile"):
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore")  # degenerate resamples and BCa's 0/0 are handled below
            result = bootstrap((prompts,), statistic, vectorized=False, n_resamples=n_boot,
                               confidence_level=confidence, method=method, rng=np.random.default_rng(seed))
        low, high = float(result.confidence_interval.low), float(result.confidence_interval.high)
        if math.isfinite(low) and math.isfinite(high):
            return low, high, method
    return None, None, None


def metric_validity(
    metrics_df: pl.DataFrame,
    metrics: Sequence[str] = PER_PROMPT_METRICS,
    *,
    n_boot: int = 999,
    seed: int = 0,
    confidence: float = 0.95,
) -> pl.DataFrame:
    """One row per diversity metric: its rank correlation with ground-truth ``distinct_k``
    across (prompt, λ, seed) rows, with a prompt-bootstrap CI (see module doc)."""
    missing = [c for c in ("prompt_id", *metrics) if c not in metrics_df.columns]
    if missing:
        raise ValueError(f"metrics table lacks columns {missing}; it has {metrics_df.columns}")
    has_truth = TARGET in metrics_df.columns and "distinct_k_source" in metrics_df.columns
    truth = metrics_df.filter(pl.col("distinct_k_source") == "intent") if has_truth else metrics_df.head(0)
    rows = []
    for m_index, metric in enumerate(metrics):
        info = metric_info(metric)
        sign = 1.0 if info.higher_is_better else -1.0
        row = {"metric": metric, "higher_is_better": info.higher_is_better, "target": TARGET, "n_rows": 0,
               "n_prompts": 0, "spearman_rho": None, "rho_oriented": None, "ci_low": None, "ci_high": None,
               "ci_method": None, "resampled": "prompts", "note": None}
        if truth.height == 0:
            row["note"] = NO_GROUND_TRUTH
            rows.append(row)
            continue
        pairs = (truth.select("prompt_id", pl.col(metric).cast(pl.Float64).fill_nan(None),
                              pl.col(TARGET).cast(pl.Float64))
                 .drop_nulls().sort("prompt_id"))
        x = pairs.get_column(metric).to_numpy()
        y = pairs.get_column(TARGET).to_numpy()
        prompt_ids = pairs.get_column("prompt_id").to_list()
        groups: dict = {}
        for i, pid in enumerate(prompt_ids):
            groups.setdefault(pid, []).append(i)
        row.update(n_rows=int(x.size), n_prompts=len(groups))
        rho = _spearman(x, y)
        if math.isnan(rho):
            constant = "distinct_k" if y.size and np.all(y == y[0]) else metric
            row["note"] = (f"fewer than 3 rows with both values ({x.size})" if x.size < 3
                           else f"{constant} is constant over the rows: no rank correlation")
            rows.append(row)
            continue
        low, high, method = _bootstrap_ci(x, y, [np.asarray(g) for g in groups.values()], sign,
                                          n_boot=n_boot, seed=seed + m_index, confidence=confidence)
        row.update(spearman_rho=rho, rho_oriented=sign * rho, ci_low=low, ci_high=high, ci_method=method)
        if method is None:
            row["note"] = "no finite bootstrap CI (fewer than 3 prompts, or degenerate resamples)"
        rows.append(row)
    return pl.DataFrame(rows, schema=VALIDITY_SCHEMA)


def plot_validity(validity_df: pl.DataFrame, metrics_df: pl.DataFrame, path: str | Path) -> Path:
    """PNG: ρ (oriented, with CI) per metric, then each metric against distinct_k."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    metrics = validity_df.get_column("metric").to_list()
    truth = (metrics_df.filter(pl.col("distinct_k_source") == "intent")
             if {"distinct_k_source", TARGET} <= set(metrics_df.columns) else metrics_df.head(0))
    panels = 1 + len(metrics)
    columns = min(3, panels)
    n_rows = math.ceil(panels / columns)
    fig, axes = plt.subplots(n_rows, columns, figsize=(4.0 * columns, 3.2 * n_rows), squeeze=False)
    ax = axes.flat[0]
    rho = [math.nan if v is None else v for v in validity_df.get_column("rho_oriented").to_list()]
    low = [math.nan if v is None else v for v in validity_df.get_column("ci_low").to_list()]
    high = [math.nan if v is None else v for v in validity_df.get_column("ci_high").to_list()]
    err = np.array([[max(0.0, r - lo) if math.isfinite(lo) else 0.0 for r, lo in zip(rho, low)],
                    [max(0.0, hi - r) if math.isfinite(hi) else 0.0 for r, hi in zip(rho, high)]])
    positions = np.arange(len(metrics))
    ax.bar(positions, np.nan_to_num(rho), yerr=err, capsize=3, color="tab:blue")
    ax.axhline(0, color="black", linewidth=0.8)
    ax.set_xticks(positions, metrics, rotation=30, ha="right", fontsize=8)
    ax.set_ylim(-1.05, 1.05)
    ax.set_title("Spearman ρ with distinct_k (oriented, 95% CI)", fontsize=9)
    if truth.height == 0:
        ax.text(0.5, 0.5, "no ground truth", transform=ax.transAxes, ha="center", va="center")
    rng = np.random.default_rng(0)
    for ax, metric in zip(list(axes.flat)[1:], metrics):
        pairs = truth.select(pl.col(TARGET).cast(pl.Float64), pl.col(metric).cast(pl.Float64).fill_nan(None)).drop_nulls()
        x = pairs.get_column(TARGET).to_numpy()
        ax.scatter(x + rng.uniform(-0.15, 0.15, x.size), pairs.get_column(metric).to_numpy(), s=6, alpha=0.4)
        better = "↑ more diverse" if metric_info(metric).higher_is_better else "↓ more diverse"
        ax.set_title(f"{metric} ({better})", fontsize=9)
        ax.set_xlabel("distinct_k (ground-truth intents, jittered)", fontsize=8)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[panels:]:
        ax.axis("off")
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png", dpi=100)
    plt.close(fig)
    return path
