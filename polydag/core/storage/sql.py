"""Read the results database from the terminal without ever writing anything or making a run fail.

DuckDB lets one process write a file, and any other process holding it open (even read-only)
blocks that writer. So every query here opens the file read-only, runs, and closes at once
(:func:`polydag.core.storage.duck.connect`), retrying while a run's write holds the lock; the Dagster
IO manager retries the other way round, so a reader in a loop and a materialization in a loop
both succeed (``polydag_tests/ops/test_sql_concurrency.py``).

Read-only means the connection can write nothing anywhere. Two layers, checked on duckdb 1.5.6:

1. DuckDB's own settings (:data:`LOCKED_CONFIG`, with ``read_only=True``), the guarantee:

   ============================== ==========================================================
   access_mode READ_ONLY          INSERT/UPDATE/DELETE/CREATE/DROP/ALTER on the database;
                                  CHECKPOINT and VACUUM do nothing
   enable_external_access false   every file, URL and other database: COPY TO/FROM,
                                  EXPORT DATABASE, ATTACH, read_csv/read_text/glob of any file
                                  but the database, http(s)/s3, INSTALL, LOAD of a file
   autoinstall/autoload_known_    a query that names an extension's function or a URL does
   extensions false               not fetch or load that extension
   allow_community/unsigned_      no third-party or unsigned extension
   extensions false
   allow_persistent_secrets false CREATE PERSISTENT SECRET (a file under ~/.duckdb)
   temp_directory ''              no spill files next to the database (a query larger than
                                  memory fails instead)
   lock_configuration true        SET/RESET/PRAGMA cannot switch any of this back
   ============================== ==========================================================

   The database file itself stays readable: it is opened before the settings apply.
2. A statement check on DuckDB's parser (:func:`check_query`): exactly one SELECT-type
   statement (SELECT, WITH, FROM, VALUES, TABLE, DESCRIBE, SHOW, SUMMARIZE, PRAGMA table_info,
   plain EXPLAIN of one). It refuses with a clear message what the settings allow but only
   touches memory (temporary tables, in-memory secrets, variables, profiling, LOAD of a built-in
   extension, the no-op CHECKPOINT) and empty or comment-only SQL.
"""

from __future__ import annotations

import contextlib
import io
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, TextIO

from polydag.core.ops import paths
from polydag.core.storage.duck import connect
from polydag.core.storage.tables import markdown_table

FORMATS = ("table", "csv", "json", "parquet")
_SUFFIX_FORMATS = {".csv": "csv", ".json": "json", ".parquet": "parquet", ".md": "table"}

# opened with read_only=True (access_mode READ_ONLY); see the module docstring
LOCKED_CONFIG = {
    "enable_external_access": False,
    "autoinstall_known_extensions": False,
    "autoload_known_extensions": False,
    "allow_community_extensions": False,
    "allow_unsigned_extensions": False,
    "allow_persistent_secrets": False,
    "temp_directory": "",
    "lock_configuration": True,
}
ALLOWED = "SELECT, WITH, FROM, VALUES, TABLE, DESCRIBE, SHOW, SUMMARIZE, PRAGMA table_info, EXPLAIN"
_LEADING = r"(?:\s+|--[^\n]*|/\*.*?\*/)*"
_EXPLAIN = re.compile(_LEADING + r"EXPLAIN\b", re.IGNORECASE | re.DOTALL)
_FIRST_WORD = re.compile(_LEADING + r"(\w+)", re.DOTALL)
REBUILD_HINT = "re-run the pipeline to create it (bash scripts/run_all.sh) or pass --db FILE"


class SqlError(RuntimeError):
    """The query failed (bad SQL, a refused statement, a missing table) or the database cannot be
    read."""


class QueryRefusedError(SqlError):
    """The statement is not a read-only query (polydag sql runs one SELECT-type statement)."""


class DatabaseFileError(SqlError):
    """The database path is not a readable DuckDB file (corrupt, another format, a folder)."""


class MissingTableError(SqlError):
    """The database has no table of that name yet."""


class EmptyQueryError(ValueError):
    """The SQL holds no statement (empty, blank or only comments): bad input."""


def _one_line(exc: BaseException) -> str:
    """DuckDB's message on one line (without the "LINE 1: ... ^" pointer)."""
    text = str(exc).split("\nLINE ")[0]
    return " ".join(line.strip() for line in text.splitlines() if line.strip())


def _statement_kind(statement) -> str:
    match = _FIRST_WORD.match(statement.query or "")
    return match.group(1).upper() if match else statement.type.name


def check_query(sql: str) -> None:
    """Refuse ``sql`` unless it is exactly one SELECT-type statement (EmptyQueryError when it
    holds none, QueryRefusedError for anything else, SqlError when it does not parse)."""
    import duckdb

    with duckdb.connect(":memory:") as parser:  # parsing needs a connection, not the database
        try:
            statements = parser.extract_statements(sql)
        except duckdb.Error as exc:
            raise SqlError(f"query does not parse: {_one_line(exc)}") from exc
        if not statements:
            raise EmptyQueryError(
                "the query is empty (only whitespace or comments); give a statement such as "
                '"SELECT * FROM metrics_summary"'
            )
        if len(statements) > 1:
            raise QueryRefusedError(
                f"{len(statements)} statements given "
                f"({', '.join(_statement_kind(s) for s in statements)}); "
                "polydag sql runs one at a time"
            )
        statement = statements[0]
        kind = _statement_kind(statement)
        if statement.type == duckdb.StatementType.EXPLAIN:
            # plain EXPLAIN only plans; EXPLAIN ANALYZE (or options) runs: the rest must be a SELECT
            inner = _EXPLAIN.sub("", statement.query, count=1)
            try:
                inner_types = [s.type for s in parser.extract_statements(inner)]
            except duckdb.Error:
                inner_types = []
            if inner_types != [duckdb.StatementType.SELECT]:
                raise QueryRefusedError(
                    "only a plain EXPLAIN of one SELECT is allowed (EXPLAIN ANALYZE and EXPLAIN "
                    "options run or explain other statements); polydag sql is read-only"
                )
        elif statement.type != duckdb.StatementType.SELECT:
            raise QueryRefusedError(
                f"{kind} statements are refused: polydag sql is read-only and runs one query of "
                f"these kinds: {ALLOWED}"
            )


@contextlib.contextmanager
def read_only_connection(db_path: str | Path, *, timeout_s: float = 60.0) -> Iterator:
    """A short-lived connection to ``db_path`` that can write nothing anywhere
    (:data:`LOCKED_CONFIG`); DatabaseFileError when the path is not a readable DuckDB file,
    FileNotFoundError when it does not exist."""
    import duckdb

    db_path = Path(db_path)
    if db_path.is_dir():
        raise DatabaseFileError(
            f"{db_path} is a folder, not a DuckDB database file; pass --db FILE"
        )
    with contextlib.ExitStack() as stack:
        try:
            con = stack.enter_context(
                connect(db_path, read_only=True, timeout_s=timeout_s, config=LOCKED_CONFIG)
            )
        except duckdb.Error as exc:
            if "not a valid DuckDB database file" in str(exc):
                raise DatabaseFileError(
                    f"{db_path} is not a DuckDB database file (corrupt or another format); move "
                    f"it aside and {REBUILD_HINT}"
                ) from exc
            raise DatabaseFileError(f"cannot open {db_path}: {_one_line(exc)}") from exc
        yield con


def run_query(sql: str, db_path: str | Path | None = None, *, timeout_s: float = 60.0):
    """Run one read-only query ``sql`` on a short-lived connection that can write nothing
    (:func:`check_query`, :func:`read_only_connection`); the result as a polars DataFrame."""
    import duckdb

    import polars as pl

    check_query(sql)
    db_path = Path(db_path) if db_path is not None else paths.duckdb_path()
    with read_only_connection(db_path, timeout_s=timeout_s) as con:
        try:
            result = con.execute(sql)
            # fetch as Arrow while connected, build the DataFrame after closing: the file is
            # held only for the query itself, so writers wait as little as possible
            table = result.to_arrow_table() if result.description is not None else None
        except duckdb.Error as exc:
            message = f"query failed on {db_path}: {_one_line(exc)}"
            if isinstance(exc, duckdb.PermissionException):
                message += (" (polydag sql reads only the results database: no other file, URL, "
                            "database or extension)")
            elif isinstance(exc, duckdb.CatalogException):
                message += " (`polydag tables` lists the tables)"
            raise SqlError(message) from exc
    return pl.DataFrame() if table is None else pl.from_arrow(table)


def read_table(table: str, db_path: str | Path | None = None, *, order_by: str | None = None,
               timeout_s: float = 60.0):
    """All rows of ``table`` (a polars DataFrame); MissingTableError naming the asset that writes
    it when the database does not have it yet."""
    from polydag.core.storage.duck import table_exists

    import polars as pl

    db_path = Path(db_path) if db_path is not None else paths.duckdb_path()
    with read_only_connection(db_path, timeout_s=timeout_s) as con:
        if not table_exists(con, table):
            raise MissingTableError(
                f"{db_path} has no {table} table yet; materialize it: "
                f"dagster asset materialize -m polydag --select {table} "
                "(after its upstream assets; see README)"
            )
        order = f" ORDER BY {order_by}" if order_by else ""
        arrow = con.execute(f'SELECT * FROM "{table}"{order}').to_arrow_table()
    return pl.from_arrow(arrow)


def pick_format(fmt: str | None, out: str | Path | None) -> str:
    """``fmt`` if given, else from ``out``'s suffix, else "table"."""
    if fmt is not None:
        if fmt not in FORMATS:
            raise ValueError(f"unknown format {fmt!r}; choose one of {FORMATS}")
        return fmt
    if out is not None:
        suffix = Path(out).suffix.lower()
        if suffix not in _SUFFIX_FORMATS:
            raise ValueError(
                f"cannot tell the format from {out!r}; pass --format {'|'.join(FORMATS)}"
            )
        return _SUFFIX_FORMATS[suffix]
    return "table"


def render(frame, fmt: str, *, max_rows: int | None = 1000) -> str:
    """``frame`` as text in a text format (table, csv, json)."""
    if fmt == "table":
        shown = frame if max_rows is None else frame.head(max_rows)
        text = markdown_table(shown)
        if shown.height < frame.height:
            text += (f"\n({frame.height - shown.height} more rows not shown; "
                     "use --format csv or --out FILE for all)")
        return text + f"\n({frame.height} row{'s' if frame.height != 1 else ''})"
    if fmt == "csv":
        return frame.write_csv()
    if fmt == "json":
        buffer = io.StringIO()
        frame.write_json(buffer)
        return buffer.getvalue()
    raise ValueError(f"format {fmt!r} is binary; write it to a file with --out")


def write_result(frame, fmt: str, out: str | Path | None = None, stream: TextIO | None = None,
                 *, max_rows: int | None = 1000) -> None:
    """Write ``frame`` to ``out`` (any format) or to ``stream`` (text formats)."""
    if out is None:
        if fmt == "parquet":
            raise ValueError("parquet is binary: give a file with --out result.parquet")
        (stream or sys.stdout).write(render(frame, fmt, max_rows=max_rows).rstrip("\n") + "\n")
        return
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "parquet":
        frame.write_parquet(out)
    else:
        out.write_text(render(frame, fmt, max_rows=None))


@dataclass
class TableInfo:
    name: str
    n_rows: int | None  # None: documented but not in the database
    columns: list[tuple[str, str]]  # (name, duckdb type); documented names when absent


def list_tables(db_path: str | Path | None = None, *, timeout_s: float = 60.0) -> list[TableInfo]:
    """Every table of the database plus every documented table it does not have yet."""
    from polydag.core.storage.table_docs import TABLE_DOCS, UNDOCUMENTED_TABLES

    db_path = Path(db_path) if db_path is not None else paths.duckdb_path()
    found: dict[str, TableInfo] = {}
    if db_path.exists():
        with read_only_connection(db_path, timeout_s=timeout_s) as con:
            rows = con.execute(
                "SELECT table_name, column_name, data_type FROM information_schema.columns "
                "WHERE table_schema = 'main' ORDER BY table_name, ordinal_position"
            ).fetchall()
            for table, column, dtype in rows:
                found.setdefault(table, TableInfo(table, None, [])).columns.append((column, dtype))
            for info in found.values():
                info.n_rows = con.execute(f'SELECT count(*) FROM "{info.name}"').fetchone()[0]
    for table in [*TABLE_DOCS, *UNDOCUMENTED_TABLES]:
        if table not in found:
            found[table] = TableInfo(table, None, [(c, "") for c in TABLE_DOCS.get(table, {})])
    return sorted(found.values(), key=lambda t: (t.n_rows is None, t.name))


def describe_tables(tables: list[TableInfo], db_path: Path) -> str:
    """The text ``polydag tables`` prints."""
    from polydag.core.storage.table_docs import TABLE_DOCS, describe_column, documented_columns_missing

    lines = [f"tables in {db_path}"
             + ("" if db_path.exists() else f" (file does not exist yet; {REBUILD_HINT})")]
    for table in tables:
        lines.append("")
        if table.n_rows is None:
            lines.append(f"{table.name}  (not in the database yet)")
        else:
            lines.append(f"{table.name}  ({table.n_rows} rows)")
        if not table.columns and table.name not in TABLE_DOCS:
            lines.append("    (columns not documented yet)")
        width = max((len(c) for c, _ in table.columns), default=0)
        type_width = max((len(t) for _, t in table.columns), default=0)
        for column, dtype in table.columns:
            text = describe_column(table.name, column) or "(undocumented)"
            lines.append(f"    {column:<{width}}  {dtype:<{type_width}}  {text}".rstrip())
        if table.n_rows is not None:
            missing = documented_columns_missing(table.name, [c for c, _ in table.columns])
            if missing:
                lines.append(f"    documented but missing: {', '.join(missing)}")
    return "\n".join(lines)
