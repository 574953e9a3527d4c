"""Partition definitions shared by the domains.

All are dynamic, so that a new λ, a new seed or a new problem needs no code change: λ keys are
added with ``polydag lambdas add`` (or the UI), seeds with ``polydag seeds add``, problem keys
by the ``problems`` asset.

The polychromic sweep is a grid: its trained and sampled assets are partitioned by λ × seed
(a ``MultiPartitionsDefinition``; a key reads ``"0.3|1"``, λ first, as Dagster writes
dimensions in name order). Adding a seed adds a column of partitions for every λ, adding a λ
a row for every seed, and no (λ, seed) ever overwrites another.
"""

from dagster import BackfillPolicy, DynamicPartitionsDefinition, MultiPartitionKey, MultiPartitionsDefinition

from polydag.core.polychromic.lambdas import SweepKey

LAMBDA_PARTITIONS_NAME = "lambda"
SEED_PARTITIONS_NAME = "seed"
PROBLEM_PARTITIONS_NAME = "problem"

lambda_partitions = DynamicPartitionsDefinition(name=LAMBDA_PARTITIONS_NAME)
seed_partitions = DynamicPartitionsDefinition(name=SEED_PARTITIONS_NAME)
sweep_partitions = MultiPartitionsDefinition({LAMBDA_PARTITIONS_NAME: lambda_partitions,
                                              SEED_PARTITIONS_NAME: seed_partitions})
problem_partitions = DynamicPartitionsDefinition(name=PROBLEM_PARTITIONS_NAME)


def by_lambda_and_seed() -> dict:
    """How a λ × seed GPU asset is partitioned (``gpu_asset(**by_lambda_and_seed())``): the
    keys in the ``lambda_key`` and ``seed_key`` columns, every selected (λ, seed) in one run
    (the CLI's ``--partition-range`` needs that)."""
    return dict(partitions_def=sweep_partitions,
                partition_column={LAMBDA_PARTITIONS_NAME: "lambda_key", SEED_PARTITIONS_NAME: "seed_key"},
                backfill_policy=BackfillPolicy.single_run())


def sweep_key(partition_key: str | MultiPartitionKey) -> SweepKey:
    """The (λ, seed) of a λ × seed partition key."""
    if not isinstance(partition_key, MultiPartitionKey):
        partition_key = sweep_partitions.get_partition_key_from_str(partition_key)
    dims = partition_key.keys_by_dimension
    return SweepKey(dims[LAMBDA_PARTITIONS_NAME], dims[SEED_PARTITIONS_NAME])


def partition_key_of(unit: SweepKey) -> str:
    """The λ × seed partition key string of a (λ, seed): ``"<λ>|<seed>"``."""
    return str(MultiPartitionKey({LAMBDA_PARTITIONS_NAME: unit.lambda_key, SEED_PARTITIONS_NAME: unit.seed_key}))


def registered_units(instance) -> list[SweepKey]:
    """Every registered (λ, seed), λ-major in registration order (the partition key order)."""
    return [SweepKey(lam, seed) for lam in instance.get_dynamic_partitions(LAMBDA_PARTITIONS_NAME)
            for seed in instance.get_dynamic_partitions(SEED_PARTITIONS_NAME)]
