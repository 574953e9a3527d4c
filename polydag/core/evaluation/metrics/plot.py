"""One PNG: λ (diversity weight) against each metric, mean ± 95% CI, significant λ marked.

Error bars are mean ± 1.96 × bootstrap SE from the summary table (a normal-approximation 95%
CI of each λ's mean). A filled star marks a λ whose paired comparison with the baseline has a
Holm-adjusted p < alpha. Uses the non-interactive Agg backend, so it works headless.
"""

from __future__ import annotations

import math
from pathlib import Path

import polars as pl

from polydag.core.evaluation.metrics.registry import PER_PROMPT_METRICS, metric_info, pass_at_k_of


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
        metrics += sorted((c for c in summary_df.columns if pass_at_k_of(c) is not None), key=pass_at_k_of)
    missing = [m for m in metrics if m not in summary_df.columns or f"{m}_se" not in summary_df.columns]
    if missing:
        raise ValueError(f"summary table lacks mean/_se columns for {missing}; it has {summary_df.columns}")
    if summary_df.height == 0:
        raise ValueError("summary table is empty: nothing to plot")

    summary = summary_df.sort("diversity_weight")
    x = summary.get_column("diversity_weight").to_list()
    significant: dict[str, set[str]] = {}
    if comparison_df is not None and comparison_df.height:
        hits = comparison_df.filter(pl.col("p_holm").is_not_null() & (pl.col("p_holm") < alpha))
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
        ax.errorbar(x, y, yerr=err, marker="o", capsize=3, linewidth=1)
        for key, xi, yi in zip(summary.get_column("lambda_key").to_list(), x, y):
            if key in significant.get(metric, ()):
                ax.plot([xi], [yi], marker="*", markersize=12, color="tab:red", linestyle="none")
        better = "↑ better" if metric_info(metric).higher_is_better else "↓ better"
        ax.set_title(f"{metric} ({better})", fontsize=10)
        ax.set_xlabel("λ (diversity weight)")
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(metrics):]:
        ax.axis("off")
    fig.suptitle(f"mean ± 95% CI per λ; ★ = differs from baseline (Holm p < {alpha})", fontsize=10)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png", dpi=100)
    plt.close(fig)
    return path
