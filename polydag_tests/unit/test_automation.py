"""The fill schedule on a real instance whose materializations are recorded as runless events.

Each test sets up which asset partitions exist (``report_runless_asset_event``) and checks the
exact runs the schedule asks for: which assets, which partition range, and that complete
partitions are never in a range.
"""

import pytest
from dagster import (
    AssetMaterialization,
    DagsterInstance,
    DagsterRun,
    DagsterRunStatus,
    build_schedule_context,
)
from dagster._core.storage.tags import (
    ASSET_PARTITION_RANGE_END_TAG,
    ASSET_PARTITION_RANGE_START_TAG,
)

from polydag.defs.automation import FILL_TAG, contiguous_ranges
from polydag.definitions import build_defs

LAMBDAS = ["0.0", "0.5", "1.0", "2.0", "4.0"]
ROOTS = ["reply_pairs", "base_model", "problems", "codi_model"]
EVAL = ["metrics", "metrics_summary", "comparison", "verdict"]


@pytest.fixture
def instance(tmp_path):
    (tmp_path / "home").mkdir()
    with DagsterInstance.local_temp(str(tmp_path / "home")) as inst:
        yield inst


@pytest.fixture
def schedule(tmp_path):
    return build_defs(tmp_path / "data").get_schedule_def("fill_missing_partitions")


def _mat(instance, asset, partitions=(None,)):
    for partition in partitions:
        instance.report_runless_asset_event(AssetMaterialization(asset, partition=partition))


def _tick(schedule, instance):
    data = schedule.evaluate_tick(build_schedule_context(instance=instance))
    return data.run_requests or [], data.skip_message


def _summary(requests):
    """{(asset names...): [(range start, range end) or None, ...]} of the requested runs."""
    out = {}
    for req in requests:
        assert req.tags[FILL_TAG] == "1"
        assets = tuple(sorted(k.to_user_string() for k in req.asset_selection))
        if ASSET_PARTITION_RANGE_START_TAG in req.tags:
            span = (req.tags[ASSET_PARTITION_RANGE_START_TAG], req.tags[ASSET_PARTITION_RANGE_END_TAG])
        else:
            span = None
        out.setdefault(assets, []).append(span)
    return {k: sorted(v, key=str) for k, v in out.items()}


def _setup_partial(instance, problems):
    instance.add_dynamic_partitions("lambda", LAMBDAS)
    instance.add_dynamic_partitions("problem", problems)
    for root in ROOTS:
        _mat(instance, root)
    _mat(instance, "lora_checkpoints", ["0.0", "0.5", "2.0"])
    _mat(instance, "generations", ["0.0", "2.0"])


def test_contiguous_ranges_never_span_a_complete_key_and_respect_the_cap():
    ordered = list("abcdefgh")
    assert contiguous_ranges(ordered, set("abcfgh"), None) == [list("abc"), list("fgh")]
    assert contiguous_ranges(ordered, set("abcfgh"), 2) == [["a", "b"], ["c"], ["f", "g"], ["h"]]
    assert contiguous_ranges(ordered, set(), 3) == []


def test_first_wave_requests_exactly_the_missing_partitions(schedule, instance):
    problems = [f"p{i:03d}" for i in range(10)]
    _setup_partial(instance, problems)
    _mat(instance, "step_importance", ["p000", "p001", "p002", "p003", "p006"])

    requests, skip = _tick(schedule, instance)
    assert skip is None
    assert _summary(requests) == {
        # 1.0 and 4.0 lack an adapter: train and sample them; 2.0 (complete) splits the range
        ("generations", "lora_checkpoints"): [("1.0", "1.0"), ("4.0", "4.0")],
        # 0.5 has its adapter: only its samples are missing
        ("generations",): [("0.5", "0.5")],
        ("step_importance",): [("p004", "p005"), ("p007", "p009")],
    }
    # metrics etc. wait for the λ wave (their inputs are about to change)
    assert not any(set(EVAL) & {k.to_user_string() for k in r.asset_selection} for r in requests)


def test_next_wave_runs_the_aggregates_then_nothing(schedule, instance):
    _setup_partial(instance, ["p000", "p001"])
    _mat(instance, "lora_checkpoints", ["1.0", "4.0"])
    _mat(instance, "generations", ["0.5", "1.0", "4.0"])
    _mat(instance, "step_importance", ["p000", "p001"])

    requests, _ = _tick(schedule, instance)
    assert _summary(requests) == {tuple(sorted(EVAL + ["step_importance_summary"])): [None]}

    for asset in EVAL + ["step_importance_summary"]:
        _mat(instance, asset)
    requests, skip = _tick(schedule, instance)
    assert requests == [] and "up to date" in skip


def _complete(instance, problems):
    instance.add_dynamic_partitions("lambda", LAMBDAS)
    instance.add_dynamic_partitions("problem", problems)
    for root in ROOTS:
        _mat(instance, root)
    _mat(instance, "lora_checkpoints", LAMBDAS)
    _mat(instance, "generations", LAMBDAS)
    _mat(instance, "step_importance", problems)
    for asset in EVAL + ["step_importance_summary"]:
        _mat(instance, asset)


def test_upstream_change_makes_its_descendants_stale(schedule, instance):
    _complete(instance, ["p000", "p001"])
    _mat(instance, "base_model")  # a new base model: every adapter was trained on the old one
    requests, _ = _tick(schedule, instance)
    assert _summary(requests) == {("generations", "lora_checkpoints"): [("0.0", "4.0")]}

    _mat(instance, "lora_checkpoints", LAMBDAS)
    _mat(instance, "generations", LAMBDAS)
    requests, _ = _tick(schedule, instance)
    assert _summary(requests) == {tuple(sorted(EVAL)): [None]}  # not step_importance_summary

    # one λ re-sampled: only what reads it
    for asset in EVAL:
        _mat(instance, asset)
    _mat(instance, "lora_checkpoints", ["1.0"])
    requests, _ = _tick(schedule, instance)
    assert _summary(requests) == {("generations",): [("1.0", "1.0")]}


def test_unregistered_partitions_and_new_roots(schedule, instance):
    # an empty instance: only the unpartitioned roots can start; aggregates over
    # partitioned assets with nothing materialized are not launched (they would fail)
    requests, _ = _tick(schedule, instance)
    assert _summary(requests) == {tuple(sorted(ROOTS)): [None]}


def test_multi_run_policy_caps_each_range(schedule, instance):
    problems = [f"p{i:03d}" for i in range(205)]
    instance.add_dynamic_partitions("problem", problems)
    for root in ROOTS:
        _mat(instance, root)
    requests, _ = _tick(schedule, instance)
    # step_importance is BackfillPolicy.multi_run(200)
    assert _summary(requests)[("step_importance",)] == [("p000", "p199"), ("p200", "p204")]


def test_tick_is_skipped_while_an_earlier_fill_is_running(schedule, instance):
    instance.add_run(DagsterRun(job_name="__ASSET_JOB", status=DagsterRunStatus.STARTED,
                                tags={FILL_TAG: "1"}))
    requests, skip = _tick(schedule, instance)
    assert requests == [] and "still queued or running" in skip
