"""The arithmetic of the memory estimate (the measured check is ops/test_qwen3_shape.py)."""

from polydag.core.ops import memory, shapes
from polydag.core.polychromic.config import PolychromicTrainConfig


def test_weights_by_dtype():
    n = shapes.param_counts("qwen3-8b")["total"]
    assert memory.weight_bytes("qwen3-8b", "bf16") == 2 * n
    assert memory.weight_bytes("qwen3-8b", "float32") == 4 * n
    assert memory.weight_bytes("qwen3-8b", "nf4") < 0.4 * memory.weight_bytes("qwen3-8b", "bf16")


def test_gradient_checkpointing_and_batch_size_act_on_activations_only():
    plain = memory.estimate_training_memory("qwen3-8b", batch_size=8, max_length=256)
    ckpt = memory.estimate_training_memory("qwen3-8b", batch_size=8, max_length=256, gradient_checkpointing=True)
    assert ckpt.parts["train_activations"] < plain.parts["train_activations"] / 5
    assert ckpt.parts["weights"] == plain.parts["weights"]
    bigger = memory.estimate_training_memory("qwen3-8b", batch_size=16, max_length=256)
    assert bigger.parts["train_activations"] == 2 * plain.parts["train_activations"]


def test_config_fields_reach_the_estimate():
    cfg = PolychromicTrainConfig(per_device_train_batch_size=4, gradient_accumulation_steps=8,
                                 gradient_checkpointing=True, diversity_weight=1.0)
    est = memory.estimate_for_config("qwen3-8b", cfg)
    assert est.settings["batch_size"] == 4 and est.settings["gradient_checkpointing"] is True
    assert est.dtype == "bfloat16" and "quality backward" in est.phases
    baseline = memory.estimate_for_config("qwen3-8b", PolychromicTrainConfig(diversity_weight=0.0))
    assert "quality backward" not in baseline.phases and "sampling" in baseline.phases
    assert memory.estimate_for_config("qwen3-8b", PolychromicTrainConfig(load_in_4bit=True)).dtype == "nf4"


def test_cpu_loading_phase_counts_the_mapped_checkpoint():
    est = memory.estimate_training_memory("qwen3-0.6b", dtype="float32", checkpoint_dtype="bfloat16",
                                          batch_size=1, max_length=16)
    assert est.phases["loading"] == memory.weight_bytes("qwen3-0.6b", "float32") + \
        memory.weight_bytes("qwen3-0.6b", "bfloat16")
    assert "loading" not in memory.estimate_training_memory("qwen3-0.6b", dtype="bfloat16").phases


def test_fits_adds_fragmentation_and_the_cuda_context():
    est = memory.estimate_training_memory("qwen3-8b", gradient_checkpointing=True)
    fit = memory.fits(est, 80)
    assert fit.required_bytes > est.peak_bytes and fit.fits
    assert not memory.fits(est, 16).fits


def test_doctor_states_the_estimate_for_an_experiment_and_a_gpu(tmp_path):
    from polydag.core.ops import doctor

    run_config = tmp_path / "exp.yaml"
    run_config.write_text("ops:\n  lora_checkpoints:\n    config:\n      per_device_train_batch_size: 4\n"
                          "      gradient_checkpointing: true\n")
    ok = doctor.check_memory_estimate("qwen3-8b", experiment=run_config, gpu_gib=80)
    assert ok.status == doctor.OK and "micro-batch 4×96" in ok.detail and "of 80 GiB" in ok.detail
    assert ok.data["estimate"]["settings"]["gradient_checkpointing"] is True
    too_small = doctor.check_memory_estimate("qwen3-8b", train_values={"per_device_train_batch_size": 16},
                                             gpu_gib=24)
    assert too_small.status == doctor.FAIL and "gradient_checkpointing" in too_small.fix
