"""A tiny code location for the daemon test of the fill schedule (``test_fill_daemon.py``).

The schedule is polydag's own ``build_fill_schedule``; only the assets are stand-ins, cheap
enough for a real daemon tick: each run of ``per_letter`` writes which partition keys it got
to ``$POLYDAG_PROBE_DIR/<run_id>.json``.
"""

import json
import os
from pathlib import Path

from dagster import (
    AssetExecutionContext,
    BackfillPolicy,
    Definitions,
    DynamicPartitionsDefinition,
    asset,
)

from polydag.defs.automation import build_fill_schedule

letters = DynamicPartitionsDefinition(name="letter")


@asset
def source() -> None:
    """Unpartitioned root (recorded as materialized by the test)."""


@asset(partitions_def=letters, backfill_policy=BackfillPolicy.multi_run(2), deps=[source])
def per_letter(context: AssetExecutionContext) -> None:
    out = Path(os.environ["POLYDAG_PROBE_DIR"]) / f"{context.run.run_id}.json"
    out.write_text(json.dumps({"asset": "per_letter", "keys": list(context.partition_keys)}))


@asset(deps=[per_letter])
def letters_summary(context: AssetExecutionContext) -> None:
    out = Path(os.environ["POLYDAG_PROBE_DIR"]) / f"{context.run.run_id}.json"
    out.write_text(json.dumps({"asset": "letters_summary", "keys": None}))


ASSETS = [source, per_letter, letters_summary]
defs = Definitions(assets=ASSETS, schedules=[build_fill_schedule(ASSETS, cron_schedule="* * * * *")])
