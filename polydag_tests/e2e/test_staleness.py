"""Staleness by content, for real: every asset reports a content-based data version and a
code version, so Dagster's own stale status follows content, not the order of events.

Dagster marks an asset stale when the data version of one of its own inputs changed, or its
code version did; its descendants follow once it is rebuilt (and the fill sensor requests the
whole chain in one tick). So "what needs rebuilding" is the stale assets plus everything
downstream of them, and each test checks that set exactly.
"""

import json

import pytest
from dagster import AssetKey, AssetSelection, instance_for_test
from dagster._core.definitions.data_version import StaleStatus
from dagster._utils.test.data_versions import get_stale_status_resolver

from polydag.definitions import build_defs
from polydag_tests.e2e.harness import add_sweep, TINY_BASE, TINY_LORA, Pipeline, write_reply_pairs

pytestmark = pytest.mark.e2e

LAMBDAS = ["0.0", "1.0"]
SWEEP_KEYS = [f"{lam}|0" for lam in LAMBDAS]  # the λ × seed partitions of seed 0
POLYCHROMIC = ["reply_pairs", "base_model", "lora_checkpoints", "generations", "metrics", "metrics_summary",
               "comparison", "dose_response", "metric_validity", "verdict"]
GEN = {"n_samples": 10, "max_new_tokens": 8, "device": "cpu"}


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("stale")
    home = tmp_path_factory.mktemp("home")
    source = write_reply_pairs(data_dir / "pairs.jsonl")
    with instance_for_test(temp_dir=str(home)) as instance:
        add_sweep(instance, LAMBDAS)
        pipe = Pipeline(data_dir, instance)
        config = {"reply_pairs": {"path": str(source), "max_test_prompts": 4},
                  "base_model": TINY_BASE, "lora_checkpoints": TINY_LORA, "generations": GEN}
        assert pipe.run(["reply_pairs", "base_model"], config).success
        assert pipe.run(["lora_checkpoints", "generations"], config, partition_range=("0.0|0", "1.0|0")).success
        assert pipe.run(["metrics", "metrics_summary", "comparison", "dose_response", "metric_validity", "verdict"],
                          config).success
        yield pipe, config, source


def _status(instance, defs) -> dict:
    """{(asset, partition): StaleStatus} of every polychromic asset partition."""
    graph = defs.resolve_asset_graph()
    resolver = get_stale_status_resolver(instance, list(defs.assets))
    out = {}
    for name in POLYCHROMIC:
        key = AssetKey(name)
        partitions = SWEEP_KEYS if graph.get(key).is_partitioned else [None]
        for partition in partitions:
            out[(name, partition)] = resolver.get_status(key, partition)
    return out


def _downstream(defs, names) -> set[str]:
    """The assets ``names`` and everything downstream of them (by asset name)."""
    if not names:
        return set()
    selection = AssetSelection.assets(*[AssetKey(n) for n in names]).downstream()
    return {k.to_user_string() for k in selection.resolve(defs.resolve_asset_graph())}


def _needs_rebuild(defs, status: dict) -> set[str]:
    """Stale assets and everything downstream of them."""
    return _downstream(defs, {name for (name, _), s in status.items() if s == StaleStatus.STALE})


def _descendants(defs, name: str, *, include_self: bool) -> set[str]:
    found = _downstream(defs, {name}) & set(POLYCHROMIC)
    return found if include_self else found - {name}


def test_everything_is_fresh_after_the_build(built):
    pipe, _, _ = built
    status = _status(pipe.instance, pipe.defs)
    assert set(status.values()) == {StaleStatus.FRESH}, status


def test_identical_rematerialization_marks_nothing_stale(built):
    pipe, config, _ = built
    assert pipe.run(["reply_pairs"], config).success
    assert pipe.run(["base_model"], config).success  # deterministic: the same weights again
    status = _status(pipe.instance, pipe.defs)
    assert set(status.values()) == {StaleStatus.FRESH}, status


def test_a_code_version_change_marks_exactly_that_asset_and_its_descendants(built, tmp_path):
    pipe, _, _ = built
    bumped = build_defs(pipe.data_dir).map_asset_specs(
        func=lambda spec: spec.replace_attributes(code_version=f"{spec.code_version}-bumped")
        if spec.key == AssetKey("metrics") else spec)
    status = _status(pipe.instance, bumped)
    assert {name for (name, _), s in status.items() if s == StaleStatus.STALE} == {"metrics"}
    assert _needs_rebuild(bumped, status) & set(POLYCHROMIC) == _descendants(bumped, "metrics", include_self=True)


def test_a_changed_data_file_marks_exactly_its_descendants(built):
    pipe, config, source = built
    rows = [json.loads(line) for line in source.read_text().splitlines()]
    rows[0]["reply"] = rows[0]["reply"] + " (edited)"
    source.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert pipe.run(["reply_pairs"], config).success
    status = _status(pipe.instance, pipe.defs)
    stale = {key for key, s in status.items() if s == StaleStatus.STALE}
    # the direct readers of reply_pairs (metrics reads the prompts' admitted intents), every
    # λ × seed partition of them
    assert stale == {("base_model", None), ("metrics", None),
                     *[(a, k) for a in ("lora_checkpoints", "generations") for k in SWEEP_KEYS]}
    assert _needs_rebuild(pipe.defs, status) & set(POLYCHROMIC) == _descendants(pipe.defs, "reply_pairs",
                                                                                include_self=False)
