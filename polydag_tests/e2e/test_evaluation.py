"""The evaluation half for real through Dagster: adapters -> generations -> metrics* ->
verdict, numbers that can be recomputed from the stored samples, the `metrics*` CLI, and
failures that name their fix."""

import json
import os
import subprocess
import sys

import polars as pl
import pytest
from dagster import instance_for_test

from polydag.metrics import distinct_n, pass_at_k, self_bleu
from polydag_tests.e2e.harness import add_sweep, TINY_BASE, TINY_LORA, Pipeline, write_reply_pairs

pytestmark = pytest.mark.e2e

GEN = {"n_samples": 10, "max_new_tokens": 12, "device": "cpu"}


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("eval")
    home = tmp_path_factory.mktemp("home")
    source = write_reply_pairs(data_dir / "pairs.jsonl")
    with instance_for_test(temp_dir=str(home)) as instance:
        add_sweep(instance, ["0.0", "1.0"])
        pipe = Pipeline(data_dir, instance)
        config = {"reply_pairs": {"path": str(source), "max_test_prompts": 6},
                  "base_model": TINY_BASE, "lora_checkpoints": TINY_LORA, "generations": GEN}
        assert pipe.run(["reply_pairs", "base_model"], config).success
        assert pipe.run(["lora_checkpoints", "generations"], config,
                        partition_range=("0.0|0", "1.0|0")).success
        result = pipe.run(["metrics", "metrics_summary", "comparison", "dose_response", "metric_validity", "verdict"],
                          config)
        yield pipe, config, result, home


def test_every_table_exists_with_the_sql_contract_columns(evaluated):
    pipe, _, result, _ = evaluated
    assert result.success
    contract = {
        "generations": {"lambda_key", "diversity_weight", "prompt_id", "sample_idx", "text",
                        "passed"},
        "metrics": {"lambda_key", "diversity_weight", "seed_key", "seed", "prompt_id", "distinct_1", "distinct_2",
                    "self_bleu", "semantic_diversity", "vendi", "n_samples", "n_passed", "distinct_k", "coverage"},
        "metrics_summary": {"lambda_key", "diversity_weight", "pass_at_1", "pass_at_5",
                            "pass_at_10"},
        "comparison": {"lambda_key", "diversity_weight", "metric", "p_wilcoxon", "p_holm",
                       "ci_low", "ci_high", "cohens_dz"},
        "verdict": {"lambda_key", "diversity_weight", "workshop_met", "main_conference_met", "n_seeds",
                    "seed_consistency_assessed", "seed_consistent", "distinct_2_trend_p"},
        "dose_response": {"seed_key", "metric", "page_l", "p_better", "p_worse", "note"},
        "metric_validity": {"metric", "spearman_rho", "rho_oriented", "ci_low", "ci_high", "note"},
        "training_log": {"lambda_key", "diversity_weight", "step", "diversity_grad_share"},
    }
    for table, columns in contract.items():
        have = set(pipe.sql(f"SELECT * FROM {table} LIMIT 1").columns)
        assert columns <= have, (table, columns - have)
    n_test = pipe.sql("SELECT count(DISTINCT prompt_id) FROM reply_pairs WHERE split='test'").item()
    assert n_test >= 3
    assert pipe.sql("SELECT count(*) FROM generations").item() == 2 * n_test * 10
    assert pipe.sql("SELECT DISTINCT lambda_key FROM comparison").to_series().to_list() == ["1.0"]
    # one seed: never "main conference", and the reason is in the table
    verdict = pipe.sql("SELECT n_seeds, seed_consistency_assessed, main_conference_met FROM verdict")
    assert verdict.rows() == [(1, False, False)]
    # the shipped data carries ground truth: the verifier labels every sample, distinct_k counts
    # intents, coverage is a share of the admitted intents, and the validity correlations exist
    metrics = pipe.sql("SELECT distinct_k, distinct_k_source, coverage FROM metrics")
    assert set(metrics["distinct_k_source"]) == {"intent"} and metrics["coverage"].null_count() == 0
    assert ((metrics["coverage"] >= 0) & (metrics["coverage"] <= 1)).all() and (metrics["distinct_k"] >= 0).all()
    # (the tiny test model may give every prompt the same distinct_k: then no rank
    # correlation exists, and each row says why instead of reporting a number)
    validity = pipe.sql("SELECT spearman_rho, note FROM metric_validity")
    assert validity.height == 5
    for rho, note in validity.iter_rows():
        assert (rho is not None and -1 <= rho <= 1) or "constant" in note or "fewer than 3" in note, note


def test_stored_metrics_recompute_by_hand_from_generations(evaluated):
    pipe, *_ = evaluated
    gens = pipe.sql("SELECT * FROM generations ORDER BY lambda_key, prompt_id, sample_idx")
    stored = pipe.sql("SELECT * FROM metrics")
    for (key, pid), group in gens.group_by(["lambda_key", "prompt_id"]):
        texts = group["text"].to_list()
        row = stored.filter((pl.col("lambda_key") == key) & (pl.col("prompt_id") == pid))
        for column, value in (("distinct_2", distinct_n(texts, 2)), ("self_bleu", self_bleu(texts))):
            got = row[column].item()
            assert (got is None and value != value) or got == pytest.approx(value, abs=1e-12)
    summary = pipe.sql("SELECT lambda_key, pass_at_10, pass_at_1 FROM metrics_summary WHERE seed_key = 'pooled'")
    for key, p10, p1 in summary.iter_rows():
        counts = gens.filter(pl.col("lambda_key") == key).group_by("prompt_id").agg(
            pl.col("passed").sum().alias("c"), pl.len().alias("n"))
        assert p10 == pytest.approx(sum(pass_at_k(n, c, 10) for n, c in counts.select("n", "c").iter_rows()) / counts.height)
        assert p1 == pytest.approx(sum(c / n for n, c in counts.select("n", "c").iter_rows()) / counts.height)


def test_verdict_metadata_has_a_table_and_a_plot(evaluated):
    _, _, result, _ = evaluated
    materialization = [m for m in result.asset_materializations_for_node("verdict")][0]
    assert "| λ" in materialization.metadata["verdict"].value or "|" in materialization.metadata["verdict"].value
    assert materialization.metadata["plot"].value.startswith("![")
    json.dumps({k: str(v) for k, v in materialization.metadata.items()})


def test_generations_are_reused_only_for_the_same_adapter_and_config(evaluated):
    pipe, config, _, _ = evaluated
    before = pipe.sql("SELECT text, cache_key FROM generations WHERE lambda_key='0.0' ORDER BY prompt_id, sample_idx")
    result = pipe.run(["generations"], config, partition_key="0.0|0")
    meta = result.asset_materializations_for_node("generations")[0].metadata
    assert meta["reused_partitions"].value == "0.0|0"
    after = pipe.sql("SELECT text, cache_key FROM generations WHERE lambda_key='0.0' ORDER BY prompt_id, sample_idx")
    assert after.equals(before)
    changed = dict(config, generations=dict(GEN, seed=7))
    pipe.run(["generations"], changed, partition_key="0.0|0")
    resampled = pipe.sql("SELECT text, cache_key FROM generations WHERE lambda_key='0.0' ORDER BY prompt_id, sample_idx")
    assert resampled.height == before.height  # replaced exactly, no duplicates or stale rows
    assert resampled["cache_key"].n_unique() == 1 and resampled["cache_key"][0] != before["cache_key"][0]
    pipe.run(["generations"], config, partition_key="0.0|0")  # back to the fixture's samples


def test_missing_embedding_model_fails_with_the_fix_and_keeps_metrics(evaluated):
    pipe, config, _, _ = evaluated
    before = pipe.sql("SELECT * FROM metrics ORDER BY lambda_key, prompt_id")
    result = pipe.run(["metrics"], {"metrics": {"embedding_model_path": "/nonexistent/minilm"}},
                      raise_on_error=False)
    assert not result.success
    error = str([e for e in result.all_events if e.is_step_failure][0].step_failure_data.error)
    assert "/nonexistent/minilm" in error
    assert pipe.sql("SELECT * FROM metrics ORDER BY lambda_key, prompt_id").equals(before)


def test_metrics_names_the_lambda_partitions_that_lack_generations(evaluated):
    pipe, *_ = evaluated
    add_sweep(pipe.instance, ["0.5"])
    try:
        result = pipe.run(["metrics"], raise_on_error=False)
        assert not result.success
        error = str([e for e in result.all_events if e.is_step_failure][0].step_failure_data.error)
        assert "0.5" in error and "dagster asset materialize" in error
    finally:
        pipe.instance.delete_dynamic_partition("lambda", "0.5")


def test_cli_metrics_star_recomputes_metrics_and_downstream(evaluated):
    pipe, _, _, home = evaluated
    env = dict(os.environ, DAGSTER_HOME=str(home), POLYDAG_DATA_DIR=str(pipe.data_dir))
    done = subprocess.run(
        [sys.executable, "-m", "dagster", "asset", "materialize", "-m", "polydag",
         "--select", "metrics*"], env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    for asset in ("metrics", "metrics_summary", "comparison", "dose_response", "metric_validity", "verdict"):
        assert f"ASSET_MATERIALIZATION" in done.stderr and asset in done.stderr
    runs = pipe.instance.get_runs(limit=1)
    assert runs[0].is_success
