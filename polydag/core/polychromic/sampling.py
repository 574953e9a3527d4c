"""The one sampler: every reply polydag samples from a causal LM is drawn here.

Training's diversity samples (:mod:`polydag.core.polychromic.trainer`), evaluation's
generations (:mod:`polydag.core.evaluation.generation`) and the base model's sample replies
all call :func:`sample_token_ids`, so the diversity gradient is computed on samples drawn
exactly like the ones evaluation scores: for the same model, prompt tokens, options and seed,
the texts are identical.

What it knows:

- ``n`` samples per prompt come from one ``model.generate`` call over left-padded prompts
  with an attention mask (``num_return_sequences=n``), in prompt-major order.
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
    seed: int,
) -> list[list[int]]:
    """``n`` sampled continuations of each prompt (prompt-major, ``len(prompt_ids) * n`` lists),
    each cut after its first stop token (EOS or a newline token, kept)."""
    import torch

    if not prompt_ids:
        return []
    device = next(model.parameters()).device
    stops = stop_tokens(model, tokenizer)
    input_ids, attention = left_pad(prompt_ids, stops.pad, device)
    was_training = model.training
    model.eval()
    try:
        with torch.random.fork_rng(devices=[device.index or 0] if device.type == "cuda" else []), \
                torch.inference_mode():
            torch.manual_seed(seed)
            output = model.generate(
                input_ids=input_ids, attention_mask=attention, do_sample=True,
                temperature=float(cfg.temperature), top_p=float(cfg.top_p), top_k=int(cfg.top_k),
                min_p=0.0,  # keeps every token: overrides any min_p in the model's generation_config
                typical_p=1.0, repetition_penalty=1.0, no_repeat_ngram_size=0,
                max_new_tokens=int(cfg.max_new_tokens), num_return_sequences=n,
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


def decode_reply(tokenizer, ids: Sequence[int], end_ids: frozenset[int]) -> str:
    """Text of sampled ids up to EOS/pad, cut at the first newline, stripped."""
    cut = next((i for i, token in enumerate(ids) if token in end_ids), len(ids))
    text = tokenizer.decode(list(ids[:cut]), skip_special_tokens=True)
    return text.split("\n", 1)[0].strip()


def sample_replies(model, tokenizer, prompt_ids: Sequence[Sequence[int]], n: int, cfg: SamplingConfig, *,
                   seed: int) -> list[list[str]]:
    """``n`` decoded replies per prompt (one list per prompt) from :func:`sample_token_ids`."""
    ids = sample_token_ids(model, tokenizer, prompt_ids, n, cfg, seed=seed)
    end = stop_tokens(model, tokenizer).end
    texts = [decode_reply(tokenizer, row, end) for row in ids]
    return [texts[i * n:(i + 1) * n] for i in range(len(prompt_ids))]
