from polydag.defs.step_importance.sweeps import contiguous_ranges


def test_ranges_never_straddle_done_keys_and_respect_max_len():
    ordered = [f"p{i}" for i in range(10)]
    wanted = {"p0", "p1", "p2", "p4", "p5", "p6", "p7", "p9"}
    assert contiguous_ranges(ordered, wanted, 3) == [
        ["p0", "p1", "p2"], ["p4", "p5", "p6"], ["p7"], ["p9"]]


def test_unbounded_ranges_still_stop_at_done_keys():
    assert contiguous_ranges(list("abcdefgh"), set("abcfgh"), None) == [list("abc"), list("fgh")]


def test_nothing_wanted_gives_no_runs():
    assert contiguous_ranges(["a", "b"], set(), 5) == []


def test_sweep_runs_missing_problems_in_ranged_runs_of_the_given_definitions(tmp_path):
    """The sweep resolves the asset job from the Definitions it is given and runs each range
    as one ordinary run in the instance; run again, it does only what is missing."""
    from dagster import (
        AssetExecutionContext,
        BackfillPolicy,
        DagsterInstance,
        Definitions,
        DynamicPartitionsDefinition,
        asset,
    )

    from polydag.defs.step_importance.sweeps import sweep_step_importance

    seen = []

    @asset(partitions_def=DynamicPartitionsDefinition(name="problem"),
           backfill_policy=BackfillPolicy.multi_run(3))
    def step_importance(context: AssetExecutionContext) -> None:
        seen.append(list(context.partition_keys))

    defs = Definitions(assets=[step_importance])
    keys = [f"p{i}" for i in range(7)]
    with DagsterInstance.ephemeral() as instance:
        instance.add_dynamic_partitions("problem", keys)
        first = sweep_step_importance(instance, defs=defs, max_problems=5, problems_per_run=3)
        assert first.success and [(r["start"], r["end"]) for r in first.runs] == [
            ("p0", "p2"), ("p3", "p4")]
        assert seen == [["p0", "p1", "p2"], ["p3", "p4"]]
        runs = {r.run_id: r for r in instance.get_runs()}
        assert set(runs) == {r["run_id"] for r in first.runs}
        assert all(r.is_success and r.tags["dagster/asset_partition_range_end"] for r in runs.values())

        rest = sweep_step_importance(instance, defs=defs, problems_per_run=3)
        assert rest.n_already_done == 5 and [(r["start"], r["end"]) for r in rest.runs] == [
            ("p5", "p6")]
        assert instance.get_materialized_partitions(step_importance.key) == set(keys)
