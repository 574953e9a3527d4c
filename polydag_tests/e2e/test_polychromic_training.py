"""The training half for real through Dagster: reply pairs -> tiny base -> λ adapters, the
live training log, the gradient gate, and bad input that leaves nothing half-written."""

import json
from pathlib import Path

import polars as pl
import pytest
from dagster import instance_for_test
from peft import PeftModel

from polydag.core.polychromic.base_model import load_model_and_tokenizer
from polydag_tests.e2e.harness import add_sweep, TINY_BASE, TINY_LORA, Pipeline, write_reply_pairs

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("poly")
    source = write_reply_pairs(data_dir / "pairs.jsonl")
    with instance_for_test() as instance:
        add_sweep(instance, ["0.0", "1.0"])
        pipe = Pipeline(data_dir, instance)
        config = {"reply_pairs": {"path": str(source), "max_test_prompts": 6},
                  "base_model": TINY_BASE}
        assert pipe.run(["reply_pairs", "base_model"], config).success
        result = pipe.run(["lora_checkpoints"], {"lora_checkpoints": TINY_LORA},
                          partition_range=("0.0|0", "1.0|0"))
        yield pipe, config, result


def test_each_lambda_trains_an_adapter_with_the_right_gradient_share(trained):
    pipe, _, result = trained
    assert result.success
    checks = {e.check_name: e.passed for e in result.get_asset_check_evaluations()}
    assert checks["lora_diversity_gradient_nonzero"] is True
    shares = dict(pipe.sql(
        "SELECT lambda_key, max(diversity_grad_share) FROM training_log GROUP BY 1").iter_rows())
    assert shares["0.0"] == 0.0 and shares["1.0"] > 0.0
    ckpts = pipe.sql("SELECT * FROM lora_checkpoints ORDER BY lambda_key")
    assert ckpts["lambda_key"].to_list() == ["0.0", "1.0"]
    assert ckpts["adapter_sha256"].n_unique() == 2
    steps = pipe.sql("SELECT lambda_key, count(*) AS n, count(DISTINCT run_id) AS runs "
                     "FROM training_log GROUP BY 1 ORDER BY 1")
    assert steps["n"].to_list() == [TINY_LORA["max_steps"]] * 2 and steps["runs"].to_list() == [1, 1]


def test_adapters_load_outside_polydag(trained):
    pipe, _, _ = trained
    row = pipe.sql("SELECT adapter_dir, base_model_path FROM lora_checkpoints "
                   "WHERE lambda_key = '1.0'").row(0, named=True)
    base, _ = load_model_and_tokenizer(row["base_model_path"])
    model = PeftModel.from_pretrained(base, row["adapter_dir"])
    assert any("lora_A" in name for name, _ in model.named_parameters())


def test_the_training_curves_picture_is_in_the_metadata(trained):
    _, _, result = trained
    meta = result.asset_materializations_for_node("lora_checkpoints")[0].metadata
    for lam in ("0.0", "1.0"):  # one picture per λ, a line per seed
        assert meta[f"training_curves λ={lam}"].value.startswith(f"![training curves λ={lam}](data:image/png;base64,")
        png = Path(meta[f"training_curves_path λ={lam}"].value)
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000


def test_lambda_zero_is_reproducible_bit_for_bit(trained):
    pipe, _, _ = trained
    before = pipe.sql("SELECT adapter_sha256 FROM lora_checkpoints WHERE lambda_key='0.0'").item()
    assert pipe.run(["lora_checkpoints"], {"lora_checkpoints": TINY_LORA},
                    partition_key="0.0|0").success
    after = pipe.sql("SELECT adapter_sha256 FROM lora_checkpoints WHERE lambda_key='0.0'").item()
    assert after == before
    # the rerun's log replaced the old one: still one run's worth of rows
    assert pipe.sql("SELECT count(*) FROM training_log WHERE lambda_key='0.0'").item() == \
        TINY_LORA["max_steps"]


def _stored(pipe):
    return (pipe.sql("SELECT * FROM lora_checkpoints ORDER BY lambda_key"),
            pipe.sql("SELECT * EXCLUDE (logged_at) FROM training_log ORDER BY seq"))


def _failure(result) -> str:
    return str([e for e in result.all_events if e.is_step_failure][0].step_failure_data.error)


def test_absurd_learning_rate_is_a_config_error_and_keeps_what_was_stored(trained):
    pipe, _, _ = trained
    before = _stored(pipe)
    result = pipe.run(["lora_checkpoints"], {"lora_checkpoints": dict(TINY_LORA, learning_rate=1e38)},
                      partition_key="1.0|0", raise_on_error=False)
    assert not result.success
    assert "PolychromicTrainConfig.learning_rate must be a finite number in (0, 1]" in _failure(result)
    after = _stored(pipe)
    assert after[0].equals(before[0]) and after[1].equals(before[1])


@pytest.mark.parametrize("key", ["0.0", "1.0"])
def test_a_diverging_run_fails_its_gates_before_replacing_anything(trained, key):
    """learning_rate 1.0 (the largest allowed) makes the tiny model worse than its base (loss
    4.82 against 4.68 when measured); with the collapse gate at ratio 1.0 that is caught for
    every λ, the baseline included, and the stored adapter, row and log stay as they were."""
    pipe, _, _ = trained
    before = _stored(pipe)
    old_dir = before[0].filter(pl.col("lambda_key") == key)["adapter_dir"].item()
    old_files = sorted(p.name for p in Path(old_dir).iterdir())
    bad = dict(TINY_LORA, learning_rate=1.0, gate_max_loss_ratio=1.0)
    result = pipe.run(["lora_checkpoints"], {"lora_checkpoints": bad}, partition_key=f"{key}|0",
                      raise_on_error=False)
    assert not result.success
    error = _failure(result)
    assert "TrainingGateError" in error and "not_collapsed" in error, error
    after = _stored(pipe)
    assert after[0].equals(before[0]) and after[1].equals(before[1])
    assert sorted(p.name for p in Path(old_dir).iterdir()) == old_files
    assert not any(d.name == f"run-{result.run_id}" for d in Path(old_dir).parent.iterdir())


def test_non_numeric_lambda_partition_fails_clearly_before_training(trained):
    pipe, _, _ = trained
    add_sweep(pipe.instance, ["strong"])
    result = pipe.run(["lora_checkpoints"], {"lora_checkpoints": TINY_LORA},
                      partition_key="strong|0", raise_on_error=False)
    assert not result.success
    error = str([e for e in result.all_events if e.is_step_failure][0].step_failure_data.error)
    assert "λ key 'strong' is not a number" in error
    assert pipe.sql("SELECT count(*) FROM training_log WHERE lambda_key='strong'").item() == 0


def test_unknown_lambda_key_is_refused_by_dagster(trained):
    pipe, _, _ = trained
    with pytest.raises(Exception, match="5.0"):
        pipe.run(["lora_checkpoints"], {"lora_checkpoints": TINY_LORA}, partition_key="5.0|0")


def test_missing_local_model_path_is_a_clear_error(trained):
    pipe, config, _ = trained
    before = pipe.sql("SELECT * FROM base_model")
    result = pipe.run(["base_model"], {"base_model": {"local_path": "/nonexistent/Qwen3-8B"}},
                      raise_on_error=False)
    assert not result.success
    error = str([e for e in result.all_events if e.is_step_failure][0].step_failure_data.error)
    assert "/nonexistent/Qwen3-8B" in error
    assert pipe.sql("SELECT * FROM base_model").equals(before)


def test_config_weight_that_contradicts_the_partition_is_refused(trained):
    pipe, _, _ = trained
    result = pipe.run(["lora_checkpoints"],
                      {"lora_checkpoints": dict(TINY_LORA, diversity_weight=2.0)},
                      partition_key="1.0|0", raise_on_error=False)
    assert not result.success
    error = str([e for e in result.all_events if e.is_step_failure][0].step_failure_data.error)
    assert "diversity_weight=2.0" in error


def test_training_runs_the_doctor_preflight_first(trained):
    pipe, _, result = trained
    messages = [entry.user_message for entry in pipe.instance.all_logs(result.run_id)]
    assert any("preflight:" in m and "checks passed" in m for m in messages)


def test_missing_model_path_fails_in_the_preflight_with_the_fix(trained):
    pipe, _, _ = trained
    result = pipe.run(["base_model"], {"base_model": {"local_path": "/nonexistent/Qwen3-8B"}},
                      raise_on_error=False)
    error = str([e for e in result.all_events if e.is_step_failure][0].step_failure_data.error)
    assert "PreflightError" in error and "base model" in error


def test_two_processes_train_one_partition_in_one_dagster_run(trained):
    """num_processes 2: torchrun with gloo on the CPU, launched through dagster-pipes; rank 0
    writes the adapter and every step of the training_log exactly once."""
    pipe, _, _ = trained
    # each rank samples its own half of the batch: four replies of up to four prompts per rank,
    # so a rank's tiny-model samples are not all equally far apart (no diversity signal at all)
    two_ranks = dict(TINY_LORA, num_processes=2, n_generations=4, max_examples_for_diversity=4)
    result = pipe.run(["lora_checkpoints"], {"lora_checkpoints": two_ranks}, partition_key="1.0|0")
    assert result.success
    row = pipe.sql("SELECT * FROM lora_checkpoints WHERE lambda_key = '1.0'").row(0, named=True)
    assert row["steps"] == TINY_LORA["max_steps"] and row["gates_passed"]
    assert json.loads(row["train_config"])["num_processes"] == 2
    log = pipe.sql("SELECT step, count(*) AS n FROM training_log WHERE lambda_key = '1.0' GROUP BY 1 ORDER BY 1")
    assert log["step"].to_list() == list(range(1, TINY_LORA["max_steps"] + 1)) and set(log["n"]) == {1}
    messages = [e.message for e in pipe.instance.all_logs(result.run_id) if e.message]
    assert any("training LoRA λ=1.0" in m for m in messages), "rank 0's log did not reach the run"
    base_row = pipe.sql("SELECT path FROM base_model").item()
    model, _ = load_model_and_tokenizer(base_row)
    PeftModel.from_pretrained(model, row["adapter_dir"])


# last in the module: it leaves a second seed's row and log behind
def test_two_seeds_of_one_lambda_coexist(trained):
    """Seed 1 of λ = 0 trains next to seed 0: its own adapter directory, row and log; seed 0's
    adapter, row and log are untouched. (λ = 0: the tiny model's 3 samples of seed 1 come out
    identical at λ = 1, whose gate then rightly refuses an adapter without diversity gradient.)"""
    pipe, _, _ = trained
    before = pipe.sql("SELECT * FROM lora_checkpoints WHERE lambda_key = '0.0' AND seed_key = '0'")
    log_before = pipe.sql("SELECT * EXCLUDE (logged_at) FROM training_log WHERE seed_key = '0' ORDER BY seq")
    add_sweep(pipe.instance, [], ["1"])
    try:
        assert pipe.run(["lora_checkpoints"], {"lora_checkpoints": TINY_LORA}, partition_key="0.0|1").success
        rows = pipe.sql("SELECT * FROM lora_checkpoints WHERE lambda_key = '0.0' ORDER BY seed_key")
        assert rows["seed_key"].to_list() == ["0", "1"] and rows["seed"].to_list() == [0, 1]
        assert rows.filter(rows["seed_key"] == "0").equals(before)
        assert rows["adapter_dir"].n_unique() == 2 and "/seed-1/" in rows["adapter_dir"][1]
        assert rows["adapter_sha256"].n_unique() == 2  # another seed, another adapter
        assert pipe.sql("SELECT * EXCLUDE (logged_at) FROM training_log WHERE seed_key = '0' "
                        "ORDER BY seq").equals(log_before)
        assert pipe.sql("SELECT count(*) FROM training_log WHERE lambda_key = '0.0' AND seed_key = '1' "
                        "AND committed").item() == TINY_LORA["max_steps"]
    finally:
        pipe.instance.delete_dynamic_partition("seed", "1")
