"""The only module of polydag that imports Dagster's private API (``dagster._*``).

Everything else in polydag uses ``import dagster`` names. What is here has no public
equivalent in Dagster 1.13.27 and is re-exported so that an upgrade that moves one of these
breaks in this one file, and ``grep -rn "dagster\\._" polydag`` shows the whole exposure:

* ``RunLauncher``, ``LaunchRunContext``, ``CheckRunHealthResult``, ``WorkerStatus``: the base
  class and the types of the run-launcher interface that ``PolydagRunLauncher``
  (:mod:`polydag.instance.launcher`) implements. The instance loads a launcher by module and
  class from ``dagster.yaml``; there is no public way to write one.
* ``ConfigurableClass``, ``ConfigurableClassData``: how the launcher's ``config:`` block in
  ``dagster.yaml`` reaches its constructor (every instance component is one).
* ``ExecuteRunArgs``: builds the ``dagster api execute_run`` command line for a run, the same
  one Dagster's own Docker and Kubernetes launchers run.
* ``EngineEventData``: the payload of the engine events the launcher writes into a run's event
  log (which device and process a run got).
* ``IN_PROGRESS_RUN_STATUSES``: Dagster's own list of run statuses that hold a worker, so the
  launcher counts a device as held exactly when run monitoring counts the run as in progress.
* ``DbIOManager``, ``DbTypeHandler``, ``TableSlice``, ``TablePartitionDimension``: dagster-duckdb's IO manager is built on
  them; :mod:`polydag.defs.storage.io_manager` subclasses its type handler and builds its own
  ``DbIOManager`` to make partition replacement transactional, overriding its
  ``_get_table_slice`` for multi-partitioned tables (dagster#32631).
* ``JobFailureData``, ``RunFailureReason``: the payload of a run-failure event, so that a run
  whose worker died is reported as Dagster's own run monitoring reports one
  (UNEXPECTED_TERMINATION) by :mod:`polydag.instance.reaper`.
* ``InProcessExecutor``, ``ExecuteRunWithPlanIterable``, ``PlanExecutionContextManager``,
  ``inner_plan_execution_iterator``, ``InstanceConcurrencyContext``,
  ``check_captured_interrupt``: the pieces of Dagster's in-process executor that
  :mod:`polydag.instance.executor` reassembles with its own concurrency context (which sleeps
  while a step waits for a pool slot, reaps dead holders and honours SIGTERM/SIGINT). There is
  no public hook for the wait loop.
* ``core_execute_in_process``, ``type_check_and_normalize_args``, ``merge_run_tags``,
  ``InMemoryJob``: the body of ``JobDefinition.execute_in_process``, which always swaps in a
  plain in-process executor; :func:`polydag.instance.executor.execute_in_process` runs the same
  with polydag's.
* ``SqliteEventLogStorage``, ``db_result``, ``ASSET_EVENTS``, ``event_logs_directory``:
  Dagster's default event log (and where its default storage keeps it), which
  :mod:`polydag.instance.event_log` subclasses to write a batch of asset events in one
  transaction (its ``store_event_batch`` stores them one by one), with the same statements and
  the private helpers ``prepare_insert_event``, ``index_transaction``,
  ``_store_asset_event_tags`` and ``_store_asset_event`` that its ``store_event`` uses.
* ``ASSET_PARTITION_RANGE_START_TAG``, ``ASSET_PARTITION_RANGE_END_TAG``: the run tags that make
  one run cover a partition range. ``execute_job`` has no partition-range parameter, so the
  step-importance sweep (:mod:`polydag.defs.step_importance.sweeps`) sets them itself, as
  ``dagster asset materialize --partition-range`` and the backfill daemon do.
"""

from dagster._core.definitions.job_base import InMemoryJob
from dagster._core.events import (
    ASSET_EVENTS,
    EngineEventData,
    JobFailureData,
    RunFailureReason,
)
from dagster._core.execution.api import ExecuteRunWithPlanIterable
from dagster._core.execution.context_creation_job import PlanExecutionContextManager
from dagster._core.execution.execute_in_process import (
    core_execute_in_process,
    merge_run_tags,
    type_check_and_normalize_args,
)
from dagster._core.execution.plan.execute_plan import inner_plan_execution_iterator
from dagster._core.execution.plan.instance_concurrency_context import InstanceConcurrencyContext
from dagster._core.executor.in_process import InProcessExecutor
from dagster._core.launcher import (
    CheckRunHealthResult,
    LaunchRunContext,
    RunLauncher,
    WorkerStatus,
)
from dagster._core.storage.dagster_run import IN_PROGRESS_RUN_STATUSES
from dagster._core.instance.ref import _event_logs_directory as event_logs_directory
from dagster._core.storage.event_log.sqlite.sqlite_event_log import SqliteEventLogStorage
from dagster._core.storage.sqlalchemy_compat import db_result
from dagster._core.storage.db_io_manager import DbIOManager, DbTypeHandler, TablePartitionDimension, TableSlice
from dagster._core.storage.tags import (
    ASSET_PARTITION_RANGE_END_TAG,
    ASSET_PARTITION_RANGE_START_TAG,
)
from dagster._grpc.types import ExecuteRunArgs
from dagster._serdes import ConfigurableClass, ConfigurableClassData
from dagster._utils.interrupts import check_captured_interrupt

__all__ = [
    "ASSET_EVENTS",
    "ASSET_PARTITION_RANGE_END_TAG",
    "ASSET_PARTITION_RANGE_START_TAG",
    "CheckRunHealthResult",
    "ConfigurableClass",
    "ConfigurableClassData",
    "DbIOManager",
    "DbTypeHandler",
    "EngineEventData",
    "ExecuteRunArgs",
    "ExecuteRunWithPlanIterable",
    "IN_PROGRESS_RUN_STATUSES",
    "InMemoryJob",
    "InProcessExecutor",
    "InstanceConcurrencyContext",
    "JobFailureData",
    "LaunchRunContext",
    "PlanExecutionContextManager",
    "RunFailureReason",
    "RunLauncher",
    "SqliteEventLogStorage",
    "TablePartitionDimension",
    "TableSlice",
    "WorkerStatus",
    "check_captured_interrupt",
    "core_execute_in_process",
    "db_result",
    "event_logs_directory",
    "inner_plan_execution_iterator",
    "merge_run_tags",
    "type_check_and_normalize_args",
]
