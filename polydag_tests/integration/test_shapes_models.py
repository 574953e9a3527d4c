"""Shapes against built models: the arithmetic of polydag.core.ops.shapes equals what
transformers and peft build, and the offline tokenizer has the real special-token ids."""

import pytest
import torch

from polydag.core.ops import shapes


@pytest.mark.parametrize("name", ["qwen3-0.6b", "qwen3-8b", "llama-3.2-1b"])
def test_param_counts_equal_the_model_transformers_builds_from_the_real_config(name):
    # on the meta device: the real shape, no memory allocated
    model = shapes.build_random_model(name, device="meta")
    assert shapes.param_counts(name)["total"] == sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("name", ["tiny", "tiny-llama"])
def test_tiny_shapes_build_with_real_weights_in_the_requested_dtype(name):
    model = shapes.build_random_model(name, dtype="bfloat16", seed=3)
    params = list(model.parameters())
    assert shapes.param_counts(name)["total"] == sum(p.numel() for p in params)
    assert all(p.dtype == torch.bfloat16 and p.device.type == "cpu" for p in params)
    embed = model.get_input_embeddings().weight.detach().float()
    assert torch.isfinite(embed).all()
    # initialised as the config says (normal, std = initializer_range), not left empty
    assert abs(float(embed.std()) - shapes.SHAPES[name]["initializer_range"]) < 0.002


def test_lora_param_count_equals_peft():
    from peft import LoraConfig, get_peft_model

    model = shapes.build_random_model("tiny", dtype="float32")
    targets = shapes.ALL_PROJECTIONS
    peft_model = get_peft_model(model, LoraConfig(r=4, target_modules=list(targets), task_type="CAUSAL_LM"))
    trainable = sum(p.numel() for p in peft_model.parameters() if p.requires_grad)
    assert shapes.lora_param_count("tiny", 4, targets) == trainable


def test_qwen3_tokenizer_has_the_real_length_and_special_ids():
    tok = shapes.build_tokenizer("qwen3", size=shapes.TOKENIZER_SIZES["qwen3-0.6b"])
    assert len(tok) == 151_669
    assert tok.convert_tokens_to_ids("<|im_end|>") == 151_645 == tok.eos_token_id
    assert tok.convert_tokens_to_ids("<|endoftext|>") == 151_643 == tok.pad_token_id
    assert tok.convert_tokens_to_ids("<think>") == 151_667
    text = tok.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False,
                                   add_generation_prompt=True, enable_thinking=False)
    assert text == "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n"
    # every regular id decodes to text: a random model's samples are readable
    assert all(tok.decode([i]) for i in (0, 5000, 151_000, 151_642))


def test_llama3_tokenizer_adds_bos_and_ends_turns_with_eot():
    tok = shapes.build_tokenizer("llama", size=shapes.TOKENIZER_SIZES["llama-3.2-1b"])
    assert len(tok) == 128_256
    assert tok("hello")["input_ids"][0] == 128_000
    assert tok.eos_token_id == 128_009


def test_saved_random_model_loads_through_the_training_loader(tmp_path):
    from polydag.core.polychromic.base_model import load_model_and_tokenizer

    out = shapes.save_random_model("tiny", tmp_path / "tiny", seed=1)
    model, tok = load_model_and_tokenizer(out, device="cpu")
    assert sum(p.numel() for p in model.parameters()) == shapes.param_counts("tiny")["total"]
    assert model.config.eos_token_id == tok.eos_token_id and model.config.pad_token_id == tok.pad_token_id
    ids = model.generate(**tok("hello", return_tensors="pt"), max_new_tokens=3, do_sample=False)
    assert ids.shape[1] >= 2


@pytest.mark.parametrize("name", ["tiny", "tiny-llama"])
def test_pool_init_has_the_configured_distribution_and_keeps_the_head_tied(name):
    model = shapes.build_random_model(name, dtype="float32", init="pool", seed=5)
    assert model.lm_head.weight is model.get_input_embeddings().weight
    assert shapes.param_counts(name)["total"] == sum(p.numel() for p in model.parameters())
    for pname, p in model.named_parameters():
        values = p.detach()
        if p.ndim == 1:
            assert bool((values == 1).all()), pname
        else:
            assert abs(float(values.std()) - shapes.SHAPES[name]["initializer_range"]) < 0.002, pname
    again = shapes.build_random_model(name, dtype="float32", init="pool", seed=5)
    assert all(torch.equal(a, b) for a, b in zip(model.parameters(), again.parameters()))
    with pytest.raises(ValueError, match="init must be"):
        shapes.build_random_model(name, init="zeros")
