"""The ``polydag`` command: the few operations Dagster's own CLI has no command for.

* ``polydag lambdas add 0.5`` registers a new λ partition (Dagster has no CLI for dynamic
  partitions; the UI's "Add partition" button does the same, and both are validated).
* ``polydag sweep step-importance`` materializes the problem partitions that are missing, in
  ranged runs of the asset's backfill-policy size (resumable after a crash).
* ``polydag verdict`` and ``polydag sql`` read the results database.

DAGSTER_HOME defaults to ``data/dagster_home`` so that everything lands in one instance.
"""

from __future__ import annotations

import argparse
import os
import sys

from polydag.core import paths


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
    from polydag.core.lambdas import LambdaKeyError, canonical_lambda_key
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
    from polydag.defs.sweeps import sweep_step_importance

    result = sweep_step_importance(
        _instance(), max_problems=args.max_problems, problems_per_run=args.problems_per_run
    )
    print(result.describe())
    return 0 if result.success else 1


def cmd_verdict(args) -> int:
    from polydag.core.duck import connect

    with connect(paths.duckdb_path(), read_only=True) as con:
        frame = con.execute("SELECT * FROM verdict ORDER BY diversity_weight").pl()
    from polydag.core.tables import markdown_table

    print(markdown_table(frame))
    return 0


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

    verdict = sub.add_parser("verdict", help="print the verdict table")
    verdict.set_defaults(func=cmd_verdict)

    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
