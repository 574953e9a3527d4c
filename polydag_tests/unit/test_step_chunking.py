import pytest

from polydag.core.step_importance.chunking import chunk_memory, chunk_size_for_memory
from polydag.core.step_importance.config import StepImportanceConfig

# LLaMA-3.2-1B: 16 layers, 8 KV heads of 64, width 2048, CODI's resized vocabulary 128256 + 3
LLAMA_1B = dict(n_layers=16, n_kv_heads=8, head_dim=64, hidden_size=2048, vocab_size=128259)


def test_llama_1b_in_bf16_by_hand():
    memory = chunk_memory(**LLAMA_1B, dtype_bytes=2, question_tokens=150, num_latent=6, max_new_tokens=256,
                          gold_tokens=20, with_metrics=True)
    kv = 2 * 16 * 8 * 64 * 2  # 32 KiB per token
    assert memory.per_problem == 150 * (kv + (128259 + 2 * 2048) * 2)
    assert memory.per_row == 264 * kv + 2 * 128259 * 4 + 21 * 128259 * 4
    # an H200 with 139 GiB free, 14 variants: about 200 problems per forward, half the memory
    chunk = chunk_size_for_memory(139 * 2**30, memory, 14, n_problems=1319)
    assert chunk == int(0.5 * 139 * 2**30 // memory.problem_bytes(14))
    assert 100 < chunk < 400 and chunk * memory.problem_bytes(14) <= 0.5 * 139 * 2**30


def test_without_metrics_a_row_holds_less_and_more_problems_fit():
    args = dict(**LLAMA_1B, dtype_bytes=2, question_tokens=150, num_latent=6, max_new_tokens=256, gold_tokens=20)
    with_metrics, without = chunk_memory(**args, with_metrics=True), chunk_memory(**args, with_metrics=False)
    assert without.per_row < with_metrics.per_row
    assert chunk_size_for_memory(40 * 2**30, without, 14, n_problems=10_000) > \
        chunk_size_for_memory(40 * 2**30, with_metrics, 14, n_problems=10_000)


def test_bounds():
    memory = chunk_memory(**LLAMA_1B, dtype_bytes=2, question_tokens=150, num_latent=6, max_new_tokens=256,
                          gold_tokens=20, with_metrics=True)
    assert chunk_size_for_memory(1, memory, 14, n_problems=50) == 1  # nothing fits: one problem at a time
    assert chunk_size_for_memory(10**15, memory, 14, n_problems=50) == 50  # never more than the run has
    assert chunk_size_for_memory(10**15, memory, 14, n_problems=10**6) == 1024
    with pytest.raises(ValueError, match="free memory"):
        chunk_size_for_memory(0, memory, 14, n_problems=5)


def test_config_takes_zero_for_auto_and_refuses_negative():
    assert StepImportanceConfig(chunk_size=0).chunk_size == 0
    with pytest.raises(ValueError, match="chunk_size"):
        StepImportanceConfig(chunk_size=-1)
