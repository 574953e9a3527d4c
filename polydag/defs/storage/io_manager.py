"""The DuckDB IO manager every table asset is stored through.

It is dagster-duckdb-polars' IO manager with these changes, each for a failure we must not have:

* **Atomic partition replace.** Upstream deletes a partition's rows and then inserts the new
  ones in autocommit mode, so a failed insert (a changed column, a crash) leaves the partition
  deleted. Here the delete and the insert run in one transaction: a failure rolls back and the
  rows that were stored stay stored.
* **Patient connections.** Upstream gives up after ~11 connect attempts (~100 s) while another
  process holds the file; a busy reader loop could starve a run's final write. Connections go
  through ``polydag.core.storage.duck.connect``, which keeps retrying with jitter for minutes.
* **Schema changes keep old partitions.** Upstream inserts by column position, so a column
  added to an asset (a new metric, a new gate) made every later write of a partitioned table
  fail. Here new columns are added to the stored table and rows are inserted by name.
* **Loading across duckdb versions.** dagster-duckdb-polars 0.29 loads with
  ``DuckDBPyConnection.arrow()``, which duckdb 2.0 removed. We load with ``.pl()``, which both
  duckdb 1.x and 2.x provide. (``pyproject.toml`` still pins duckdb<2 because other parts of
  dagster-duckdb are untested on 2.0; ``polydag_tests/defs/test_io_manager.py`` covers both.)
"""


from contextlib import contextmanager
from typing import Sequence

import polars as pl
from dagster import InputContext, OutputContext
from dagster_duckdb.io_manager import DuckDbClient, DuckDBIOManager
from dagster_duckdb_polars import DuckDBPolarsTypeHandler

from polydag.core.storage import duck
from polydag.instance.dagster_internals import DbIOManager, DbTypeHandler, TableSlice


WRITE_LOCK_TIMEOUT_S = 600.0


class TransactionalDuckDbClient(DuckDbClient):
    @staticmethod
    @contextmanager
    def connect(context, table_slice):
        config = context.resource_config
        with duck.connect(
            config["database"],
            timeout_s=WRITE_LOCK_TIMEOUT_S,
            config=dict(config.get("connection_config") or {}),
        ) as conn:
            conn.execute("BEGIN TRANSACTION")
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")


class PolarsTypeHandler(DuckDBPolarsTypeHandler):
    def handle_output(self, context: OutputContext, table_slice: TableSlice, obj, connection):
        if obj.is_empty():
            # Upstream would silently skip the write and leave downstream loads failing on a
            # missing table; an empty result is a bug in the asset, so say so here.
            raise ValueError(
                f"asset {context.asset_key.to_user_string()} produced no rows; refusing to store "
                "an empty table"
            )
        table = f"{table_slice.schema}.{table_slice.table}"
        obj_arrow = obj.to_arrow()  # noqa: F841 -- DuckDB reads the local variable by name
        connection.execute(f"create schema if not exists {table_slice.schema}")
        existing = connection.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_schema = ? AND table_name = ?",
            [table_slice.schema, table_slice.table]).fetchall()
        if existing and not table_slice.partition_dimensions:
            # an unpartitioned asset replaces its whole table: the new output defines it
            connection.execute(f"DROP TABLE {table}")
            existing = []
        if not existing:
            connection.execute(f"CREATE TABLE {table} AS SELECT * FROM obj_arrow")
        else:
            # Other partitions' rows stay: a column the code added since they were written is
            # added (NULL for them), one it dropped is NULL in the new rows. Upstream inserts
            # by position, which fails on any schema change.
            have = {row[0] for row in existing}
            for name, dtype, *_ in connection.execute("DESCRIBE SELECT * FROM obj_arrow").fetchall():
                if name not in have:
                    connection.execute(f'ALTER TABLE {table} ADD COLUMN "{name}" {dtype}')
            connection.execute(f"INSERT INTO {table} BY NAME SELECT * FROM obj_arrow")
        context.add_output_metadata({"row_count": obj.height})

    def load_input(self, context: InputContext, table_slice: TableSlice, connection):
        if table_slice.partition_dimensions and len(context.asset_partition_keys) == 0:
            return pl.DataFrame()
        return connection.execute(DuckDbClient.get_select_statement(table_slice)).pl()


class PolydagDuckDBIOManager(DuckDBIOManager):
    """Stores polars DataFrames as DuckDB tables named after their asset (schema ``main``)."""

    @staticmethod
    def type_handlers() -> Sequence[DbTypeHandler]:
        return [PolarsTypeHandler()]

    @staticmethod
    def default_load_type():
        return pl.DataFrame

    def create_io_manager(self, context) -> DbIOManager:
        return DbIOManager(
            db_client=TransactionalDuckDbClient(),
            database=self.database,
            schema=self.schema_,
            type_handlers=self.type_handlers(),
            default_load_type=self.default_load_type(),
            io_manager_name="PolydagDuckDBIOManager",
        )
