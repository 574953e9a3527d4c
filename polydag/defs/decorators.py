"""The one way a GPU asset is declared: kinds, the GPU op tag and pool, and its partitioning.

Every training, sampling and ablation asset runs on a GPU when there is one: it carries the
``polydag/gpu`` op tag and takes a slot of the ``gpu`` concurrency pool
(``polydag.instance.constants``). A partitioned one stores its partition key in a column
(``partition_expr``, what the DuckDB IO manager deletes and inserts by; one column per
dimension of a multi-partitioned asset).
"""

from dagster import BackfillPolicy, PartitionsDefinition, asset

from polydag.instance.constants import GPU_OP_TAGS, GPU_POOL


def gpu_asset(
    *,
    group: str,
    code_version: str,
    partitions_def: PartitionsDefinition | None = None,
    partition_column: str | dict[str, str] | None = None,
    backfill_policy: BackfillPolicy | None = None,
):
    partitioning = {}
    if partitions_def is not None:
        if partition_column is None:
            raise ValueError("a partitioned GPU asset needs the column that holds its partition key")
        partitioning = dict(partitions_def=partitions_def, backfill_policy=backfill_policy,
                            metadata={"partition_expr": partition_column})
    return asset(group_name=group, kinds={"pytorch", "duckdb"}, op_tags=GPU_OP_TAGS, pool=GPU_POOL,
                 code_version=code_version, **partitioning)
