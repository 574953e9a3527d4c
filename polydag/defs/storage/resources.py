"""Resources: where the results database and artifacts live.

Both come from one data directory (``polydag.core.ops.paths``), so the IO manager, the direct SQL
resource and the artifact folders always agree. Tests build the same resources over a
temporary directory with ``build_resources(tmp_path)``.
"""


import os
from pathlib import Path
from typing import List, Optional

from dagster import ConfigurableResource
from pydantic import Field
from dagster_duckdb import DuckDBResource

from polydag.core.ops import paths
from polydag.defs.storage.io_manager import PolydagDuckDBIOManager
from polydag.defs.storage.costs import CostModel


class PolydagStorage(ConfigurableResource):
    """The results database file and the artifact folder of this deployment."""

    data_dir: str

    @property
    def duckdb_path(self) -> Path:
        return Path(self.data_dir) / "polydag.duckdb"

    @property
    def artifacts_dir(self) -> Path:
        return Path(self.data_dir) / "artifacts"

    @property
    def embedding_cache_dir(self) -> Path:
        """Sentence embeddings by text hash: the quality checker and metrics share them."""
        return Path(self.data_dir) / "cache" / "embeddings"

    def artifact_path(self, *parts: str) -> Path:
        path = self.artifacts_dir.joinpath(*parts)
        path.parent.mkdir(parents=True, exist_ok=True)
        return path


class CollapseAlerting(ConfigurableResource):
    """What the diversity-collapse sensors flag and what they do about it.

    The thresholds mirror ``polydag.core.polychromic.collapse.CollapseThresholds`` (documented there).
    ``build_resources`` reads the webhook URL from ``POLYDAG_ALERT_WEBHOOK_URL`` and the
    terminate switch from ``POLYDAG_TERMINATE_ON_COLLAPSE=1`` so a deployment sets them
    without editing code.
    """

    diversity_floor: float = Field(default=0.0, description="window mean of diversity_score ≤ this is flagged")
    max_relative_drop: float = Field(default=0.5, description="flag a drop of more than this fraction from the early mean")
    early_steps: int = Field(default=3, description="K: first K diversity steps form the early mean")
    window_steps: int = Field(default=3, description="W: last W diversity steps are evaluated")
    min_diversity_steps: int = Field(default=3, description="N: grad-share/combined flags wait for N diversity steps")
    grad_share_eps: float = Field(default=1e-8, description="a diversity_grad_share ≤ this counts as zero")
    combined_margin: float = Field(default=0.0, description="flag mean(combined) ≥ mean(quality) + margin (λ > 0)")
    watch_baseline: bool = Field(default=False, description="also apply floor/drop flags to λ = 0")
    alpha: float = Field(default=0.05, description="Holm-adjusted p below which 'diversity worse' is flagged")
    diversity_metrics: List[str] = Field(default=["distinct_2", "self_bleu", "semantic_diversity"])
    pass_at_k_metrics: List[str] = Field(default=["pass_at_10"])
    max_pass_at_k_drop: float = Field(default=0.5, description="flag pass@k relative change below −this")
    webhook_url: Optional[str] = Field(default=None, description="POST each new alert as JSON here")
    webhook_timeout_s: float = Field(default=5.0)
    terminate_on_collapse: bool = Field(
        default=False, description="cancel the training run a training alert names (if still running)")
    db_timeout_s: float = Field(
        default=2.0, description="how long a tick waits for a busy DuckDB file before skipping")

    def thresholds(self):
        from polydag.core.polychromic.collapse import CollapseThresholds

        return CollapseThresholds(
            diversity_floor=self.diversity_floor, max_relative_drop=self.max_relative_drop,
            early_steps=self.early_steps, window_steps=self.window_steps,
            min_diversity_steps=self.min_diversity_steps, grad_share_eps=self.grad_share_eps,
            combined_margin=self.combined_margin, watch_baseline=self.watch_baseline,
            alpha=self.alpha, diversity_metrics=tuple(self.diversity_metrics),
            pass_at_k_metrics=tuple(self.pass_at_k_metrics),
            max_pass_at_k_drop=self.max_pass_at_k_drop,
        )


def build_resources(data_dir: str | Path | None = None) -> dict:
    data_dir = Path(data_dir) if data_dir is not None else paths.data_dir()
    storage = PolydagStorage(data_dir=str(data_dir))
    database = str(storage.duckdb_path)
    return {
        "storage": storage,
        # schema "main" (not a key prefix): `SELECT * FROM metrics` works without a schema
        # and `--select 'metrics*'` keeps matching (a key prefix breaks it).
        "io_manager": PolydagDuckDBIOManager(database=database, schema="main"),
        "duckdb": DuckDBResource(database=database),
        # price per device-hour for the `costs` table (polydag.core.storage.costs)
        "cost_model": CostModel(
            cpu_hour_usd=float(os.environ.get("POLYDAG_CPU_HOUR_USD", "0.05")),
            gpu_hour_usd=float(os.environ.get("POLYDAG_GPU_HOUR_USD", "2.50")),
        ),
        "collapse_alerting": CollapseAlerting(
            webhook_url=os.environ.get("POLYDAG_ALERT_WEBHOOK_URL") or None,
            terminate_on_collapse=os.environ.get("POLYDAG_TERMINATE_ON_COLLAPSE", "") == "1",
        ),
    }
