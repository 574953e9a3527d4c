"""The ``polydag`` command: the few operations Dagster's own CLI has no command for.

* ``polydag lambdas add 0.5`` registers a new λ partition and ``polydag seeds add 1 2`` new
  training seeds: the sweep is λ × seed (Dagster has no CLI for dynamic partitions; the UI's
  "Add partition" button does the same, and both are validated).
* ``polydag train --experiment FILE.yaml`` trains the λ partition of a researchers' experiment
  file, exactly as written (``--base-model default --cpu-without-quantization`` tries it on the
  built-in base on a CPU).
* ``polydag sweep step-importance`` materializes the problem partitions that are missing, in
  ranged runs of the asset's backfill-policy size (resumable after a crash); ``--control``
  does the same for the control model's sweep.
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
import math
import os
import shlex
import sys

from polydag.core.ops import paths


def _positive_int(text: str) -> int:
    """argparse type: a whole number ≥ 1 (a count; never a slice or a silent default)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number ≥ 1, got {value}")
    return value


def _positive_seconds(text: str) -> float:
    """argparse type: a finite number of seconds > 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"must be a finite number of seconds > 0, got {text}")
    return value


def _fail(command: str, exc: BaseException) -> int:
    """Print ``exc`` as one ``polydag COMMAND: ...`` line; exit status 2 for bad input (a
    ValueError), else 1 (a failed or refused query, a missing, unreadable or busy database)."""
    print(f"polydag {command}: {exc}", file=sys.stderr)
    return 2 if isinstance(exc, ValueError) else 1


def _read_errors():
    """What reading the results database may raise that is a message, not a bug."""
    from polydag.core.storage.duck import DuckDBBusyError
    from polydag.core.storage.sql import SqlError

    return (SqlError, ValueError, FileNotFoundError, DuckDBBusyError)


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


def _add_partitions(instance, name: str, label: str, existing: list[str], keys: list[str]) -> int:
    """Register the canonical ``keys`` not yet in the dynamic partitions ``name``; print them all."""
    new = [k for k in dict.fromkeys(keys) if k not in existing]
    if new:
        instance.add_dynamic_partitions(name, new)
    print(f"{label} partitions: {', '.join(existing + new)} (added: {', '.join(new) or 'none'})")
    return 0


def cmd_lambdas(args) -> int:
    from polydag.core.polychromic.lambdas import (
        LambdaKeyError,
        canonical_lambda_key,
        lambda_value,
        parse_lambda_key,
    )
    from polydag.defs.partitions import LAMBDA_PARTITIONS_NAME

    instance = _instance()
    existing = list(instance.get_dynamic_partitions(LAMBDA_PARTITIONS_NAME))
    if args.action == "list":
        for key in existing:
            print(key)
            try:
                lambda_value(key)
            except LambdaKeyError as exc:
                print(f"polydag lambdas: {exc}; remove it with "
                      f"`polydag lambdas remove {shlex.quote(key)}`", file=sys.stderr)
        return 0
    if not args.values:
        print(f"polydag lambdas: {args.action} needs at least one λ key", file=sys.stderr)
        return 2
    if args.action == "add":
        try:
            keys = [parse_lambda_key(v, allow_negative=args.allow_negative) for v in args.values]
        except LambdaKeyError as exc:
            print(f"polydag lambdas: {exc}", file=sys.stderr)
            return 2
        return _add_partitions(instance, LAMBDA_PARTITIONS_NAME, "λ", existing, keys)
    # remove: exactly the keys given, canonical or not, so that bogus keys can be cleaned up
    unknown = [key for key in dict.fromkeys(args.values) if key not in existing]
    for key in unknown:
        try:
            canonical = canonical_lambda_key(key)
        except LambdaKeyError:
            canonical = None
        hint = f" (did you mean {canonical!r}?)" if canonical in existing else ""
        print(f"polydag lambdas: λ partition {key!r} is not registered{hint}; nothing removed",
              file=sys.stderr)
    if unknown:
        return 1
    removed = list(dict.fromkeys(args.values))
    for key in removed:
        instance.delete_dynamic_partition(LAMBDA_PARTITIONS_NAME, key)
    print(f"removed: {', '.join(removed)}")
    return 0


def cmd_seeds(args) -> int:
    from polydag.core.polychromic.lambdas import LambdaKeyError, parse_seed_key
    from polydag.defs.partitions import SEED_PARTITIONS_NAME

    instance = _instance()
    existing = list(instance.get_dynamic_partitions(SEED_PARTITIONS_NAME))
    if args.action == "list":
        for key in existing:
            print(key)
        return 0
    if not args.values:
        print(f"polydag seeds: {args.action} needs at least one seed", file=sys.stderr)
        return 2
    if args.action == "add":
        try:
            keys = [parse_seed_key(v) for v in args.values]
        except LambdaKeyError as exc:
            print(f"polydag seeds: {exc}", file=sys.stderr)
            return 2
        return _add_partitions(instance, SEED_PARTITIONS_NAME, "seed", existing, keys)
    unknown = [key for key in dict.fromkeys(args.values) if key not in existing]
    if unknown:
        print(f"polydag seeds: seed partition(s) {', '.join(map(repr, unknown))} not registered; nothing removed",
              file=sys.stderr)
        return 1
    for key in dict.fromkeys(args.values):
        instance.delete_dynamic_partition(SEED_PARTITIONS_NAME, key)
    print(f"removed: {', '.join(dict.fromkeys(args.values))}")
    return 0


def cmd_sweep(args) -> int:
    from polydag.defs.step_importance.sweeps import (
        STEP_IMPORTANCE,
        STEP_IMPORTANCE_CONTROL,
        sweep_step_importance,
    )

    result = sweep_step_importance(
        _instance(), max_problems=args.max_problems, problems_per_run=args.problems_per_run,
        asset=STEP_IMPORTANCE_CONTROL if args.control else STEP_IMPORTANCE,
    )
    print(result.describe())
    return 0 if result.success else 1


def cmd_train(args) -> int:
    """Train one λ partition from a researchers' experiment YAML (reply_pairs, base_model and
    lora_checkpoints in one run of the code location's asset job)."""
    import json

    from dagster import AssetKey

    from polydag.core.polychromic.experiment import ExperimentError, load_experiment
    from polydag.core.polychromic.lambdas import SweepKey
    from polydag.defs.partitions import LAMBDA_PARTITIONS_NAME, SEED_PARTITIONS_NAME, partition_key_of

    try:
        experiment = load_experiment(args.experiment, partition_key=args.partition, base_model=args.base_model,
                                     cpu_without_quantization=args.cpu_without_quantization)
    except (ExperimentError, FileNotFoundError, ValueError) as exc:
        return _fail("train", exc)
    if args.max_steps is not None:
        experiment.op_config("lora_checkpoints")["max_steps"] = args.max_steps
    for note in experiment.notes:
        print(f"polydag train: note: {note}", file=sys.stderr)
    unit = SweepKey(experiment.partition_key, experiment.seed_key)
    key = partition_key_of(unit)
    if args.dry_run:
        print(json.dumps({"partition": key, "run_config": experiment.run_config}, indent=2))
        return 0
    instance = _instance()
    for name, value in ((LAMBDA_PARTITIONS_NAME, unit.lambda_key), (SEED_PARTITIONS_NAME, unit.seed_key)):
        if value not in instance.get_dynamic_partitions(name):
            instance.add_dynamic_partitions(name, [value])
            print(f"polydag train: registered the {name} partition {value}", file=sys.stderr)
    from polydag.definitions import defs
    from polydag.instance.executor import execute_in_process

    job = defs.resolve_implicit_global_asset_job_def()
    result = execute_in_process(job, instance=instance, run_config=experiment.run_config,
                                asset_selection=[AssetKey(a) for a in ("reply_pairs", "base_model", "lora_checkpoints")],
                                partition_key=key, tags={"polydag/experiment": experiment.name}, raise_on_error=False)
    status = "succeeded" if result.success else "FAILED (see the run's log: dagster dev, or its events above)"
    print(f"polydag train: {experiment.name} {unit.label} run {result.run_id} {status}")
    return 0 if result.success else 1


VERDICT_COLUMNS = (
    "lambda_key", "distinct_2_rel_change", "distinct_2_p", "self_bleu_rel_change", "self_bleu_p",
    "pass_at_10_rel_change", "pass_at_1_similar", "n_seeds", "seed_consistent", "workshop_met",
    "main_conference_met",
)
STEP_SUMMARY_COLUMNS = ("protocol", "scheme", "mode", "site", "position", "n", "importance",
                        "importance_lo", "importance_hi", "flip_rate", "control_importance",
                        "control_importance_lo", "control_importance_hi", "within_control_band")


def cmd_verdict(args) -> int:
    """The verdict per λ (the headline columns; `polydag sql 'SELECT * FROM verdict'` has all)."""
    from polydag.core.polychromic.diagnostics import diagnostics_markdown, training_diagnostics
    from polydag.core.storage.costs import total_sweep_cost
    from polydag.core.storage.duck import read_rows
    from polydag.core.storage.sql import read_table
    from polydag.core.storage.tables import markdown_table

    try:
        frame = read_table("verdict", order_by="diversity_weight")
        cost = total_sweep_cost(paths.duckdb_path())
    except _read_errors() as exc:
        return _fail("verdict", exc)
    print(markdown_table(frame, [c for c in VERDICT_COLUMNS if c in frame.columns]))
    print("\nwhat training did per λ and seed (why λ moved the samples as much as it did):")
    print(diagnostics_markdown(training_diagnostics(read_rows(paths.duckdb_path(), "lora_checkpoints"))))
    print(f"\nsweep cost so far: ${cost['cost_usd']:.4f} ({cost['device_hours']:.3f} device-hours, "
          f"{cost['gpu_hours']:.3f} GPU-hours, {cost['n_records']} heavy materializations)")
    return 0


def cmd_summary(args) -> int:
    """Step importance by position (and the baseline and null-control lines)."""
    from polydag.core.storage.sql import read_table
    from polydag.core.storage.tables import markdown_table

    try:
        frame = read_table("step_importance_summary")
    except _read_errors() as exc:
        return _fail("summary", exc)
    for view in ("baseline", "null_control", "control_baseline"):
        part = frame.filter(frame["view"] == view)
        if part.is_empty():
            continue
        shown = [c for c in part.columns if c != "view" and part[c].null_count() < part.height]
        print(f"{view}:\n{markdown_table(part, shown)}\n")
    by_position = frame.filter(frame["view"] == "by_position")
    print("importance by position (share of baseline-correct problems the ablation broke):")
    print(markdown_table(by_position, [c for c in STEP_SUMMARY_COLUMNS if c in by_position.columns
                                       and by_position[c].null_count() < by_position.height]))
    if "control_importance" not in by_position.columns or by_position["control_importance"].null_count() == by_position.height:
        print("\nno control model rows: polydag sweep step-importance --control (then re-materialize "
              "step_importance_summary) puts the control's curve next to these")
    return 0


def cmd_sql(args) -> int:
    from polydag.core.storage.sql import pick_format, run_query, write_result

    try:
        fmt = pick_format(args.format, args.out)
        if fmt == "parquet" and args.out is None:
            raise ValueError("parquet is binary: give a file with --out result.parquet")
        frame = run_query(args.query, args.db, timeout_s=args.timeout)
        write_result(frame, fmt, args.out, max_rows=args.max_rows)
    except _read_errors() as exc:
        return _fail("sql", exc)
    if args.out is not None:
        print(f"wrote {frame.height} rows to {args.out} ({fmt})", file=sys.stderr)
    return 0


def cmd_tables(args) -> int:
    from pathlib import Path

    from polydag.core.storage.sql import describe_tables, list_tables

    db_path = Path(args.db) if args.db else paths.duckdb_path()
    try:
        print(describe_tables(list_tables(db_path, timeout_s=args.timeout), db_path))
    except _read_errors() as exc:
        return _fail("tables", exc)
    return 0


def _lambda_count() -> int:
    """How many trainings the sweep has: its λ × seed partitions (from DAGSTER_HOME's
    instance), else 4 (the researchers' 0, 0.3, 1, 2 at one seed)."""
    home = os.environ.get("DAGSTER_HOME")
    if home and os.path.isfile(os.path.join(home, "dagster.yaml")):
        from dagster import DagsterInstance

        from polydag.defs.partitions import LAMBDA_PARTITIONS_NAME, SEED_PARTITIONS_NAME

        with DagsterInstance.from_config(home) as instance:
            keys = instance.get_dynamic_partitions(LAMBDA_PARTITIONS_NAME)
            seeds = instance.get_dynamic_partitions(SEED_PARTITIONS_NAME)
        if keys:
            return len(keys) * max(1, len(seeds))
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
    if args.memory_estimate:
        results.append(doctor.check_memory_estimate(args.memory_estimate, experiment=args.experiment,
                                                    dtype=args.dtype))
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

    lambdas = sub.add_parser(
        "lambdas", help="list, add or remove λ partitions",
        description="add takes plain decimals (0.5, 2, 0.50; not 1e3, inf, +1, .5 or ' 1 ') and "
                    "stores their canonical keys (2 -> 2.0, 0.50 -> 0.5); remove takes the "
                    "exact registered key, canonical or not, so bogus keys can be removed; "
                    "a key that is not registered removes nothing and exits 1.",
    )
    lambdas.add_argument("action", choices=["list", "add", "remove"])
    lambdas.add_argument("values", nargs="*",
                         help="add: λ values, e.g. 0.5 3; remove: registered keys, exactly")
    lambdas.add_argument("--allow-negative", action="store_true",
                         help="add: allow λ < 0 (a negative weight rewards sameness)")
    lambdas.set_defaults(func=cmd_lambdas)

    seeds = sub.add_parser(
        "seeds", help="list, add or remove training-seed partitions",
        description="The sweep trains and samples every λ at every registered seed (λ × seed "
                    "partitions). add takes non-negative integers; remove takes registered keys.")
    seeds.add_argument("action", choices=["list", "add", "remove"])
    seeds.add_argument("values", nargs="*", help="add/remove: seeds, e.g. 0 1 2")
    seeds.set_defaults(func=cmd_seeds)

    train = sub.add_parser("train", help="train a λ partition from a researchers' experiment YAML")
    train.add_argument("--experiment", required=True, help="their experiment file, as written")
    train.add_argument("--partition", default=None,
                       help="the λ partition (default: polychromic.diversity_weight; both given must agree)")
    train.add_argument("--base-model", default=None,
                       help="override model.path: a local model directory, or 'default' for the built-in base")
    train.add_argument("--cpu-without-quantization", action="store_true",
                       help="train unquantized where model.quantization cannot run (no CUDA or bitsandbytes); "
                            "for smoke tests")
    train.add_argument("--max-steps", type=_positive_int, default=None,
                       help="cap the optimizer steps (a smoke test of a long run)")
    train.add_argument("--dry-run", action="store_true", help="print the translated run config and stop")
    train.set_defaults(func=cmd_train)

    sweep = sub.add_parser("sweep", help="materialize missing partitions in ranged runs")
    sweep.add_argument("target", choices=["step-importance"])
    sweep.add_argument("--max-problems", type=_positive_int, default=None,
                       help="only the first N problem partitions (default: all)")
    sweep.add_argument("--problems-per-run", type=_positive_int, default=None,
                       help="problems per ranged run (default: the asset's backfill policy)")
    sweep.add_argument("--control", action="store_true",
                       help="sweep the control model instead (step_importance_control: codi_control_model, "
                            "whose latent thoughts are constant), through the same engine and gates")
    sweep.set_defaults(func=cmd_sweep)

    verdict = sub.add_parser("verdict", help="print the verdict table and the sweep's cost",
                             epilog="exit status: 1 when the database or the table is missing or "
                                    "unreadable")
    verdict.set_defaults(func=cmd_verdict)

    summary = sub.add_parser("summary", help="print a summary table",
                             epilog="exit status: 1 when the database or the table is missing or "
                                    "unreadable")
    summary.add_argument("target", choices=["step-importance"])
    summary.set_defaults(func=cmd_summary)

    sql = sub.add_parser(
        "sql", help="query the results database (read-only)",
        description="Run one read-only query (SELECT, WITH, FROM, VALUES, TABLE, DESCRIBE, SHOW, "
                    "SUMMARIZE, PRAGMA table_info, EXPLAIN) on the results database. The "
                    "connection can write nothing: not the database, files or other databases, "
                    "and it cannot load extensions or reach the network.",
        epilog="exit status: 0 done; 1 the query failed or was refused, or the database is "
               "missing, not a DuckDB file or stayed locked; 2 bad input (empty SQL, a bad "
               "option value, parquet without --out).",
    )
    sql.add_argument("query", help='SQL, e.g. "SELECT * FROM metrics_summary"')
    sql.add_argument("--format", choices=["table", "csv", "json", "parquet"], default=None,
                     help="output format (default: from --out's suffix, else table)")
    sql.add_argument("--out", default=None, help="write to this file instead of stdout")
    sql.add_argument("--db", default=None, help="database file (default: data/polydag.duckdb)")
    sql.add_argument("--timeout", type=_positive_seconds, default=60.0,
                     help="seconds to wait while a run holds the database (default 60)")
    sql.add_argument("--max-rows", type=_positive_int, default=1000,
                     help="rows shown by --format table (default 1000; files get all)")
    sql.set_defaults(func=cmd_sql)

    tables = sub.add_parser("tables", help="list the tables and their documented columns")
    tables.add_argument("--db", default=None, help="database file (default: data/polydag.duckdb)")
    tables.add_argument("--timeout", type=_positive_seconds, default=60.0,
                        help="seconds to wait while a run holds the database (default 60)")
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
    doctor.add_argument("--lambdas", type=_positive_int, default=None,
                        help="λ values in the sweep (default: the registered λ partitions)")
    doctor.add_argument("--memory-estimate", metavar="SHAPE", default=None,
                        help="estimate one training step's peak memory for a model shape (qwen3-8b, qwen3-0.6b, "
                        "llama-3.2-1b)")
    doctor.add_argument("--experiment", default=None, help="with --memory-estimate: the training settings of "
                        "this experiment YAML (default: the training defaults)")
    doctor.add_argument("--dtype", default=None, help="with --memory-estimate: bf16, fp16, fp32 or nf4 (default: "
                        "nf4 with load_in_4bit, else bf16)")
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

    args, extra = parser.parse_known_args(argv)
    if extra and args.command == "lambdas" and not any(e.startswith("--") for e in extra):
        # argparse stops filling `values` at the first flag: `add --allow-negative -0.5` leaves
        # -0.5 over; it is a value all the same
        args.values += extra
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
