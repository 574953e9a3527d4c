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
* **λ × seed partitions.** Upstream's ``DbIOManager`` fails on a multi-partitioned asset with
  dynamic dimensions (dagster#32631: it lists their keys without the instance), and would
  slice one by a key range per dimension (a box, exact only when the run's keys form one).
  Here a multi-partitioned table is sliced by its exact keys: the row's key columns joined the
  way Dagster joins a ``MultiPartitionKey`` (``lambda_key || '|' || seed_key``) must be one of
  the run's keys.
* **Loading across duckdb versions.** dagster-duckdb-polars 0.29 loads with
  ``DuckDBPyConnection.arrow()``, which duckdb 2.0 removed. We load with ``.pl()``, which both
  duckdb 1.x and 2.x provide. (``pyproject.toml`` still pins duckdb<2 because other parts of
  dagster-duckdb are untested on 2.0; ``polydag_tests/defs/test_io_manager.py`` covers both.)
"""


from contextlib import contextmanager
from typing import Sequence

import polars as pl
from dagster import InputContext, MultiPartitionsDefinition, OutputContext, partition_loading_context
from dagster_duckdb.io_manager import DuckDbClient, DuckDBIOManager
from dagster_duckdb_polars import DuckDBPolarsTypeHandler

from polydag.core.storage import duck
from polydag.instance.dagster_internals import DbIOManager, DbTypeHandler, TableSlice, TablePartitionDimension


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


def multi_partition_expr(partitions_def: MultiPartitionsDefinition, columns: dict) -> str:
    """The SQL expression of a row's multi-partition key: its dimensions' columns in the order
    Dagster writes them into a ``MultiPartitionKey`` string, joined by ``|``."""
    missing = [d.name for d in partitions_def.partitions_defs if d.name not in columns]
    if missing:
        raise ValueError(f"partition_expr names no column for the dimensions {missing}")
    return "(" + " || '|' || ".join(f'"{columns[d.name]}"' for d in partitions_def.partitions_defs) + ")"


# Columns a table stored before λ × seed partitions lacks: all its rows were seed 0's.
LEGACY_SEED_COLUMNS = {"seed_key": "VARCHAR DEFAULT '0'", "seed": "BIGINT DEFAULT 0"}


class ExactKeysDbIOManager(DbIOManager):
    """``DbIOManager`` that slices multi-partitioned tables by their exact keys (module doc)."""

    def handle_output(self, context: OutputContext, obj) -> None:
        with partition_loading_context(dynamic_partitions_store=context.step_context.instance):
            if isinstance(context.asset_partitions_def if context.has_asset_partitions else None,
                          MultiPartitionsDefinition):
                self._add_seed_columns(context)
            super().handle_output(context, obj)

    def _add_seed_columns(self, context: OutputContext) -> None:
        """A λ table stored before seed partitions gets its seed columns (seed 0), so its rows
        stay and the exact-key delete can name them."""
        table_slice = self._get_table_slice(context, context)
        with self._db_client.connect(context, table_slice) as conn:
            have = {row[0] for row in conn.execute(
                "SELECT column_name FROM information_schema.columns WHERE table_schema = ? AND table_name = ?",
                [table_slice.schema, table_slice.table]).fetchall()}
            if have and "seed_key" not in have:
                for column, ddl in LEGACY_SEED_COLUMNS.items():
                    if column not in have:
                        table = f'"{table_slice.schema}"."{table_slice.table}"'
                        conn.execute(f'ALTER TABLE {table} ADD COLUMN "{column}" {ddl}')
                        # the default is for the stored rows only; new rows bring their own
                        conn.execute(f'ALTER TABLE {table} ALTER COLUMN "{column}" DROP DEFAULT')

    def load_input(self, context: InputContext):
        with partition_loading_context(dynamic_partitions_store=context.instance):
            return super().load_input(context)

    def _get_table_slice(self, context, output_context) -> TableSlice:
        partitions_def = context.asset_partitions_def if context.has_asset_partitions else None
        if not isinstance(partitions_def, MultiPartitionsDefinition):
            return super()._get_table_slice(context, output_context)
        metadata = output_context.definition_metadata or {}
        path = context.asset_key.path
        # the schema precedence of upstream: metadata, the IO manager's schema, a key prefix
        schema = metadata.get("schema") or self._schema or (path[-2] if len(path) > 1 else "public")
        return TableSlice(
            table=path[-1],
            schema=schema,
            database=self._database,
            partition_dimensions=[TablePartitionDimension(
                partition_expr=multi_partition_expr(partitions_def, dict(metadata["partition_expr"])),
                partitions=list(context.asset_partition_keys))],
            columns=(context.definition_metadata or {}).get("columns"),
        )


class PolydagDuckDBIOManager(DuckDBIOManager):
    """Stores polars DataFrames as DuckDB tables named after their asset (schema ``main``)."""

    @staticmethod
    def type_handlers() -> Sequence[DbTypeHandler]:
        return [PolarsTypeHandler()]

    @staticmethod
    def default_load_type():
        return pl.DataFrame

    def create_io_manager(self, context) -> DbIOManager:
        return ExactKeysDbIOManager(
            db_client=TransactionalDuckDbClient(),
            database=self.database,
            schema=self.schema_,
            type_handlers=self.type_handlers(),
            default_load_type=self.default_load_type(),
            io_manager_name="PolydagDuckDBIOManager",
        )
