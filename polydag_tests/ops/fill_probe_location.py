"""A tiny code location for the daemon test of the fill sensor (``test_fill_daemon.py``).

The condition and the sensor are polydag's own (``with_fill_condition``, ``build_fill_sensor``);
only the assets are stand-ins, cheap enough for real daemon ticks and runs: each run of
``per_letter`` or ``letters_summary`` writes which partition keys it got to
``$POLYDAG_PROBE_DIR/<run_id>.json``.
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

from polydag.defs.automation import build_fill_sensor, with_fill_condition

letters = DynamicPartitionsDefinition(name="letter")


def _probe(context: AssetExecutionContext, keys) -> None:
    out = Path(os.environ["POLYDAG_PROBE_DIR"]) / f"{context.run.run_id}.json"
    out.write_text(json.dumps({"asset": context.asset_key.to_user_string(), "keys": keys}))


@asset
def source() -> None:
    """Unpartitioned root (recorded as materialized by the test)."""


@asset(partitions_def=letters, backfill_policy=BackfillPolicy.multi_run(2), deps=[source])
def per_letter(context: AssetExecutionContext) -> None:
    _probe(context, list(context.partition_keys))


@asset(deps=[per_letter])
def letters_summary(context: AssetExecutionContext) -> None:
    _probe(context, None)


defs = Definitions(assets=with_fill_condition([source, per_letter, letters_summary]),
                   sensors=[build_fill_sensor()])
