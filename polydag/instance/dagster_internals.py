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
* ``DbIOManager``, ``DbTypeHandler``, ``TableSlice``: dagster-duckdb's IO manager is built on
  them; :mod:`polydag.defs.storage.io_manager` subclasses its type handler and builds its own
  ``DbIOManager`` to make partition replacement transactional.
* ``ASSET_PARTITION_RANGE_START_TAG``, ``ASSET_PARTITION_RANGE_END_TAG``: the run tags that make
  one run cover a partition range. ``execute_job`` has no partition-range parameter, so the
  step-importance sweep (:mod:`polydag.defs.step_importance.sweeps`) sets them itself, as
  ``dagster asset materialize --partition-range`` and the backfill daemon do.
"""

from dagster._core.events import EngineEventData
from dagster._core.launcher import (
    CheckRunHealthResult,
    LaunchRunContext,
    RunLauncher,
    WorkerStatus,
)
from dagster._core.storage.dagster_run import IN_PROGRESS_RUN_STATUSES
from dagster._core.storage.db_io_manager import DbIOManager, DbTypeHandler, TableSlice
from dagster._core.storage.tags import (
    ASSET_PARTITION_RANGE_END_TAG,
    ASSET_PARTITION_RANGE_START_TAG,
)
from dagster._grpc.types import ExecuteRunArgs
from dagster._serdes import ConfigurableClass, ConfigurableClassData

__all__ = [
    "ASSET_PARTITION_RANGE_END_TAG",
    "ASSET_PARTITION_RANGE_START_TAG",
    "CheckRunHealthResult",
    "ConfigurableClass",
    "ConfigurableClassData",
    "DbIOManager",
    "DbTypeHandler",
    "EngineEventData",
    "ExecuteRunArgs",
    "IN_PROGRESS_RUN_STATUSES",
    "LaunchRunContext",
    "RunLauncher",
    "TableSlice",
    "WorkerStatus",
]
