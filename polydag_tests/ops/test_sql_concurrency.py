"""`polydag sql` in a loop never makes a materialization fail, and sees only whole partitions.

One process materializes a new partition per iteration through polydag's real DuckDB IO
manager (``duckdb_writer_loop.py``); meanwhile this test runs the real ``polydag sql``
command in a subprocess again and again. DuckDB lets one process write the file and any open
connection blocks the writer, so this only works because both sides keep connections short
and retry: the reader in ``polydag.core.storage.duck.connect``, the writer in dagster-duckdb.
"""

import json
import subprocess
import sys
import threading
import time

import duckdb
import pytest

from polydag.core.storage.sql import run_query

ITERATIONS = 12
ROWS = 20_000
QUERY = "SELECT part, count(*) AS n, min(value) AS lo, max(value) AS hi FROM samples GROUP BY part"


def _report(path):
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


@pytest.mark.e2e
def test_reader_loop_during_materializations_loses_nothing(tmp_path):
    db, report = tmp_path / "results.duckdb", tmp_path / "writer.jsonl"
    writer = subprocess.Popen(
        [sys.executable, "-m", "polydag_tests.ops.duckdb_writer_loop", str(db), str(ITERATIONS),
         str(ROWS), str(report)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while not _report(report):  # the table exists once the first run has finished
            assert writer.poll() is None, writer.stderr.read()[-3000:]
            assert time.monotonic() < deadline, "the writer's first run never finished"
            time.sleep(0.2)

        # a fast watcher too (a cheap query 5 times a second, like `watch -n 0.2`): it makes
        # lock collisions with the writer all but certain
        stop, tight = threading.Event(), {"reads": 0, "found_locked": 0, "errors": []}

        def tight_reader():
            while not stop.is_set():
                try:
                    duckdb.connect(str(db), read_only=True).close()
                except duckdb.IOException:
                    tight["found_locked"] += 1  # the writer holds it: run_query must wait
                try:
                    run_query("SELECT count(*) FROM samples", db, timeout_s=60)
                    tight["reads"] += 1
                except Exception as exc:  # reported below; the test fails on any
                    tight["errors"].append(repr(exc))
                time.sleep(0.2)

        thread = threading.Thread(target=tight_reader, daemon=True)
        thread.start()
        reads = []
        while writer.poll() is None:
            start = time.time()
            done = subprocess.run(
                [sys.executable, "-m", "polydag.cli", "sql", QUERY, "--db", str(db),
                 "--format", "json", "--timeout", "60"],
                capture_output=True, text=True, timeout=120)
            reads.append({"start": start, "end": time.time(), "rc": done.returncode,
                          "stdout": done.stdout, "stderr": done.stderr})
        assert writer.wait(timeout=300) == 0, [r for r in _report(report) if not r["success"]]
    finally:
        stop.set()
        if writer.poll() is None:
            writer.kill()
            writer.wait()

    thread.join(timeout=120)
    runs = _report(report)
    assert tight["errors"] == [] and tight["reads"] > 0, tight
    # zero failed runs
    assert len(runs) == ITERATIONS and all(run["success"] for run in runs), runs
    # every read succeeded, and it raced the writer: reads happened while runs were going on
    assert [r["rc"] for r in reads if r["rc"] != 0] == [], [r["stderr"] for r in reads if r["rc"]]
    first_start, last_end = runs[1]["start"], runs[-1]["end"]
    overlapping = [r for r in reads if r["end"] > first_start and r["start"] < last_end]
    assert len(overlapping) >= 3, (len(reads), runs)
    durations = sorted(r["end"] - r["start"] for r in reads)
    print(f"{len(runs)} runs, {len(reads)} reads ({len(overlapping)} during runs); "
          f"read seconds median {durations[len(durations) // 2]:.2f}, max {durations[-1]:.2f}; "
          f"run seconds max {max(r['end'] - r['start'] for r in runs):.2f}; tight reader: "
          f"{tight['reads']} reads, {tight['found_locked']} found the file locked and waited")
    # each read saw whole partitions only (the IO manager's delete+insert is one transaction),
    # and never lost one it had seen before
    seen_before: set = set()
    for read in reads:
        groups = {g["part"]: g for g in json.loads(read["stdout"])}
        for part, g in groups.items():
            n = int(part[1:])
            assert (g["n"], g["lo"], g["hi"]) == (ROWS, n * ROWS, (n + 1) * ROWS - 1), g
        assert seen_before <= set(groups)
        seen_before = set(groups)
    # zero lost rows: every row of every run is there exactly once
    con = duckdb.connect(str(db), read_only=True)
    try:
        total, distinct, lo, hi = con.execute(
            "SELECT count(*), count(DISTINCT value), min(value), max(value) FROM samples").fetchone()
    finally:
        con.close()
    assert (total, distinct, lo, hi) == (ITERATIONS * ROWS, ITERATIONS * ROWS, 0, ITERATIONS * ROWS - 1)
