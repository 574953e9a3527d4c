import logging
from dataclasses import replace

import pytest
import torch
from safetensors.torch import load_file

from polydag.core.polychromic.base_model import BaseModelConfig, build_default_base_model, encode_prompt, load_model_and_tokenizer
from polydag.core.polychromic.trainer import (
    ADAPTER_WEIGHTS_FILE,
    LOG_KEYS,
    NonFiniteLossError,
    PolychromicTrainConfig,
    sequence_logprobs,
    train_lora_adapter,
)

PAIRS = [
    ("Who else is running before work this weekend? #running", "Proud of you, keep going with running! 💪"),
    ("Who else is running before work this weekend? #running", "Same here, I ran all of last weekend"),
    ("Okay I need to talk about cold brew ☕", "Totally agree, cold brew never gets old"),
    ("Okay I need to talk about cold brew ☕", "Try a cortado next time, it changed everything"),
    ("Unpopular opinion: thin crust is overrated #pizza", "Hard disagree, I'd pick a margherita any day"),
    ("Unpopular opinion: thin crust is overrated #pizza", "My bank account is crying reading about pizza 🍕"),
    ("Tried a raised bed for the first time today 🌱", "Try mulching the beds next time, it changed everything"),
    ("Tried a raised bed for the first time today 🌱", "Love this for you. More garden content please 🌻"),
]

CFG = PolychromicTrainConfig(
    diversity_weight=1.0, n_generations=3, max_examples_for_diversity=2, compute_diversity_every_n_steps=2,
    diversity_metric="distinct", max_new_tokens=10, max_steps=6, per_device_train_batch_size=4, max_length=48,
    learning_rate=5e-3, lora_r=4, lora_alpha=8, device="cpu",
)


@pytest.fixture(scope="module")
def base_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("base") / "tiny"
    build_default_base_model(PAIRS * 4, out, BaseModelConfig.tiny_for_tests(pretrain_steps=40))
    return out


def _train(base_dir, out_dir, cfg=CFG, **kwargs):
    rows = []
    result = train_lora_adapter(base_dir, PAIRS, cfg, out_dir, log_fn=rows.append,
                                logger=logging.getLogger("test"), **kwargs)
    return result, rows


@pytest.fixture(scope="module")
def runs(base_dir, tmp_path_factory):
    """Trained once per module: λ = 1, λ = 0 (with and without diversity sampling), the float bug."""
    root = tmp_path_factory.mktemp("adapters")
    lam0 = replace(CFG, diversity_weight=0.0)
    return {
        "lam1": _train(base_dir, root / "lam1"),
        "lam0": _train(base_dir, root / "lam0", lam0),
        "lam0_nosample": _train(base_dir, root / "lam0_nosample", replace(lam0, sample_diversity_when_zero=False)),
        "bug": _train(base_dir, root / "bug", diversity_term=lambda ds: torch.tensor(
            -ds.diversity_weight * float(ds.diversity_score))),
    }


def _adapter_bytes(result):
    with open(f"{result.adapter_dir}/{ADAPTER_WEIGHTS_FILE}", "rb") as fh:
        return fh.read()


def test_log_rows_have_exact_keys_and_plain_types(runs):
    result, rows = runs["lam1"]
    assert [r["step"] for r in rows] == list(range(1, CFG.max_steps + 1))
    for row in rows:
        assert tuple(row) == LOG_KEYS
        assert type(row["step"]) is int
        for key in LOG_KEYS[1:]:
            assert row[key] is None or type(row[key]) is float, (key, type(row[key]))
        is_div = row["step"] % CFG.compute_diversity_every_n_steps == 0
        assert (row["diversity_grad_share"] is not None) == is_div
        assert (row["diversity_score"] is not None) == is_div
    assert result.n_diversity_steps == 3 and len(result.grad_shares) == 3


def test_positive_lambda_has_nonzero_diversity_gradient(runs):
    result, rows = runs["lam1"]
    shares = [r["diversity_grad_share"] for r in rows if r["diversity_grad_share"] is not None]
    assert all(0.0 < s < 1.0 for s in shares), shares
    assert result.mean_diversity_grad_share > 0.0
    div_rows = [r for r in rows if r["diversity_loss"] is not None]
    assert all(r["combined_loss"] == r["quality_loss"] + r["diversity_loss"] for r in div_rows)


def test_zero_lambda_has_exactly_zero_share(runs):
    result, rows = runs["lam0"]
    shares = [r["diversity_grad_share"] for r in rows if r["diversity_grad_share"] is not None]
    assert shares == [0.0] * 3 and result.mean_diversity_grad_share == 0.0
    assert all(r["diversity_score"] is not None for r in rows if r["step"] % 2 == 0)  # still measured


def test_zero_lambda_is_bit_identical_with_and_without_diversity_sampling(runs):
    sampled, _ = runs["lam0"]
    plain, rows = runs["lam0_nosample"]
    assert all(r["diversity_score"] is None and r["diversity_grad_share"] is None for r in rows)
    assert plain.n_diversity_steps == 0 and plain.mean_diversity_grad_share is None
    assert _adapter_bytes(sampled) == _adapter_bytes(plain)
    assert sampled.adapter_sha256 == plain.adapter_sha256


def test_diagnostics_say_how_much_diversity_signal_training_had(runs):
    result, rows = runs["lam1"]
    div_rows = [r for r in rows if r["diversity_grad_share"] is not None]
    assert all(r["advantage_std"] is not None and r["advantage_std"] >= 0 for r in div_rows)
    assert all(0.0 <= r["tied_prompt_share"] <= 1.0 for r in div_rows)
    assert all(r["advantage_std"] is None for r in rows if r["diversity_grad_share"] is None)
    stds = [r["advantage_std"] for r in div_rows]
    assert result.mean_advantage_std == pytest.approx(sum(stds) / len(stds))
    assert result.n_effective_diversity_steps == sum(s >= 1e-9 for s in stds)
    assert runs["lam0"][0].n_effective_diversity_steps == 0  # λ = 0 has no diversity gradient to apply
    assert runs["lam0"][0].mean_advantage_std is not None  # ...but the signal it would have had is logged
    # a trained adapter has moved away from its base; the base itself is at KL 0
    assert result.kl_to_base > 0 and runs["lam0"][0].kl_to_base > 0


def test_kl_to_base_is_zero_for_an_untouched_adapter_and_matches_a_by_hand_kl(base_dir):
    from peft import LoraConfig, get_peft_model

    from polydag.core.polychromic.trainer import _encode_pairs, kl_to_base

    base, tokenizer = load_model_and_tokenizer(base_dir)
    model = get_peft_model(base, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"],
                                            task_type="CAUSAL_LM"))
    examples = _encode_pairs(tokenizer, PAIRS[:3], 48)
    assert kl_to_base(model, examples, 2, tokenizer.pad_token_id, "cpu") == pytest.approx(0.0, abs=1e-7)
    torch.manual_seed(0)
    for name, p in model.named_parameters():
        if "lora_B" in name:
            p.data.normal_(0, 0.5)
    got = kl_to_base(model, examples, 2, tokenizer.pad_token_id, "cpu")
    total = count = 0.0
    model.eval()
    with torch.no_grad():
        for p, r in examples:  # one row at a time, no padding
            ids = torch.tensor([p + r])
            logp = torch.log_softmax(model(input_ids=ids).logits[0], -1)
            with model.disable_adapter():
                base_logp = torch.log_softmax(model(input_ids=ids).logits[0], -1)
            for t in range(len(p) - 1, len(p) + len(r) - 1):
                total += float((logp[t].exp() * (logp[t] - base_logp[t])).sum())
                count += 1
    assert got > 0 and got == pytest.approx(total / count, rel=1e-4)


def test_advantage_stats_counts_prompts_without_signal():
    from polydag.core.polychromic.trainer import advantage_stats

    std, tied = advantage_stats([0.1, -0.05, -0.05, 0.0, 0.0, 0.0], 3)
    assert tied == 0.5 and std == pytest.approx(float(torch.tensor([0.1, -0.05, -0.05, 0, 0, 0]).std(unbiased=False)))
    with pytest.raises(ValueError, match="whole number of prompts"):
        advantage_stats([0.1, 0.2], 3)


def test_different_lambdas_give_different_adapters(runs):
    assert runs["lam1"][0].adapter_sha256 != runs["lam0"][0].adapter_sha256


def test_float_valued_diversity_term_has_zero_share(runs):
    """The researchers' bug: −λ·float(D) moves the loss but not the gradient."""
    result, rows = runs["bug"]
    div_rows = [r for r in rows if r["diversity_grad_share"] is not None]
    assert [r["diversity_grad_share"] for r in div_rows] == [0.0] * 3
    assert all(r["combined_loss"] != r["quality_loss"] for r in div_rows)  # the loss did change
    assert result.adapter_sha256 == runs["lam0"][0].adapter_sha256  # ...the training did not


def test_lora_changes_adapter_but_not_base_and_loads_with_peft(runs, base_dir):
    from peft import PeftModel

    result, _ = runs["lam1"]
    weights = load_file(f"{result.adapter_dir}/{ADAPTER_WEIGHTS_FILE}")
    lora_b = [t for name, t in weights.items() if "lora_B" in name]
    assert lora_b and all(t.abs().sum() > 0 for t in lora_b)  # B starts at zero; training moved it

    base, tokenizer = load_model_and_tokenizer(base_dir)
    original = {k: v.clone() for k, v in base.state_dict().items()}
    peft_model = PeftModel.from_pretrained(base, result.adapter_dir)
    for name, tensor in peft_model.named_parameters():
        if "lora_" in name:
            continue
        key = name.replace("base_model.model.", "", 1).replace(".base_layer", "")
        assert torch.equal(tensor, original[key]), name

    ids = torch.tensor([encode_prompt(tokenizer, PAIRS[0][0])])
    with torch.no_grad():
        adapted = peft_model(input_ids=ids).logits
        with peft_model.disable_adapter():
            plain = peft_model(input_ids=ids).logits
    assert not torch.allclose(adapted, plain)


def test_logprobs_score_the_policy_that_was_sampled(base_dir):
    """sequence_logprobs (right-padded recompute) equals generate's own temperature-scaled scores."""
    model, tokenizer = load_model_and_tokenizer(base_dir)
    prompt_ids = [encode_prompt(tokenizer, p) for p in (PAIRS[0][0], PAIRS[2][0])]
    width = max(map(len, prompt_ids))
    ids = torch.full((2, width), tokenizer.pad_token_id)
    att = torch.zeros((2, width), dtype=torch.long)
    for row, p in enumerate(prompt_ids):
        ids[row, width - len(p):] = torch.tensor(p)
        att[row, width - len(p):] = 1
    torch.manual_seed(0)
    out = model.generate(input_ids=ids, attention_mask=att, do_sample=True, temperature=0.7, top_p=1.0, top_k=0,
                         max_new_tokens=8, num_return_sequences=3, pad_token_id=tokenizer.pad_token_id,
                         eos_token_id=tokenizer.eos_token_id, output_scores=True, return_dict_in_generate=True)
    new = out.sequences[:, width:]
    token_lp = torch.log_softmax(torch.stack(out.scores, 1).float(), -1).gather(-1, new.unsqueeze(-1)).squeeze(-1)
    samples, expected = [], []
    for row, seq in enumerate(new.tolist()):
        n = seq.index(tokenizer.eos_token_id) + 1 if tokenizer.eos_token_id in seq else len(seq)
        samples.append(seq[:n])
        expected.append(token_lp[row, :n].mean())
    with torch.no_grad():
        got = sequence_logprobs(model, prompt_ids, samples, 3, 0.7, tokenizer.pad_token_id, "cpu")
    assert torch.allclose(got, torch.stack(expected), atol=1e-5)


def test_polychromic_set_objective_trains(base_dir, tmp_path):
    cfg = replace(CFG, objective="polychromic_set", polychromic_set_size=2, max_steps=4)
    result, rows = _train(base_dir, tmp_path / "set", cfg)
    shares = [r["diversity_grad_share"] for r in rows if r["diversity_grad_share"] is not None]
    assert len(shares) == 2 and all(0.0 <= s <= 1.0 for s in shares)
    assert (tmp_path / "set" / ADAPTER_WEIGHTS_FILE).is_file()


def test_nan_loss_raises_and_writes_nothing(base_dir, tmp_path):
    model, tokenizer = load_model_and_tokenizer(base_dir)
    with torch.no_grad():
        model.get_input_embeddings().weight[:] = float("nan")
    broken = tmp_path / "broken_base"
    model.save_pretrained(broken)
    tokenizer.save_pretrained(broken)
    out = tmp_path / "out" / "adapter"
    # a NaN base is refused when it loads, naming the tensor, before any step
    from polydag.core.polychromic.base_model import ModelPathError

    with pytest.raises(ModelPathError, match="NaN or infinite values: model.embed_tokens.weight"):
        _train(broken, out)
    assert not (tmp_path / "out").exists() or list((tmp_path / "out").iterdir()) == []

    # A non-finite diversity term is caught too, before anything is written.
    with pytest.raises(NonFiniteLossError, match="step 2"):
        _train(base_dir, out, diversity_term=lambda ds: ds.sequence_logprobs().sum() * float("inf"))
    assert not out.exists()


def test_config_validation_and_unknown_modules(base_dir, tmp_path):
    with pytest.raises(ValueError, match="diversity_metric must be one of"):
        PolychromicTrainConfig(diversity_metric="vendi")
    with pytest.raises(ValueError, match="n_generations must be an integer >= 3"):
        PolychromicTrainConfig(n_generations=2)
    with pytest.raises(ValueError, match="top_p"):
        PolychromicTrainConfig(top_p=0.0)
    with pytest.raises(ValueError, match="diversity_weight must be a finite number"):
        PolychromicTrainConfig(diversity_weight=float("nan"))
    with pytest.raises(ValueError, match="unknown training config key"):
        PolychromicTrainConfig.from_dict({"diversity_weight": 1.0, "lambda": 2})
    assert PolychromicTrainConfig.from_dict({"diversity_weight": 0.3}).diversity_weight == 0.3
    with pytest.raises(ValueError, match=r"target_modules \['c_attn'\] do not exist"):
        _train(base_dir, tmp_path / "x", replace(CFG, target_modules=("c_attn",)))


def test_a_diversity_step_and_an_evaluation_draw_give_identical_texts(base_dir, tmp_path):
    """One sampler: the samples training's diversity term is computed on are exactly what
    evaluation would draw from the same adapter with the same seed and options.

    Run A stops after step 1 and saves its adapter; run B is the same run continued, and its
    step 2 is a diversity step sampled from that very state (constant learning rate, same data
    order and seed). Evaluation then samples from A's saved adapter.

    Evaluation seeds every prompt on its own (``prompt_seeds``), training seeds a step's draw
    once (``seed``); for a single prompt the two are the same draw. So the diversity step here
    holds one prompt (``max_examples_for_diversity=1``), and evaluation is handed the step's
    seed for that prompt (``seeds=``) instead of placing it at batch index 2 as under the old
    one-seed-per-batch rule. The prompt sits in the middle of an evaluation batch with two
    other prompts under other seeds, so padding and batch neighbours are still crossed."""
    from polydag.core.evaluation.generation import (
        GenerationConfig,
        generate_samples,
        load_model_with_adapter,
        prompt_seed,
    )
    from polydag.core.polychromic.prompting import format_prompt
    from polydag.core.polychromic.sampling import sampling_seed

    cfg = replace(CFG, max_steps=1, max_new_tokens=12, max_examples_for_diversity=1)
    _train(base_dir, tmp_path / "after-step-1", cfg)
    seen = []

    def record(ds):
        seen.append((ds.step, list(ds.prompts), list(ds.samples)))
        return torch.zeros((), requires_grad=True)

    _train(base_dir, tmp_path / "two-steps", replace(cfg, max_steps=2), diversity_term=record)
    (step, prompts, training_texts), = seen
    assert step == 2 and len(prompts) == 1 and len(training_texts) == cfg.n_generations

    model, tokenizer = load_model_with_adapter(base_dir, tmp_path / "after-step-1", device="cpu")
    filler = list(dict.fromkeys(p for p, _ in PAIRS if p not in prompts))[:2]
    assert len(filler) == 2
    batch = [filler[0], prompts[0], filler[1]]
    gen_cfg = GenerationConfig(n_samples=cfg.n_generations, temperature=cfg.temperature, top_p=cfg.top_p,
                               top_k=cfg.top_k, max_new_tokens=cfg.max_new_tokens, prompt_batch_size=len(batch),
                               seed=cfg.diversity_seed)
    formatted = [format_prompt(p) for p in batch]
    seeds = [prompt_seed(gen_cfg.seed, formatted[0]), sampling_seed(cfg.diversity_seed, step),
             prompt_seed(gen_cfg.seed, formatted[2])]
    evaluation = generate_samples(model, tokenizer, formatted, gen_cfg, seeds=seeds)
    evaluation_texts = evaluation[1]
    assert len(set(training_texts)) > 1  # real samples, not one repeated string
    assert evaluation_texts == training_texts


def test_chat_template_prompting_masks_the_prompt_and_ends_replies_at_end_of_turn(base_dir, tmp_path):
    """The researchers' format: the tokenizer's own chat template (the built-in one is ChatML),
    their instruction text, enable_thinking=False; only the reply and its end-of-turn are
    learned, and sampling stops there."""
    from polydag.core.polychromic.hf_trainer import PairCollator
    from polydag.core.polychromic.prompting import encode_prompt, encode_reply
    from polydag.core.polychromic.trainer import diversity_samples

    cfg = replace(CFG, prompt_format="chat", chat_template_kwargs={"enable_thinking": False}, max_steps=2)
    fmt = cfg.prompt()
    _, tokenizer = load_model_and_tokenizer(base_dir)
    prompt_ids = encode_prompt(tokenizer, PAIRS[0][0], fmt)
    text = tokenizer.decode(prompt_ids)
    assert text.startswith("<|im_start|>user\nGenerate an engaging Twitter reply to this tweet:\n\n" + PAIRS[0][0])
    assert text.endswith("<|im_start|>assistant\n<think>\n\n</think>\n\n")
    reply_ids = encode_reply(tokenizer, PAIRS[0][1], fmt)
    end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    assert reply_ids[-1] == end and tokenizer.decode(reply_ids[:-1]) == PAIRS[0][1]
    batch = PairCollator([(prompt_ids, reply_ids)], tokenizer.pad_token_id)([{"index": 0}])
    labels = batch["labels"][0].tolist()
    assert labels[: len(prompt_ids)] == [-100] * len(prompt_ids) and labels[len(prompt_ids):] == reply_ids

    result, rows = _train(base_dir, tmp_path / "chat", cfg)
    assert len(rows) == 2 and (tmp_path / "chat" / ADAPTER_WEIGHTS_FILE).is_file()
    model, _ = load_model_and_tokenizer(base_dir)
    ids, _ = diversity_samples(model, tokenizer, [prompt_ids], replace(cfg, max_new_tokens=24), step=0)
    newline = {i for i in range(len(tokenizer)) if "\n" in tokenizer.decode([i])}
    assert all(len(row) == 24 or row[-1] in newline | {end, tokenizer.eos_token_id} for row in ids)
