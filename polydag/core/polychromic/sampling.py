"""The one sampler: every reply polydag samples from a causal LM is drawn here.

Training's diversity samples (:mod:`polydag.core.polychromic.trainer`), evaluation's
generations (:mod:`polydag.core.evaluation.generation`) and the base model's sample replies
all call :func:`sample_token_ids`, so the diversity gradient is computed on samples drawn
exactly like the ones evaluation scores: for the same model, prompt tokens, options and seed,
the texts are identical.

What it knows:

- ``n`` samples per prompt come from one ``model.generate`` call over left-padded prompts
  with an attention mask (``num_return_sequences=n``, or each prompt's row repeated ``n`` times
  with ``prompt_seeds``), in prompt-major order.
- Every sampling option is passed explicitly (temperature, top_p, top_k with 0 meaning off,
  min_p, typical_p, no repetition penalty), because ``generate`` otherwise fills unset options
  from the model's ``generation_config.json`` (Qwen3 ships top_k=20, for instance).
- A reply ends at EOS or at the first token whose text contains a newline (the training
  format is one line per reply). :func:`sample_token_ids` keeps the stop token (stopping is
  part of the sampled reply: training scores its log-probability); :func:`decode_reply` cuts
  the text at the first newline and strips it.
- The draw runs under ``torch.random.fork_rng`` seeded with the given seed, so it never
  consumes the caller's RNG stream (training's λ = 0 stays bit-identical with or without
  diversity sampling) and depends only on (model, prompts, options, seed, device).
- Two seeding rules. ``seed=s`` (training: one seed per step) draws every row of the call from
  one generator, so a prompt's samples depend on the other prompts of the call.
  ``prompt_seeds=[s_0, s_1, ...]`` (evaluation) gives each prompt its own ``torch.Generator``:
  a logits processor applies the very warpers ``generate`` would (temperature, top-k, top-p,
  min-p and whatever the model's ``generation_config`` adds), draws the prompt's ``n`` rows
  with ``torch.multinomial(..., generator=g_i)`` and leaves only the drawn token, so prompt i's
  samples depend on its own logits and seed only, not on which prompts share the call (up to
  the float rounding of a padded batch, which never changed a sample on CPU fp32 in our
  measurements). For one prompt, ``prompt_seeds=[s]`` gives exactly the tokens of ``seed=s``.

What it doesn't: choose the device or dtype (the model is used where it is), or format
prompts (``polydag.core.polychromic.prompting``).
"""

from __future__ import annotations

import hashlib
import weakref
from dataclasses import dataclass
from typing import Sequence


@dataclass(frozen=True)
class SamplingConfig:
    """The sampler's options; built from the user-facing specs (``PolychromicTrainConfig.sampling``,
    ``GenerationConfig.sampling``), which carry the help text."""

    temperature: float
    top_p: float
    top_k: int = 0
    max_new_tokens: int = 32


def sampling_seed(seed: int, index: int) -> int:
    """A 63-bit seed for draw ``index`` (a prompt batch, a training step) of base seed ``seed``."""
    digest = hashlib.sha256(f"polydag-generation:{seed}:{index}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


_NEWLINE_IDS: "weakref.WeakKeyDictionary[object, frozenset[int]]" = weakref.WeakKeyDictionary()


def newline_token_ids(tokenizer) -> frozenset[int]:
    """Ids of vocabulary tokens whose text contains a newline (computed once per tokenizer)."""
    try:
        return _NEWLINE_IDS[tokenizer]
    except (KeyError, TypeError):
        pass
    texts = tokenizer.batch_decode([[i] for i in range(len(tokenizer))], skip_special_tokens=False)
    ids = frozenset(i for i, text in enumerate(texts) if "\n" in text)
    try:
        _NEWLINE_IDS[tokenizer] = ids
    except TypeError:  # not weak-referenceable: just don't cache
        pass
    return ids


@dataclass(frozen=True)
class StopTokens:
    eos: frozenset[int]
    pad: int
    stop: tuple[int, ...]  # what ends a reply: EOS and newline tokens

    @property
    def end(self) -> frozenset[int]:
        """Ids after which nothing is text: EOS and padding."""
        return self.eos | {self.pad}


def stop_tokens(model, tokenizer) -> StopTokens:
    eos: set[int] = set()
    for source in (tokenizer.eos_token_id, getattr(model.generation_config, "eos_token_id", None)):
        if source is not None:
            eos.update([source] if isinstance(source, int) else list(source))
    # a chat model's assistant turn ends at the template's end-of-turn token (ChatML's <|im_end|>)
    end_of_turn = tokenizer.convert_tokens_to_ids("<|im_end|>") if "<|im_end|>" in tokenizer.get_vocab() else None
    if end_of_turn is not None:
        eos.add(end_of_turn)
    if not eos:
        raise ValueError("the tokenizer has no EOS token and the model's generation_config names none")
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else min(eos)
    return StopTokens(frozenset(eos), pad, tuple(sorted(eos | newline_token_ids(tokenizer))))


def left_pad(prompt_ids: Sequence[Sequence[int]], pad_id: int, device):
    """(input_ids, attention_mask) with every prompt ending at the last column."""
    import torch

    width = max(len(ids) for ids in prompt_ids)
    input_ids = torch.full((len(prompt_ids), width), pad_id, dtype=torch.long)
    attention = torch.zeros((len(prompt_ids), width), dtype=torch.long)
    for row, ids in enumerate(prompt_ids):
        if len(ids) == 0:
            raise ValueError(f"prompt {row} of the batch tokenizes to no tokens")
        input_ids[row, width - len(ids):] = torch.tensor(list(ids), dtype=torch.long)
        attention[row, width - len(ids):] = 1
    return input_ids.to(device), attention.to(device)


def sample_token_ids(
    model,
    tokenizer,
    prompt_ids: Sequence[Sequence[int]],
    n: int,
    cfg: SamplingConfig,
    *,
    seed: int | None = None,
    prompt_seeds: Sequence[int] | None = None,
) -> list[list[int]]:
    """``n`` sampled continuations of each prompt (prompt-major, ``len(prompt_ids) * n`` lists),
    each cut after its first stop token (EOS or a newline token, kept).

    Give exactly one of ``seed`` (one generator for the whole call) or ``prompt_seeds`` (one
    seed per prompt; see the module docstring)."""
    import torch

    if (seed is None) == (prompt_seeds is None):
        raise TypeError("sample_token_ids needs exactly one of seed= or prompt_seeds=")
    if prompt_seeds is not None:
        prompt_seeds = [int(s) for s in prompt_seeds]
        if len(prompt_seeds) != len(prompt_ids):
            raise ValueError(f"{len(prompt_seeds)} prompt seeds for {len(prompt_ids)} prompts")
    if not prompt_ids:
        return []
    device = next(model.parameters()).device
    stops = stop_tokens(model, tokenizer)
    input_ids, attention = left_pad(prompt_ids, stops.pad, device)
    if prompt_seeds is None:
        options: dict = dict(
            do_sample=True, num_return_sequences=n,
            temperature=float(cfg.temperature), top_p=float(cfg.top_p), top_k=int(cfg.top_k),
            min_p=0.0,  # keeps every token: overrides any min_p in the model's generation_config
            typical_p=1.0)
    else:
        from transformers import LogitsProcessorList

        # The processor warps and draws, leaving one token per row; greedy decoding then takes
        # it (a second sampling pass over the one-hot rows cost ~16 ms a step on 160 × 2048
        # logits). Greedy has no num_return_sequences: the rows are repeated here, as generate
        # repeats them (repeat_interleave), so the rows are the ones seed= samples.
        input_ids, attention = input_ids.repeat_interleave(n, dim=0), attention.repeat_interleave(n, dim=0)
        options = dict(do_sample=False, num_return_sequences=1, logits_processor=LogitsProcessorList(
            [_per_prompt_sampler(model, cfg, prompt_seeds, n, device)]))
    was_training = model.training
    model.eval()
    try:
        with torch.random.fork_rng(devices=[device.index or 0] if device.type == "cuda" else []), \
                torch.inference_mode():
            torch.manual_seed(seed if seed is not None else 0)
            output = model.generate(
                input_ids=input_ids, attention_mask=attention, **options,
                repetition_penalty=1.0, no_repeat_ngram_size=0, max_new_tokens=int(cfg.max_new_tokens),
                pad_token_id=stops.pad, eos_token_id=list(stops.stop), use_cache=True,
            )
    finally:
        model.train(was_training)
    rows = output[:, input_ids.shape[1]:].tolist()
    if len(rows) != len(prompt_ids) * n:
        raise RuntimeError(f"generate returned {len(rows)} sequences for {len(prompt_ids)} prompts × {n} samples")
    stop = set(stops.stop)
    samples = []
    for row in rows:
        cut = next((i + 1 for i, token in enumerate(row) if token in stop), len(row))
        samples.append(row[:cut])
    return samples


def _sampling_warpers(model, cfg: SamplingConfig) -> list:
    """The warpers ``generate(do_sample=True)`` builds for the options :func:`sample_token_ids`
    passes, in its order (transformers 5.24 ``_get_logits_processor``): temperature, top-h,
    top-k, top-p, min-p (0: keeps every token), typical (1: off), epsilon and eta; top-h,
    epsilon and eta come from the model's ``generation_config``, as they do for ``seed=``."""
    from transformers.generation.logits_process import (
        EpsilonLogitsWarper,
        EtaLogitsWarper,
        MinPLogitsWarper,
        TemperatureLogitsWarper,
        TopHLogitsWarper,
        TopKLogitsWarper,
        TopPLogitsWarper,
    )

    inherited = model.generation_config
    warpers = []
    if float(cfg.temperature) != 1.0:
        warpers.append(TemperatureLogitsWarper(float(cfg.temperature)))
    if getattr(inherited, "top_h", None) is not None:
        warpers.append(TopHLogitsWarper(top_h=inherited.top_h))
    if int(cfg.top_k) != 0:
        warpers.append(TopKLogitsWarper(top_k=int(cfg.top_k), min_tokens_to_keep=1))
    if float(cfg.top_p) < 1.0:
        warpers.append(TopPLogitsWarper(top_p=float(cfg.top_p), min_tokens_to_keep=1))
    warpers.append(MinPLogitsWarper(min_p=0.0, min_tokens_to_keep=1))
    epsilon = getattr(inherited, "epsilon_cutoff", None)
    if epsilon is not None and 0.0 < epsilon < 1.0:
        warpers.append(EpsilonLogitsWarper(epsilon=epsilon, min_tokens_to_keep=1))
    eta = getattr(inherited, "eta_cutoff", None)
    if eta is not None and 0.0 < eta < 1.0:
        warpers.append(EtaLogitsWarper(epsilon=eta, min_tokens_to_keep=1, device=next(model.parameters()).device))
    return warpers


def _per_prompt_sampler(model, cfg: SamplingConfig, prompt_seeds: Sequence[int], n: int, device):
    """A logits processor that samples the ``n`` rows of prompt i from generator i and leaves
    only the drawn token of each row (every other logit -inf)."""
    import torch
    from transformers import LogitsProcessor

    warpers = _sampling_warpers(model, cfg)
    generators = [torch.Generator(device=device).manual_seed(s) for s in prompt_seeds]

    class PerPromptSampler(LogitsProcessor):
        def __call__(self, input_ids, scores):
            for warper in warpers:
                scores = warper(input_ids, scores)
            probs = torch.nn.functional.softmax(scores, dim=-1)  # as generate's sampling step
            drawn = torch.cat([torch.multinomial(probs[i * n:(i + 1) * n], num_samples=1, generator=g)
                               for i, g in enumerate(generators)])
            return torch.full_like(scores, float("-inf")).scatter_(1, drawn, 0.0)

    return PerPromptSampler()


def decode_reply(tokenizer, ids: Sequence[int], end_ids: frozenset[int]) -> str:
    """Text of sampled ids up to EOS/pad, cut at the first newline, stripped."""
    cut = next((i for i, token in enumerate(ids) if token in end_ids), len(ids))
    text = tokenizer.decode(list(ids[:cut]), skip_special_tokens=True)
    return text.split("\n", 1)[0].strip()


def sample_replies(model, tokenizer, prompt_ids: Sequence[Sequence[int]], n: int, cfg: SamplingConfig, *,
                   seed: int | None = None, prompt_seeds: Sequence[int] | None = None) -> list[list[str]]:
    """``n`` decoded replies per prompt (one list per prompt) from :func:`sample_token_ids`."""
    ids = sample_token_ids(model, tokenizer, prompt_ids, n, cfg, seed=seed, prompt_seeds=prompt_seeds)
    end = stop_tokens(model, tokenizer).end
    texts = [decode_reply(tokenizer, row, end) for row in ids]
    return [texts[i * n:(i + 1) * n] for i in range(len(prompt_ids))]
