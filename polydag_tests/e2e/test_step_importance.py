"""The step-importance sweep for real through Dagster: problems register partitions, a tiny
continuous-thought model trains, ranged runs store per-problem rows, the null-control gate
passes, the summary builds, and a sweep killed with SIGKILL resumes with only the missing
problems, no duplicates and nothing lost."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from dagster import AssetKey, instance_for_test

from polydag_tests.e2e.harness import REPO, Pipeline

pytestmark = pytest.mark.e2e

N_PROBLEMS = 48
CODI = {"default_model": {"steps": 40}}


def write_problems(path: Path, n: int) -> Path:
    lines = (REPO / "data" / "gsm8k_synthetic.jsonl").read_text().splitlines()[:n]
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture(scope="module")
def swept(tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("steps")
    home = tmp_path_factory.mktemp("home")
    source = write_problems(data_dir / "problems.jsonl", N_PROBLEMS)
    with instance_for_test(temp_dir=str(home)) as instance:
        pipe = Pipeline(data_dir, instance)
        config = {"problems": {"path": str(source)}, "codi_model": CODI}
        assert pipe.run(["problems", "codi_model"], config).success
        yield pipe, config, home


def _materialized(instance):
    return instance.get_materialized_partitions(AssetKey("step_importance"))


def test_problems_register_partitions_and_the_model_is_recorded(swept):
    pipe, _, _ = swept
    keys = pipe.instance.get_dynamic_partitions("problem")
    assert len(keys) == N_PROBLEMS
    assert keys == pipe.sql("SELECT problem_id FROM problems").to_series().to_list()
    model = pipe.sql("SELECT * FROM codi_model").row(0, named=True)
    assert model["heldout_accuracy"] is not None and model["n_params"] > 0


def test_killed_sweep_resumes_with_only_the_missing_problems(swept):
    pipe, _, home = swept
    env = dict(os.environ, DAGSTER_HOME=str(home), POLYDAG_DATA_DIR=str(pipe.data_dir),
               PYTHONUNBUFFERED="1")
    cmd = [sys.executable, "-m", "polydag.cli", "sweep", "step-importance",
           "--max-problems", "40", "--problems-per-run", "10"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            start_new_session=True)
    deadline = time.monotonic() + 240
    while len(_materialized(pipe.instance)) < 10:
        assert proc.poll() is None, proc.stdout.read().decode()[-3000:]
        assert time.monotonic() < deadline, "first ranged run never finished"
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    done_before = _materialized(pipe.instance)
    assert 10 <= len(done_before) < 40

    resumed = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    assert f"{len(done_before)} already materialized" in resumed.stdout
    assert f"{40 - len(done_before)} materialized now" in resumed.stdout

    wanted = pipe.instance.get_dynamic_partitions("problem")[:40]
    assert _materialized(pipe.instance) >= set(wanted)
    rows = pipe.sql("SELECT problem_id, variant, count(*) AS n FROM step_importance GROUP BY 1, 2")
    assert rows["n"].max() == 1, "duplicate rows after resume"
    per_problem = rows.group_by("problem_id").len()
    assert set(per_problem["problem_id"]) == set(wanted)
    assert per_problem["len"].n_unique() == 1, "a problem lost some of its variants"


def _sweep_cli(pipe, home, *args):
    env = dict(os.environ, DAGSTER_HOME=str(home), POLYDAG_DATA_DIR=str(pipe.data_dir))
    return subprocess.run([sys.executable, "-m", "polydag.cli", "sweep", "step-importance", *args],
                          env=env, capture_output=True, text=True, timeout=600)


def test_sweep_the_rest_in_ranged_runs_with_the_null_control_and_reference_gates(swept):
    pipe, _, home = swept
    runs_before = {r.run_id for r in pipe.instance.get_runs()}
    done = _sweep_cli(pipe, home, "--problems-per-run", "8")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert f"{N_PROBLEMS} problem partitions in scope" in done.stdout
    new_runs = [r for r in pipe.instance.get_runs() if r.run_id not in runs_before]
    assert new_runs and all(r.is_success for r in new_runs)
    assert all("dagster/asset_partition_range_start" in r.tags for r in new_runs)
    checks = [e for run in new_runs for e in pipe.instance.get_records_for_run(run.run_id).records
              if e.event_log_entry.dagster_event
              and e.event_log_entry.dagster_event.event_type_value == "ASSET_CHECK_EVALUATION"]
    names = sorted(c.event_log_entry.dagster_event.event_specific_data.check_name for c in checks)
    # Both gates ran in every run: the null control and the runtime reference loop.
    assert names == sorted(["null_control_matches_baseline", "reference_loop_matches_engine"] * len(new_runs))
    assert all(c.event_log_entry.dagster_event.event_specific_data.passed for c in checks)
    rows = pipe.sql("SELECT problem_id, reference_checked FROM step_importance")
    checked = rows.filter(rows["reference_checked"])["problem_id"].n_unique()
    assert checked >= 2 * len(new_runs)                # at least 2 per run (all of a run under 10)
    again = _sweep_cli(pipe, home)
    assert again.returncode == 0 and "0 materialized now in 0 ranged run(s)" in again.stdout


def test_rows_have_the_documented_columns_and_null_matches_baseline(swept):
    pipe, _, _ = swept
    rows = pipe.sql("SELECT * FROM step_importance")
    for column in ("problem_id", "variant", "scheme", "mode", "site", "position",
                   "answer_text", "predicted", "correct", "flipped", "answer_changed",
                   "gold_logprob", "kl_to_baseline"):
        assert column in rows.columns
    assert {"baseline", "null", "prefix", "single"} <= set(rows["scheme"].unique())
    base = dict(rows.filter(rows["scheme"] == "baseline").select("problem_id", "predicted").iter_rows())
    null = dict(rows.filter(rows["scheme"] == "null").select("problem_id", "predicted").iter_rows())
    assert base == null


def test_summary_has_positions_difficulties_and_a_plot(swept):
    pipe, _, _ = swept
    result = pipe.run(["step_importance_summary"])
    assert result.success
    summary = pipe.sql("SELECT * FROM step_importance_summary")
    assert {"by_position", "by_difficulty"} <= set(summary["view"].unique())
    meta = result.asset_materializations_for_node("step_importance_summary")[0].metadata
    assert meta["plot"].value.startswith("![")
    # no control sweep yet: the summary still builds, says so, and its control columns are null
    assert meta["control"].value.startswith("absent")
    by_position = summary.filter(summary["view"] == "by_position")
    assert by_position["control_importance"].null_count() == by_position.height


def test_the_control_model_goes_through_the_same_sweep_into_the_summary(swept):
    from polydag.defs.step_importance.sweeps import STEP_IMPORTANCE_CONTROL, sweep_step_importance

    pipe, _, _ = swept
    assert pipe.run(["codi_control_model"], {"codi_control_model": {"default_model": {"steps": 10}}}).success
    control = pipe.sql("SELECT * FROM codi_control_model").row(0, named=True)
    assert control["latent_thoughts"] == "constant" and control["train_steps"] == 10
    assert pipe.sql("SELECT latent_thoughts FROM codi_model").item() == "used"
    assert control["path"] != pipe.sql("SELECT path FROM codi_model").item()

    result = sweep_step_importance(pipe.instance, defs=pipe.defs, max_problems=4, asset=STEP_IMPORTANCE_CONTROL)
    assert result.success and result.describe().startswith("step_importance_control: 4 problem partitions")
    run = pipe.instance.get_run_by_id(result.runs[0]["run_id"])
    checks = [e.event_log_entry.dagster_event.event_specific_data
              for e in pipe.instance.get_records_for_run(run.run_id).records
              if e.event_log_entry.dagster_event
              and e.event_log_entry.dagster_event.event_type_value == "ASSET_CHECK_EVALUATION"]
    assert sorted((c.asset_key.to_user_string(), c.check_name, c.passed) for c in checks) == [
        ("step_importance_control", "null_control_matches_baseline", True),
        ("step_importance_control", "reference_loop_matches_engine", True)]
    keys = pipe.instance.get_dynamic_partitions("problem")[:4]
    assert pipe.instance.get_materialized_partitions(STEP_IMPORTANCE_CONTROL) == set(keys)
    model_variants = pipe.sql("SELECT DISTINCT variant FROM step_importance").to_series().sort().to_list()
    control_variants = pipe.sql("SELECT DISTINCT variant FROM step_importance_control").to_series().sort().to_list()
    assert control_variants == model_variants

    summary_run = pipe.run(["step_importance_summary"])
    meta = summary_run.asset_materializations_for_node("step_importance_summary")[0].metadata
    assert meta["control"].value == "present" and meta["n_control_problems"].value == 4
    models = meta["models"].value   # the two models side by side, with their training steps
    assert "codi_control_model" in models and "constant" in models and "| 10 |" in models
    by_position = pipe.sql("SELECT * FROM step_importance_summary WHERE view = 'by_position'")
    compared = by_position.filter(by_position["within_control_band"].is_not_null())
    assert meta["n_positions_compared"].value == compared.height
    # every variant has its control counts (the importance itself is null where the barely
    # trained control got no problem right): the control's stored rows, counted
    n_right = pipe.sql("SELECT count(*) FROM step_importance_control WHERE scheme = 'baseline' AND correct").item()
    assert by_position["control_n_baseline_correct"].to_list() == [n_right] * by_position.height
    assert pipe.sql("SELECT count(*) FROM step_importance_summary WHERE view = 'control_baseline'").item() > 0


@pytest.mark.parametrize("empty", ["schemes", "modes", "sites"])
def test_an_empty_ablation_list_is_a_config_error_and_writes_no_cost_row(swept, empty):
    pipe, _, _ = swept
    costs_before = pipe.sql("SELECT count(*) FROM costs").item()
    key = pipe.instance.get_dynamic_partitions("problem")[0]
    result = pipe.run(["step_importance"], {"step_importance": {empty: []}}, partition_key=key,
                      raise_on_error=False)
    assert not result.success
    error = str([e for e in result.all_events if e.is_step_failure][0].step_failure_data.error)
    assert f"StepImportanceConfig: {empty} is empty" in error
    assert pipe.sql("SELECT count(*) FROM costs").item() == costs_before


def test_identical_problems_leave_the_sweep_fresh(swept):
    """Re-materializing the same problem file reports the same data version: nothing downstream
    of it is stale (content-based staleness, not event order)."""
    from dagster._core.definitions.data_version import StaleStatus
    from dagster._utils.test.data_versions import get_stale_status_resolver

    pipe, config, _ = swept
    assert pipe.run(["problems"], config).success
    resolver = get_stale_status_resolver(pipe.instance, list(pipe.defs.assets))
    assert resolver.get_status(AssetKey("codi_model")) == StaleStatus.FRESH
    first = pipe.instance.get_dynamic_partitions("problem")[0]
    assert resolver.get_status(AssetKey("step_importance"), first) == StaleStatus.FRESH


def test_a_smaller_problem_set_keeps_old_rows_out_of_the_summary(swept, tmp_path):
    """A changed problem file: problems no longer in it lose their partitions; their rows stay
    in step_importance, are left out of the summary, and the summary's metadata says so."""
    pipe, config, _ = swept
    n_rows = pipe.sql("SELECT count(*) FROM step_importance").item()
    smaller = write_problems(tmp_path / "fewer.jsonl", 20)
    assert pipe.run(["problems"], dict(config, problems={"path": str(smaller)})).success
    assert len(pipe.instance.get_dynamic_partitions("problem")) == 20
    result = pipe.run(["step_importance_summary"])
    assert result.success
    meta = result.asset_materializations_for_node("step_importance_summary")[0].metadata
    assert meta["n_problems"].value == 20
    assert meta["n_excluded_problems"].value == N_PROBLEMS - 20
    assert meta["n_excluded_rows"].value == n_rows * (N_PROBLEMS - 20) // N_PROBLEMS
    assert pipe.sql("SELECT count(*) FROM step_importance").item() == n_rows  # kept for the record
    baseline = pipe.sql("SELECT * FROM step_importance_summary WHERE view = 'baseline' AND difficulty = 'all'")
    assert baseline["n_problems"].to_list() == [20]
