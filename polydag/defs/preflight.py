"""The doctor's checks (the machine's and the instance's), run as a preflight before any
training step.

A training run that would fail on a missing model path, a locked results database, a missing
embedding model or a full disk fails here in a second, with the fix in the message, instead of
after minutes of work.
"""

from dagster import AssetExecutionContext

from polydag.defs.storage.resources import PolydagStorage


def training_preflight(
    context: AssetExecutionContext,
    storage: PolydagStorage,
    *,
    base_model=None,
    codi_checkpoint=None,
    embedding_model=None,
) -> None:
    from polydag.core.ops.doctor import FAIL, WARN, raise_on_failures
    from polydag.instance.doctor import run_preflight

    results = run_preflight(
        base_model=base_model,
        codi_checkpoint=codi_checkpoint,
        embedding_model=embedding_model,
        db_path=storage.duckdb_path,
        data_dir=storage.data_dir,
        dagster_home=context.instance.root_directory,
        estimate=False,
        min_free_disk_gib=1.0,
        logger=context.log,
    )
    for result in results:
        if result.status == WARN:
            context.log.warning(f"preflight {result.name}: {result.detail} ({result.fix})")
    failed = [r.name for r in results if r.status == FAIL]
    context.log.info(
        f"preflight: {len(results) - len(failed)} of {len(results)} checks passed"
    )
    raise_on_failures(results)
