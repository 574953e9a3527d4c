"""What a materialization cost: wall seconds × devices × price per device-hour, kept in `costs`.

Formula (per materialization):

    device_hours = wall_s / 3600 × n_devices
    gpu_hours    = device_hours if the device is a GPU, else 0
    cost_usd     = device_hours × price_per_hour   (gpu_hour_usd or cpu_hour_usd)

The price is an estimate the deployment configures (on-demand rental price of the device);
wall time is what the step really took, so a slow CPU run is cheap per hour but long. Every
record is appended (a re-run costs again), so ``total_sweep_cost`` is what the sweep has spent.
Rows are written with a short-lived connection (``polydag.core.storage.duck``) so a reader never makes
a run fail. This module never imports dagster.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Sequence

from polydag.core.storage import duck

COSTS_TABLE = "costs"
_CREATE = f"""
CREATE TABLE IF NOT EXISTS {COSTS_TABLE} (
    run_id VARCHAR, asset VARCHAR, partition_keys VARCHAR, device VARCHAR, n_devices INTEGER,
    wall_s DOUBLE, device_hours DOUBLE, gpu_hours DOUBLE, price_per_hour DOUBLE,
    cost_usd DOUBLE, recorded_at TIMESTAMP
)"""


def is_gpu_device(device: str) -> bool:
    """``cuda``, ``cuda:1``, ``gpu`` are GPUs; ``cpu`` is not; anything else is an error (a
    typo must not be billed at the wrong price)."""
    name = str(device).strip().lower()
    if name == "cpu":
        return False
    if name in ("cuda", "gpu", "mps") or name.startswith("cuda:"):
        return True
    raise ValueError(f"unknown device {device!r} for cost accounting: expected cpu, cuda or cuda:N")


@dataclass(frozen=True)
class CostEstimate:
    device: str
    n_devices: int
    wall_s: float
    device_hours: float
    gpu_hours: float
    price_per_hour: float
    cost_usd: float


def estimate_cost(
    wall_s: float, device: str, *, cpu_hour_usd: float, gpu_hour_usd: float, n_devices: int = 1
) -> CostEstimate:
    """The cost of ``wall_s`` seconds on ``n_devices`` devices of kind ``device``."""
    if not (isinstance(wall_s, (int, float)) and math.isfinite(wall_s) and wall_s >= 0):
        raise ValueError(f"wall_s must be a finite number ≥ 0, got {wall_s!r}")
    if n_devices < 1:
        raise ValueError(f"n_devices must be ≥ 1, got {n_devices}")
    for name, price in (("cpu_hour_usd", cpu_hour_usd), ("gpu_hour_usd", gpu_hour_usd)):
        if not (math.isfinite(price) and price >= 0):
            raise ValueError(f"{name} must be a finite price ≥ 0, got {price!r}")
    gpu = is_gpu_device(device)
    device_hours = wall_s / 3600.0 * n_devices
    price = gpu_hour_usd if gpu else cpu_hour_usd
    return CostEstimate(
        device=str(device),
        n_devices=n_devices,
        wall_s=float(wall_s),
        device_hours=device_hours,
        gpu_hours=device_hours if gpu else 0.0,
        price_per_hour=float(price),
        cost_usd=device_hours * price,
    )


def record_cost(
    db_path: str | Path,
    estimate: CostEstimate,
    *,
    run_id: str,
    asset: str,
    partition_keys: Sequence[str] = (),
    logger: logging.Logger | None = None,
) -> dict:
    """Append one row to the ``costs`` table; return the row (without the timestamp) as plain
    metadata values."""
    logger = logger or logging.getLogger(__name__)
    row = {
        "run_id": run_id,
        "asset": asset,
        "partition_keys": json.dumps(list(partition_keys)),
        **asdict(estimate),
    }
    with duck.connect(db_path) as con:
        con.execute(_CREATE)
        con.execute(
            f"INSERT INTO {COSTS_TABLE} (run_id, asset, partition_keys, device, n_devices, wall_s,"
            " device_hours, gpu_hours, price_per_hour, cost_usd, recorded_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [row["run_id"], row["asset"], row["partition_keys"], row["device"], row["n_devices"],
             row["wall_s"], row["device_hours"], row["gpu_hours"], row["price_per_hour"],
             row["cost_usd"], datetime.now(timezone.utc).replace(tzinfo=None)],
        )
    logger.info(
        f"cost of {asset} {list(partition_keys) or ''}: {estimate.wall_s:.1f}s on "
        f"{estimate.n_devices}× {estimate.device} = {estimate.device_hours:.4f} device-h "
        f"× ${estimate.price_per_hour:.2f}/h = ${estimate.cost_usd:.4f}"
    )
    return row


def total_sweep_cost(db_path: str | Path) -> dict:
    """Everything the recorded materializations cost: totals and per asset.

    ``n_records`` is 0 (and every total 0.0) when nothing has been recorded yet; a missing
    database file is an error (``FileNotFoundError`` from ``duck.connect``)."""
    with duck.connect(db_path, read_only=True) as con:
        if not duck.table_exists(con, COSTS_TABLE):
            rows = []
        else:
            rows = con.execute(
                f"SELECT asset, count(*), sum(wall_s), sum(device_hours), sum(gpu_hours),"
                f" sum(cost_usd) FROM {COSTS_TABLE} GROUP BY asset ORDER BY asset"
            ).fetchall()
    by_asset = {
        asset: {"n_records": n, "wall_s": wall, "device_hours": dh, "gpu_hours": gh, "cost_usd": usd}
        for asset, n, wall, dh, gh, usd in rows
    }
    return {
        "n_records": sum(v["n_records"] for v in by_asset.values()),
        "wall_s": sum(v["wall_s"] for v in by_asset.values()),
        "device_hours": sum(v["device_hours"] for v in by_asset.values()),
        "gpu_hours": sum(v["gpu_hours"] for v in by_asset.values()),
        "cost_usd": sum(v["cost_usd"] for v in by_asset.values()),
        "by_asset": by_asset,
    }
