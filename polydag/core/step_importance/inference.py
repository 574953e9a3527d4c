"""CODI inference: question -> bot -> latent thoughts -> eot -> greedy "The answer is: N".

What CODI's test.py does (LLaMA settings: ``--remove_eos True --greedy True
--inf_latent_iterations 6``), and what both code paths here reproduce:

1. ``question.strip().replace('  ', ' ')`` is tokenized (LLaMA tokenizers prepend BOS) and
   the bot id is appended; one forward pass; ``z = prj(hidden_states[-1][:, -1])``.
2. For each of the ``num_latent`` iterations, z is fed as ``inputs_embeds`` with the KV
   cache and the next ``z = prj(last hidden)`` is computed (the last one is never fed).
3. The eot embedding is fed once.
4. Greedy decoding takes ``argmax(logits[:, -1, :vocab_size - 1])`` where ``vocab_size`` is
   the resized vocabulary V + 3, so only the eot id is excluded. Each token is appended; the
   row stops after emitting EOS, or after ``max_new_tokens`` tokens (CODI: 256).
5. The text is decoded with ``skip_special_tokens=True`` (ids the tokenizer does not know,
   such as bot, are dropped) and the answer is the last number, commas removed.

Two implementations:

- :func:`reference_answer_one`, a straightforward one-row loop written like test.py (no
  padding, no attention mask, positions implied by the cache). It is the specification that
  the batched engine is tested against, and the "naive" side of the benchmark.
- :func:`run_thought_loop`, the batched engine core: left-padded questions with explicit
  position ids and the 2-D attention mask on every cached step, the bot token as its own
  cached step (so an ablation of the bot position, as in the researchers' protocol, can be
  repeated per variant), each question encoded once and its KV cache repeated per variant
  (``batch_repeat_interleave``), and finished rows dropped from the cache
  (``batch_select_indices``) so decoding stops per row.

Thought edits (ablations) are expressed in loop coordinates: ``input`` edits replace the
k-th *fed* thought z_k (k = 0..num_fed-1); ``layer:L`` edits replace the output of decoder
layer L at the single position of a loop *slot* (slot 0 = the bot step, slot k + 1 = the step
that feeds z_k). :mod:`polydag.core.step_importance.ablation` maps user-facing positions onto these.
"""

from __future__ import annotations

import contextlib
import copy
from dataclasses import dataclass, field
from typing import Iterator, Mapping, Sequence

import torch

from polydag.core.step_importance.answers import ANSWER_PREFIX, extract_answer_number, format_answer_reply
from polydag.core.step_importance.config import DEFAULT_MAX_NEW_TOKENS, layer_of_site
from polydag.core.step_importance.model import ContinuousThoughtModel



def format_question(question: str) -> str:
    """CODI's question normalization (test.py: ``.strip().replace('  ', ' ')``)."""
    return question.strip().replace("  ", " ")


def encode_question(tokenizer, question: str) -> list[int]:
    """Question tokens with the tokenizer's own prefix (BOS for LLaMA), without bot."""
    return list(tokenizer(format_question(question))["input_ids"])


def encode_gold_reply(tokenizer, gold: str) -> list[int]:
    """Tokens the model should produce after eot: "The answer is: N" then EOS."""
    ids = list(tokenizer(format_answer_reply(gold), add_special_tokens=False)["input_ids"])
    return ids + [tokenizer.eos_token_id]


def first_answer_token_index(tokenizer, reply_ids: Sequence[int]) -> int:
    """Index in ``reply_ids`` of the first token that carries the number, i.e. the first
    token whose decoded prefix goes beyond "The answer is:" (a lone space token, as LLaMA-3
    emits before digits, does not count)."""
    prefix_len = len(ANSWER_PREFIX.rstrip())
    for i in range(len(reply_ids)):
        if len(tokenizer.decode(list(reply_ids[: i + 1])).strip()) > prefix_len:
            return i
    raise ValueError(f"reply {tokenizer.decode(list(reply_ids))!r} has no token after {ANSWER_PREFIX!r}")


def decode_answer(tokenizer, token_ids: Sequence[int]) -> str:
    """Decode generated ids like test.py: special tokens skipped, unknown ids (pad/bot, which
    exist only in the resized model vocabulary) dropped."""
    known = len(tokenizer)
    return tokenizer.decode([t for t in token_ids if 0 <= t < known], skip_special_tokens=True)


# --------------------------------------------------------------------------- layer hooks


@dataclass
class _HookState:
    """Shared by the layer hooks of one loop: which slot runs now and what to do there."""

    slot: int | None = None
    masks: dict[int, torch.Tensor] = field(default_factory=dict)    # layer -> (R, n_slots) bool
    values: dict[int, torch.Tensor] = field(default_factory=dict)   # layer -> (R, n_slots, d)
    captured: dict[int, list[torch.Tensor]] = field(default_factory=dict)  # layer -> per slot (R, d)


def _layer_hook(layer: int, state: _HookState):
    def hook(module, args, output):
        if state.slot is None:
            return None
        hidden = output[0] if isinstance(output, tuple) else output
        last = hidden[:, -1, :]
        if layer in state.captured:
            state.captured[layer].append(last.detach().clone())
        mask = state.masks.get(layer)
        if mask is None:
            return None
        row_mask = mask[:, state.slot]
        if not bool(row_mask.any()):
            return None
        edited = torch.where(row_mask[:, None], state.values[layer][:, state.slot].to(last.dtype), last)
        hidden = torch.cat([hidden[:, :-1, :], edited[:, None, :]], dim=1)
        return (hidden,) + tuple(output[1:]) if isinstance(output, tuple) else hidden

    return hook


@contextlib.contextmanager
def layer_hooks(model: ContinuousThoughtModel, layers: Sequence[int], state: _HookState) -> Iterator[None]:
    """Attach output hooks to decoder ``layers`` for the duration of the block (always removed)."""
    n_layers = len(model.decoder_layers)
    handles = []
    try:
        for layer in sorted(set(layers)):
            if not 0 <= layer < n_layers:
                raise ValueError(f"site layer:{layer} does not exist: the model has {n_layers} decoder layers (0..{n_layers - 1})")
            handles.append(model.decoder_layers[layer].register_forward_hook(_layer_hook(layer, state)))
        yield
    finally:
        for handle in handles:
            handle.remove()


# --------------------------------------------------------------------------- reference loop


@dataclass(frozen=True)
class ThoughtEdit:
    """Replacements for one run: ``site`` is "input" (keys are fed-thought indices) or
    "layer:L" (keys are loop slots: 0 = bot step, k + 1 = the step feeding z_k)."""

    site: str
    replacements: Mapping[int, torch.Tensor]


@dataclass
class ReferenceResult:
    answer_text: str
    predicted: str | None
    token_ids: list[int]
    fed_thoughts: list[torch.Tensor]                 # the z actually fed, per latent step
    layer_outputs: dict[int, list[torch.Tensor]]     # captured layer outputs, per slot
    gold_logprob: float | None = None
    first_answer_logprobs: torch.Tensor | None = None


@torch.inference_mode()
def reference_answer_one(
    model: ContinuousThoughtModel,
    tokenizer,
    question: str,
    ablation: ThoughtEdit | Sequence[ThoughtEdit] | None = None,
    *,
    num_fed: int | None = None,
    max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS,
    gold: str | None = None,
    capture_layers: Sequence[int] = (),
) -> ReferenceResult:
    """Answer one question the way CODI's test.py does, one token at a time.

    ``ablation`` edits thoughts (see :class:`ThoughtEdit`); ``num_fed`` overrides the number
    of latent iterations (the researchers fed 5). With ``gold``, the gold reply is also
    teacher-forced token by token after eot (from a copy of the cache) to give its summed
    log-probability and the log-probabilities at its first number token.
    """
    edits = [ablation] if isinstance(ablation, ThoughtEdit) else list(ablation or [])
    input_edits: dict[int, torch.Tensor] = {}
    state = _HookState()
    for edit in edits:
        layer = layer_of_site(edit.site)
        if layer is None:
            input_edits.update(edit.replacements)
        else:
            n_slots = (num_fed if num_fed is not None else model.num_latent) + 1
            mask = torch.zeros(1, n_slots, dtype=torch.bool)
            values = torch.zeros(1, n_slots, model.hidden_size)
            for slot, value in edit.replacements.items():
                mask[0, slot] = True
                values[0, slot] = value
            state.masks[layer] = mask.to(_device(model))
            state.values[layer] = values.to(_device(model))
    for layer in capture_layers:
        state.captured[layer] = []
    n_fed = model.num_latent if num_fed is None else num_fed
    device = _device(model)
    embed = model.embed
    eos = tokenizer.eos_token_id

    with layer_hooks(model, list(state.masks) + list(capture_layers), state):
        ids = torch.tensor([encode_question(tokenizer, question) + [model.bot_id]], device=device)
        state.slot = 0
        out = model.codi(input_ids=ids, use_cache=True, output_hidden_states=True)
        past = out.cache
        latent = model.prj(out.hidden_states[-1][:, -1, :].unsqueeze(1))
        fed = []
        for i in range(n_fed):
            if i in input_edits:
                latent = input_edits[i].to(device=device, dtype=latent.dtype).reshape(1, 1, -1)
            fed.append(latent[0, 0].clone())
            state.slot = i + 1
            out = model.codi(inputs_embeds=latent, use_cache=True, output_hidden_states=True, cache=past)
            past = out.cache
            latent = model.prj(out.hidden_states[-1][:, -1, :].unsqueeze(1))
        state.slot = None

        output = embed(torch.tensor([model.eot_id], device=device)).unsqueeze(0)
        gold_logprob = first_answer_logprobs = None
        if gold is not None:
            gold_logprob, first_answer_logprobs = _reference_gold(
                model, tokenizer, gold, output, copy.deepcopy(past))
        tokens: list[int] = []
        for _ in range(max_new_tokens):
            out = model.codi(inputs_embeds=output, use_cache=True, cache=past)
            past = out.cache
            logits = out.logits[:, -1, : model.vocab_size - 1]
            next_id = int(torch.argmax(logits, dim=-1)[0])
            tokens.append(next_id)
            if next_id == eos:
                break
            output = embed(torch.tensor([next_id], device=device)).unsqueeze(1)

    text = decode_answer(tokenizer, tokens)
    return ReferenceResult(
        answer_text=text,
        predicted=extract_answer_number(text),
        token_ids=tokens,
        fed_thoughts=fed,
        layer_outputs={layer: state.captured[layer] for layer in capture_layers},
        gold_logprob=gold_logprob,
        first_answer_logprobs=first_answer_logprobs,
    )


def _reference_gold(model, tokenizer, gold, eot_embedding, past):
    """Teacher-force the gold reply one token at a time: (sum of log-probs, log-probs at the
    first number token). Log-probs are over the same ``[:vocab_size - 1]`` slice as decoding."""
    reply = encode_gold_reply(tokenizer, gold)
    first = first_answer_token_index(tokenizer, reply)
    device = eot_embedding.device
    output = eot_embedding
    total = 0.0
    first_logprobs = None
    for j, token in enumerate(reply):
        out = model.codi(inputs_embeds=output, use_cache=True, cache=past)
        past = out.cache
        logprobs = torch.log_softmax(out.logits[0, -1, : model.vocab_size - 1].float(), dim=-1)
        total += float(logprobs[token])
        if j == first:
            first_logprobs = logprobs.clone()
        output = model.embed(torch.tensor([token], device=device)).unsqueeze(1)
    return total, first_logprobs


def _device(model: ContinuousThoughtModel) -> torch.device:
    return next(model.parameters()).device


# --------------------------------------------------------------------------- batched engine


@dataclass
class RowEdits:
    """Per-row edits for :func:`run_thought_loop` over R = n_questions x repeats rows.

    ``input_mask`` (R, num_fed) / ``input_values`` (R, num_fed, d) replace fed thoughts;
    ``layer_masks[L]`` (R, num_fed + 1) / ``layer_values[L]`` (R, num_fed + 1, d) replace the
    output of layer L at each loop slot. Rows with an all-False mask are untouched (exactly:
    ``torch.where`` returns the original values).
    """

    input_mask: torch.Tensor | None = None
    input_values: torch.Tensor | None = None
    layer_masks: dict[int, torch.Tensor] = field(default_factory=dict)
    layer_values: dict[int, torch.Tensor] = field(default_factory=dict)


@dataclass
class LoopOutput:
    token_ids: list[list[int]] | None               # per row; None when decode=False
    gold_logprob: torch.Tensor | None = None        # (R,)
    kl_to_reference: torch.Tensor | None = None     # (R,) KL(reference row || row) at the first number token
    fed_thoughts: torch.Tensor | None = None        # (R, num_fed, d) when captured
    layer_outputs: dict[int, torch.Tensor] = field(default_factory=dict)  # L -> (R, num_fed + 1, d)


def left_pad(rows: Sequence[Sequence[int]], pad_id: int, device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(ids, attention_mask, position_ids) for left-padded rows; real tokens of every row get
    positions 0..n-1, exactly as they would without padding."""
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        if len(row) == 0:
            raise ValueError("cannot encode an empty token sequence")
        ids[i, width - len(row):] = torch.tensor(list(row), dtype=torch.long)
        mask[i, width - len(row):] = 1
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    return ids.to(device), mask.to(device), positions.to(device)


class _Stepper:
    """Cached single-position steps over a batch with explicit mask and positions."""

    def __init__(self, model, cache, mask, next_pos):
        self.model, self.cache, self.mask, self.next_pos = model, cache, mask, next_pos

    def _extend(self, width: int, block_mask: torch.Tensor | None = None):
        ones = torch.ones((self.mask.shape[0], width), dtype=self.mask.dtype, device=self.mask.device)
        mask = torch.cat([self.mask, ones if block_mask is None else block_mask], dim=1)
        positions = self.next_pos[:, None] + torch.arange(width, device=self.mask.device)[None, :]
        return mask, positions

    def hidden(self, *, input_ids=None, inputs_embeds=None) -> torch.Tensor:
        """Run one position through the body; returns the last hidden state (R, d)."""
        mask, positions = self._extend(1)
        out = self.model.body(input_ids=input_ids, inputs_embeds=inputs_embeds, attention_mask=mask,
                              position_ids=positions, cache=self.cache, use_cache=True)
        self.mask, self.next_pos = mask, self.next_pos + 1
        return out.last_hidden_state[:, -1, :]

    def logits(self, input_ids: torch.Tensor) -> torch.Tensor:
        """Run one token through the full LM; returns the decoding logits (R, vocab - 1)."""
        mask, positions = self._extend(1)
        out = self.model.causal_lm(input_ids=input_ids, attention_mask=mask, position_ids=positions,
                                   cache=self.cache, use_cache=True)
        self.mask, self.next_pos = mask, self.next_pos + 1
        return out.logits[:, -1, : self.model.vocab_size - 1]

    def block_logits(self, input_ids: torch.Tensor, block_mask: torch.Tensor) -> torch.Tensor:
        """Teacher-force a right-padded block, then crop it from the cache again."""
        width = input_ids.shape[1]
        mask, positions = self._extend(width, block_mask)
        out = self.model.causal_lm(input_ids=input_ids, attention_mask=mask, position_ids=positions,
                                   cache=self.cache, use_cache=True)
        self.cache.crop(-width)
        return out.logits[:, :, : self.model.vocab_size - 1]

    def select(self, keep: torch.Tensor) -> None:
        self.cache.batch_select_indices(keep)
        self.mask, self.next_pos = self.mask[keep], self.next_pos[keep]


@torch.inference_mode()
def run_thought_loop(
    model: ContinuousThoughtModel,
    question_ids: Sequence[Sequence[int]],
    *,
    eos_token_id: int,
    repeats: int = 1,
    num_fed: int | None = None,
    edits: RowEdits | None = None,
    decode: bool = True,
    max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS,
    gold_reply_ids: Sequence[Sequence[int]] | None = None,
    first_answer_index: Sequence[int] | None = None,
    kl_reference_rows: torch.Tensor | None = None,
    capture_inputs: bool = False,
    capture_layers: Sequence[int] = (),
) -> LoopOutput:
    """The batched CODI loop over ``len(question_ids) * repeats`` rows (question-major).

    ``question_ids`` are question tokens *without* bot. With ``gold_reply_ids`` (one per
    question) the gold reply is teacher-forced after eot in one block to give each row's
    summed log-probability; with ``first_answer_index`` and ``kl_reference_rows`` also
    KL(reference row || row) at the first number token.
    """
    from transformers import DynamicCache

    n_fed = model.num_latent if num_fed is None else int(num_fed)
    device = _device(model)
    dtype = next(model.parameters()).dtype
    n_rows = len(question_ids) * repeats
    state = _HookState()
    if edits is not None:
        for layer, mask in edits.layer_masks.items():
            state.masks[layer] = mask.to(device)
            state.values[layer] = edits.layer_values[layer].to(device=device, dtype=dtype)
    input_mask = input_values = None
    if edits is not None and edits.input_mask is not None:
        input_mask = edits.input_mask.to(device)
        input_values = edits.input_values.to(device=device, dtype=dtype)
    for layer in capture_layers:
        state.captured[layer] = []

    ids, mask, positions = left_pad(question_ids, model.pad_token_id, device)
    cache = DynamicCache(config=model.causal_lm.config)
    model.body(input_ids=ids, attention_mask=mask, position_ids=positions, cache=cache, use_cache=True)
    next_pos = mask.sum(-1)
    if repeats > 1:
        cache.batch_repeat_interleave(repeats)
        mask, next_pos = mask.repeat_interleave(repeats, 0), next_pos.repeat_interleave(repeats, 0)
    step = _Stepper(model, cache, mask, next_pos)
    result = LoopOutput(token_ids=None)

    with layer_hooks(model, list(state.masks) + list(capture_layers), state):
        state.slot = 0
        bot = torch.full((n_rows, 1), model.bot_id, dtype=torch.long, device=device)
        latent = model.prj(step.hidden(input_ids=bot))
        fed = []
        for k in range(n_fed):
            if input_mask is not None:
                latent = torch.where(input_mask[:, k, None], input_values[:, k], latent)
            if capture_inputs:
                fed.append(latent.detach().clone())
            state.slot = k + 1
            latent = model.prj(step.hidden(inputs_embeds=latent[:, None, :]))
        state.slot = None

    if capture_inputs:
        result.fed_thoughts = torch.stack(fed, dim=1)
    for layer in capture_layers:
        result.layer_outputs[layer] = torch.stack(state.captured[layer], dim=1)
    if not decode:
        return result

    eot = torch.full((n_rows, 1), model.eot_id, dtype=torch.long, device=device)
    logits = step.logits(eot)
    if gold_reply_ids is not None:
        _gold_metrics(step, logits, gold_reply_ids, repeats, first_answer_index, kl_reference_rows,
                      model.pad_token_id, result)
    result.token_ids = _greedy_decode(step, logits, n_rows, eos_token_id, max_new_tokens)
    return result


def _gold_metrics(step, eot_logits, gold_reply_ids, repeats, first_answer_index, kl_reference_rows, pad_id, result):
    """Teacher-forced gold log-probability (summed over the reply's tokens) and, optionally,
    KL(reference || row) = sum_v p_ref(v) (log p_ref(v) - log p_row(v)) at the first number
    token, both over the decoding slice of the vocabulary."""
    device = eot_logits.device
    replies = [list(r) for r in gold_reply_ids for _ in range(repeats)]
    width = max(len(r) for r in replies) - 1
    block = torch.full((len(replies), width), pad_id, dtype=torch.long)
    block_mask = torch.zeros((len(replies), width), dtype=step.mask.dtype)
    targets = torch.full((len(replies), width + 1), -1, dtype=torch.long)
    for i, reply in enumerate(replies):
        block[i, : len(reply) - 1] = torch.tensor(reply[:-1])
        block_mask[i, : len(reply) - 1] = 1
        targets[i, : len(reply)] = torch.tensor(reply)
    block_logits = step.block_logits(block.to(device), block_mask.to(device))
    # Position j of [eot, block] predicts reply token j.
    logprobs = torch.log_softmax(torch.cat([eot_logits[:, None, :], block_logits], dim=1).float(), dim=-1)
    targets = targets.to(device)
    picked = logprobs.gather(-1, targets.clamp(min=0)[..., None])[..., 0]
    result.gold_logprob = (picked * (targets >= 0)).sum(-1)
    if first_answer_index is not None and kl_reference_rows is not None:
        rows = torch.arange(len(replies), device=device)
        first = torch.tensor([f for f in first_answer_index for _ in range(repeats)], device=device)
        at_first = logprobs[rows, first]                       # (R, vocab - 1)
        reference = at_first[kl_reference_rows.to(device)]
        result.kl_to_reference = (reference.exp() * (reference - at_first)).sum(-1).clamp(min=0.0)


def _greedy_decode(step: _Stepper, logits, n_rows, eos_token_id, max_new_tokens) -> list[list[int]]:
    device = logits.device
    out = torch.full((n_rows, max_new_tokens), -1, dtype=torch.long)
    alive = torch.arange(n_rows, device=device)
    for t in range(max_new_tokens):
        next_ids = torch.argmax(logits, dim=-1)
        out[alive.cpu(), t] = next_ids.cpu()
        if t == max_new_tokens - 1:
            break
        running = next_ids != eos_token_id
        if not bool(running.all()):
            if not bool(running.any()):
                break
            keep = running.nonzero(as_tuple=True)[0]
            step.select(keep)
            alive, next_ids = alive[keep], next_ids[keep]
        logits = step.logits(next_ids[:, None])
    return [[int(t) for t in row if t >= 0] for row in out.tolist()]


@torch.inference_mode()
def answer_questions(
    model: ContinuousThoughtModel,
    tokenizer,
    questions: Sequence[str],
    *,
    batch_size: int = 64,
    max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS,
) -> list[tuple[str, str | None]]:
    """Plain batched CODI inference: (answer text, extracted number) per question."""
    results: list[tuple[str, str | None]] = []
    for start in range(0, len(questions), batch_size):
        ids = [encode_question(tokenizer, q) for q in questions[start:start + batch_size]]
        out = run_thought_loop(model, ids, eos_token_id=tokenizer.eos_token_id, max_new_tokens=max_new_tokens)
        for tokens in out.token_ids:
            text = decode_answer(tokenizer, tokens)
            results.append((text, extract_answer_number(text)))
    return results
