"""Writer side of the reader/writer test: materializes one new partition per iteration through
polydag's real DuckDB IO manager, in a loop, and reports each run's outcome as a JSON line.

    python -m polydag_tests.ops.duckdb_writer_loop DB_PATH ITERATIONS ROWS REPORT_PATH

Partition ``p007`` holds ROWS rows with ``value = 7 * ROWS + i`` for i in 0..ROWS-1, so the
final table proves both that no row was lost and that no row was written twice.
"""

import json
import sys
import time

import polars as pl
from dagster import (
    AssetExecutionContext,
    DagsterInstance,
    StaticPartitionsDefinition,
    asset,
    materialize,
)

from polydag.defs.storage.io_manager import PolydagDuckDBIOManager


def main(db_path: str, iterations: int, rows: int, report: str) -> int:
    keys = [f"p{i:03d}" for i in range(iterations)]

    @asset(partitions_def=StaticPartitionsDefinition(keys), metadata={"partition_expr": "part"})
    def samples(context: AssetExecutionContext) -> pl.DataFrame:
        n = int(context.partition_key[1:])
        return pl.DataFrame({
            "part": [context.partition_key] * rows,
            "value": pl.int_range(n * rows, (n + 1) * rows, eager=True),
            "text": [f"row {i} of {context.partition_key}" for i in range(rows)],
        })

    io_manager = PolydagDuckDBIOManager(database=db_path, schema="main")
    failures = 0
    with DagsterInstance.ephemeral() as instance, open(report, "a") as out:
        for key in keys:
            start = time.time()
            result = materialize([samples], partition_key=key, instance=instance,
                                 resources={"io_manager": io_manager}, raise_on_error=False)
            failures += not result.success
            errors = [str(e.step_failure_data.error.message) for e in result.all_events
                      if e.is_step_failure]
            out.write(json.dumps({"partition": key, "success": result.success, "errors": errors,
                                  "start": start, "end": time.time()}) + "\n")
            out.flush()
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]))
