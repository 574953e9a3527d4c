"""Batched, seeded generation with a tiny Qwen3 model and tokenizer built in the test."""

import dataclasses

import polars as pl
import pytest
import torch

from polydag.core.polychromic.base_model import BaseModelConfig, build_default_base_model, load_model_and_tokenizer
from polydag.core.evaluation.config import QualityConfig
from polydag.core.evaluation.generation import (
    AdapterPathError,
    GenerationConfig,
    generate_partition,
    generate_samples,
    generate_samples_one_at_a_time,
    generation_cache_key,
    load_model_with_adapter,
)
from polydag.core.polychromic.sampling import (
    SamplingConfig,
    decode_reply,
    newline_token_ids,
    sample_replies,
    sample_token_ids,
)
from polydag.core.storage.generation_batches import GenerationBatches
from polydag.core.polychromic.prompting import format_prompt

TWEETS = [
    ("Quick poll: puppy training class, yes or no? #dogs", "Yes, every puppy deserves it"),
    ("Early morning thoughts: learning guitar hits different", "Keep practicing, it gets easier"),
    ("Just finished my first marathon!!", "Congrats, that is huge"),
    ("Coffee or tea to start the day?", "Coffee, always coffee"),
    ("Why is Monday so long", "Because Tuesday is waiting"),
]
PROMPTS = [format_prompt(p) for p, _ in TWEETS]


@pytest.fixture(scope="module")
def base_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("tiny-base")
    build_default_base_model(TWEETS * 4, out, BaseModelConfig.tiny_for_tests(pretrain_steps=4))
    return out


@pytest.fixture(scope="module")
def model_and_tokenizer(base_dir):
    return load_model_and_tokenizer(base_dir, device="cpu")


@pytest.fixture(scope="module")
def random_model_and_tokenizer(base_dir):
    """The tiny model with large random weights: its greedy output depends on every prompt
    token, so a padding or attention-mask mistake changes it (the briefly pretrained model
    answers "::::" to everything, which would make a padding test vacuous)."""
    model, tokenizer = load_model_and_tokenizer(base_dir, device="cpu")
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for parameter in model.parameters():
            if parameter.ndim >= 2:
                parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.5)
    return model, tokenizer


def _prefill_batch_sizes(model, run):
    """Batch size of each generate call's first (prefill) forward pass."""
    sizes = []

    def hook(module, args, kwargs):
        ids = kwargs.get("input_ids")
        if ids is not None and ids.shape[1] > 1:
            sizes.append(ids.shape[0])

    handle = model.register_forward_pre_hook(hook, with_kwargs=True)
    try:
        run()
    finally:
        handle.remove()
    return sizes


def test_n_samples_per_prompt(model_and_tokenizer):
    model, tokenizer = model_and_tokenizer
    cfg = GenerationConfig(n_samples=4, max_new_tokens=12, prompt_batch_size=2)
    samples = generate_samples(model, tokenizer, PROMPTS, cfg)
    assert len(samples) == len(PROMPTS)
    assert all(len(replies) == 4 for replies in samples)
    assert all(isinstance(r, str) and "\n" not in r and r == r.strip() for replies in samples for r in replies)
    assert any(r for replies in samples for r in replies)


def test_generation_is_batched(model_and_tokenizer):
    model, tokenizer = model_and_tokenizer
    cfg = GenerationConfig(n_samples=3, max_new_tokens=6, prompt_batch_size=4)
    sizes = _prefill_batch_sizes(model, lambda: generate_samples(model, tokenizer, PROMPTS, cfg))
    assert sizes == [4 * 3, 1 * 3]  # two generate calls: 4 prompts × 3 samples, then 1 × 3
    naive = _prefill_batch_sizes(model, lambda: generate_samples_one_at_a_time(model, tokenizer, PROMPTS[:2], cfg))
    assert naive == [1] * 6


def test_deterministic_for_a_seed_and_independent_of_global_rng(model_and_tokenizer):
    model, tokenizer = model_and_tokenizer
    cfg = GenerationConfig(n_samples=3, max_new_tokens=10, prompt_batch_size=2, seed=7)
    torch.manual_seed(0)
    first = generate_samples(model, tokenizer, PROMPTS, cfg)
    after_first = torch.rand(1)
    torch.manual_seed(12345)
    second = generate_samples(model, tokenizer, PROMPTS, cfg)
    assert first == second
    torch.manual_seed(0)
    assert torch.equal(torch.rand(1), after_first)  # the caller's RNG stream was not consumed
    other_seed = generate_samples(model, tokenizer, PROMPTS, dataclasses.replace(cfg, seed=8))
    assert other_seed != first


def test_left_padding_matches_unbatched_generation(random_model_and_tokenizer):
    """With top_p → 0 sampling is greedy, so batched (left-padded) and one-at-a-time agree."""
    model, tokenizer = random_model_and_tokenizer
    lengths = {len(tokenizer(p)["input_ids"]) for p in PROMPTS}
    assert len(lengths) > 1  # the batch really needs padding
    cfg = GenerationConfig(n_samples=2, max_new_tokens=10, prompt_batch_size=5, top_p=1e-9)
    batched = generate_samples(model, tokenizer, PROMPTS, cfg)
    single = generate_samples_one_at_a_time(model, tokenizer, PROMPTS, cfg)
    assert len({r for replies in single for r in replies}) == len(PROMPTS)  # not a vacuous match
    assert batched == single


def test_replies_stop_at_newline(model_and_tokenizer):
    _, tokenizer = model_and_tokenizer
    ids = newline_token_ids(tokenizer)
    assert ids and all("\n" in tokenizer.decode([i]) for i in ids)
    text_ids = tokenizer(" hello\nworld", add_special_tokens=False)["input_ids"]
    eos = tokenizer.eos_token_id
    assert decode_reply(tokenizer, text_ids + [eos] + text_ids, frozenset({eos})) == "hello"
    assert decode_reply(tokenizer, [eos] + text_ids, frozenset({eos})) == ""


def test_cache_key_covers_adapter_and_every_config_field():
    sha = "ab" * 32
    cfg = GenerationConfig()
    key = generation_cache_key(sha, cfg)
    assert key == generation_cache_key(sha, GenerationConfig())
    assert generation_cache_key("cd" * 32, cfg) != key
    changed = {"n_samples": 5, "temperature": 0.7, "top_p": 0.9, "max_new_tokens": 16,
               "prompt_batch_size": 8, "seed": 1, "top_k": 5, "device": "cpu"}
    assert set(changed) == {f.name for f in dataclasses.fields(GenerationConfig)}
    for name, value in changed.items():
        assert generation_cache_key(sha, dataclasses.replace(cfg, **{name: value})) != key, name
    assert generation_cache_key(sha, cfg, extra={"prompts": "x"}) != key
    with pytest.raises(ValueError, match="sha256"):
        generation_cache_key("not-a-hash", cfg)


@pytest.mark.parametrize(
    "field, value",
    [("n_samples", 0), ("temperature", 0.0), ("top_p", 1.5), ("max_new_tokens", 0),
     ("prompt_batch_size", -1), ("top_k", -1), ("seed", 1.5)],
)
def test_config_validation(field, value):
    with pytest.raises(ValueError, match=f"GenerationConfig.{field}"):
        GenerationConfig(**{field: value})


def test_load_model_with_adapter(base_dir, tmp_path, model_and_tokenizer):
    from peft import LoraConfig, get_peft_model

    base, tokenizer = load_model_and_tokenizer(base_dir, device="cpu")
    torch.manual_seed(0)
    peft_model = get_peft_model(base, LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False))
    adapter_dir = tmp_path / "adapter"
    peft_model.save_pretrained(str(adapter_dir))

    model, tokenizer = load_model_with_adapter(base_dir, adapter_dir, device="cpu")
    assert not model.training
    ids = tokenizer(PROMPTS[0], return_tensors="pt")["input_ids"]
    with torch.no_grad():
        adapted = model(input_ids=ids).logits
        expected = peft_model.eval()(input_ids=ids).logits
        plain = model_and_tokenizer[0](input_ids=ids).logits
    torch.testing.assert_close(adapted, expected)
    assert not torch.allclose(adapted, plain)
    merged, _ = load_model_with_adapter(base_dir, adapter_dir, device="cpu", merge=True)
    with torch.no_grad():
        torch.testing.assert_close(merged(input_ids=ids).logits, expected, atol=1e-4, rtol=1e-4)

    with pytest.raises(AdapterPathError, match="does not exist"):
        load_model_with_adapter(base_dir, tmp_path / "missing", device="cpu")
    (tmp_path / "empty").mkdir()
    with pytest.raises(AdapterPathError, match="adapter_config.json"):
        load_model_with_adapter(base_dir, tmp_path / "empty", device="cpu")


# --------------------------------------------------------------------------- seeds per prompt


def _encode(tokenizer, prompts):
    return [tokenizer(p, add_special_tokens=True)["input_ids"] for p in prompts]


@pytest.mark.parametrize("options", [SamplingConfig(0.9, 0.95, 0, 10), SamplingConfig(1.3, 1.0, 20, 10),
                                     SamplingConfig(0.7, 0.8, 5, 10)])
def test_a_prompt_with_its_own_seed_draws_what_the_one_seed_path_draws(random_model_and_tokenizer, options):
    """The per-prompt path warps and draws exactly like generate's own sampling step: for one
    prompt, prompt_seeds=[s] gives the tokens of seed=s (training's path); in a batch, each
    prompt gets the tokens it gets alone."""
    model, tokenizer = random_model_and_tokenizer
    encoded = _encode(tokenizer, PROMPTS)
    alone = []
    for i, ids in enumerate(encoded):
        one_seed = sample_token_ids(model, tokenizer, [ids], 4, options, seed=100 + i)
        assert sample_token_ids(model, tokenizer, [ids], 4, options, prompt_seeds=[100 + i]) == one_seed
        alone.extend(one_seed)
    assert len({tuple(row) for row in alone}) > len(PROMPTS)  # real samples, not one repeated row
    batched = sample_token_ids(model, tokenizer, encoded, 4, options, prompt_seeds=[100 + i for i in range(5)])
    assert batched == alone
    with pytest.raises(TypeError, match="exactly one"):
        sample_token_ids(model, tokenizer, encoded, 4, options, seed=1, prompt_seeds=[1] * 5)
    with pytest.raises(ValueError, match="4 prompt seeds for 5 prompts"):
        sample_token_ids(model, tokenizer, encoded, 4, options, prompt_seeds=[1] * 4)


def test_texts_depend_on_the_prompt_and_seed_only_not_on_the_batching(random_model_and_tokenizer):
    model, tokenizer = random_model_and_tokenizer
    cfg = GenerationConfig(n_samples=4, max_new_tokens=10, prompt_batch_size=5, seed=3)
    full = generate_samples(model, tokenizer, PROMPTS, cfg)
    assert len({r for replies in full for r in replies}) > len(PROMPTS)  # varied: not a vacuous match
    for size in (1, 2, 3):
        assert generate_samples(model, tokenizer, PROMPTS, dataclasses.replace(cfg, prompt_batch_size=size)) == full
    halves = generate_samples(model, tokenizer, PROMPTS[:2], cfg) + generate_samples(model, tokenizer, PROMPTS[2:], cfg)
    assert halves == full
    assert generate_samples(model, tokenizer, PROMPTS[::-1], cfg) == full[::-1]
    assert generate_samples(model, tokenizer, PROMPTS, dataclasses.replace(cfg, seed=4)) != full
    # what this guards against: one seed per call makes a prompt's samples depend on its batch
    encoded = _encode(tokenizer, PROMPTS)
    assert (sample_replies(model, tokenizer, encoded[:2], 4, cfg.sampling(), seed=11)[1]
            != sample_replies(model, tokenizer, encoded[1:2], 4, cfg.sampling(), seed=11)[0])


def test_a_resumed_draw_samples_only_the_missing_prompts_in_the_same_batches(random_model_and_tokenizer):
    model, tokenizer = random_model_and_tokenizer
    cfg = GenerationConfig(n_samples=3, max_new_tokens=8, prompt_batch_size=2)
    full = generate_samples(model, tokenizer, PROMPTS, cfg)
    kept, resumed = [], []
    sizes = _prefill_batch_sizes(model, lambda: resumed.append(generate_samples(
        model, tokenizer, PROMPTS, cfg, done={0: full[0], 1: full[1]}, on_batch=lambda d: kept.append(d))))
    assert resumed == [full]
    assert [sorted(batch) for batch in kept] == [[2, 3], [4]] and sizes == [2 * 3, 1 * 3]
    assert kept[0] == {2: full[2], 3: full[3]}
    with pytest.raises(ValueError, match="done"):
        generate_samples(model, tokenizer, PROMPTS, cfg, done={0: full[0][:2]})


@pytest.fixture(scope="module")
def checkpoint(base_dir, tmp_path_factory):
    """A λ checkpoint row with a real (non-zero) peft adapter."""
    from peft import LoraConfig, get_peft_model

    from polydag.core.ops.hashing import file_sha256

    base, _ = load_model_and_tokenizer(base_dir, device="cpu")
    torch.manual_seed(0)
    adapter = get_peft_model(base, LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False))
    adapter_dir = tmp_path_factory.mktemp("adapter") / "0.0"
    adapter.save_pretrained(str(adapter_dir))
    return {"lambda_key": "0.0", "diversity_weight": 0.0, "gates_passed": True,
            "adapter_sha256": file_sha256(adapter_dir / "adapter_model.safetensors"),
            "base_model_sha256": "cd" * 32, "base_model_path": str(base_dir), "adapter_dir": str(adapter_dir)}


class _Killed(Exception):
    pass


class _DiesAfter(GenerationBatches):
    """Keeps ``n`` batches, then the process 'dies' (as a SIGKILL after the n-th write would)."""

    def __init__(self, path, n):
        super().__init__(path)
        self.n = n

    def add(self, *args, **kwargs):
        kept = super().add(*args, **kwargs)
        self.n -= 1
        if self.n == 0:
            raise _Killed
        return kept


def test_generate_partition_resumes_an_interrupted_draw_row_for_row(checkpoint, tmp_path):
    prompts = pl.DataFrame({"prompt_id": [f"p{i}" for i in range(5)], "prompt": [t for t, _ in TWEETS]})
    cfg = GenerationConfig(n_samples=3, max_new_tokens=10, prompt_batch_size=2, device="cpu")
    quality = QualityConfig(min_relevance=None)
    reference = generate_partition(checkpoint, prompts, cfg, quality, batches=GenerationBatches(tmp_path / "a.duckdb"))
    assert (reference.n_resumed_prompts, reference.n_generated_prompts) == (0, 5)
    assert reference.table["text"].n_unique() > 5

    with pytest.raises(_Killed):
        generate_partition(checkpoint, prompts, cfg, quality, batches=_DiesAfter(tmp_path / "b.duckdb", 2))
    store = GenerationBatches(tmp_path / "b.duckdb")
    assert sorted(store.finished(reference.cache_key, 3)) == ["p0", "p1", "p2", "p3"]
    resumed = generate_partition(checkpoint, prompts, cfg, quality, batches=store)
    assert (resumed.n_resumed_prompts, resumed.n_generated_prompts) == (4, 1)
    assert resumed.cache_key == reference.cache_key
    assert resumed.table.equals(reference.table)  # texts, passed flags, reasons: row for row

    # every prompt kept (e.g. the partition's final write failed): nothing to sample, no model
    no_model = {**checkpoint, "base_model_path": "/nonexistent", "adapter_dir": "/nonexistent"}
    again = generate_partition(no_model, prompts, cfg, quality, batches=store)
    assert (again.n_resumed_prompts, again.n_generated_prompts) == (5, 0) and again.table.equals(reference.table)

    # another key (here the seed) never uses them, and its start removes them
    other = generate_partition(checkpoint, prompts, dataclasses.replace(cfg, seed=9), quality, batches=store)
    assert (other.n_resumed_prompts, other.n_generated_prompts) == (0, 5)
    assert other.table["text"].to_list() != reference.table["text"].to_list()
    assert store.finished(reference.cache_key, 3) == {}
    # once the partition is stored complete under its key, it is the cache: the side rows go
    reused = generate_partition(checkpoint, prompts, dataclasses.replace(cfg, seed=9), quality,
                                cached=other.table, batches=store)
    assert reused.reused and store.finished(other.cache_key, 3) == {}


def test_a_chat_trained_adapter_is_sampled_in_its_chat_format(checkpoint, model_and_tokenizer):
    """generations frames the prompts as the adapter's stored train_config says: a chat-trained
    adapter sees its chat template (no extra special prefix), a plain one the plain template."""
    import json

    from polydag.core.polychromic.prompting import PromptFormat, frame_prompt

    prompts = pl.DataFrame({"prompt_id": ["p0", "p1"], "prompt": [t for t, _ in TWEETS[:2]]})
    cfg = GenerationConfig(n_samples=2, max_new_tokens=8, prompt_batch_size=2, device="cpu")
    quality = QualityConfig(min_relevance=None)
    chat = {**checkpoint, "train_config": json.dumps({"prompt_format": "chat",
                                                      "chat_template_kwargs": {"enable_thinking": False}})}
    chat_part = generate_partition(chat, prompts, cfg, quality)
    plain_part = generate_partition(checkpoint, prompts, cfg, quality)
    assert chat_part.cache_key != plain_part.cache_key
    assert chat_part.table["text"].to_list() != plain_part.table["text"].to_list()

    model, tokenizer = load_model_with_adapter(checkpoint["base_model_path"], checkpoint["adapter_dir"], device="cpu")
    fmt = PromptFormat("chat", template_kwargs={"enable_thinking": False})
    framed = [frame_prompt(tokenizer, p, fmt) for p in prompts["prompt"]]
    assert framed[0].startswith("<|im_start|>user\n")
    expected = generate_samples(model, tokenizer, framed, cfg, add_special_tokens=False)
    assert chat_part.table["text"].to_list() == [t for replies in expected for t in replies]
    plain = generate_samples(model, tokenizer, [format_prompt(p) for p in prompts["prompt"]], cfg)
    assert plain_part.table["text"].to_list() == [t for replies in plain for t in replies]


def test_generate_partition_labels_samples_with_the_verifier_only_when_the_prompts_carry_ground_truth(checkpoint):
    """With ground truth the verifier judges every sample and labels it; the same samples
    without ground truth go to the relevance checker and carry null labels."""
    from polydag.core.evaluation.verifier import verify_replies

    admits = ["agree", "joke", "hype", "ask", "story"]
    plain = pl.DataFrame({"prompt_id": ["p0", "p1"], "prompt": [t for t, _ in TWEETS[:2]]})
    truth = plain.with_columns(topic=pl.Series(["dogs", "music"]), admitted_intents=pl.Series([admits, admits]))
    cfg = GenerationConfig(n_samples=3, max_new_tokens=8, prompt_batch_size=2, device="cpu")
    quality = QualityConfig(min_relevance=None)

    judged = generate_partition(checkpoint, truth, cfg, quality).table
    unjudged = generate_partition(checkpoint, plain, cfg, quality).table
    assert judged["text"].to_list() == unjudged["text"].to_list()  # the checker never changes the draw
    assert set(judged["quality_checker"]) == {"ground_truth"} and set(unjudged["quality_checker"]) == {"relevance"}
    expected = verify_replies(judged["text"].to_list(), ["dogs"] * 3 + ["music"] * 3, [admits] * 6)
    assert judged["passed"].to_list() == [r.passed for r in expected]
    assert judged["reply_intent"].to_list() == [r.intent for r in expected]
    assert judged["reply_topic"].to_list() == [r.topic for r in expected]
    assert unjudged["reply_intent"].null_count() == unjudged["reply_topic"].null_count() == unjudged.height
    assert unjudged["reply_intent"].dtype == pl.String
