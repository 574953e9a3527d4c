"""A tiny code location for the launcher tests: one GPU asset and one CPU asset.

Each asset writes one JSON line per run to ``$POLYDAG_PROBE_DIR/<run_id>.json`` with what its
process saw: ``CUDA_VISIBLE_DEVICES``, its pid and parent pid, and the wall-clock times it
started and finished (it sleeps ``$POLYDAG_PROBE_SLEEP_S`` seconds in between, long enough for
runs to overlap if the launcher lets them). The GPU asset carries exactly the conventions of
polydag's GPU assets: ``op_tags={"polydag/gpu": "1"}`` and ``pool="gpu"``; no run tags.
"""

import json
import os
import time
from pathlib import Path

from dagster import (
    AssetExecutionContext,
    Definitions,
    asset,
    define_asset_job,
    in_process_executor,
)


def _record(context: AssetExecutionContext, kind: str) -> None:
    start = time.time()
    time.sleep(float(os.environ.get("POLYDAG_PROBE_SLEEP_S", "3")))
    record = {
        "run_id": context.run.run_id,
        "kind": kind,
        "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
        "pid": os.getpid(),
        "ppid": os.getppid(),
        "start": start,
        "end": time.time(),
    }
    out = Path(os.environ["POLYDAG_PROBE_DIR"]) / f"{context.run.run_id}.json"
    out.write_text(json.dumps(record))


@asset(op_tags={"polydag/gpu": "1"}, pool="gpu")
def gpu_probe(context: AssetExecutionContext) -> None:
    _record(context, "gpu")


@asset
def cpu_probe(context: AssetExecutionContext) -> None:
    _record(context, "cpu")


@asset(op_tags={"polydag/gpu": "1"})
def tagged_probe(context: AssetExecutionContext) -> None:
    """GPU by op tag alone (no pool): the launcher must still see it."""
    _record(context, "gpu")


defs = Definitions(
    assets=[gpu_probe, cpu_probe, tagged_probe],
    jobs=[
        define_asset_job("gpu_probe_job", selection=[gpu_probe]),
        define_asset_job("cpu_probe_job", selection=[cpu_probe]),
        define_asset_job("tagged_probe_job", selection=[tagged_probe]),
    ],
    executor=in_process_executor,
)
