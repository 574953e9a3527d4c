"""Nightly fill: declarative automation that requests missing or out-of-date asset partitions.

Every asset of the code location carries :func:`fill_condition` (attached in
``polydag/definitions.py`` with :func:`with_fill_condition`; the asset modules do not set it),
and the automation sensor ``fill_missing_partitions`` (:func:`build_fill_sensor`) evaluates it
for every asset partition every 30 s. The sensor is STOPPED by default, because a fill can
start hours of GPU work: turn it on in the UI under Automation → ``fill_missing_partitions``
(or ``dagster sensor start fill_missing_partitions``). The daemon evaluates it (its asset
daemon), so it needs a running ``dagster-daemon``; ``dagster dev`` runs one.

An asset partition is requested when all of these hold:

* **nightly gate**: a 02:00 UTC tick (``FILL_CRON``) passed since the partition was last
  requested or materialized, so each partition is requested at most once per night. A
  partition that cannot start at 02:00 (an input is still being built or is in progress) is
  requested as soon as it can later that day, and so is one that was up to date at 02:00 and
  went out of date before it was requested or materialized again; partitions registered after
  02:00 wait for the next night.
* **needs work**, one of:

  - missing: never materialized (old gaps too, not only partitions added later);
  - the data version of an upstream asset partition it reads changed since it was last
    materialized. This is content-based: re-materializing an upstream with identical content
    (the same data version) starts nothing downstream;
  - its own ``code_version`` changed since it was last materialized;
  - an upstream it can share a run with (same partitioning) is requested on the same
    evaluation: a fresh λ gets ``lora_checkpoints`` and ``generations`` in one request.

  The two "changed" reasons are kept until the partition is materialized, so a failed run is
  retried the next night.
* **not blocked**: no queued or running run and no running backfill targets it; no upstream
  partition it reads is in progress, or is missing or out of date without being requested
  with it (so an aggregate waits until the λ or problem partitions it reads are done, instead
  of reading them while they are rewritten); and every upstream has something materialized
  or requested (an aggregate over λ or problem partitions with none registered would fail).

Requests with more than one partition go out as one asset backfill (``emit_backfills``) that
also takes the requested assets connected to them; the daemon runs it upstream first, in ranged
runs that respect each asset's ``BackfillPolicy``: contiguous stretches of the registered keys,
never spanning a complete partition, of at most 200 problems for ``step_importance`` and one
range for the ``single_run()`` λ assets. Other requests are plain runs. Every run carries the
tag ``polydag/fill=1``. Work across partitionings comes in waves on later evaluations of the
same night: once the λ partitions are done, ``metrics → comparison → verdict`` follow.

Not expressible here, so not done: the "changed" reasons compare each evaluation with the
previous one, so changes made before the sensor's first evaluation are not seen (the old
planner compared event-log order and would have re-run them; materialize those by hand). No
hand-written planner remains.
"""

from __future__ import annotations

from typing import Iterable

from dagster import (
    AssetsDefinition,
    AssetSelection,
    AutomationCondition,
    AutomationConditionSensorDefinition,
    DefaultSensorStatus,
)

FILL_SENSOR_NAME = "fill_missing_partitions"
FILL_CRON = "0 2 * * *"  # nightly, 02:00
FILL_TIMEZONE = "UTC"
FILL_TAG = "polydag/fill"  # on every run the sensor starts


def fill_condition(
    cron_schedule: str = FILL_CRON, cron_timezone: str = FILL_TIMEZONE
) -> AutomationCondition:
    """The condition under which the fill requests an asset partition (module docstring)."""
    ac = AutomationCondition
    nightly = ac.cron_tick_passed(cron_schedule, cron_timezone).since_last_handled().with_label(
        f"a {cron_schedule} ({cron_timezone}) tick passed since last requested or updated"
    )
    # data_version_changed and code_version_changed are true on one evaluation only; .since
    # keeps them until the partition is materialized (a failed run does not clear them)
    upstream_changed = ac.any_deps_match(ac.data_version_changed()).since(
        ac.newly_updated()
    ).with_label("an upstream's data version changed since last updated")
    code_changed = ac.code_version_changed().since(ac.newly_updated()).with_label(
        "code version changed since last updated"
    )
    own_need = (ac.missing() | upstream_changed | code_changed).with_label(
        "missing, or upstream data or code version changed"
    )
    upstream_requested = ac.any_deps_match(ac.will_be_requested()).with_label(
        "an upstream is requested with it"
    )
    # will_be_requested only sees upstreams that can run in the same run (same partitioning),
    # so an upstream with another partitioning that needs work holds this asset back until
    # it is done, instead of both starting as separate runs on the same evaluation
    upstream_pending = ac.any_deps_match(own_need & ~ac.will_be_requested()).with_label(
        "an upstream it reads needs work and is not requested with it"
    )
    inputs_exist = ac.all_deps_match(~ac.missing() | ac.will_be_requested()).with_label(
        "every upstream has something materialized or requested"
    )
    return (
        nightly
        & (own_need | upstream_requested)
        & ~ac.in_progress()  # a queued or running run, or a running backfill, targets it
        & ~ac.any_deps_in_progress()
        & ~upstream_pending
        & inputs_exist
    ).with_label(FILL_SENSOR_NAME)


def with_fill_condition(
    assets: Iterable[AssetsDefinition], condition: AutomationCondition | None = None
) -> list[AssetsDefinition]:
    """``assets`` with ``condition`` (default :func:`fill_condition`) on every asset spec."""
    condition = condition if condition is not None else fill_condition()
    return [
        asset.map_asset_specs(lambda spec: spec.replace_attributes(automation_condition=condition))
        for asset in assets
    ]


def build_fill_sensor(
    *,
    default_status: DefaultSensorStatus = DefaultSensorStatus.STOPPED,
    minimum_interval_seconds: int | None = None,
) -> AutomationConditionSensorDefinition:
    """The ``fill_missing_partitions`` automation sensor over every asset of the location."""
    return AutomationConditionSensorDefinition(
        FILL_SENSOR_NAME,
        target=AssetSelection.all(),
        default_status=default_status,
        minimum_interval_seconds=minimum_interval_seconds,
        run_tags={FILL_TAG: "1"},
        emit_backfills=True,
        description="Nightly (02:00 UTC): request missing partitions and partitions whose "
        "upstream data or own code version changed, in ranged runs within each asset's "
        "backfill policy; never what is in progress. STOPPED until turned on.",
    )
