"""The DuckDB IO manager: real writes and loads through Dagster, atomic partition replace,
and loading on duckdb 2.0's connection API (which dropped ``.arrow()``)."""

import duckdb
import polars as pl
import pytest
from dagster import (
    AssetExecutionContext,
    DagsterInstance,
    StaticPartitionsDefinition,
    asset,
    materialize,
)

from polydag.defs.storage.io_manager import PolarsTypeHandler, PolydagDuckDBIOManager

parts = StaticPartitionsDefinition(["0.0", "1.0"])


def _make_assets(fail_on: str | None = None, bad_schema: bool = False):
    @asset(partitions_def=parts, metadata={"partition_expr": "lambda_key"})
    def samples(context: AssetExecutionContext) -> pl.DataFrame:
        key = context.partition_key
        if fail_on == key:
            raise RuntimeError("boom")
        if bad_schema:
            return pl.DataFrame({"lambda_key": [key], "value": ["not-a-number"], "extra": [1]})
        return pl.DataFrame({"lambda_key": [key, key], "value": [float(key), float(key) + 1]})

    @asset
    def total(samples: pl.DataFrame) -> pl.DataFrame:
        return samples.group_by("lambda_key").agg(pl.col("value").sum()).sort("lambda_key")

    return samples, total


def _io(tmp_path):
    return PolydagDuckDBIOManager(database=str(tmp_path / "t.duckdb"), schema="main")


def test_downstream_loads_all_partitions_through_io_manager(tmp_path):
    samples, total = _make_assets()
    io = _io(tmp_path)
    with DagsterInstance.ephemeral() as instance:
        for key in ("0.0", "1.0"):
            assert materialize([samples], partition_key=key, resources={"io_manager": io},
                               instance=instance).success
        result = materialize([samples, total], selection=[total], resources={"io_manager": io},
                             instance=instance)
        assert result.success
        out = result.output_for_node("total")
    assert out.to_dicts() == [{"lambda_key": "0.0", "value": 1.0},
                              {"lambda_key": "1.0", "value": 3.0}]
    con = duckdb.connect(str(tmp_path / "t.duckdb"))
    # schema main: plain table names work in SQL
    assert con.execute("SELECT count(*) FROM samples").fetchone()[0] == 4
    con.close()


def test_failed_rewrite_keeps_stored_rows(tmp_path):
    samples, _ = _make_assets()
    io = _io(tmp_path)
    with DagsterInstance.ephemeral() as instance:
        assert materialize([samples], partition_key="0.0", resources={"io_manager": io},
                           instance=instance).success
        broken, _ = _make_assets(bad_schema=True)
        result = materialize([broken], partition_key="0.0", resources={"io_manager": io},
                             instance=instance, raise_on_error=False)
        assert not result.success
    con = duckdb.connect(str(tmp_path / "t.duckdb"))
    rows = con.execute("SELECT lambda_key, value FROM samples ORDER BY value").fetchall()
    con.close()
    assert rows == [("0.0", 0.0), ("0.0", 1.0)]  # the delete was rolled back with the insert


def test_empty_output_is_an_error_not_a_missing_table(tmp_path):
    @asset
    def nothing() -> pl.DataFrame:
        return pl.DataFrame({"a": []}, schema={"a": pl.Int64})

    with DagsterInstance.ephemeral() as instance:
        result = materialize([nothing], resources={"io_manager": _io(tmp_path)},
                             instance=instance, raise_on_error=False)
    assert not result.success
    failure = [e for e in result.all_events if e.is_step_failure][0]
    assert "produced no rows" in str(failure.step_failure_data.error)


class _Duckdb2Connection:
    """A real duckdb connection exposing only duckdb 2.0's API for results: in 2.0,
    ``.arrow()`` is gone (the call dagster-duckdb-polars 0.29 makes in load_input)."""

    def __init__(self, con):
        self._con = con

    def execute(self, sql, *args):
        return _Duckdb2Result(self._con.execute(sql, *args))


class _Duckdb2Result:
    def __init__(self, rel):
        self._rel = rel

    def __getattr__(self, name):
        if name == "arrow":
            raise AttributeError("'DuckDBPyConnection' object has no attribute 'arrow'")
        return getattr(self._rel, name)


def test_load_input_does_not_use_removed_arrow_method(tmp_path):
    from dagster import build_input_context
    from dagster._core.storage.db_io_manager import TableSlice

    con = duckdb.connect(str(tmp_path / "x.duckdb"))
    con.execute("CREATE TABLE t AS SELECT 1 AS a, 'x' AS b")
    handler = PolarsTypeHandler()
    frame = handler.load_input(build_input_context(), TableSlice(table="t", schema="main"),
                               _Duckdb2Connection(con))
    assert frame.to_dicts() == [{"a": 1, "b": "x"}]
    # the upstream handler fails on the same connection: this test guards the fix
    from dagster_duckdb_polars import DuckDBPolarsTypeHandler

    with pytest.raises(AttributeError, match="arrow"):
        DuckDBPolarsTypeHandler().load_input(build_input_context(),
                                             TableSlice(table="t", schema="main"),
                                             _Duckdb2Connection(con))
    con.close()


def test_a_column_added_to_a_partitioned_asset_keeps_the_other_partitions(tmp_path):
    """Old code wrote partition 0.0; new code adds a column and writes 1.0. Upstream inserted
    by position and failed; here the column is added (NULL for 0.0) and rows go in by name."""
    @asset(partitions_def=parts, metadata={"partition_expr": "lambda_key"}, name="samples")
    def old(context: AssetExecutionContext) -> pl.DataFrame:
        return pl.DataFrame({"lambda_key": [context.partition_key], "value": [1.0]})

    @asset(partitions_def=parts, metadata={"partition_expr": "lambda_key"}, name="samples")
    def new(context: AssetExecutionContext) -> pl.DataFrame:
        return pl.DataFrame({"gate": [True], "lambda_key": [context.partition_key], "value": [2.0]})

    io = _io(tmp_path)
    with DagsterInstance.ephemeral() as instance:
        assert materialize([old], partition_key="0.0", resources={"io_manager": io}, instance=instance).success
        assert materialize([new], partition_key="1.0", resources={"io_manager": io}, instance=instance).success
    con = duckdb.connect(str(tmp_path / "t.duckdb"))
    rows = con.execute("SELECT lambda_key, value, gate FROM samples ORDER BY lambda_key").fetchall()
    con.close()
    assert rows == [("0.0", 1.0, None), ("1.0", 2.0, True)]


def test_an_unpartitioned_asset_whose_columns_changed_is_replaced_whole(tmp_path):
    @asset(name="summary")
    def old() -> pl.DataFrame:
        return pl.DataFrame({"a": [1], "b": ["x"]})

    @asset(name="summary")
    def new() -> pl.DataFrame:
        return pl.DataFrame({"a": [2], "c": [0.5]})

    io = _io(tmp_path)
    with DagsterInstance.ephemeral() as instance:
        assert materialize([old], resources={"io_manager": io}, instance=instance).success
        assert materialize([new], resources={"io_manager": io}, instance=instance).success
    con = duckdb.connect(str(tmp_path / "t.duckdb"))
    assert con.execute("SELECT * FROM summary").fetchall() == [(2, 0.5)]
    con.close()


def _sweep_assets(version: float):
    """A λ × seed asset like ``lora_checkpoints``/``generations`` (both dimensions dynamic) and
    an unpartitioned one that reads every stored (λ, seed)."""
    from dagster import BackfillPolicy, DynamicPartitionsDefinition, MultiPartitionsDefinition

    grid = MultiPartitionsDefinition({"lambda": DynamicPartitionsDefinition(name="lambda"),
                                      "seed": DynamicPartitionsDefinition(name="seed")})

    @asset(partitions_def=grid, name="runs", backfill_policy=BackfillPolicy.single_run(),
           metadata={"partition_expr": {"lambda": "lambda_key", "seed": "seed_key"}})
    def runs(context: AssetExecutionContext) -> pl.DataFrame:
        keys = [k.split("|") for k in context.partition_keys]
        return pl.DataFrame({"lambda_key": [lam for lam, _ in keys], "seed_key": [s for _, s in keys],
                             "value": [version] * len(keys)})

    @asset(name="everything")
    def everything(runs: pl.DataFrame) -> pl.DataFrame:
        return runs.sort("lambda_key", "seed_key")

    return runs, everything


def _rows(tmp_path, query="SELECT lambda_key, seed_key, value FROM runs ORDER BY 1, 2"):
    con = duckdb.connect(str(tmp_path / "t.duckdb"))
    try:
        return con.execute(query).fetchall()
    finally:
        con.close()


def test_two_seeds_of_one_lambda_coexist_and_a_run_replaces_exactly_its_keys(tmp_path):
    """A run over the keys 0.0|1 .. 1.0|1 (seed 1 of every λ) replaces those rows and leaves
    seed 0's; the downstream asset reads all four."""
    from dagster._core.storage.tags import ASSET_PARTITION_RANGE_END_TAG, ASSET_PARTITION_RANGE_START_TAG

    io = _io(tmp_path)
    with DagsterInstance.ephemeral() as instance:
        instance.add_dynamic_partitions("lambda", ["0.0", "1.0"])
        instance.add_dynamic_partitions("seed", ["0", "1"])
        first, everything = _sweep_assets(1.0)
        for key in ("0.0|0", "0.0|1", "1.0|0", "1.0|1"):
            assert materialize([first], partition_key=key, resources={"io_manager": io}, instance=instance).success
        assert _rows(tmp_path) == [("0.0", "0", 1.0), ("0.0", "1", 1.0), ("1.0", "0", 1.0), ("1.0", "1", 1.0)]
        second, _ = _sweep_assets(2.0)
        assert materialize([second], resources={"io_manager": io}, instance=instance,
                           tags={ASSET_PARTITION_RANGE_START_TAG: "0.0|1",
                                 ASSET_PARTITION_RANGE_END_TAG: "1.0|1"}).success
        assert _rows(tmp_path) == [("0.0", "0", 1.0), ("0.0", "1", 2.0), ("1.0", "0", 1.0), ("1.0", "1", 2.0)]
        loaded = materialize([second, everything], selection=[everything], resources={"io_manager": io},
                             instance=instance).output_for_node("everything")
    assert loaded.rows() == [("0.0", "0", 1.0), ("0.0", "1", 2.0), ("1.0", "0", 1.0), ("1.0", "1", 2.0)]


def test_a_lambda_table_from_before_seed_partitions_keeps_its_rows_as_seed_0(tmp_path):
    con = duckdb.connect(str(tmp_path / "t.duckdb"))
    con.execute("CREATE TABLE runs (lambda_key VARCHAR, value DOUBLE)")
    con.execute("INSERT INTO runs VALUES ('0.0', 0.5), ('1.0', 0.5)")
    con.close()
    io = _io(tmp_path)
    with DagsterInstance.ephemeral() as instance:
        instance.add_dynamic_partitions("lambda", ["0.0", "1.0"])
        instance.add_dynamic_partitions("seed", ["0", "1"])
        runs, _ = _sweep_assets(3.0)
        assert materialize([runs], partition_key="1.0|1", resources={"io_manager": io}, instance=instance).success
    assert _rows(tmp_path, "SELECT lambda_key, seed_key, seed, value FROM runs ORDER BY 1, 2") == [
        ("0.0", "0", 0, 0.5), ("1.0", "0", 0, 0.5), ("1.0", "1", None, 3.0)]
