"""`polydag sql` can write nothing anywhere, and every unreadable input is one clear line.

Every statement that could write (the database, a file, another database, the configuration,
an extension) fails with one ``polydag sql:`` line and a non-zero status, and afterwards every
file under the test's folder, the database first, is byte-identical and no file has appeared.
"""

import hashlib

import duckdb
import pytest

from polydag import cli
from polydag.core.storage.sql import list_tables


@pytest.fixture
def db(data_dir):
    path = data_dir / "polydag.duckdb"
    con = duckdb.connect(str(path))
    con.execute("CREATE TABLE training_log AS SELECT range AS seq, 'r' AS run_id FROM range(3)")
    con.execute("CREATE TABLE verdict AS SELECT '0.0' AS lambda_key, 0.0 AS diversity_weight")
    con.close()
    (data_dir / "out").mkdir()
    return path


def _snapshot(folder):
    """sha256 of every file under ``folder`` (a new, changed or removed file changes it)."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def _tables(db):
    return {(t.name, t.n_rows) for t in list_tables(db) if t.n_rows is not None}


WRITES = [
    # the database itself
    "INSERT INTO training_log VALUES (9, 'x')",
    "UPDATE training_log SET run_id = 'x'",
    "DELETE FROM training_log",
    "TRUNCATE training_log",
    "CREATE TABLE t2 (x INTEGER)",
    "CREATE OR REPLACE TABLE training_log AS SELECT 1 AS x",
    "CREATE VIEW v AS SELECT 1",
    "CREATE INDEX i ON training_log (seq)",
    "CREATE MACRO m(x) AS x",
    "CREATE SEQUENCE s",
    "DROP TABLE training_log",
    "ALTER TABLE training_log ADD COLUMN y INTEGER",
    "ALTER TABLE training_log RENAME TO gone",
    "COMMENT ON TABLE training_log IS 'x'",
    "CREATE TEMP TABLE tmp AS SELECT 1 AS x",
    "CREATE TEMP VIEW tv AS SELECT 1",
    # files, the database file included
    "COPY (SELECT 'gone' AS x) TO '{db}' (FORMAT csv)",
    "COPY (SELECT 'gone' AS x) TO '{db}' (FORMAT parquet)",
    "COPY training_log TO '{out}/log.csv'",
    "COPY training_log TO '{out}/log.parquet' (FORMAT parquet)",
    "COPY training_log TO '/dev/stdout'",
    "COPY training_log FROM '/etc/hostname'",
    "EXPORT DATABASE '{out}/export'",
    "IMPORT DATABASE '{out}'",
    "SELECT * FROM query('COPY training_log TO ''{out}/q.csv''')",
    "EXPLAIN ANALYZE COPY training_log TO '{out}/e.csv'",
    "EXPLAIN ANALYZE SELECT 1",
    "SELECT 1; COPY training_log TO '{out}/m.csv'",
    # other databases
    "ATTACH '{out}/other.duckdb' AS other",
    "ATTACH '{out}/other.duckdb' AS other; CREATE TABLE other.t AS SELECT 1 AS x",
    "ATTACH ':memory:' AS mem",
    "ATTACH 'sqlite:{out}/other.sqlite' AS lite",
    "COPY FROM DATABASE polydag TO other",
    "DETACH polydag",
    "USE memory",
    # extensions
    "INSTALL httpfs",
    "FORCE INSTALL httpfs",
    "INSTALL spatial FROM community",
    "LOAD httpfs",
    "LOAD json",
    "LOAD '{out}/evil.duckdb_extension'",
    "UPDATE EXTENSIONS",
    # configuration
    "SET enable_external_access = true",
    "SET access_mode = 'read_write'",
    "SET lock_configuration = false",
    "RESET lock_configuration",
    "RESET enable_external_access",
    "SET autoload_known_extensions = true",
    "SET allow_community_extensions = true",
    "SET temp_directory = '{out}'",
    "SET profiling_output = '{out}/profile.json'",
    "SET GLOBAL threads = 1",
    "PRAGMA threads = 1",
    "PRAGMA enable_profiling",
    "PRAGMA disable_checkpoint_on_shutdown",
    "SET VARIABLE v = 1",
    # other local files
    "SELECT * FROM read_csv('/etc/passwd')",
    "SELECT * FROM '/etc/passwd'",
    "SELECT * FROM read_text('/etc/hostname')",
    "SELECT * FROM read_blob('/etc/hostname')",
    "SELECT * FROM glob('/etc/*')",
    "SELECT * FROM sniff_csv('/etc/passwd')",
    "SELECT * FROM read_json('/etc/hostname')",
    "SELECT * FROM read_parquet('{out}/x.parquet')",
    # the network
    "SELECT * FROM read_csv('https://example.com/x.csv')",
    "SELECT * FROM 'http://example.com/x.parquet'",
    "SELECT * FROM read_parquet('s3://bucket/x.parquet')",
    # checkpoints, maintenance, secrets, transactions
    "CHECKPOINT",
    "FORCE CHECKPOINT",
    "CALL checkpoint()",
    "VACUUM",
    "ANALYZE",
    "CREATE SECRET (TYPE s3, KEY_ID 'a', SECRET 'b')",
    "CREATE SECRET web (TYPE http)",
    "CREATE PERSISTENT SECRET web (TYPE http)",
    "DROP SECRET web",
    "BEGIN TRANSACTION",
    "PREPARE q AS SELECT 1",
]


@pytest.mark.parametrize("statement", WRITES)
def test_sql_refuses_every_write_and_changes_no_file(db, data_dir, capsys, statement):
    before, tables = _snapshot(data_dir), _tables(db)
    sql = statement.format(db=db, out=data_dir / "out")
    assert cli.main(["sql", sql]) != 0
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith("polydag sql: ") and captured.err.count("\n") == 1, captured.err
    assert _snapshot(data_dir) == before  # the database byte-identical, no file written
    assert _tables(db) == tables == {("training_log", 3), ("verdict", 1)}


SETTINGS_ALONE = [
    "COPY (SELECT 'gone' AS x) TO '{db}' (FORMAT csv)",
    "COPY training_log TO '{out}/log.csv'",
    "EXPORT DATABASE '{out}/export'",
    "ATTACH '{out}/other.duckdb' AS other",
    "INSERT INTO training_log VALUES (9, 'x')",
    "DROP TABLE training_log",
    "INSTALL httpfs",
    "LOAD httpfs",
    "SELECT * FROM read_csv('/etc/passwd')",
    "SELECT * FROM read_csv('https://example.com/x.csv')",
    "CREATE PERSISTENT SECRET web (TYPE http)",
    "SET enable_external_access = true",
    "SET access_mode = 'read_write'",
    "RESET lock_configuration",
    "SET temp_directory = '{out}'",
]


def test_duckdb_settings_alone_refuse_writes(db, data_dir):
    """The guarantee is DuckDB's configuration, not the statement check: on the bare
    connection (check bypassed) every write still fails and the settings stay locked."""
    from polydag.core.storage.sql import LOCKED_CONFIG, read_only_connection

    before = _snapshot(data_dir)
    with read_only_connection(db) as con:
        settings = dict(con.execute("SELECT name, value FROM duckdb_settings()").fetchall())
        assert settings["access_mode"] == "read_only"
        for name, value in LOCKED_CONFIG.items():
            assert settings[name] == (str(value).lower() if isinstance(value, bool) else value)
        for statement in SETTINGS_ALONE:
            with pytest.raises(duckdb.Error):
                con.execute(statement.format(db=db, out=data_dir / "out"))
        # and the database file itself is still readable
        assert con.execute("SELECT count(*) FROM training_log").fetchone()[0] == 3
    assert _snapshot(data_dir) == before


@pytest.mark.parametrize("query", ["SELECT count(*) AS n FROM training_log", "FROM training_log",
                                   "DESCRIBE training_log", "SHOW TABLES", "SUMMARIZE training_log",
                                   "PRAGMA table_info('training_log')", "EXPLAIN SELECT 1",
                                   "-- a comment\nSELECT 1 AS x;", "SELECT * FROM checkpoint()"])
def test_reads_still_work_and_change_nothing(db, data_dir, capsys, query):
    before = _snapshot(data_dir)
    assert cli.main(["sql", query]) == 0, capsys.readouterr().err
    assert "row" in capsys.readouterr().out
    assert _snapshot(data_dir) == before


@pytest.mark.parametrize("query", ["", "  ", "-- just a comment", "/* x */", "\n-- a\n/* b */\n"])
def test_empty_sql_is_bad_input(db, capsys, query):
    assert cli.main(["sql", query]) == 2
    err = capsys.readouterr().err
    assert err.startswith("polydag sql: the query is empty") and err.count("\n") == 1


def _corrupt(path, kind):
    if kind == "random bytes":
        path.write_bytes(bytes([7, 201, 13, 0, 255, 66, 3]))
    elif kind == "text":
        path.write_text("x\ngone\n")
    elif kind == "empty":
        path.write_bytes(b"")
    else:
        path.mkdir()


COMMANDS = [["sql", "SELECT 1"], ["verdict"], ["summary", "step-importance"], ["tables"]]


@pytest.mark.parametrize("kind", ["random bytes", "text", "empty", "folder"])
@pytest.mark.parametrize("argv", COMMANDS, ids=lambda a: a[0])
def test_unreadable_database_is_one_line(data_dir, capsys, argv, kind):
    path = data_dir / "polydag.duckdb"
    _corrupt(path, kind)
    assert cli.main(argv) == 1
    captured = capsys.readouterr()
    assert captured.err.startswith(f"polydag {argv[0]}: {path} is ")
    assert captured.err.count("\n") == 1, captured.err
    assert "--db" in captured.err
    assert captured.out == ""


@pytest.mark.parametrize("argv", COMMANDS[:3], ids=lambda a: a[0])
def test_missing_database_is_one_line(data_dir, capsys, argv):
    assert cli.main(argv) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"polydag {argv[0]}: results database ") and err.count("\n") == 1
    assert str(data_dir / "polydag.duckdb") in err and "run the main pipeline" in err


@pytest.mark.parametrize("argv, table", [(["verdict"], "verdict"),
                                         (["summary", "step-importance"], "step_importance_summary")])
def test_missing_table_names_the_asset(data_dir, capsys, argv, table):
    duckdb.connect(str(data_dir / "polydag.duckdb")).close()  # a database without the table
    assert cli.main(argv) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"polydag {argv[0]}: ") and err.count("\n") == 1
    assert f"no {table} table yet" in err and f"--select {table}" in err


def test_missing_table_in_sql_is_one_line(db, capsys):
    assert cli.main(["sql", "SELECT * FROM step_importance_summary"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("polydag sql: query failed") and err.count("\n") == 1
    assert "step_importance_summary does not exist" in err and "polydag tables" in err


def test_syntax_error_is_one_line(db, capsys):
    assert cli.main(["sql", "SELEC 1"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("polydag sql: query does not parse") and err.count("\n") == 1
