"""Partition definitions shared by the domains.

Both are dynamic so that a new λ or a new problem needs no code change: λ keys are added with
``polydag lambdas add`` or the UI; problem keys are registered by the ``problems`` asset.
"""

from dagster import DynamicPartitionsDefinition

LAMBDA_PARTITIONS_NAME = "lambda"
PROBLEM_PARTITIONS_NAME = "problem"

lambda_partitions = DynamicPartitionsDefinition(name=LAMBDA_PARTITIONS_NAME)
problem_partitions = DynamicPartitionsDefinition(name=PROBLEM_PARTITIONS_NAME)


def by_lambda() -> dict:
    """How a λ-partitioned GPU asset is partitioned (``gpu_asset(**by_lambda())``): λ keys in
    the ``lambda_key`` column, every selected λ in one run (the CLI's ``--partition-range``
    needs that)."""
    from dagster import BackfillPolicy

    return dict(partitions_def=lambda_partitions, partition_column="lambda_key",
                backfill_policy=BackfillPolicy.single_run())
