"""Dagster's SQLite event log, with batches of asset events written in one transaction.

A ranged run of ``step_importance`` covers 200 problem partitions, and Dagster writes two asset
events per partition: the planned materialization before the step starts and the materialization
after it. Dagster already hands such events over in batches when ``DAGSTER_EVENT_BATCH_SIZE``
is set (``DagsterInstance.handle_new_event`` -> ``EventLogStorage.store_event_batch``), but the
SQLite storage inherits the base ``store_event_batch``, which stores them one by one: two new
SQLAlchemy engines, connections and commits per event (run shard, then the cross-run index
shard), about 15-20 ms each on this machine (bench/results/dagster_overhead.json).

:class:`BatchedSqliteEventLogStorage` is that same storage, with one change: a batch of asset
events of one run is written with one transaction per shard, by the same statements
``SqliteEventLogStorage.store_event`` runs for each of them, in the same order. Everything else
(reads, watches, concurrency slots, other events, and any batch it does not recognise) is
Dagster's. The instance uses it through ``event_log_storage`` in ``dagster.yaml``
(data/dagster_home/dagster.yaml); :data:`EVENT_BATCH_SIZE_ENV` is set by the code location
(polydag/definitions.py) so every run process batches.
"""

from __future__ import annotations

from itertools import groupby
from typing import Sequence

from dagster import EventLogEntry, Field, StringSource

from polydag.instance.dagster_internals import (
    ASSET_EVENTS,
    ConfigurableClassData,
    SqliteEventLogStorage,
    db_result,
    event_logs_directory,
)

EVENT_BATCH_SIZE_ENV = "DAGSTER_EVENT_BATCH_SIZE"
# events per batch: a whole ranged run's planned or materialization events (scripts/env.sh
# exports the same number for the webserver and daemon)
EVENT_BATCH_SIZE = "1000"


class BatchedSqliteEventLogStorage(SqliteEventLogStorage):
    """``SqliteEventLogStorage`` whose ``store_event_batch`` writes a batch of one run's asset
    events in one transaction per shard. Config: ``base_dir`` (default: the event-log folder of
    Dagster's default storage in the instance's own folder)."""

    def __init__(self, base_dir: str | None = None, inst_data: ConfigurableClassData | None = None):
        self._inst_data = inst_data
        self._configured = base_dir is not None
        if self._configured:
            super().__init__(base_dir, inst_data=inst_data)
        # else: the folder is the instance's, known once the instance registers itself (a
        # dagster.yaml cannot name its own folder, and DAGSTER_HOME need not be it:
        # DagsterInstance.from_config(path) opens any folder)

    def register_instance(self, instance) -> None:
        if not self._configured and not hasattr(self, "_base_dir"):
            # where Dagster's default storage keeps them (<root>/history/runs): an existing
            # instance keeps its history
            SqliteEventLogStorage.__init__(self, event_logs_directory(instance.root_directory),
                                           inst_data=self._inst_data)
        super().register_instance(instance)

    @classmethod
    def config_type(cls):
        return {"base_dir": Field(StringSource, is_required=False,
                                  description="Folder of the per-run SQLite files and the index shard "
                                              "(default: history/runs in the instance's folder, Dagster's own).")}

    @classmethod
    def from_config_value(cls, inst_data, config_value):
        return cls(inst_data=inst_data, **config_value)

    def store_event_batch(self, events: Sequence[EventLogEntry]) -> None:
        # in order: each stretch of one run's asset events in one transaction per shard; any
        # other event (an asset check's planned evaluation rides in the planned events' batch)
        # by Dagster's store_event
        for (is_asset_event, _run_id), stretch in groupby(events, key=lambda e: (_is_asset_event(e), e.run_id)):
            stretch = list(stretch)
            if is_asset_event and len(stretch) > 1:
                self._store_asset_events(stretch)
            else:
                for event in stretch:
                    self.store_event(event)

    def _store_asset_events(self, events: Sequence[EventLogEntry]) -> None:
        """What ``SqliteEventLogStorage.store_event`` does for each asset event, with one
        transaction per shard for all of them."""
        statements = [self.prepare_insert_event(event) for event in events]
        with self.run_connection(events[0].run_id) as conn:
            for statement in statements:
                conn.execute(statement)
        with self.index_transaction() as conn:
            event_ids = []
            for statement in statements:
                with db_result(conn, statement) as result:
                    event_ids.append(result.inserted_primary_key[0])
            self._store_asset_event_tags(conn, list(events), event_ids)
            for event, event_id in zip(events, event_ids):
                self._store_asset_event(conn, event, event_id)


def _is_asset_event(event: EventLogEntry) -> bool:
    """An event that SqliteEventLogStorage.store_event stores by its asset-event path only (the
    asset-check and run-status events it treats otherwise are not in ASSET_EVENTS)."""
    return event.is_dagster_event and event.dagster_event_type in ASSET_EVENTS
