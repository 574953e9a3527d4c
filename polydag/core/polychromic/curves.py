"""The training curves of the λ partitions as one picture (what W&B would show).

:func:`plot_training_curves` draws quality loss, diversity score, combined loss, diversity
gradient share and learning rate against the step, one line per λ and seed (``seed_key``;
a log without it is seed 0's), from ``training_log`` rows. The ``lora_checkpoints`` asset
draws one picture per λ, so each shows that λ's seeds side by side.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl

PANELS = (("quality_loss", "quality loss (reply CE)"), ("diversity_score", "diversity score D(S)"),
          ("combined_loss", "combined loss"), ("diversity_grad_share", "diversity gradient share"),
          ("learning_rate", "learning rate"))


def plot_training_curves(log: pl.DataFrame, path: str | Path) -> Path:
    """PNG of ``log`` (training_log rows of one or more λ) at ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    missing = [c for c, _ in PANELS if c not in log.columns] + [c for c in ("lambda_key", "step") if c not in log.columns]
    if missing:
        raise ValueError(f"training_log rows lack column(s) {missing}")
    if log.is_empty():
        raise ValueError("no training_log rows to plot")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if "seed_key" not in log.columns:
        log = log.with_columns(seed_key=pl.lit("0"))
    keys = ["lambda_key", "seed_key"]
    fig, grid = plt.subplots(2, 3, figsize=(13, 6.5))
    axes = grid.flat
    grid.flat[-1].axis("off")
    for ax, (column, title) in zip(axes, PANELS):
        for group_key, group in log.sort("step").group_by(keys, maintain_order=True):
            points = group.filter(pl.col(column).is_not_null() & pl.col(column).is_not_nan())
            if points.is_empty():
                continue
            label = f"λ={group_key[0]} seed {group_key[1]}"
            ax.plot(points["step"].to_list(), points[column].to_list(), marker="." if points.height < 40 else None,
                    linewidth=1.2, label=label)
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("step")
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
