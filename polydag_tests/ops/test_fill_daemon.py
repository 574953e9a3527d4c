"""The fill sensor under the real daemon code: automation ticks, the backfill, launched runs.

The asset daemon's own iteration (what ``dagster-daemon`` runs for automation sensors)
evaluates ``fill_missing_partitions`` against a real code server process and submits what it
requests; the backfill daemon's iteration then launches the backfill's ranged runs, each its
own process. The asset daemon runs on an explicit clock around the 02:00 UTC tick (Dagster's
``freeze_time``) instead of waiting for the wall clock to reach 02:00.
"""

import datetime as dt
import json
import logging
import time
from pathlib import Path

import pytest
import yaml
from dagster import AssetKey, AssetMaterialization, DagsterInstance, DagsterRunStatus
from dagster._core.execution.backfill import BulkActionStatus
from dagster._core.scheduler.instigation import TickStatus
from dagster._core.test_utils import (
    create_test_daemon_workspace_context,
    freeze_time,
    load_remote_repo,
)
from dagster._core.workspace.load_target import ModuleTarget
from dagster._daemon.asset_daemon import AssetDaemon
from dagster._daemon.backfill import execute_backfill_iteration

from polydag.defs.automation import FILL_SENSOR_NAME, FILL_TAG
from polydag.instance.dagster_internals import (
    ASSET_PARTITION_RANGE_END_TAG,
    ASSET_PARTITION_RANGE_START_TAG,
)

REPO_ROOT = Path(__file__).resolve().parents[2]
# after the wall-clock time of everything the test records, as ticks are in real use
NIGHT = dt.datetime.combine(dt.date.today() + dt.timedelta(days=2), dt.time(2, 0),
                            tzinfo=dt.timezone.utc)
LOG = logging.getLogger("test_fill_daemon")


def _wait_finished(instance, run_ids, timeout_s=120):
    deadline = time.monotonic() + timeout_s
    while True:
        runs = [instance.get_run_by_id(r) for r in run_ids]
        if all(r.is_finished for r in runs):
            return runs
        if time.monotonic() > deadline:
            raise AssertionError(f"runs not finished after {timeout_s}s: {[r.status for r in runs]}")
        time.sleep(0.5)


def _run_backfill(context, instance, backfill_id, timeout_s=150):
    """Backfill daemon iterations until the backfill is done; its runs, oldest first."""
    deadline = time.monotonic() + timeout_s
    while instance.get_backfill(backfill_id).status == BulkActionStatus.REQUESTED:
        assert time.monotonic() < deadline, "backfill did not finish"
        errors = [e for e in execute_backfill_iteration(context, LOG) if e is not None]
        assert not errors, errors
        runs = instance.get_runs()  # wait for launched runs before the next iteration
        _wait_finished(instance, [r.run_id for r in runs])
    runs = [r for r in instance.get_runs() if r.tags.get("dagster/backfill") == backfill_id]
    return list(reversed(runs))


@pytest.mark.e2e
def test_daemon_fills_missing_partitions_in_policy_sized_ranges_then_the_aggregate(
    tmp_path, monkeypatch
):
    probe = tmp_path / "probe"
    probe.mkdir()
    monkeypatch.setenv("POLYDAG_PROBE_DIR", str(probe))
    home = tmp_path / "home"
    home.mkdir()
    # runs start as soon as they are submitted (the queue daemon is not under test here)
    (home / "dagster.yaml").write_text(yaml.safe_dump({
        "telemetry": {"enabled": False},
        "run_coordinator": {"module": "dagster._core.run_coordinator",
                            "class": "DefaultRunCoordinator"},
    }))
    target = ModuleTarget(module_name="polydag_tests.ops.fill_probe_location", attribute="defs",
                          working_directory=str(REPO_ROOT), location_name="fill_probe")

    with DagsterInstance.from_config(str(home)) as instance:
        instance.add_dynamic_partitions("letter", list("abcde"))
        instance.report_runless_asset_event(
            AssetMaterialization("source", tags={"dagster/data_version": "1"}))
        instance.report_runless_asset_event(
            AssetMaterialization("per_letter", partition="c", tags={"dagster/data_version": "1"}))

        with create_test_daemon_workspace_context(target, instance) as context:
            sensor = load_remote_repo(context, "__repository__").get_sensor(FILL_SENSOR_NAME)
            instance.start_sensor(sensor)  # STOPPED by default, like turning it on in the UI
            daemon = AssetDaemon(settings=instance.get_settings("auto_materialize"),
                                 pre_sensor_interval_seconds=0)

            def tick(when: dt.datetime):
                started = time.monotonic()
                with freeze_time(when):
                    daemon._run_iteration_impl(context, threadpool_executor=None,
                                               amp_tick_futures={}, debug_crash_flags={})
                ticks = instance.get_ticks(sensor.get_remote_origin_id(), sensor.selector_id)
                assert ticks[0].timestamp == when.timestamp(), "the sensor did not tick"
                assert ticks[0].status in (TickStatus.SUCCESS, TickStatus.SKIPPED), ticks[0].error
                return ticks[0], time.monotonic() - started

            first, _ = tick(NIGHT - dt.timedelta(minutes=1))
            assert not first.run_ids and not instance.get_backfills()  # before 02:00: nothing

            # after 02:00: one backfill of the missing letters; the aggregate waits for them
            second, tick_s = tick(NIGHT + dt.timedelta(seconds=30))
            (backfill,) = instance.get_backfills()
            assert second.run_ids == [backfill.backfill_id]
            target_subset = backfill.asset_backfill_data.target_subset
            assert target_subset.asset_keys == {AssetKey("per_letter")}
            assert set(target_subset.get_partitions_subset(AssetKey("per_letter"))
                       .get_partition_keys()) == set("abde")
            assert backfill.tags[FILL_TAG] == "1"

            # while the backfill has not run, nothing in it is requested again
            third, _ = tick(NIGHT + dt.timedelta(minutes=2))
            assert not third.run_ids and len(instance.get_backfills()) == 1

            # the backfill daemon runs it in ranges of at most 2 (multi_run(2)), never "c"
            runs = _run_backfill(context, instance, backfill.backfill_id)
            assert instance.get_backfill(backfill.backfill_id).status == \
                BulkActionStatus.COMPLETED_SUCCESS
            assert [r.status for r in runs] == [DagsterRunStatus.SUCCESS] * len(runs)
            spans = sorted((r.tags[ASSET_PARTITION_RANGE_START_TAG],
                            r.tags[ASSET_PARTITION_RANGE_END_TAG]) for r in runs)
            assert spans == [("a", "b"), ("d", "e")]
            assert all(r.tags[FILL_TAG] == "1" for r in runs)
            seen = sorted(json.loads((probe / f"{r.run_id}.json").read_text())["keys"]
                          for r in runs)
            assert seen == [["a", "b"], ["d", "e"]]  # what the asset bodies really received
            assert instance.get_materialized_partitions(AssetKey("per_letter")) == set("abcde")

            # the same night, the aggregate over the now complete partitions, as a plain run
            fourth, _ = tick(NIGHT + dt.timedelta(minutes=4))
            assert len(fourth.run_ids) == 1 and len(instance.get_backfills()) == 1
            (summary_run,) = _wait_finished(instance, fourth.run_ids)
            assert summary_run.status == DagsterRunStatus.SUCCESS
            assert summary_run.tags[FILL_TAG] == "1"
            assert json.loads((probe / f"{summary_run.run_id}.json").read_text())["asset"] == \
                "letters_summary"

            # nothing left: the tick requests nothing
            fifth, _ = tick(NIGHT + dt.timedelta(minutes=6))
            assert not fifth.run_ids
            assert len(list(probe.iterdir())) == 3
            print(f"automation tick that requested the backfill: {tick_s:.1f}s")
