"""Real model shapes by arithmetic: no torch, no model (the built-model checks are in
integration/test_shapes_models.py)."""

import pytest

from polydag.core.ops import shapes


def test_qwen3_0_6b_has_its_published_parameter_count():
    # Qwen/Qwen3-0.6B's model card: 0.6B parameters, 0.44B without embeddings (tied head)
    counts = shapes.param_counts("qwen3-0.6b")
    assert counts["total"] == 596_049_920
    assert counts["lm_head"] == 0
    assert round((counts["total"] - counts["embedding"]) / 1e9, 2) == 0.44


def test_qwen3_8b_and_llama_1b_have_their_published_parameter_counts():
    # model cards: Qwen3-8B 8.2B (6.95B non-embedding), Llama-3.2-1B 1.23B (tied)
    q8 = shapes.param_counts("qwen3-8b")
    assert round(q8["total"] / 1e9, 1) == 8.2
    assert round((q8["total"] - q8["embedding"] - q8["lm_head"]) / 1e9, 2) == 6.95
    assert round(shapes.param_counts("llama-3.2-1b")["total"] / 1e9, 2) == 1.24


def test_projection_shapes_follow_grouped_query_attention():
    proj = shapes.projection_shapes("qwen3-8b")
    assert proj["q_proj"] == (4096, 32 * 128) and proj["k_proj"] == (4096, 8 * 128)
    assert proj["down_proj"] == (12288, 4096)


def test_lora_param_count_is_rank_times_in_plus_out_per_projection():
    # q: 1024 -> 2048, v: 1024 -> 1024, 28 layers
    assert shapes.lora_param_count("qwen3-0.6b", 8, ("q_proj", "v_proj")) == 28 * 8 * ((1024 + 2048) + (1024 + 1024))
    with pytest.raises(ValueError, match="not projections"):
        shapes.lora_param_count("qwen3-0.6b", 8, ("c_attn",))


def test_names_are_case_tolerant_and_unknown_names_say_which_exist():
    assert shapes.canonical_name("Qwen3-8B") == "qwen3-8b"
    assert shapes.canonical_name("QWEN3-0.6B") == "qwen3-0.6b"
    with pytest.raises(KeyError, match="qwen3-8b"):
        shapes.canonical_name("gpt-5")


def test_shape_config_is_a_copy_with_overrides():
    cfg = shapes.shape_config("qwen3-0.6b", num_hidden_layers=2)
    assert cfg["num_hidden_layers"] == 2
    assert shapes.SHAPES["qwen3-0.6b"]["num_hidden_layers"] == 28
