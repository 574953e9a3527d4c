"""Every resource of the code location, over one data directory.

Tests build the same resources over a temporary directory with ``build_resources(tmp_path)``.
"""

import os
from pathlib import Path

from dagster_duckdb import DuckDBResource

from polydag.core.ops import paths
from polydag.defs.polychromic.resources import CollapseAlerting
from polydag.defs.storage.costs import CostModel
from polydag.defs.storage.io_manager import PolydagDuckDBIOManager
from polydag.defs.storage.resources import PolydagStorage


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
