"""The fill schedule under the real scheduler daemon code: ticks, launched runs, waves.

The scheduler daemon's own iteration (``launch_scheduled_runs``) evaluates the schedule in a
real code server process and submits the runs it asks for to the instance, whose launcher
starts each as its own process. The daemon is driven with an explicit clock (the end of the
iteration one minute ahead) instead of waiting for the wall clock to reach the cron time.
"""

import datetime
import json
import logging
import time
from pathlib import Path

import pytest
import yaml
from dagster import AssetKey, AssetMaterialization, DagsterInstance, DagsterRunStatus
from dagster._core.scheduler.instigation import TickStatus
from dagster._core.storage.tags import (
    ASSET_PARTITION_RANGE_END_TAG,
    ASSET_PARTITION_RANGE_START_TAG,
)
from dagster._core.test_utils import create_test_daemon_workspace_context, load_remote_repo
from dagster._core.workspace.load_target import ModuleTarget
from dagster._scheduler.scheduler import launch_scheduled_runs

from polydag.defs.automation import FILL_SCHEDULE_NAME, FILL_TAG

REPO_ROOT = Path(__file__).resolve().parents[2]


def _wait_finished(instance, run_ids, timeout_s=120):
    deadline = time.monotonic() + timeout_s
    while True:
        runs = [instance.get_run_by_id(r) for r in run_ids]
        if all(r.is_finished for r in runs):
            return runs
        if time.monotonic() > deadline:
            raise AssertionError(f"runs not finished after {timeout_s}s: {[r.status for r in runs]}")
        time.sleep(0.5)


@pytest.mark.e2e
def test_daemon_ticks_fill_missing_partitions_in_waves(tmp_path, monkeypatch):
    probe = tmp_path / "probe"
    probe.mkdir()
    monkeypatch.setenv("POLYDAG_PROBE_DIR", str(probe))
    home = tmp_path / "home"
    home.mkdir()
    # runs start as soon as the tick submits them (the queue daemon is not under test here)
    (home / "dagster.yaml").write_text(yaml.safe_dump({
        "telemetry": {"enabled": False},
        "run_coordinator": {"module": "dagster._core.run_coordinator",
                            "class": "DefaultRunCoordinator"},
    }))
    target = ModuleTarget(module_name="polydag_tests.ops.fill_probe_location", attribute="defs",
                          working_directory=str(REPO_ROOT), location_name="fill_probe")
    logger = logging.getLogger("test_fill_daemon")

    with DagsterInstance.from_config(str(home)) as instance:
        instance.add_dynamic_partitions("letter", list("abcde"))
        instance.report_runless_asset_event(AssetMaterialization("source"))
        instance.report_runless_asset_event(AssetMaterialization("per_letter", partition="c"))

        with create_test_daemon_workspace_context(target, instance) as context:
            remote = load_remote_repo(context, "__repository__").get_schedule(FILL_SCHEDULE_NAME)
            instance.start_schedule(remote)
            clock = datetime.datetime.now(datetime.timezone.utc)

            def tick():
                nonlocal clock
                clock += datetime.timedelta(seconds=61)  # exactly one cron time passes
                started = time.monotonic()
                list(launch_scheduled_runs(context, logger, end_datetime_utc=clock,
                                           iteration_times={}))
                ticks = instance.get_ticks(remote.get_remote_origin_id(), remote.selector_id)
                return ticks[0], time.monotonic() - started

            # wave 1: the missing letters, in ranges of at most 2 (multi_run(2)), never "c"
            first, tick_s = tick()
            assert first.status == TickStatus.SUCCESS, first.error
            runs = _wait_finished(instance, first.run_ids)
            assert [r.status for r in runs] == [DagsterRunStatus.SUCCESS] * len(runs)
            spans = sorted((r.tags[ASSET_PARTITION_RANGE_START_TAG],
                            r.tags[ASSET_PARTITION_RANGE_END_TAG]) for r in runs)
            assert spans == [("a", "b"), ("d", "e")]
            assert all(r.tags[FILL_TAG] == "1" for r in runs)
            seen = sorted(json.loads((probe / f"{r.run_id}.json").read_text())["keys"] for r in runs)
            assert seen == [["a", "b"], ["d", "e"]]  # what the asset bodies really received
            assert instance.get_materialized_partitions(AssetKey("per_letter")) == set("abcde")

            # wave 2: the aggregate over the now complete partitions
            second, _ = tick()
            assert second.status == TickStatus.SUCCESS, second.error
            (summary_run,) = _wait_finished(instance, second.run_ids)
            assert summary_run.status == DagsterRunStatus.SUCCESS
            assert json.loads((probe / f"{summary_run.run_id}.json").read_text())["asset"] == \
                "letters_summary"

            # wave 3: nothing left; the tick is skipped and launches nothing
            third, _ = tick()
            assert third.status == TickStatus.SKIPPED and not third.run_ids
            assert "up to date" in third.skip_reason
            assert len(list(probe.iterdir())) == 3
            print(f"first daemon tick (evaluate + submit 2 runs): {tick_s:.1f}s")
