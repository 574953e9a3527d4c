"""The fill condition, evaluated by Dagster on a real instance tick by tick.

Each test records which asset partitions exist as runless materializations (with a data
version, as every polydag asset reports one) and evaluates the code location's conditions
with ``dagster.evaluate_automation_conditions`` at chosen times around the 02:00 UTC tick,
passing the cursor on as the automation sensor does. It checks exactly which asset partitions
are requested. The instance is in memory (``DagsterInstance.ephemeral()``): the same storage
code as a DAGSTER_HOME, three times faster to evaluate.
"""

import datetime as dt

import pytest
from dagster import (
    AssetKey,
    AssetMaterialization,
    AutomationConditionSensorDefinition,
    DagsterInstance,
    DagsterRunStatus,
    DefaultSensorStatus,
    evaluate_automation_conditions,
)

from polydag.defs.automation import FILL_SENSOR_NAME, FILL_TAG
from polydag.definitions import build_defs
from polydag.instance.dagster_internals import (
    ASSET_PARTITION_RANGE_END_TAG,
    ASSET_PARTITION_RANGE_START_TAG,
)

LAMBDAS = ["0.0", "0.5", "1.0", "2.0", "4.0"]


def units(lambdas, seed="0"):
    """λ × seed partition keys of these λ at one seed."""
    return [f"{lam}|{seed}" for lam in lambdas]

ROOTS = ["reply_pairs", "base_model", "problems", "codi_model", "codi_control_model"]
EVAL = ["metrics", "metrics_summary", "comparison", "dose_response", "metric_validity", "verdict"]
# evaluation times lie after the wall-clock time of the events the tests record, as in real use
NIGHT = dt.datetime.combine(dt.date.today() + dt.timedelta(days=2), dt.time(2, 0),
                            tzinfo=dt.timezone.utc)
BEFORE = NIGHT - dt.timedelta(minutes=1)


def after(minutes: float = 0.5, *, days: int = 0) -> dt.datetime:
    return NIGHT + dt.timedelta(days=days, minutes=minutes)


@pytest.fixture(scope="module")
def defs(tmp_path_factory):
    return build_defs(tmp_path_factory.mktemp("data"))


@pytest.fixture
def instance():
    with DagsterInstance.ephemeral() as inst:
        yield inst


class Sensor:
    """Consecutive evaluations, each continuing from the previous cursor."""

    def __init__(self, defs, instance):
        self.defs, self.instance, self.cursor = defs, instance, None
        self.keys = sorted(defs.resolve_asset_graph().get_all_asset_keys(),
                           key=AssetKey.to_user_string)

    def at(self, when: dt.datetime) -> dict:
        """{asset: sorted requested partition keys ([None] if unpartitioned)}."""
        result = evaluate_automation_conditions(defs=self.defs, instance=self.instance,
                                                evaluation_time=when, cursor=self.cursor)
        self.cursor = result.cursor
        requested = {key.to_user_string(): sorted(result.get_requested_partitions(key), key=str)
                     for key in self.keys if result.get_num_requested(key)}
        assert result.total_requested == sum(len(v) for v in requested.values())
        return requested


def _mat(instance, asset, partitions=(None,), version="v1"):
    for partition in partitions:
        instance.report_runless_asset_event(AssetMaterialization(
            asset, partition=partition, tags={"dagster/data_version": version}))


def _partial(instance, problems):
    instance.add_dynamic_partitions("lambda", LAMBDAS)
    instance.add_dynamic_partitions("seed", ["0"])
    instance.add_dynamic_partitions("problem", problems)
    for root in ROOTS:
        _mat(instance, root)
    _mat(instance, "lora_checkpoints", units(["0.0", "0.5", "2.0"]))
    _mat(instance, "generations", units(["0.0", "2.0"]))


def _complete(instance, problems=("p000", "p001")):
    instance.add_dynamic_partitions("lambda", LAMBDAS)
    instance.add_dynamic_partitions("seed", ["0"])
    instance.add_dynamic_partitions("problem", list(problems))
    for root in ROOTS:
        _mat(instance, root)
    _mat(instance, "lora_checkpoints", units(LAMBDAS))
    _mat(instance, "generations", units(LAMBDAS))
    _mat(instance, "step_importance", problems)
    _mat(instance, "step_importance_control", problems)
    for asset in EVAL + ["step_importance_summary"]:
        _mat(instance, asset)


def test_every_asset_carries_the_condition_and_the_sensor_is_stopped(defs):
    graph = defs.resolve_asset_graph()
    labels = {graph.get(k).automation_condition.get_label() for k in graph.get_all_asset_keys()}
    assert labels == {FILL_SENSOR_NAME}
    sensor = defs.get_sensor_def(FILL_SENSOR_NAME)
    assert isinstance(sensor, AutomationConditionSensorDefinition)
    assert sensor.default_status == DefaultSensorStatus.STOPPED
    assert sensor.run_tags == {FILL_TAG: "1"} and sensor.emit_backfills
    assert not list(defs.schedules or [])  # the old fill schedule is gone


def test_nothing_before_the_tick_then_exactly_the_missing_partitions_then_the_next_wave(
    defs, instance
):
    problems = [f"p{i:03d}" for i in range(10)]
    _partial(instance, problems)
    _mat(instance, "step_importance", ["p000", "p001", "p002", "p003", "p006"])
    _mat(instance, "step_importance_control", ["p000", "p001"])
    sensor = Sensor(defs, instance)

    assert sensor.at(BEFORE) == {}  # first evaluation, before 02:00
    assert sensor.at(after(0.5)) == {
        # 1.0 and 4.0 lack an adapter, 0.5 only its samples; complete partitions never
        "lora_checkpoints": units(["1.0", "4.0"]),
        "generations": units(["0.5", "1.0", "4.0"]),
        "step_importance": ["p004", "p005", "p007", "p008", "p009"],
        "step_importance_control": [f"p{i:03d}" for i in range(2, 10)],  # the control's own gaps
        # metrics etc. wait: the λ partitions they read are missing
    }
    assert sensor.at(after(1)) == {}  # requested once; not again while not materialized

    _mat(instance, "lora_checkpoints", units(["1.0", "4.0"]))
    _mat(instance, "generations", units(["0.5", "1.0", "4.0"]))
    _mat(instance, "step_importance", ["p004", "p005", "p007", "p008", "p009"])
    _mat(instance, "step_importance_control", [f"p{i:03d}" for i in range(2, 10)])
    # the same night, the aggregates over the now complete partitions follow
    assert sensor.at(after(5)) == {a: [None] for a in EVAL + ["step_importance_summary"]}

    for asset in EVAL + ["step_importance_summary"]:
        _mat(instance, asset)
    assert sensor.at(after(10)) == {}


def test_identical_upstream_requests_nothing_a_changed_one_its_descendants(defs, instance):
    _complete(instance)
    sensor = Sensor(defs, instance)
    assert sensor.at(BEFORE) == {}
    assert sensor.at(after(0.5)) == {}  # everything is up to date

    _mat(instance, "base_model", version="v1")  # re-materialized, same content
    assert sensor.at(after(1)) == {}

    _mat(instance, "base_model", version="v2")  # a new base model
    assert sensor.at(after(2)) == {"lora_checkpoints": units(LAMBDAS), "generations": units(LAMBDAS)}

    _mat(instance, "lora_checkpoints", units(LAMBDAS), version="v2")
    _mat(instance, "generations", units(LAMBDAS), version="v2")
    # what reads the λ assets; not step_importance_summary, which does not
    assert sensor.at(after(5)) == {a: [None] for a in EVAL}

    for asset in EVAL:
        _mat(instance, asset, version="v2")
    assert sensor.at(after(10)) == {}


def test_one_changed_lambda_reruns_only_what_reads_it_once_per_night(defs, instance):
    _complete(instance)
    sensor = Sensor(defs, instance)
    assert sensor.at(BEFORE) == {}
    _mat(instance, "lora_checkpoints", units(["1.0"]), version="v2")  # retrained by hand
    # its samples; metrics reads that λ too, but waits until its samples are redone
    assert sensor.at(after(0.5)) == {"generations": units(["1.0"])}

    _mat(instance, "generations", units(["1.0"]), version="v2")
    assert sensor.at(after(1)) == {a: [None] for a in EVAL}
    for asset in EVAL:
        _mat(instance, asset, version="v2")

    _mat(instance, "lora_checkpoints", units(["1.0"]), version="v3")  # again, later that day
    assert sensor.at(after(60)) == {}  # generations 1.0 was handled tonight already
    assert sensor.at(after(0.5, days=1)) == {"generations": units(["1.0"])}  # the next night


def test_a_changed_code_version_requests_the_asset_and_what_runs_with_it(defs, instance):
    def versioned(changed=()):
        return defs.map_asset_specs(func=lambda spec: spec.replace_attributes(
            code_version="2" if spec.key.to_user_string() in changed else "1"))

    _complete(instance)
    sensor = Sensor(versioned(), instance)
    assert sensor.at(BEFORE) == {}
    assert sensor.at(after(0.5)) == {}
    sensor.defs = versioned({"metrics_summary"})  # new code deployed
    assert sensor.at(after(1)) == {"metrics_summary": [None], "verdict": [None]}
    assert sensor.at(after(2)) == {}  # requested once tonight
    # not materialized (say its run failed): it is still out of date, and retried the next night
    assert sensor.at(after(0.5, days=1)) == {"metrics_summary": [None], "verdict": [None]}


def test_in_progress_partitions_and_their_downstream_are_not_requested(defs, instance):
    _partial(instance, ["p000"])
    _mat(instance, "step_importance", ["p000"])
    _mat(instance, "step_importance_control", ["p000"])
    job = defs.resolve_implicit_global_asset_job_def()
    # a run of lora_checkpoints 1.0...2.0 is running (it planned its materializations)
    instance.create_run_for_job(
        job, asset_selection=frozenset({AssetKey("lora_checkpoints")}),
        status=DagsterRunStatus.STARTED,
        tags={ASSET_PARTITION_RANGE_START_TAG: "1.0|0", ASSET_PARTITION_RANGE_END_TAG: "2.0|0"})
    sensor = Sensor(defs, instance)
    assert sensor.at(BEFORE) == {}
    assert sensor.at(after(0.5)) == {
        "lora_checkpoints": units(["4.0"]),  # not 1.0: in progress
        "generations": units(["0.5", "4.0"]),  # not 1.0: its adapter is being trained
        "step_importance_summary": [None],  # unrelated work still goes ahead
    }


def test_an_empty_instance_requests_only_the_roots(defs, instance):
    # aggregates over λ or problem partitions with none registered would only fail
    sensor = Sensor(defs, instance)
    assert sensor.at(BEFORE) == {}
    assert sensor.at(after(0.5)) == {root: [None] for root in ROOTS}


def test_a_new_seed_requests_its_column_of_the_grid_then_the_aggregates(defs, instance):
    _complete(instance)
    sensor = Sensor(defs, instance)
    assert sensor.at(BEFORE) == {}
    instance.add_dynamic_partitions("seed", ["1"])  # polydag seeds add 1
    # every λ at the new seed; the old seed's partitions are complete and stay untouched
    assert sensor.at(after(0.5)) == {"lora_checkpoints": units(LAMBDAS, "1"), "generations": units(LAMBDAS, "1")}
    _mat(instance, "lora_checkpoints", units(LAMBDAS, "1"))
    _mat(instance, "generations", units(LAMBDAS, "1"))
    assert sensor.at(after(5)) == {a: [None] for a in EVAL}
