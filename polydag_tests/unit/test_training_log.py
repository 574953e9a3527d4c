import math

import duckdb

from polydag.core.storage.training_log import TrainingLogWriter, commit_runs, discard_run


def _row(step, **overrides):
    row = dict(step=step, quality_loss=2.0, diversity_score=None, diversity_loss=None,
               combined_loss=2.0, diversity_grad_share=None, advantage_std=None, tied_prompt_share=None,
               learning_rate=1e-3, wall_time=0.5)
    row.update(overrides)
    return row


def _rows(path):
    con = duckdb.connect(str(path), read_only=True)
    try:
        return con.execute(
            "SELECT seq, run_id, lambda_key, step, quality_loss, diversity_grad_share "
            "FROM training_log ORDER BY seq").fetchall()
    finally:
        con.close()


def test_rows_are_visible_to_other_connections_after_each_flush(tmp_path):
    db = tmp_path / "r.duckdb"
    writer = TrainingLogWriter(db, run_id="a", lambda_key="0.3", diversity_weight=0.3,
                               flush_every_s=3600)
    writer(_row(0))
    writer(_row(1, diversity_grad_share=0.25, quality_loss=float("nan")))
    assert _rows(db) == []  # buffered
    writer.flush()
    rows = _rows(db)
    assert [r[3] for r in rows] == [0, 1]
    assert rows[0][0] < rows[1][0]  # seq increases
    assert math.isnan(rows[1][4]) and rows[1][5] == 0.25  # NaN is kept for the sensor


def test_commit_replaces_older_runs_of_the_same_lambda_only(tmp_path):
    db = tmp_path / "r.duckdb"
    for run, key in [("old", "0.3"), ("old", "1.0"), ("new", "0.3")]:
        w = TrainingLogWriter(db, run_id=run, lambda_key=key, diversity_weight=float(key))
        w(_row(0))
        w.flush()
    commit_runs(db, "new", ["0.3"])
    assert sorted((r[1], r[2]) for r in _rows(db)) == [("new", "0.3"), ("old", "1.0")]


def test_discard_removes_a_failed_runs_rows(tmp_path):
    db = tmp_path / "r.duckdb"
    w = TrainingLogWriter(db, run_id="keep", lambda_key="0.0", diversity_weight=0.0)
    w(_row(0)); w.flush()
    commit_runs(db, "keep", ["0.0"])  # the λ's official log
    w = TrainingLogWriter(db, run_id="failed", lambda_key="0.0", diversity_weight=0.0)
    w(_row(0)); w(_row(1)); w.flush()
    discard_run(db, "failed")
    assert [r[1] for r in _rows(db)] == ["keep"]


def test_missing_field_is_named(tmp_path):
    import pytest

    w = TrainingLogWriter(tmp_path / "r.duckdb", run_id="a", lambda_key="0.0",
                          diversity_weight=0.0)
    row = _row(0)
    del row["combined_loss"]
    with pytest.raises(KeyError, match="combined_loss"):
        w(row)


def test_a_dead_runs_rows_are_removed_when_the_next_run_of_that_lambda_starts(tmp_path):
    db = tmp_path / "r.duckdb"
    done = TrainingLogWriter(db, run_id="done", lambda_key="2.0", diversity_weight=2.0)
    for step in (1, 2):
        done(_row(step))
    done.flush()
    commit_runs(db, "done", ["2.0"])
    dead = TrainingLogWriter(db, run_id="killed", lambda_key="2.0", diversity_weight=2.0)
    dead(_row(1))
    dead.flush()  # then SIGKILL: neither commit nor discard
    other = TrainingLogWriter(db, run_id="other-lambda", lambda_key="1.0", diversity_weight=1.0)
    other(_row(1))
    other.flush()  # another λ's live run is not touched
    assert sorted({r[1] for r in _rows(db)}) == ["done", "killed", "other-lambda"]
    TrainingLogWriter(db, run_id="next", lambda_key="2.0", diversity_weight=2.0)
    assert sorted({r[1] for r in _rows(db)}) == ["done", "other-lambda"]


def test_a_table_from_before_the_committed_column_keeps_its_logs(tmp_path):
    import duckdb

    db = tmp_path / "r.duckdb"
    con = duckdb.connect(str(db))
    con.execute("CREATE SEQUENCE training_log_seq; CREATE TABLE training_log (seq BIGINT DEFAULT "
                "nextval('training_log_seq'), run_id VARCHAR NOT NULL, lambda_key VARCHAR NOT NULL, "
                "diversity_weight DOUBLE NOT NULL, step INTEGER NOT NULL, quality_loss DOUBLE, diversity_score "
                "DOUBLE, diversity_loss DOUBLE, combined_loss DOUBLE, diversity_grad_share DOUBLE, learning_rate "
                "DOUBLE, wall_time DOUBLE, logged_at TIMESTAMP DEFAULT current_timestamp)")
    con.execute("INSERT INTO training_log (run_id, lambda_key, diversity_weight, step) VALUES ('old', '2.0', 2.0, 1)")
    con.close()
    TrainingLogWriter(db, run_id="next", lambda_key="2.0", diversity_weight=2.0)
    assert [r[1] for r in _rows(db)] == ["old"]
    # the old table also gains the diagnostics columns, and the next training logs into them
    writer = TrainingLogWriter(db, run_id="next", lambda_key="1.0", diversity_weight=1.0, flush_every_s=1e9)
    writer(_row(1, advantage_std=0.25, tied_prompt_share=0.5))
    writer.flush()
    con = duckdb.connect(str(db), read_only=True)
    assert con.execute("SELECT advantage_std, tied_prompt_share FROM training_log WHERE run_id = 'next'"
                       ).fetchall() == [(0.25, 0.5)]
    con.close()
