"""Scheduled backfills: find missing or stale partitions and launch them in ranged runs.

The ``fill_missing_partitions`` schedule (nightly, STOPPED by default: a fill can start hours
of GPU work) asks the instance, for every asset of the code location, which asset partitions are

* **missing**: a registered λ or problem key never materialized (or an unpartitioned asset
  never materialized);
* **stale**: an upstream asset (partition) was materialized after it, so it was built from
  inputs that have since changed (new base model → every λ adapter is stale → their
  generations → metrics ...);
* or downstream of either (its input is about to change).

Work is launched in waves, one per tick, so that a run never reads an input that another run
of the same tick is still rewriting: a tick requests only the needed asset partitions whose
needed upstreams are in the same run (same partitioning and, for partitioned assets, the
same key). For example, a fresh λ gets one run ``lora_checkpoints + generations`` for its
range; ``metrics → comparison → verdict`` follow on the next tick, once no λ work is left.

Partitioned work goes out as ranged runs (``dagster/asset_partition_range_start/end`` tags):
the keys needing the same set of assets are cut into stretches that are contiguous in the
registered key order (a range run covers every key between its ends, so a stretch never
spans a complete key) and no longer than the assets' ``BackfillPolicy`` allows
(``multi_run(200)`` for ``step_importance``; ``single_run()`` means one range). Complete
partitions are therefore never re-run. While a run from a previous fill is queued or in
progress, the tick is skipped, so a slow wave is never launched twice.

Staleness is decided by event-log order (storage ids), which is Dagster's own record of what
was materialized when; it needs no data versions on the assets.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Iterable

from dagster import (
    AssetKey,
    AssetsDefinition,
    DagsterEventType,
    DagsterInstance,
    DagsterRunStatus,
    DefaultScheduleStatus,
    RunRequest,
    RunsFilter,
    ScheduleEvaluationContext,
    SkipReason,
    schedule,
)
from dagster._core.definitions.assets.graph.asset_graph import AssetGraph
from dagster import DynamicPartitionsDefinition
from dagster._core.storage.tags import (
    ASSET_PARTITION_RANGE_END_TAG,
    ASSET_PARTITION_RANGE_START_TAG,
)

from polydag.defs.step_importance.sweeps import contiguous_ranges

# the implicit job of every asset (what the UI and `polydag sweep` use): runs may mix
# partitioning schemes across requests, which no single explicit asset job allows
IMPLICIT_ASSET_JOB_NAME = "__ASSET_JOB"
FILL_TAG = "polydag/fill"
FILL_SCHEDULE_NAME = "fill_missing_partitions"
FILL_CRON = "0 2 * * *"  # nightly, 02:00 in the schedule's timezone
UNFINISHED = [
    DagsterRunStatus.QUEUED,
    DagsterRunStatus.STARTING,
    DagsterRunStatus.STARTED,
    DagsterRunStatus.CANCELING,
]


@dataclass(frozen=True)
class FillRun:
    """One run to launch: these assets, over these partition keys (None: unpartitioned)."""

    assets: tuple[AssetKey, ...]
    partition_keys: tuple[str, ...] | None = None

    def run_request(self) -> RunRequest:
        tags = {FILL_TAG: "1"}
        name = ",".join(k.to_user_string() for k in self.assets)
        if self.partition_keys:
            start, end = self.partition_keys[0], self.partition_keys[-1]
            tags[ASSET_PARTITION_RANGE_START_TAG] = start
            tags[ASSET_PARTITION_RANGE_END_TAG] = end
            run_key = f"{name}:{start}...{end}"
        else:
            run_key = name
        return RunRequest(run_key=run_key, asset_selection=list(self.assets), tags=tags)


@dataclass
class FillPlan:
    """What is missing or stale now, and the runs of this wave."""

    needed: dict[AssetKey, set[str | None]] = field(default_factory=dict)
    runs: list[FillRun] = field(default_factory=list)

    def describe(self) -> str:
        if not self.needed:
            return "every asset partition is materialized and up to date"
        parts = [
            f"{key.to_user_string()}: {len(keys)} partition(s)" if None not in keys
            else key.to_user_string()
            for key, keys in self.needed.items()
        ]
        return "missing or stale: " + "; ".join(parts)


def _latest_storage_ids(instance: DagsterInstance, key: AssetKey, partitioned: bool) -> dict:
    """Storage id of the latest materialization, per partition key (None for unpartitioned)."""
    if partitioned:
        return dict(
            instance.get_latest_storage_id_by_partition(
                key, DagsterEventType.ASSET_MATERIALIZATION
            )
        )
    records = instance.fetch_materializations(key, limit=1).records
    return {None: records[0].storage_id} if records else {}


def plan_fill(instance: DagsterInstance, asset_graph: AssetGraph) -> FillPlan:
    """The needed asset partitions of ``asset_graph`` and the runs that can start now."""
    keys_by_def: dict[str, list[str]] = {}
    partitions_of: dict[AssetKey, list[str | None]] = {}
    policy_max: dict[AssetKey, int | None] = {}
    latest: dict[AssetKey, dict] = {}
    order = asset_graph.toposorted_asset_keys
    materializable = [k for k in order if asset_graph.get(k).is_materializable]
    for key in materializable:
        node = asset_graph.get(key)
        pdef = node.partitions_def
        if pdef is None:
            partitions_of[key] = [None]
        elif isinstance(pdef, DynamicPartitionsDefinition):
            if pdef.name not in keys_by_def:
                keys_by_def[pdef.name] = list(instance.get_dynamic_partitions(pdef.name))
            partitions_of[key] = keys_by_def[pdef.name]
        else:
            partitions_of[key] = list(pdef.get_partition_keys(dynamic_partitions_store=instance))
        policy = node.backfill_policy
        policy_max[key] = policy.max_partitions_per_run if policy is not None else 1
        if pdef is None:
            policy_max[key] = None
        latest[key] = _latest_storage_ids(instance, key, pdef is not None)

    def parent_state(parent: AssetKey, partition: str | None, same_def: bool):
        """(needed, latest storage id) of what this partition reads from ``parent``."""
        if same_def:
            return partition in needed.get(parent, set()), latest[parent].get(partition)
        ids = latest[parent].values()
        return bool(needed.get(parent)), max(ids) if ids else None

    needed: dict[AssetKey, set[str | None]] = {}
    launchable: dict[AssetKey, set[str | None]] = {}
    for key in materializable:
        node = asset_graph.get(key)
        parents = [p for p in node.parent_keys if p in latest]
        for partition in partitions_of[key]:
            own = latest[key].get(partition)
            is_needed = own is None
            ready = True
            for parent in parents:
                same = (
                    node.partitions_def is not None
                    and asset_graph.get(parent).partitions_def == node.partitions_def
                )
                parent_needed, parent_id = parent_state(parent, partition, same)
                if parent_needed:
                    is_needed = True
                    # a needed parent may run in the same run only if it has the same
                    # partitioning (a ranged run covers both) and can itself start now
                    both_unpartitioned = (
                        node.partitions_def is None
                        and asset_graph.get(parent).partitions_def is None
                    )
                    if not ((same or both_unpartitioned) and partition in launchable.get(parent, ())):
                        ready = False
                elif parent_id is None and not same:
                    # nothing of a partitioned parent is materialized (e.g. no λ registered
                    # yet): an aggregate over it has no input and would only fail
                    ready = False
                elif parent_id is not None and (own is None or parent_id > own):
                    is_needed = True  # the parent changed after this was built
            if is_needed:
                needed.setdefault(key, set()).add(partition)
                if ready:
                    launchable.setdefault(key, set()).add(partition)

    plan = FillPlan(needed=needed)
    # unpartitioned: one run with every launchable asset
    unpartitioned = tuple(k for k in materializable if None in launchable.get(k, ()))
    if unpartitioned:
        plan.runs.append(FillRun(assets=unpartitioned))
    # partitioned: per partitions definition, keys grouped by the asset set they need
    by_def: dict[str, dict[str, list[AssetKey]]] = defaultdict(lambda: defaultdict(list))
    for key in materializable:
        pdef = asset_graph.get(key).partitions_def
        if pdef is None:
            continue
        for partition in launchable.get(key, ()):
            by_def[_def_id(pdef)][partition].append(key)
    for def_id, assets_by_key in by_def.items():
        ordered = _ordered_keys(partitions_of, asset_graph, def_id, materializable)
        groups: dict[tuple[AssetKey, ...], set[str]] = defaultdict(set)
        for partition, assets in assets_by_key.items():
            groups[tuple(assets)].add(partition)
        for assets, partition_set in sorted(groups.items(), key=lambda kv: str(kv[0])):
            limits = [policy_max[a] for a in assets if policy_max[a] is not None]
            max_len = min(limits) if limits else None
            for stretch in contiguous_ranges(ordered, partition_set, max_len):
                plan.runs.append(FillRun(assets=assets, partition_keys=tuple(stretch)))
    return plan


def _def_id(pdef) -> str:
    return pdef.name if isinstance(pdef, DynamicPartitionsDefinition) else repr(pdef)


def _ordered_keys(partitions_of, asset_graph, def_id, materializable) -> list[str]:
    for key in materializable:
        pdef = asset_graph.get(key).partitions_def
        if pdef is not None and _def_id(pdef) == def_id:
            return list(partitions_of[key])
    return []


def unfinished_fill_runs(instance: DagsterInstance) -> list:
    return list(
        instance.get_run_records(
            filters=RunsFilter(statuses=UNFINISHED, tags={FILL_TAG: "1"}), limit=5
        )
    )


def build_fill_schedule(
    assets: Iterable[AssetsDefinition],
    *,
    cron_schedule: str = FILL_CRON,
    default_status: DefaultScheduleStatus = DefaultScheduleStatus.STOPPED,
):
    """The ``fill_missing_partitions`` schedule over ``assets`` (the code location's assets)."""
    assets = list(assets)
    asset_graph = AssetGraph.from_assets(assets)

    @schedule(
        name=FILL_SCHEDULE_NAME,
        cron_schedule=cron_schedule,
        job_name=IMPLICIT_ASSET_JOB_NAME,
        default_status=default_status,
        description="Launch ranged runs for missing or stale partitions (one wave per tick); "
        "complete partitions are never re-run.",
    )
    def fill_missing_partitions(context: ScheduleEvaluationContext):
        busy = unfinished_fill_runs(context.instance)
        if busy:
            return SkipReason(
                f"{len(busy)} run(s) of an earlier fill are still queued or running "
                f"(e.g. {busy[0].dagster_run.run_id}); the next wave waits for them"
            )
        plan = plan_fill(context.instance, asset_graph)
        if not plan.runs:
            return SkipReason(plan.describe())
        context.log.info(plan.describe())
        return [run.run_request() for run in plan.runs]

    return fill_missing_partitions
