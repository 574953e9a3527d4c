"""BatchedSqliteEventLogStorage: one transaction per shard for a ranged run's asset events,
and the same stored state as Dagster's own SQLite event log."""

import pytest
from dagster import (
    AssetExecutionContext,
    AssetKey,
    BackfillPolicy,
    DagsterEventType,
    DagsterInstance,
    DataVersion,
    Definitions,
    DynamicPartitionsDefinition,
    AssetCheckResult,
    MaterializeResult,
    asset,
    asset_check,
    instance_for_test,
)

from polydag.instance.event_log import EVENT_BATCH_SIZE_ENV, BatchedSqliteEventLogStorage
from polydag.defs.step_importance.sweeps import sweep_step_importance

KEYS = [f"p{i}" for i in range(12)]
BATCHED = {"event_log_storage": {"module": "polydag.instance.event_log", "class": "BatchedSqliteEventLogStorage"}}


@asset(partitions_def=DynamicPartitionsDefinition(name="problem"), backfill_policy=BackfillPolicy.multi_run(5))
def step_importance(context: AssetExecutionContext) -> MaterializeResult:
    keys = context.partition_keys
    return MaterializeResult(metadata={"n": len(keys)}, data_version=DataVersion(f"v-{keys[0]}"))


@asset_check(asset=step_importance)
def rows_are_complete() -> AssetCheckResult:
    return AssetCheckResult(passed=True)


DEFS = Definitions(assets=[step_importance], asset_checks=[rows_are_complete])


def _sweep(overrides, monkeypatch, tmp_path):
    """A sweep of 12 partitions in ranged runs of 5: what it stored, and how many times the
    storage's asset-event path (tags, asset records) ran."""
    monkeypatch.setenv(EVENT_BATCH_SIZE_ENV, "1000")
    tmp_path.mkdir()
    with instance_for_test(overrides=overrides, temp_dir=str(tmp_path)) as instance:
        storage = instance.event_log_storage
        calls = {"tags": 0}
        original = type(storage)._store_asset_event_tags

        def counting(self, conn, events, event_ids):
            calls["tags"] += 1
            return original(self, conn, events, event_ids)

        monkeypatch.setattr(type(storage), "_store_asset_event_tags", counting)
        instance.add_dynamic_partitions("problem", KEYS)
        result = sweep_step_importance(instance, defs=DEFS, problems_per_run=5)
        assert result.success and len(result.runs) == 3
        key = step_importance.key
        records = instance.fetch_materializations(key, limit=100).records
        planned = instance.get_records_for_run(result.runs[0]["run_id"],
                                               of_type=DagsterEventType.ASSET_MATERIALIZATION_PLANNED).records
        state = {
            "materialized": instance.get_materialized_partitions(key),
            "materializations": sorted((r.partition_key, r.asset_materialization.metadata["n"].value) for r in records),
            "data_versions": {r.partition_key: r.asset_materialization.tags.get("dagster/data_version")
                              for r in records},
            "planned_in_first_run": sorted(r.event_log_entry.dagster_event.partition for r in planned),
            "latest": instance.get_latest_materialization_event(key).dagster_event.partition,
            "asset_keys": instance.all_asset_keys(),
            # the check's planned evaluation rides in the planned events' batch
            "check_statuses": sorted(r.status.value for r in instance.event_log_storage.get_asset_check_execution_history(
                rows_are_complete.check_key, limit=10)),
            "storage": type(storage).__name__,
        }
    return state, calls["tags"]


def test_batched_storage_stores_what_dagsters_stores_in_one_transaction_per_batch(monkeypatch, tmp_path):
    batched, batched_calls = _sweep(BATCHED, monkeypatch, tmp_path / "batched")
    default, default_calls = _sweep({}, monkeypatch, tmp_path / "default")
    assert batched.pop("storage") == "BatchedSqliteEventLogStorage"
    assert default.pop("storage") == "SqliteEventLogStorage"
    assert batched == default
    assert batched["materialized"] == set(KEYS) and batched["latest"] in KEYS[10:]
    assert batched["planned_in_first_run"] == KEYS[:5]
    assert batched["check_statuses"] == ["SUCCEEDED"] * 3
    assert batched["data_versions"]["p3"] == "v-p0" and batched["data_versions"]["p11"] == "v-p10"
    # Dagster's: once per event (12 planned + 12 materializations); batched: once per run and kind
    assert default_calls == 24 and batched_calls == 6


def test_without_the_batch_size_env_nothing_is_batched(monkeypatch, tmp_path):
    """Without batch writing (the env unset) every event is stored one by one, as by Dagster."""
    monkeypatch.delenv(EVENT_BATCH_SIZE_ENV, raising=False)
    with instance_for_test(overrides=BATCHED, temp_dir=str(tmp_path)) as instance:
        instance.add_dynamic_partitions("problem", KEYS[:3])
        monkeypatch.setattr(BatchedSqliteEventLogStorage, "store_event_batch",
                            lambda self, events: pytest.fail("no batch expected"))
        result = sweep_step_importance(instance, defs=DEFS, problems_per_run=5)
        assert result.success
        assert instance.get_materialized_partitions(AssetKey("step_importance")) == set(KEYS[:3])


def test_the_shipped_instance_uses_it_in_its_own_folder(monkeypatch, tmp_path):
    """The event logs go where Dagster's default storage keeps them, in the folder the instance
    is opened from, whatever DAGSTER_HOME says."""
    import shutil
    from pathlib import Path

    home = tmp_path / "home"
    home.mkdir()
    shutil.copy(Path(__file__).resolve().parents[2] / "data" / "dagster_home" / "dagster.yaml", home)
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "elsewhere"))
    with DagsterInstance.from_config(str(home)) as instance:
        storage = instance.event_log_storage
        assert type(storage).__name__ == "BatchedSqliteEventLogStorage"
        assert storage._base_dir == str(home / "history" / "runs")
        assert (home / "history" / "runs" / "index.db").is_file()
    assert not (tmp_path / "elsewhere").exists()
    assert BatchedSqliteEventLogStorage(str(tmp_path / "given"))._base_dir == str(tmp_path / "given")
