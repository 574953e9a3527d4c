"""The ``polydag`` command: the few operations Dagster's own CLI has no command for.

* ``polydag lambdas add 0.5`` registers a new λ partition (Dagster has no CLI for dynamic
  partitions; the UI's "Add partition" button does the same, and both are validated).
* ``polydag sweep step-importance`` materializes the problem partitions that are missing, in
  ranged runs of the asset's backfill-policy size (resumable after a crash).
* ``polydag verdict`` and ``polydag sql`` read the results database (read-only, short-lived
  connections that wait while a run writes and never make a run fail); ``polydag tables``
  lists its tables with their documented columns.
* ``polydag doctor`` checks this machine (torch/CUDA, GPU memory, disk, offline models and
  tokenizers, DuckDB, DAGSTER_HOME, stuck runs and held pool slots, model paths) and
  estimates the sweep's duration.
* ``polydag runs status`` shows the runs in progress and who holds each pool's slots;
  ``polydag runs reap`` fails the runs whose worker died and frees their slots.

DAGSTER_HOME defaults to ``data/dagster_home`` so that everything lands in one instance.
"""

from __future__ import annotations

import argparse
import os
import sys

from polydag.core.ops import paths


def _ensure_dagster_home() -> str:
    home = os.environ.get("DAGSTER_HOME")
    if not home:
        home = str(paths.data_dir() / "dagster_home")
        os.environ["DAGSTER_HOME"] = home
    os.makedirs(home, exist_ok=True)
    return home


def _instance():
    _ensure_dagster_home()
    from dagster import DagsterInstance

    return DagsterInstance.get()


def cmd_lambdas(args) -> int:
    from polydag.core.polychromic.lambdas import LambdaKeyError, canonical_lambda_key
    from polydag.defs.partitions import LAMBDA_PARTITIONS_NAME

    instance = _instance()
    existing = list(instance.get_dynamic_partitions(LAMBDA_PARTITIONS_NAME))
    if args.action == "list":
        for key in existing:
            print(key)
        return 0
    try:
        keys = [canonical_lambda_key(value) for value in args.values]
    except LambdaKeyError as exc:
        print(f"polydag: {exc}", file=sys.stderr)
        return 2
    if args.action == "add":
        new = [k for k in dict.fromkeys(keys) if k not in existing]
        if new:
            instance.add_dynamic_partitions(LAMBDA_PARTITIONS_NAME, new)
        print(f"λ partitions: {', '.join(existing + new)} (added: {', '.join(new) or 'none'})")
        return 0
    for key in keys:  # remove
        if key in existing:
            instance.delete_dynamic_partition(LAMBDA_PARTITIONS_NAME, key)
    print(f"removed: {', '.join(k for k in keys if k in existing) or 'none'}")
    return 0


def cmd_sweep(args) -> int:
    from polydag.defs.step_importance.sweeps import sweep_step_importance

    result = sweep_step_importance(
        _instance(), max_problems=args.max_problems, problems_per_run=args.problems_per_run
    )
    print(result.describe())
    return 0 if result.success else 1


VERDICT_COLUMNS = (
    "lambda_key", "distinct_2_rel_change", "distinct_2_p", "self_bleu_rel_change", "self_bleu_p",
    "pass_at_10_rel_change", "pass_at_1_similar", "workshop_met", "main_conference_met",
)
STEP_SUMMARY_COLUMNS = ("protocol", "scheme", "mode", "site", "position", "n", "importance",
                        "importance_lo", "importance_hi", "flip_rate")


def _read(query: str):
    from polydag.core.storage.duck import connect

    with connect(paths.duckdb_path(), read_only=True) as con:
        return con.execute(query).pl()


def cmd_verdict(args) -> int:
    """The verdict per λ (the headline columns; `polydag sql 'SELECT * FROM verdict'` has all)."""
    from polydag.core.storage.costs import total_sweep_cost
    from polydag.core.storage.tables import markdown_table

    frame = _read("SELECT * FROM verdict ORDER BY diversity_weight")
    print(markdown_table(frame, [c for c in VERDICT_COLUMNS if c in frame.columns]))
    cost = total_sweep_cost(paths.duckdb_path())
    print(f"\nsweep cost so far: ${cost['cost_usd']:.4f} ({cost['device_hours']:.3f} device-hours, "
          f"{cost['gpu_hours']:.3f} GPU-hours, {cost['n_records']} heavy materializations)")
    return 0


def cmd_summary(args) -> int:
    """Step importance by position (and the baseline and null-control lines)."""
    from polydag.core.storage.tables import markdown_table

    frame = _read("SELECT * FROM step_importance_summary")
    for view in ("baseline", "null_control"):
        part = frame.filter(frame["view"] == view)
        shown = [c for c in part.columns if c != "view" and part[c].null_count() < part.height]
        print(f"{view}:\n{markdown_table(part, shown)}\n")
    by_position = frame.filter(frame["view"] == "by_position")
    print("importance by position (share of baseline-correct problems the ablation broke):")
    print(markdown_table(by_position, [c for c in STEP_SUMMARY_COLUMNS if c in by_position.columns]))
    return 0


def cmd_sql(args) -> int:
    from polydag.core.storage.duck import DuckDBBusyError
    from polydag.core.storage.sql import SqlError, pick_format, run_query, write_result

    try:
        fmt = pick_format(args.format, args.out)
        if fmt == "parquet" and args.out is None:
            raise ValueError("parquet is binary: give a file with --out result.parquet")
        frame = run_query(args.query, args.db, timeout_s=args.timeout)
        write_result(frame, fmt, args.out, max_rows=args.max_rows)
    except (SqlError, ValueError, FileNotFoundError, DuckDBBusyError) as exc:
        print(f"polydag sql: {exc}", file=sys.stderr)
        return 2 if isinstance(exc, ValueError) else 1
    if args.out is not None:
        print(f"wrote {frame.height} rows to {args.out} ({fmt})", file=sys.stderr)
    return 0


def cmd_tables(args) -> int:
    from pathlib import Path

    from polydag.core.storage.duck import DuckDBBusyError
    from polydag.core.storage.sql import describe_tables, list_tables

    db_path = Path(args.db) if args.db else paths.duckdb_path()
    try:
        print(describe_tables(list_tables(db_path, timeout_s=args.timeout), db_path))
    except DuckDBBusyError as exc:
        print(f"polydag tables: {exc}", file=sys.stderr)
        return 1
    return 0


def _lambda_count() -> int:
    """How many λ partitions the sweep has (from DAGSTER_HOME's instance), else 4 (the
    researchers' 0, 0.3, 1, 2)."""
    home = os.environ.get("DAGSTER_HOME")
    if home and os.path.isfile(os.path.join(home, "dagster.yaml")):
        from dagster import DagsterInstance

        from polydag.defs.partitions import LAMBDA_PARTITIONS_NAME

        with DagsterInstance.from_config(home) as instance:
            keys = instance.get_dynamic_partitions(LAMBDA_PARTITIONS_NAME)
        if keys:
            return len(keys)
    return 4


def cmd_doctor(args) -> int:
    from polydag.core.ops import doctor
    from polydag.instance.doctor import run_preflight

    n_lambdas = args.lambdas or _lambda_count()
    results = run_preflight(
        base_model=args.base_model,
        codi_checkpoint=args.codi_checkpoint,
        embedding_model=args.embedding_model,
        db_path=args.db,
        require_gpu=args.require_gpu,
        deep=args.deep,
        estimate=not args.no_estimate,
        n_lambdas=n_lambdas,
        runs=True,
    )
    print(doctor.results_as_json(results) if args.json else doctor.format_results(results))
    return 1 if any(r.status == doctor.FAIL for r in results) else 0


def cmd_runs(args) -> int:
    """Runs in progress and pool slots (status), or fail dead runs and free their slots (reap)."""
    from polydag.instance.reaper import inspect_runs, reap_dead_runs

    instance = _instance()
    if args.action == "status":
        seen = inspect_runs(instance)
        for pool, (limit, claimed) in sorted(seen.pools.items()):
            print(f"pool {pool}: {claimed}/{limit} slots claimed")
        if not seen.runs:
            print("no runs in progress and no slots held")
        for view in seen.runs.values():
            mark = "STUCK " if view.dead or view.stale_holder else ""
            print(f"{mark}{view.describe()}")
        return 1 if seen.stale_holders or seen.dead_runs else 0
    try:
        reaped = reap_dead_runs(instance, force_run_ids=args.run, dry_run=args.dry_run,
                                by=f"polydag runs reap (pid {os.getpid()})")
    except ValueError as exc:
        print(f"polydag runs: {exc}", file=sys.stderr)
        return 2
    for entry in reaped:
        print(("would reap " if args.dry_run else "reaped ") + entry.describe())
    skipped = [r for r in args.run if r not in {e.run_id for e in reaped}]
    for run_id in skipped:
        print(f"not reaped: run {run_id} is finished, or its worker is alive (stop it instead: "
              "kill -TERM its pid, or Terminate in the UI)", file=sys.stderr)
    if not reaped and not skipped:
        print("nothing to reap: no dead runs on this host and no slots held by finished runs")
    return 1 if skipped else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="polydag", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)

    lambdas = sub.add_parser("lambdas", help="list, add or remove λ partitions")
    lambdas.add_argument("action", choices=["list", "add", "remove"])
    lambdas.add_argument("values", nargs="*", help="λ values, e.g. 0.5 3.0")
    lambdas.set_defaults(func=cmd_lambdas)

    sweep = sub.add_parser("sweep", help="materialize missing partitions in ranged runs")
    sweep.add_argument("target", choices=["step-importance"])
    sweep.add_argument("--max-problems", type=int, default=None,
                       help="only the first N problem partitions (default: all)")
    sweep.add_argument("--problems-per-run", type=int, default=None,
                       help="problems per ranged run (default: the asset's backfill policy)")
    sweep.set_defaults(func=cmd_sweep)

    verdict = sub.add_parser("verdict", help="print the verdict table and the sweep's cost")
    verdict.set_defaults(func=cmd_verdict)

    summary = sub.add_parser("summary", help="print a summary table")
    summary.add_argument("target", choices=["step-importance"])
    summary.set_defaults(func=cmd_summary)

    sql = sub.add_parser("sql", help="query the results database (read-only)")
    sql.add_argument("query", help='SQL, e.g. "SELECT * FROM metrics_summary"')
    sql.add_argument("--format", choices=["table", "csv", "json", "parquet"], default=None,
                     help="output format (default: from --out's suffix, else table)")
    sql.add_argument("--out", default=None, help="write to this file instead of stdout")
    sql.add_argument("--db", default=None, help="database file (default: data/polydag.duckdb)")
    sql.add_argument("--timeout", type=float, default=60.0,
                     help="seconds to wait while a run holds the database (default 60)")
    sql.add_argument("--max-rows", type=int, default=1000,
                     help="rows shown by --format table (default 1000; files get all)")
    sql.set_defaults(func=cmd_sql)

    tables = sub.add_parser("tables", help="list the tables and their documented columns")
    tables.add_argument("--db", default=None, help="database file (default: data/polydag.duckdb)")
    tables.add_argument("--timeout", type=float, default=60.0)
    tables.set_defaults(func=cmd_tables)

    doctor = sub.add_parser("doctor", help="check this machine and estimate the sweep's time")
    doctor.add_argument("--base-model", default=None, help="local base model directory to check")
    doctor.add_argument("--codi-checkpoint", default=None, help="CODI checkpoint directory to check")
    doctor.add_argument("--embedding-model", default=None,
                        help="sentence-transformers directory (default: the packaged MiniLM)")
    doctor.add_argument("--db", default=None, help="database file (default: data/polydag.duckdb)")
    doctor.add_argument("--require-gpu", action="store_true", help="no GPU is a failure")
    doctor.add_argument("--deep", action="store_true",
                        help="also load the embedding model and encode a sentence (~12 s)")
    doctor.add_argument("--no-estimate", action="store_true", help="skip the sweep estimate")
    doctor.add_argument("--lambdas", type=int, default=None,
                        help="λ values in the sweep (default: the registered λ partitions)")
    doctor.add_argument("--json", action="store_true", help="print the results as JSON")
    doctor.set_defaults(func=cmd_doctor)

    runs = sub.add_parser("runs", help="runs in progress and pool slots; reap dead runs")
    runs.add_argument("action", choices=["status", "reap"],
                      help="status: who runs and holds slots; reap: fail dead runs, free slots")
    runs.add_argument("--run", action="append", default=[], metavar="RUN_ID",
                      help="reap: also this in-progress run whose worker cannot be checked "
                           "(no recorded worker, or another host); never a live one here")
    runs.add_argument("--dry-run", action="store_true", help="reap: only say what would be done")
    runs.set_defaults(func=cmd_runs)

    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
