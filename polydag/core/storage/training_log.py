"""The live ``training_log`` table: one row per logged training step, written while training runs.

Rows are buffered and flushed every few seconds through a short-lived connection, so a sensor
or a ``polydag sql`` reader in another process can watch training as it happens. ``seq`` is a
strictly increasing sequence value (a sensor's cursor; rowid is not stable across deletes).

Rows belong to a *training* (``train_id``: the run identity, a hash of config, data and base
weights), which may span several Dagster runs when a crashed run is resumed from its last
checkpoint. A training's rows become the official log of its sweep unit (a λ and a seed,
``lambda_key``/``seed_key``) only when it succeeds (``commit_training``, which marks them
``committed``); then the rows of that unit from other trainings are removed. A training that fails for a reason that would repeat removes its rows
(``discard_training``). One that died (SIGKILL, OOM, power loss) leaves uncommitted rows: the
next run of the same training keeps those up to the checkpoint it resumes from and drops the
rest (``resume_from``), so every step is logged exactly once; the next run of another training
removes them all. The table never holds a half-written log next to a checkpoint it does not
describe.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

from polydag.core.polychromic.lambdas import SweepKey
from polydag.core.storage.duck import connect

TABLE = "training_log"
LOG_FIELDS = (
    "step",
    "quality_loss",
    "diversity_score",
    "diversity_loss",
    "combined_loss",
    "diversity_grad_share",
    "advantage_std",
    "tied_prompt_share",
    "learning_rate",
    "wall_time",
)
# columns added after the first release: (name, DDL), added to an older table on first use
_ADDED_COLUMNS = (("advantage_std", "DOUBLE"), ("tied_prompt_share", "DOUBLE"))
_DDL = f"""
CREATE SEQUENCE IF NOT EXISTS {TABLE}_seq;
CREATE TABLE IF NOT EXISTS {TABLE} (
    seq BIGINT DEFAULT nextval('{TABLE}_seq'),
    run_id VARCHAR NOT NULL,
    lambda_key VARCHAR NOT NULL,
    diversity_weight DOUBLE NOT NULL,
    seed_key VARCHAR NOT NULL DEFAULT '0',
    step INTEGER NOT NULL,
    quality_loss DOUBLE,
    diversity_score DOUBLE,
    diversity_loss DOUBLE,
    combined_loss DOUBLE,
    diversity_grad_share DOUBLE,
    advantage_std DOUBLE,
    tied_prompt_share DOUBLE,
    learning_rate DOUBLE,
    wall_time DOUBLE,
    logged_at TIMESTAMP DEFAULT current_timestamp,
    committed BOOLEAN NOT NULL DEFAULT false,
    train_id VARCHAR
);
"""


def _ensure_table(con) -> None:
    con.execute(_DDL)
    columns = {row[0] for row in con.execute(
        "SELECT column_name FROM information_schema.columns WHERE table_name = ?", [TABLE]).fetchall()}
    if "committed" not in columns:
        # a table from before the column: every row in it was a committed log (failed runs
        # always removed theirs)
        con.execute(f"ALTER TABLE {TABLE} ADD COLUMN committed BOOLEAN DEFAULT false")
        con.execute(f"UPDATE {TABLE} SET committed = true")
    if "train_id" not in columns:
        con.execute(f"ALTER TABLE {TABLE} ADD COLUMN train_id VARCHAR")
    if "seed_key" not in columns:
        # a table from before seed partitions: every training in it was seed 0's
        con.execute(f"ALTER TABLE {TABLE} ADD COLUMN seed_key VARCHAR DEFAULT '0'")
    for name, ddl in _ADDED_COLUMNS:
        if name not in columns:
            con.execute(f"ALTER TABLE {TABLE} ADD COLUMN {name} {ddl}")


def _unit(key) -> SweepKey:
    return key if isinstance(key, SweepKey) else SweepKey(*key) if isinstance(key, tuple) else SweepKey(key)


def _plain(value):
    if value is None:
        return None
    value = float(value)
    return value  # NaN stays NaN: a sensor must see it


class TrainingLogWriter:
    """Callable ``log_fn`` for the trainer; appends rows for one (run, λ, seed) to ``training_log``."""

    def __init__(
        self,
        db_path: str | Path,
        *,
        run_id: str,
        lambda_key: str,
        diversity_weight: float,
        seed_key: str = "0",
        train_id: str | None = None,
        flush_every_s: float = 2.0,
    ):
        self.db_path = Path(db_path)
        self.run_id = run_id
        self.train_id = train_id or run_id  # default: a training is one run
        self.lambda_key = lambda_key
        self.seed_key = seed_key
        self.diversity_weight = float(diversity_weight)
        self.flush_every_s = flush_every_s
        self._buffer: list[tuple] = []
        self._last_flush = time.monotonic()
        with connect(self.db_path) as con:
            _ensure_table(con)
            # rows a dead run of another training of this λ and seed left behind
            con.execute(f"DELETE FROM {TABLE} WHERE lambda_key = ? AND seed_key = ? AND NOT committed "
                        "AND train_id IS DISTINCT FROM ?", [lambda_key, seed_key, self.train_id])

    def resume_from(self, step: int) -> None:
        """This training continues after ``step`` (0: from the start): its uncommitted rows of
        later steps, written after the checkpoint by a run that died, are dropped."""
        with connect(self.db_path) as con:
            con.execute(f"DELETE FROM {TABLE} WHERE lambda_key = ? AND seed_key = ? AND train_id = ? "
                        "AND NOT committed AND step > ?", [self.lambda_key, self.seed_key, self.train_id, int(step)])

    def __call__(self, row: dict) -> None:
        missing = [f for f in LOG_FIELDS if f not in row]
        if missing:
            raise KeyError(f"training log row is missing fields {missing}: {row}")
        self._buffer.append(
            (self.run_id, self.train_id, self.lambda_key, self.seed_key, self.diversity_weight, int(row["step"]))
            + tuple(_plain(row[f]) for f in LOG_FIELDS[1:])
        )
        if time.monotonic() - self._last_flush >= self.flush_every_s:
            self.flush()

    def flush(self) -> None:
        if not self._buffer:
            return
        rows, self._buffer = self._buffer, []
        with connect(self.db_path) as con:
            con.executemany(
                f"INSERT INTO {TABLE} (run_id, train_id, lambda_key, seed_key, diversity_weight, "
                + ", ".join(LOG_FIELDS)
                + ") VALUES ("
                + ", ".join(["?"] * (5 + len(LOG_FIELDS)))
                + ")",
                rows,
            )
        self._last_flush = time.monotonic()


def commit_training(db_path: str | Path, trainings: dict) -> None:
    """Make each ``{unit: train_id}``'s rows the log of that unit (a :class:`SweepKey`, or a λ
    key for seed 0): drop the unit's other rows."""
    with connect(db_path) as con:
        _ensure_table(con)
        con.execute("BEGIN TRANSACTION")
        for key, train_id in trainings.items():
            unit = _unit(key)
            con.execute(f"DELETE FROM {TABLE} WHERE lambda_key = ? AND seed_key = ? AND train_id IS DISTINCT FROM ?",
                        [*unit, train_id])
            con.execute(f"UPDATE {TABLE} SET committed = true WHERE lambda_key = ? AND seed_key = ? AND train_id = ?",
                        [*unit, train_id])
        con.execute("COMMIT")


def commit_runs(db_path: str | Path, run_id: str, lambda_keys: list[str]) -> None:
    """:func:`commit_training` for trainings that are one run each (``train_id`` = ``run_id``)."""
    commit_training(db_path, {key: run_id for key in lambda_keys})


def discard_training(db_path: str | Path, trainings: dict) -> None:
    """Remove the uncommitted rows of each ``{unit: train_id}`` (a failure that would repeat)."""
    with connect(db_path) as con:
        _ensure_table(con)
        for key, train_id in trainings.items():
            con.execute(f"DELETE FROM {TABLE} WHERE lambda_key = ? AND seed_key = ? AND train_id = ? AND NOT committed",
                        [*_unit(key), train_id])


def discard_run(db_path: str | Path, run_id: str) -> None:
    """Remove every uncommitted row a failed run wrote."""
    with connect(db_path) as con:
        _ensure_table(con)
        con.execute(f"DELETE FROM {TABLE} WHERE run_id = ? AND NOT committed", [run_id])


def is_finite_or_none(value) -> bool:
    return value is None or math.isfinite(value)
