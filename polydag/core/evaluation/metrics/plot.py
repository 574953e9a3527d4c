"""One PNG: λ (diversity weight) against each metric, per seed and pooled, significant λ marked.

Each seed is a thin line (its per-λ means); the pooled row of each λ (per prompt, the mean over
seeds) is the thick line, with error bars mean ± 1.96 × bootstrap SE from the summary table (a
normal-approximation 95% CI of each λ's mean). A filled star marks a λ whose pooled paired
comparison with the baseline has a Holm-adjusted p < alpha. A summary without ``seed_key`` is
drawn as the pooled line alone. Uses the non-interactive Agg backend, so it works headless.
"""

from __future__ import annotations

import math
from pathlib import Path

import polars as pl

from polydag.core.evaluation.metrics.registry import PER_PROMPT_METRICS, class_metric_columns, metric_info, pass_at_k_of
from polydag.core.evaluation.metrics.seeds import POOLED_SEED_KEY, seed_order


def plot_comparison(
    summary_df: pl.DataFrame,
    comparison_df: pl.DataFrame | None,
    path: str | Path,
    *,
    alpha: float = 0.05,
    metrics: list[str] | None = None,
) -> Path:
    """Write the plot to ``path`` (PNG) and return the path."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    if metrics is None:
        metrics = [m for m in PER_PROMPT_METRICS if m in summary_df.columns]
        metrics += [m for m in class_metric_columns(summary_df.columns)
                    if summary_df.get_column(m).null_count() < summary_df.height]
        metrics += sorted((c for c in summary_df.columns if pass_at_k_of(c) is not None), key=pass_at_k_of)
    missing = [m for m in metrics if m not in summary_df.columns or f"{m}_se" not in summary_df.columns]
    if missing:
        raise ValueError(f"summary table lacks mean/_se columns for {missing}; it has {summary_df.columns}")
    if summary_df.height == 0:
        raise ValueError("summary table is empty: nothing to plot")

    summary = summary_df.sort("diversity_weight")
    seeds: dict[str, pl.DataFrame] = {}
    if "seed_key" in summary.columns:
        per_seed = summary.filter(pl.col("seed_key") != POOLED_SEED_KEY)
        seeds = {key: per_seed.filter(pl.col("seed_key") == key)
                 for key in seed_order(per_seed.get_column("seed_key").to_list())}
        summary = summary.filter(pl.col("seed_key") == POOLED_SEED_KEY)
    x = summary.get_column("diversity_weight").to_list()
    significant: dict[str, set[str]] = {}
    if comparison_df is not None and comparison_df.height:
        pooled = (comparison_df.filter(pl.col("seed_key") == POOLED_SEED_KEY)
                  if "seed_key" in comparison_df.columns else comparison_df)
        hits = pooled.filter(pl.col("p_holm").is_not_null() & (pl.col("p_holm") < alpha))
        for key, metric in hits.select("lambda_key", "metric").iter_rows():
            significant.setdefault(metric, set()).add(key)

    columns = min(4, len(metrics))
    rows = math.ceil(len(metrics) / columns)
    fig, axes = plt.subplots(rows, columns, figsize=(3.6 * columns, 3.0 * rows), squeeze=False)
    for ax, metric in zip(axes.flat, metrics):
        means = summary.get_column(metric).to_list()
        ses = summary.get_column(f"{metric}_se").to_list()
        y = [math.nan if m is None else m for m in means]
        err = [0.0 if s is None else 1.96 * s for s in ses]
        for seed_key, part in seeds.items():
            values = [math.nan if v is None else v for v in part.get_column(metric).to_list()]
            ax.plot(part.get_column("diversity_weight").to_list(), values, marker=".", linewidth=0.7,
                    alpha=0.6, color="tab:gray", label=f"seed {seed_key}" if len(seeds) <= 5 else None)
        ax.errorbar(x, y, yerr=err, marker="o", capsize=3, linewidth=2.2, color="tab:blue",
                    label="pooled ± 95% CI")
        for key, xi, yi in zip(summary.get_column("lambda_key").to_list(), x, y):
            if key in significant.get(metric, ()):
                ax.plot([xi], [yi], marker="*", markersize=12, color="tab:red", linestyle="none")
        better = "↑ better" if metric_info(metric).higher_is_better else "↓ better"
        ax.set_title(f"{metric} ({better})", fontsize=10)
        ax.set_xlabel("λ (diversity weight)")
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(metrics):]:
        ax.axis("off")
    if seeds:
        axes.flat[0].legend(fontsize=7)
    fig.suptitle(f"per seed (thin) and pooled over {len(seeds) or 1} seed(s) (thick, mean ± 95% CI) per λ; "
                 f"★ = pooled test differs from baseline (Holm p < {alpha})", fontsize=10)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png", dpi=100)
    plt.close(fig)
    return path
