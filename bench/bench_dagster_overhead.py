"""Dagster's overhead on a step-importance sweep: ranged runs through Dagster vs the bare engine.

Both sides run the same model (the default CODI model, trained briefly here: overhead does not
depend on its accuracy), the same problems and the default ablation spec.

* bare: ``polydag.core.step_importance.api.run_step_importance`` on all N problems in this process;
* dagster: ``polydag sweep step-importance --max-problems N`` in a subprocess against a fresh
  instance, i.e. what a user runs: CLI start, code-location load, ranged runs of the asset's
  backfill-policy size (200 problems), per-partition bookkeeping, DuckDB writes and the
  blocking null-control check.

``--instance shipped`` (default) runs against polydag's own instance settings
(data/dagster_home/dagster.yaml: batched asset-event writes); ``--instance dagster`` against
Dagster's defaults (a dagster.yaml with telemetry off only), to show what the settings gain.

Writes bench/results/dagster_overhead.json.

    python bench/bench_dagster_overhead.py [--n-problems 1000] [--train-steps 60]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _synthetic import machine_info  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results" / "dagster_overhead.json"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-problems", type=int, default=1000)
    parser.add_argument("--train-steps", type=int, default=60)
    parser.add_argument("--instance", choices=["shipped", "dagster"], default="shipped",
                        help="dagster.yaml of the instance: polydag's (data/dagster_home) or Dagster's defaults")
    parser.add_argument("--out", default=str(RESULTS))
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="polydag-overhead-"))
    home = work / "home"
    home.mkdir()
    if args.instance == "shipped":
        (home / "dagster.yaml").write_text((ROOT / "data" / "dagster_home" / "dagster.yaml").read_text())
    else:
        (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    env = dict(os.environ, DAGSTER_HOME=str(home), POLYDAG_DATA_DIR=str(work),
               PYTHONUNBUFFERED="1")
    (work / "run.yaml").write_text(
        f"ops:\n  codi_model:\n    config:\n      default_model:\n        steps: {args.train_steps}\n")

    setup = subprocess.run(
        [sys.executable, "-m", "dagster", "asset", "materialize", "-m", "polydag",
         "--select", "problems,codi_model", "--config", str(work / "run.yaml")],
        env=env, capture_output=True, text=True, cwd=ROOT)
    if setup.returncode != 0:
        sys.exit(setup.stderr[-3000:])

    os.environ["POLYDAG_DATA_DIR"] = str(work)
    import duckdb

    from polydag.core.step_importance.api import run_step_importance
    from polydag.core.ops.cpu_threads import configure_torch_threads

    configure_torch_threads()
    con = duckdb.connect(str(work / "polydag.duckdb"), read_only=True)
    problems = con.execute("SELECT * FROM problems").pl()
    model_row = con.execute("SELECT * FROM codi_model").pl().row(0, named=True)
    con.close()
    # the instance registers partitions in table order; the sweep takes the first N of them
    subset = problems.head(args.n_problems)

    start = time.perf_counter()
    rows = run_step_importance(model_row, subset, all_problems=problems)
    bare_s = time.perf_counter() - start

    start = time.perf_counter()
    sweep = subprocess.run(
        [sys.executable, "-m", "polydag.cli", "sweep", "step-importance",
         "--max-problems", str(args.n_problems)],
        env=env, capture_output=True, text=True, cwd=ROOT)
    dagster_s = time.perf_counter() - start
    if sweep.returncode != 0:
        sys.exit(sweep.stdout[-3000:] + sweep.stderr[-3000:])
    run_seconds = [float(s) for s in re.findall(r"problems, ([0-9.]+)s\) ok", sweep.stdout)]

    con = duckdb.connect(str(work / "polydag.duckdb"), read_only=True)
    stored = con.execute("SELECT count(*) FROM step_importance").fetchone()[0]
    con.close()
    assert stored == rows.height, (stored, rows.height)

    result = {
        "benchmark": "step-importance sweep through Dagster (ranged runs) vs the bare engine",
        "instance": args.instance,
        "n_problems": args.n_problems,
        "rows": rows.height,
        "bare_engine_s": round(bare_s, 2),
        "dagster_cli_sweep_s": round(dagster_s, 2),
        "dagster_runs_s": run_seconds,
        "n_runs": len(run_seconds),
        "ratio_cli_over_bare": round(dagster_s / bare_s, 3),
        "ratio_runs_over_bare": round(sum(run_seconds) / bare_s, 3) if run_seconds else None,
        "machine": machine_info(),
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
