"""Short-lived DuckDB connections for side tables (training log, alerts, costs).

DuckDB allows one writing process per file, and any process holding the file open blocks
writers in other processes. The Dagster IO manager opens a connection per read and write;
our own writers do the same and retry while another process holds the lock, so a live
training log never makes a materialization fail.
"""

from __future__ import annotations

import contextlib
import random
import time
from pathlib import Path
from typing import Iterator

LOCK_MARKERS = ("lock", "Could not set lock", "Conflicting lock", "being used by another process")


class DuckDBBusyError(RuntimeError):
    """The DuckDB file stayed locked by another process for the whole retry budget."""


def _is_lock_error(exc: BaseException) -> bool:
    text = str(exc)
    return any(marker.lower() in text.lower() for marker in LOCK_MARKERS)


@contextlib.contextmanager
def connect(
    path: str | Path,
    *,
    read_only: bool = False,
    timeout_s: float = 60.0,
    config: dict | None = None,
) -> Iterator["duckdb.DuckDBPyConnection"]:  # noqa: F821
    """Open ``path`` for one short piece of work, retrying while another process holds it."""
    import duckdb

    path = Path(path)
    if not read_only:
        path.parent.mkdir(parents=True, exist_ok=True)
    elif not path.exists():
        raise FileNotFoundError(
            f"results database {path} does not exist yet; run the main pipeline first "
            "(see README: 'bash scripts/run_all.sh')"
        )
    deadline = time.monotonic() + timeout_s
    delay = 0.05
    while True:
        try:
            con = duckdb.connect(str(path), read_only=read_only, config=config or {})
            break
        except duckdb.Error as exc:  # IOException on lock conflicts
            if not _is_lock_error(exc) or time.monotonic() >= deadline:
                if _is_lock_error(exc):
                    raise DuckDBBusyError(
                        f"{path} stayed locked by another process for {timeout_s:.0f}s: {exc}"
                    ) from exc
                raise
            time.sleep(delay * (0.5 + random.random()))
            delay = min(delay * 2, 2.0)
    try:
        yield con
    finally:
        con.close()


def table_exists(con, table: str) -> bool:
    return bool(
        con.execute(
            "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'main' "
            "AND table_name = ?",
            [table],
        ).fetchone()[0]
    )


def read_rows(path: str | Path, table: str, *, columns=None, timeout_s: float = 60.0, **where):
    """Rows of ``table`` (polars; ``columns`` or all) matching ``where``: a column equal to a
    value, or in a list or tuple of values. An empty frame when the database or the table does
    not exist yet."""
    import polars as pl

    path = Path(path)
    if not path.exists():
        return pl.DataFrame()
    clauses, params = [], []
    for column, value in where.items():
        if isinstance(value, (list, tuple)):
            clauses.append(f'"{column}" IN (SELECT unnest(?))')
            params.append(list(value))
        else:
            clauses.append(f'"{column}" = ?')
            params.append(value)
    selected = ", ".join(f'"{c}"' for c in columns) if columns else "*"
    with connect(path, read_only=True, timeout_s=timeout_s) as con:
        if not table_exists(con, table):
            return pl.DataFrame()
        query = f'SELECT {selected} FROM "{table}" WHERE {" AND ".join(clauses) or "TRUE"}'
        return con.execute(query, params).pl()


def unit_rows(path: str | Path, table: str, unit):
    """The rows of one sweep unit (a ``SweepKey``: λ and seed) of a stored table; a table from
    before seed partitions has no ``seed_key`` and holds seed 0's rows only."""
    import polars as pl

    rows = read_rows(path, table, lambda_key=unit.lambda_key)
    if rows.is_empty() or "seed_key" not in rows.columns:
        return rows if unit.seed_key == "0" else rows.clear()
    return rows.filter(pl.col("seed_key") == unit.seed_key)
