"""The ``generation_batches`` side table: evaluation samples kept as each prompt batch finishes.

The ``generations`` asset is stored by the IO manager only when the whole partition is done,
so a run killed at hour 5 of sampling would lose everything. :class:`GenerationBatches` writes
every finished prompt batch at once, in one transaction through a short-lived connection
(``polydag.core.storage.duck.connect`` retries while another process holds the file; DuckDB
allows one writing process per file). A rerun with the same generation cache key loads the
finished prompts and samples only the missing ones; since evaluation seeds every prompt on
its own, the texts are the ones an uninterrupted run draws.

Lifetime of the rows (per λ and seed, at most one partition's worth):

- rows of a unit under another cache key are removed when that unit starts under a new key (a
  different adapter, config, checker, prompt set, device or dtype never reuses them);
- the rows of a finished draw stay after the run: the IO manager writes the partition only
  after the asset returns, and if that write fails the next run resumes every prompt from
  here instead of sampling again;
- they are removed when a later run finds the stored partition complete under the same key
  (then the partition itself is the cache, :func:`polydag.core.evaluation.generation.reuse_cached`).

What it doesn't: decide which prompts a draw needs or check quality (the checker runs over
the whole partition at the end, so resumed and fresh samples are judged alike).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Mapping, Sequence

from polydag.core.polychromic.lambdas import SweepKey
from polydag.core.storage.duck import DuckDBBusyError, connect, table_exists

TABLE = "generation_batches"
_DDL = f"""
CREATE TABLE IF NOT EXISTS {TABLE} (
    cache_key VARCHAR NOT NULL,
    lambda_key VARCHAR NOT NULL,
    seed_key VARCHAR NOT NULL DEFAULT '0',
    prompt_id VARCHAR NOT NULL,
    sample_idx INTEGER NOT NULL,
    text VARCHAR NOT NULL,
    written_at TIMESTAMP DEFAULT current_timestamp
);
"""

_log = logging.getLogger(__name__)


def _ensure_table(con) -> None:
    con.execute(_DDL)
    columns = {row[0] for row in con.execute(
        "SELECT column_name FROM information_schema.columns WHERE table_name = ?", [TABLE]).fetchall()}
    if "seed_key" not in columns:  # a table from before seed partitions: all of seed 0
        con.execute(f"ALTER TABLE {TABLE} ADD COLUMN seed_key VARCHAR DEFAULT '0'")


def _unit(key) -> SweepKey:
    return key if isinstance(key, SweepKey) else SweepKey(key)


class GenerationBatches:
    """Finished prompt batches of one sweep unit's (λ, seed) draw under one cache key, in ``db_path``.

    ``timeout_s`` bounds how long one write waits for the file lock; a batch that could not be
    written then stays pending (a warning says so) and goes out with the next batch, so a busy
    database slows durability, never the draw.
    """

    def __init__(self, db_path: str | Path, *, timeout_s: float = 30.0, logger: logging.Logger | None = None):
        self.db_path = Path(db_path)
        self.timeout_s = timeout_s
        self.logger = logger or _log
        self._pending: list[tuple[str, str, str, str, int, str]] = []

    # ------------------------------------------------------------------ reading

    def finished(self, cache_key: str, n_samples: int) -> dict[str, list[str]]:
        """``{prompt_id: [text of sample 0, 1, ...]}`` for the prompts whose ``n_samples``
        samples are all stored under ``cache_key`` (an incomplete prompt counts as missing)."""
        if not self.db_path.exists():
            return {}
        with connect(self.db_path, read_only=True, timeout_s=max(self.timeout_s, 60.0)) as con:
            if not table_exists(con, TABLE):
                return {}
            rows = con.execute(
                f"SELECT prompt_id, sample_idx, text FROM {TABLE} WHERE cache_key = ? "
                "ORDER BY prompt_id, sample_idx", [cache_key]).fetchall()
        by_prompt: dict[str, dict[int, str]] = {}
        for prompt_id, sample_idx, text in rows:
            by_prompt.setdefault(prompt_id, {})[sample_idx] = text
        return {pid: [samples[i] for i in range(n_samples)] for pid, samples in by_prompt.items()
                if set(samples) == set(range(n_samples))}

    # ------------------------------------------------------------------ writing

    def add(self, cache_key: str, unit: SweepKey | str, replies: Mapping[str, Sequence[str]]) -> bool:
        """Store one finished batch, ``{prompt_id: its samples}``, in one transaction (a prompt
        stored before under the key is replaced). False when the file stayed busy: the rows
        are kept and written with the next call or :meth:`flush`."""
        unit = _unit(unit)
        self._pending.extend((cache_key, unit.lambda_key, unit.seed_key, str(pid), i, text)
                             for pid, texts in replies.items() for i, text in enumerate(texts))
        return self.flush()

    def flush(self) -> bool:
        """Write the pending rows; False (with a warning) when the file stayed busy."""
        if not self._pending:
            return True
        rows = self._pending
        try:
            with connect(self.db_path, timeout_s=self.timeout_s) as con:
                _ensure_table(con)
                con.execute("BEGIN TRANSACTION")
                try:
                    keys = sorted({(r[0], r[3]) for r in rows})
                    con.executemany(f"DELETE FROM {TABLE} WHERE cache_key = ? AND prompt_id = ?", keys)
                    con.executemany(
                        f"INSERT INTO {TABLE} (cache_key, lambda_key, seed_key, prompt_id, sample_idx, text) "
                        "VALUES (?, ?, ?, ?, ?, ?)", rows)
                except BaseException:
                    con.execute("ROLLBACK")
                    raise
                con.execute("COMMIT")
        except DuckDBBusyError as exc:
            self.logger.warning("%d finished samples not yet kept in %s (busy: %s); retrying with the next "
                                "batch", len(rows), TABLE, exc)
            return False
        self._pending = []
        return True

    def prune(self, unit: SweepKey | str, *, keep_cache_key: str | None = None) -> int:
        """Remove the unit's rows, except those under ``keep_cache_key``; the count removed
        (0 with a warning when the file stayed busy: keyed rows are never reused wrongly)."""
        if not self.db_path.exists():
            return 0
        unit = _unit(unit)
        where, params = "lambda_key = ? AND seed_key = ?", list(unit)
        if keep_cache_key is not None:
            where, params = where + " AND cache_key <> ?", params + [keep_cache_key]
        try:
            with connect(self.db_path, timeout_s=self.timeout_s) as con:
                if not table_exists(con, TABLE):
                    return 0
                _ensure_table(con)
                (count,) = con.execute(f"SELECT count(*) FROM {TABLE} WHERE {where}", params).fetchone()
                if count:
                    con.execute(f"DELETE FROM {TABLE} WHERE {where}", params)
        except DuckDBBusyError as exc:  # stale rows are harmless (keyed); a later run removes them
            self.logger.warning("could not remove %s's old rows from %s (busy: %s)", unit.label, TABLE, exc)
            return 0
        return int(count)
