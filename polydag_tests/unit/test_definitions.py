"""The code location loads, quickly, with the asset graph users select against."""

import subprocess
import sys
from pathlib import Path

from dagster import AssetKey, AssetSelection

from polydag.definitions import build_defs

REPO = Path(__file__).resolve().parents[2]
EXPECTED_ASSETS = {
    "reply_pairs", "base_model", "lora_checkpoints", "generations", "metrics",
    "metrics_summary", "comparison", "dose_response", "metric_validity", "verdict", "problems", "codi_model", "step_importance",
    "step_importance_summary", "codi_control_model", "step_importance_control",
}


def test_defs_load_with_every_asset_and_no_key_prefix(tmp_path):
    defs = build_defs(tmp_path)
    graph = defs.resolve_asset_graph()
    keys = {key.to_user_string() for key in graph.get_all_asset_keys()}
    assert keys == EXPECTED_ASSETS
    assert all(len(key.path) == 1 for key in graph.get_all_asset_keys())
    check_names = {key.name for key in graph.asset_check_keys}
    assert {"lora_diversity_gradient_nonzero", "metrics_diversity_values_sane",
            "reply_pairs_no_prompt_leakage", "null_control_matches_baseline"} <= check_names


def test_metrics_star_selects_metrics_and_everything_downstream(tmp_path):
    graph = build_defs(tmp_path).resolve_asset_graph()
    selected = AssetSelection.from_string("metrics*").resolve(graph)
    assert {k.to_user_string() for k in selected} == {
        "metrics", "metrics_summary", "comparison", "dose_response", "metric_validity", "verdict"}


def test_partitioned_assets_and_gpu_tags(tmp_path):
    graph = build_defs(tmp_path).resolve_asset_graph()
    for name in ("lora_checkpoints", "generations", "step_importance", "step_importance_control"):
        node = graph.get(AssetKey(name))
        assert node.partitions_def is not None, name
        assert node.pools == {"gpu"}, name
    for name in ("step_importance", "step_importance_control"):
        assert graph.get(AssetKey(name)).backfill_policy.max_partitions_per_run > 1
    # the control's sweep runs over the same problem partitions, and passes the same gates
    assert graph.get(AssetKey("step_importance_control")).partitions_def == \
        graph.get(AssetKey("step_importance")).partitions_def
    gates = {(k.asset_key.to_user_string(), k.name) for k in graph.asset_check_keys}
    for name in ("null_control_matches_baseline", "reference_loop_matches_engine"):
        assert {("step_importance", name), ("step_importance_control", name)} <= gates
    assert AssetKey("step_importance_control") in graph.get(AssetKey("step_importance_summary")).parent_keys


def test_code_location_import_stays_light():
    """Loading the code location must not import torch or transformers (seconds, not tens)."""
    code = ("import sys, dagster, polydag; "
            "heavy = [m for m in ('torch', 'transformers', 'peft', 'sentence_transformers') "
            "if m in sys.modules]; print(heavy); assert polydag.defs is not None; "
            "sys.exit(1 if heavy else 0)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


def test_plain_api_imports_without_dagster():
    code = ("import sys; sys.modules['dagster'] = None; "
            "import polydag.core.polychromic.lambdas, polydag.core.storage.tables; print('ok')")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0 and "ok" in done.stdout, done.stderr


def test_shipped_experiment_yamls_are_valid_run_config(tmp_path):
    import yaml
    from dagster._core.execution.validate_run_config import validate_run_config

    job = build_defs(tmp_path).resolve_implicit_global_asset_job_def()
    for path in sorted((REPO / "config" / "experiments").glob("*.yaml")):
        validate_run_config(job, yaml.safe_load(path.read_text()))  # raises on any bad key

