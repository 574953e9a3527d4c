"""`polydag sql` and `polydag tables`: read-only queries, output formats, lock waits, docs."""

import json
import subprocess
import sys
import time

import duckdb
import polars as pl
import pytest

from polydag import cli
from polydag.core.storage.duck import DuckDBBusyError
from polydag.core.storage.sql import SqlError, describe_tables, list_tables, pick_format, run_query
from polydag.core.storage.table_docs import TABLE_DOCS, describe_column


@pytest.fixture
def db(data_dir):
    path = data_dir / "polydag.duckdb"
    con = duckdb.connect(str(path))
    con.execute("CREATE TABLE training_log (seq BIGINT, run_id VARCHAR, lambda_key VARCHAR, "
                "step INTEGER, quality_loss DOUBLE, mystery DOUBLE)")
    con.execute("INSERT INTO training_log VALUES (1, 'r', '0.0', 1, 2.5, 0), (2, 'r', '1.0', 1, NULL, 0)")
    con.execute("CREATE TABLE metrics_summary (lambda_key VARCHAR, pass_at_10 DOUBLE, "
                "pass_at_10_se DOUBLE, vendi_n BIGINT)")
    con.close()
    return path


HOLDER = """
import duckdb, sys, time
con = duckdb.connect(sys.argv[1])  # read-write: blocks every other process
print("locked", flush=True)
time.sleep(float(sys.argv[2]))
print(time.time(), flush=True)  # about to let go
con.close()
"""


def _hold(path, seconds):
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(path), str(seconds)],
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "locked"
    return proc


def test_query_returns_rows_and_formats(db, capsys, tmp_path):
    frame = run_query("SELECT lambda_key, quality_loss FROM training_log ORDER BY seq", db)
    assert frame.to_dicts() == [{"lambda_key": "0.0", "quality_loss": 2.5},
                                {"lambda_key": "1.0", "quality_loss": None}]
    assert cli.main(["sql", "SELECT lambda_key, step FROM training_log ORDER BY seq"]) == 0
    out = capsys.readouterr().out
    assert "| lambda_key | step |" in out and "| 1.0 | 1 |" in out and "(2 rows)" in out
    assert cli.main(["sql", "SELECT lambda_key FROM training_log ORDER BY seq",
                     "--format", "csv"]) == 0
    assert capsys.readouterr().out == "lambda_key\n0.0\n1.0\n"
    assert cli.main(["sql", "SELECT seq, lambda_key FROM training_log ORDER BY seq",
                     "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out) == [{"seq": 1, "lambda_key": "0.0"},
                                                   {"seq": 2, "lambda_key": "1.0"}]
    out_file = tmp_path / "out" / "log.parquet"  # format from the suffix; folder created
    assert cli.main(["sql", "SELECT * FROM training_log", "--out", str(out_file)]) == 0
    assert pl.read_parquet(out_file).height == 2


def test_table_format_caps_rows_but_files_get_all(db, capsys, tmp_path):
    assert cli.main(["sql", "SELECT * FROM range(25)", "--max-rows", "10"]) == 0
    out = capsys.readouterr().out
    assert "15 more rows not shown" in out and "(25 rows)" in out
    csv = tmp_path / "all.csv"
    assert cli.main(["sql", "SELECT * FROM range(25)", "--out", str(csv)]) == 0
    assert len(csv.read_text().splitlines()) == 26


def test_writes_are_refused_and_bad_input_is_named(db, capsys):
    with pytest.raises(SqlError, match="read-only"):
        run_query("DROP TABLE training_log", db)
    assert run_query("SELECT count(*) AS n FROM training_log", db)["n"][0] == 2  # untouched
    assert cli.main(["sql", "SELECT * FROM nope"]) == 1
    assert "nope" in capsys.readouterr().err
    assert cli.main(["sql", "SELECT 1", "--format", "parquet"]) == 2
    assert "--out" in capsys.readouterr().err
    with pytest.raises(ValueError, match="cannot tell the format"):
        pick_format(None, "result.xlsx")


def test_missing_database_says_how_to_create_it(data_dir, capsys):
    assert cli.main(["sql", "SELECT 1"]) == 1
    assert "does not exist yet" in capsys.readouterr().err


def test_query_waits_for_a_writer_then_succeeds(db):
    holder = _hold(db, 1.5)
    try:
        # the writer holds the file now; the reader retries until it lets go
        frame = run_query("SELECT count(*) AS n FROM training_log", db, timeout_s=60)
        answered_at = time.time()
        released_at = float(holder.stdout.readline())
        assert answered_at > released_at  # it got through only once the holder let go
        assert frame["n"][0] == 2
    finally:
        holder.wait(timeout=30)


def test_query_gives_up_after_its_timeout_naming_the_lock(db, capsys):
    holder = _hold(db, 30)
    try:
        with pytest.raises(DuckDBBusyError, match="stayed locked"):
            run_query("SELECT 1", db, timeout_s=1)
        assert cli.main(["sql", "SELECT 1", "--timeout", "1"]) == 1
        assert "stayed locked" in capsys.readouterr().err
    finally:
        holder.kill()
        holder.wait(timeout=30)


def test_tables_lists_real_columns_with_their_docs(db, capsys):
    tables = {t.name: t for t in list_tables(db)}
    assert tables["training_log"].n_rows == 2
    assert ("quality_loss", "DOUBLE") in tables["training_log"].columns
    assert tables["verdict"].n_rows is None  # documented, not materialized yet
    assert "alerts" in tables  # listed even before its columns are documented
    text = describe_tables(list(tables.values()), db)
    assert "training_log  (2 rows)" in text
    assert "mystery" in text and "(undocumented)" in text
    assert "documented but missing: diversity_weight" in text
    # patterns document column families
    assert describe_column("metrics_summary", "pass_at_10") == TABLE_DOCS["metrics_summary"]["pass_at_*"]
    assert describe_column("metrics_summary", "vendi_n") == TABLE_DOCS["metrics_summary"]["*_n"]
    assert describe_column("metrics_summary", "pass_at_10_se") == TABLE_DOCS["metrics_summary"]["*_se"]
    assert cli.main(["tables"]) == 0
    assert "verdict  (not in the database yet)" in capsys.readouterr().out
