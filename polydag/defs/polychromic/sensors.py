"""Diversity-collapse sensors: flag collapse while training runs and after evaluation.

* ``training_collapse_sensor`` follows ``training_log`` with a cursor (the last ``seq`` seen).
  Each tick it finds the (run, λ) pairs that got new rows, re-reads all rows of those pairs
  (the drop and window flags need the run's history), evaluates
  ``polydag.core.polychromic.collapse.training_alerts`` and stores the alerts
  (``polydag.core.storage.alerts.record_alerts``, de-duplicated by alert id).
* ``evaluation_collapse_sensor`` watches the materializations of ``metrics``, ``comparison``
  and ``verdict`` (cursor: the last event storage id of each) and evaluates
  ``evaluation_alerts`` on the stored ``comparison`` and ``metrics_summary`` tables.

For every *new* alert a tick: writes a row to ``alerts``; reports an ``AssetObservation`` on
the affected λ partition of ``lora_checkpoints`` (visible in the UI on that partition and on
the tick); POSTs the alert to ``webhook_url`` if set; and, for training alerts with
``terminate_on_collapse``, cancels the named run through the instance's run coordinator
(the same path as "Terminate" in the UI; the polydag launcher then stops the worker).

A busy DuckDB file (a run is writing) never crashes a tick or moves the cursor: the tick
returns a ``SkipReason`` and the next tick reads the same rows again. Both sensors are
RUNNING by default: on a fresh install they find no database and skip, each tick holds the
file for milliseconds (every writer of polydag retries on a lock), they only write the
``alerts`` table, and the two side effects (webhook, terminate) are off unless configured.
"""

from __future__ import annotations

import json

from dagster import (
    AssetKey,
    AssetObservation,
    AssetRecordsFilter,
    DagsterRunStatus,
    DefaultSensorStatus,
    MetadataValue,
    SensorEvaluationContext,
    SensorResult,
    SkipReason,
    sensor,
)

from polydag.core.storage import alerts as alert_store
from polydag.core.polychromic.collapse import TRAINING, Alert, evaluation_alerts, training_alerts
from polydag.core.storage.duck import DuckDBBusyError, connect, table_exists
from polydag.core.polychromic.lambdas import SweepKey
from polydag.defs.partitions import LAMBDA_PARTITIONS_NAME, SEED_PARTITIONS_NAME, partition_key_of
from polydag.defs.polychromic.resources import CollapseAlerting
from polydag.defs.storage.resources import PolydagStorage

OBSERVED_ASSET = AssetKey("lora_checkpoints")
EVALUATION_ASSETS = (AssetKey("metrics"), AssetKey("comparison"), AssetKey("verdict"))
_ACTIVE = (DagsterRunStatus.QUEUED, DagsterRunStatus.NOT_STARTED, DagsterRunStatus.STARTING,
           DagsterRunStatus.STARTED)


def _read_new_training_rows(db_path, cursor: int, timeout_s: float):
    """(max seq, all rows of the (run, λ) pairs with rows after ``cursor``), or None if no table."""
    with connect(db_path, read_only=True, timeout_s=timeout_s) as con:
        if not table_exists(con, "training_log"):
            return None
        top = con.execute("SELECT max(seq) FROM training_log WHERE seq > ?", [cursor]).fetchone()[0]
        if top is None:
            return cursor, None
        columns = {c for (c,) in con.execute("SELECT column_name FROM information_schema.columns "
                                             "WHERE table_name = 'training_log'").fetchall()}
        # a log from before seed partitions (no seed_key) is seed 0's; its writer adds the column
        unit = "run_id, lambda_key, seed_key" if "seed_key" in columns else "run_id, lambda_key"
        rows = con.execute(
            f"""SELECT * FROM training_log WHERE ({unit}) IN (
                   SELECT DISTINCT {unit} FROM training_log
                   WHERE seq > ? AND seq <= ?)
               AND seq <= ? ORDER BY seq""",
            [cursor, top, top],
        ).pl()
        return int(top), rows


def _observation(alert: Alert, instance) -> AssetObservation:
    """An observation on the alert's λ × seed partition of lora_checkpoints (a training alert
    names its seed in ``subject``; an evaluation alert, about a λ over its seeds, goes on the
    asset), if that partition exists."""
    seed = alert.subject.removeprefix("seed=") if alert.subject.startswith("seed=") else None
    partition = None
    if seed is not None and instance.has_dynamic_partition(LAMBDA_PARTITIONS_NAME, alert.lambda_key) \
            and instance.has_dynamic_partition(SEED_PARTITIONS_NAME, seed):
        partition = partition_key_of(SweepKey(alert.lambda_key, seed))
    return AssetObservation(
        asset_key=OBSERVED_ASSET,
        partition=partition,
        description=f"collapse alert: {alert.message}",
        metadata={
            "alert_kind": alert.kind,
            "alert_id": alert.alert_id,
            "source": alert.source,
            "lambda_key": alert.lambda_key,
            "run_id": alert.run_id or "",
            "step": alert.step if alert.step is not None else -1,
            "value": MetadataValue.float(alert.value) if alert.value is not None else MetadataValue.text("null"),
            "threshold": MetadataValue.float(alert.threshold) if alert.threshold is not None else MetadataValue.text("null"),
            "message": alert.message,
        },
    )


def _act_on(context: SensorEvaluationContext, alerting: CollapseAlerting, new: list[Alert]) -> list:
    """Webhook, termination and UI observations for newly stored alerts."""
    events = []
    cancelled: set[str] = set()
    for alert in new:
        events.append(_observation(alert, context.instance))
        if alerting.webhook_url:
            alert_store.post_webhook(alerting.webhook_url, alert, timeout_s=alerting.webhook_timeout_s,
                                     logger=context.log)
        if (alerting.terminate_on_collapse and alert.source == TRAINING and alert.run_id
                and alert.run_id not in cancelled):
            cancelled.add(alert.run_id)
            _terminate(context, alert)
    return events


def _terminate(context: SensorEvaluationContext, alert: Alert) -> None:
    run = context.instance.get_run_by_id(alert.run_id)
    if run is None:
        context.log.warning(f"terminate_on_collapse: run {alert.run_id} is not in this instance")
        return
    if run.status not in _ACTIVE:
        context.log.info(f"terminate_on_collapse: run {alert.run_id} is already {run.status.value}")
        return
    try:
        done = context.instance.run_coordinator.cancel_run(alert.run_id)
    except NotImplementedError:
        done = False
    if done:
        context.log.warning(f"terminated run {alert.run_id} after collapse alert {alert.kind}")
    else:
        context.log.error(f"terminate_on_collapse: the run launcher could not terminate run {alert.run_id}")


@sensor(
    name="training_collapse_sensor",
    minimum_interval_seconds=30,
    default_status=DefaultSensorStatus.RUNNING,
    description="Flags diversity collapse in the live training_log (cursor: last seq).",
)
def training_collapse_sensor(
    context: SensorEvaluationContext, storage: PolydagStorage, collapse_alerting: CollapseAlerting
):
    cursor = int(context.cursor) if context.cursor else -1
    db = storage.duckdb_path
    if not db.exists():
        return SkipReason(f"no results database at {db} yet")
    try:
        read = _read_new_training_rows(db, cursor, collapse_alerting.db_timeout_s)
        if read is None:
            return SkipReason("training_log does not exist yet")
        top, rows = read
        if rows is None:
            return SkipReason(f"no training_log rows after seq {cursor}")
        found = training_alerts(rows, collapse_alerting.thresholds())
        new = alert_store.record_alerts(db, found, timeout_s=collapse_alerting.db_timeout_s, logger=context.log)
    except DuckDBBusyError as exc:
        return SkipReason(f"results database busy; retrying from seq {cursor} next tick ({exc})")
    events = _act_on(context, collapse_alerting, new)
    summary = (f"read seq {cursor + 1}..{top} ({rows.height} rows of "
               f"{rows.select('run_id', 'lambda_key').n_unique()} run/λ): {len(found)} flags, {len(new)} new")
    context.log.info(summary)
    if not new:
        return SensorResult(skip_reason=summary, cursor=str(top))
    return SensorResult(asset_events=events, cursor=str(top))


def _latest_new_event(instance, key: AssetKey, after: int | None):
    records = instance.fetch_materializations(
        AssetRecordsFilter(asset_key=key, after_storage_id=after), limit=1, ascending=False
    ).records
    return records[0] if records else None


@sensor(
    name="evaluation_collapse_sensor",
    minimum_interval_seconds=30,
    default_status=DefaultSensorStatus.RUNNING,
    description="When metrics, comparison or verdict materialize, flags λ > 0 whose diversity is "
                "significantly worse than λ = 0 or whose pass@k collapsed.",
)
def evaluation_collapse_sensor(
    context: SensorEvaluationContext, storage: PolydagStorage, collapse_alerting: CollapseAlerting
):
    cursor: dict = json.loads(context.cursor) if context.cursor else {}
    new_events = {}
    for key in EVALUATION_ASSETS:
        record = _latest_new_event(context.instance, key, cursor.get(key.to_user_string()))
        if record is not None:
            new_events[key.to_user_string()] = record
    if not new_events:
        return SkipReason("no new materialization of metrics, comparison or verdict")
    next_cursor = dict(cursor, **{k: r.storage_id for k, r in new_events.items()})
    # Alerts belong to the evaluation that produced the comparison table being read.
    latest_comparison = _latest_new_event(context.instance, AssetKey("comparison"), None)
    run_id = (latest_comparison or next(iter(new_events.values()))).run_id
    db = storage.duckdb_path
    try:
        if not db.exists():
            return SensorResult(skip_reason=f"no results database at {db}", cursor=json.dumps(next_cursor))
        with connect(db, read_only=True, timeout_s=collapse_alerting.db_timeout_s) as con:
            if not table_exists(con, "comparison"):
                return SensorResult(skip_reason="comparison not stored yet", cursor=json.dumps(next_cursor))
            comparison = con.execute("SELECT * FROM comparison").pl()
            summary = con.execute("SELECT * FROM metrics_summary").pl() if table_exists(con, "metrics_summary") else None
        found = evaluation_alerts(comparison, collapse_alerting.thresholds(), metrics_summary=summary, run_id=run_id)
        new = alert_store.record_alerts(db, found, timeout_s=collapse_alerting.db_timeout_s, logger=context.log)
    except DuckDBBusyError as exc:
        return SkipReason(f"results database busy; retrying these materializations next tick ({exc})")
    events = _act_on(context, collapse_alerting, new)
    message = (f"evaluated comparison of run {run_id} after {sorted(new_events)}: "
               f"{len(found)} flags, {len(new)} new")
    context.log.info(message)
    if not new:
        return SensorResult(skip_reason=message, cursor=json.dumps(next_cursor))
    return SensorResult(asset_events=events, cursor=json.dumps(next_cursor))


SENSORS = [training_collapse_sensor, evaluation_collapse_sensor]
