"""Read the results database from the terminal without ever making a run fail.

DuckDB lets one process write a file, and any other process holding it open (even read-only)
blocks that writer. So every query here opens the file read-only, runs, and closes at once
(:func:`polydag.core.storage.duck.connect`), retrying while a run's write holds the lock; the Dagster
IO manager retries the other way round, so a reader in a loop and a materialization in a loop
both succeed (``polydag_tests/ops/test_sql_concurrency.py``).

Read-only also means a mistyped ``DROP`` cannot touch the results.
"""

from __future__ import annotations

import io
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from polydag.core.ops import paths
from polydag.core.storage.duck import connect
from polydag.core.storage.tables import markdown_table

FORMATS = ("table", "csv", "json", "parquet")
_SUFFIX_FORMATS = {".csv": "csv", ".json": "json", ".parquet": "parquet", ".md": "table"}


class SqlError(RuntimeError):
    """The query failed (bad SQL, a write on the read-only connection, a missing table)."""


def run_query(sql: str, db_path: str | Path | None = None, *, timeout_s: float = 60.0):
    """Run ``sql`` on a short-lived read-only connection; the result as a polars DataFrame."""
    import duckdb

    import polars as pl

    db_path = Path(db_path) if db_path is not None else paths.duckdb_path()
    with connect(db_path, read_only=True, timeout_s=timeout_s) as con:
        try:
            result = con.execute(sql)
            # fetch as Arrow while connected, build the DataFrame after closing: the file is
            # held only for the query itself, so writers wait as little as possible
            table = result.to_arrow_table() if result.description is not None else None
        except duckdb.Error as exc:
            raise SqlError(f"query failed on {db_path}: {exc}") from exc
    return pl.DataFrame() if table is None else pl.from_arrow(table)


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
        with connect(db_path, read_only=True, timeout_s=timeout_s) as con:
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

    lines = [f"tables in {db_path}" + ("" if db_path.exists() else " (file does not exist yet)")]
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
