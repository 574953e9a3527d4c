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
  position ids, each question encoded once and its keys and values stored once for all of
  its rows (:mod:`polydag.core.step_importance.kv_cache`: cascade attention over a shared
  prefix), the bot token as its own cached step (so an ablation of the bot position, as in
  the researchers' protocol, can differ per variant), rows that have received identical
  edits so far computed once and forked where their edits differ (the unique work of a
  sweep), and finished rows dropped so decoding stops per row.

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
    """Shared by the layer hooks of one loop: whether a latent step runs now, what replaces
    each hooked layer's output at its position, and what to capture."""

    active: bool = False
    masks: dict[int, torch.Tensor] = field(default_factory=dict)    # layer -> (rows,) bool, this step
    values: dict[int, torch.Tensor] = field(default_factory=dict)   # layer -> (rows, d), this step
    captured: dict[int, list[torch.Tensor]] = field(default_factory=dict)  # layer -> per step (rows, d)


def _layer_hook(layer: int, state: _HookState):
    def hook(module, args, output):
        if not state.active:
            return None
        hidden = output[0] if isinstance(output, tuple) else output
        last = hidden[:, -1, :]
        if layer in state.captured:
            state.captured[layer].append(last.detach().clone())
        mask = state.masks.get(layer)
        if mask is None or not bool(mask.any()):
            return None
        edited = torch.where(mask[:, None], state.values[layer].to(last.dtype), last)
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
    divergence_step: int | None = None
    """With ``compare_tokens``: the first decoding step whose token differs from them."""
    divergence_margin: float | None = None
    """The reference's logit of its own token minus its logit of the compared token there
    (how close to a tie the decision was; None when the compared tokens had ended)."""


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
    compare_tokens: Sequence[int] | None = None,
) -> ReferenceResult:
    """Answer one question the way CODI's test.py does, one token at a time.

    ``ablation`` edits thoughts (see :class:`ThoughtEdit`); ``num_fed`` overrides the number
    of latent iterations (the researchers fed 5). With ``gold``, the gold reply is also
    teacher-forced token by token after eot (from a copy of the cache) to give its summed
    log-probability and the log-probabilities at its first number token. With
    ``compare_tokens`` (another implementation's answer), the first step where this loop
    decodes a different token and the logit margin of that decision are recorded.
    """
    edits = [ablation] if isinstance(ablation, ThoughtEdit) else list(ablation or [])
    device = _device(model)
    input_edits: dict[int, torch.Tensor] = {}
    layer_edits: dict[int, Mapping[int, torch.Tensor]] = {}
    state = _HookState()
    for edit in edits:
        layer = layer_of_site(edit.site)
        if layer is None:
            input_edits.update(edit.replacements)
        else:
            layer_edits[layer] = edit.replacements
    for layer in capture_layers:
        state.captured[layer] = []
    n_fed = model.num_latent if num_fed is None else num_fed
    embed = model.embed
    eos = tokenizer.eos_token_id
    hidden_size = model.hidden_size

    def set_slot(slot: int) -> None:
        state.active = True
        for layer, replacements in layer_edits.items():
            hit = slot in replacements
            state.masks[layer] = torch.tensor([hit], device=device)
            value = replacements[slot] if hit else torch.zeros(hidden_size)
            state.values[layer] = value.reshape(1, -1).to(device)

    with layer_hooks(model, list(layer_edits) + list(capture_layers), state):
        ids = torch.tensor([encode_question(tokenizer, question) + [model.bot_id]], device=device)
        set_slot(0)
        out = model.codi(input_ids=ids, use_cache=True, output_hidden_states=True)
        past = out.cache
        latent = model.prj(out.hidden_states[-1][:, -1, :].unsqueeze(1))
        fed = []
        for i in range(n_fed):
            if i in input_edits:
                latent = input_edits[i].to(device=device, dtype=latent.dtype).reshape(1, 1, -1)
            fed.append(latent[0, 0].clone())
            set_slot(i + 1)
            out = model.codi(inputs_embeds=latent, use_cache=True, output_hidden_states=True, cache=past)
            past = out.cache
            latent = model.prj(out.hidden_states[-1][:, -1, :].unsqueeze(1))
        state.active = False

        output = embed(torch.tensor([model.eot_id], device=device)).unsqueeze(0)
        gold_logprob = first_answer_logprobs = None
        if gold is not None:
            gold_logprob, first_answer_logprobs = _reference_gold(
                model, tokenizer, gold, output, copy.deepcopy(past))
        tokens: list[int] = []
        divergence_step = divergence_margin = None
        for step in range(max_new_tokens):
            out = model.codi(inputs_embeds=output, use_cache=True, cache=past)
            past = out.cache
            logits = out.logits[:, -1, : model.vocab_size - 1]
            next_id = int(torch.argmax(logits, dim=-1)[0])
            if compare_tokens is not None and divergence_step is None:
                other = compare_tokens[step] if step < len(compare_tokens) else None
                if other != next_id:
                    divergence_step = step
                    if other is not None:
                        divergence_margin = float(logits[0, next_id].float() - logits[0, other].float())
            tokens.append(next_id)
            if next_id == eos:
                break
            output = embed(torch.tensor([next_id], device=device)).unsqueeze(1)
    if compare_tokens is not None and divergence_step is None and len(compare_tokens) != len(tokens):
        divergence_step = len(tokens)   # the compared answer went on after this one stopped

    text = decode_answer(tokenizer, tokens)
    return ReferenceResult(
        answer_text=text,
        predicted=extract_answer_number(text),
        token_ids=tokens,
        fed_thoughts=fed,
        layer_outputs={layer: state.captured[layer] for layer in capture_layers},
        gold_logprob=gold_logprob,
        first_answer_logprobs=first_answer_logprobs,
        divergence_step=divergence_step,
        divergence_margin=divergence_margin,
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
    ``torch.where`` returns the original values). ``isolated`` (R,) marks rows that are
    computed on their own, never sharing a state with another row (the null control).
    """

    input_mask: torch.Tensor | None = None
    input_values: torch.Tensor | None = None
    layer_masks: dict[int, torch.Tensor] = field(default_factory=dict)
    layer_values: dict[int, torch.Tensor] = field(default_factory=dict)
    isolated: torch.Tensor | None = None


@dataclass
class LoopOutput:
    token_ids: list[list[int]] | None               # per row; None when decode=False
    gold_logprob: torch.Tensor | None = None        # (R,)
    kl_to_reference: torch.Tensor | None = None     # (R,) KL(reference row || row) at the first number token
    fed_thoughts: torch.Tensor | None = None        # (R, num_fed, d) when captured
    layer_outputs: dict[int, torch.Tensor] = field(default_factory=dict)  # L -> (R, num_fed + 1, d)
    row_steps: int = 0
    """Sum over forward steps of the physical rows in the batch (the work done, in rows)."""
    logical_row_steps: int = 0
    """The same for a loop that ran every row separately (no shared states)."""


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
    """Cached steps of the physical rows over a :class:`SharedPrefixCache` (positions come
    from the cache: each row's question length plus the suffix written so far)."""

    def __init__(self, model, cache):
        self.model, self.cache = model, cache
        self.row_steps = 0

    def hidden(self, *, input_ids=None, inputs_embeds=None) -> torch.Tensor:
        """Run one position through the body; returns the last hidden state (rows, d)."""
        self.row_steps += self.cache.row_problem.numel()
        out = self.model.body(input_ids=input_ids, inputs_embeds=inputs_embeds, position_ids=self.cache.positions(1),
                              cache=self.cache, use_cache=True)
        return out.last_hidden_state[:, -1, :]

    def logits(self, input_ids: torch.Tensor) -> torch.Tensor:
        """Run one token through the full LM; returns the decoding logits (rows, vocab - 1)."""
        self.row_steps += self.cache.row_problem.numel()
        out = self.model.causal_lm(input_ids=input_ids, position_ids=self.cache.positions(1), cache=self.cache,
                                   use_cache=True)
        return out.logits[:, -1, : self.model.vocab_size - 1]

    def block_logits(self, input_ids: torch.Tensor) -> torch.Tensor:
        """Teacher-force a right-padded block, then crop it from the cache again."""
        width = input_ids.shape[1]
        self.row_steps += self.cache.row_problem.numel() * width
        out = self.model.causal_lm(input_ids=input_ids, position_ids=self.cache.positions(width), cache=self.cache,
                                   use_cache=True)
        self.cache.crop(-width)
        return out.logits[:, :, : self.model.vocab_size - 1]

    def select(self, keep: torch.Tensor) -> None:
        self.cache.select_rows(keep)


def _slot_signature(edits: RowEdits | None, slot: int, n_rows: int, device) -> torch.Tensor | None:
    """(R, k) float32: everything the edits do at ``slot``; rows with equal signatures (and
    equal states before it) stay equal after it."""
    if edits is None:
        return None
    parts = []
    if edits.input_mask is not None and slot >= 1:
        mask = edits.input_mask[:, slot - 1]
        parts += [mask[:, None].float(), torch.where(mask[:, None], edits.input_values[:, slot - 1], 0).float()]
    for layer in sorted(edits.layer_masks):
        mask = edits.layer_masks[layer][:, slot]
        parts += [mask[:, None].float(), torch.where(mask[:, None], edits.layer_values[layer][:, slot], 0).float()]
    return torch.cat(parts, dim=1) if parts else None


def _fork(phys: torch.Tensor, signature: torch.Tensor | None, isolated: torch.Tensor | None, share: bool):
    """New physical rows after one slot: (logical -> physical map, parent of each physical
    row, a representative logical row of each). Rows share a physical row while their
    physical row and their signature agree; without ``share`` every row is its own."""
    n_rows = phys.numel()
    device = phys.device
    if not share:
        rows = torch.arange(n_rows, device=device)
        return rows, phys, rows
    key = [phys[:, None].float()]
    if isolated is not None:
        key.append(torch.where(isolated, torch.arange(1, n_rows + 1, device=device), 0)[:, None].float())
    if signature is not None:
        key.append(signature)
    _, inverse = torch.unique(torch.cat(key, dim=1), dim=0, return_inverse=True)
    n_new = int(inverse.max()) + 1
    first = torch.full((n_new,), n_rows, dtype=torch.long, device=device)
    first = first.scatter_reduce(0, inverse, torch.arange(n_rows, device=device), reduce="amin")
    order = torch.argsort(first)                     # physical rows in the order of their first row
    remap = torch.empty_like(order)
    remap[order] = torch.arange(n_new, device=device)
    representative = first[order]
    return remap[inverse], phys[representative], representative


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
    share: bool = True,
) -> LoopOutput:
    """The batched CODI loop over ``len(question_ids) * repeats`` rows (question-major).

    ``question_ids`` are question tokens *without* bot; each question is encoded once and its
    keys and values are shared by all of its rows (:mod:`polydag.core.step_importance.kv_cache`).
    With ``share`` (default), rows of a question that have received identical edits so far
    are one physical row and fork when their edits differ (the baseline and a single-position
    ablation at position 5 are one row for five latent steps), except ``edits.isolated`` rows.
    With ``gold_reply_ids`` (one per question) the gold reply is teacher-forced after eot in
    one block to give each row's summed log-probability; with ``first_answer_index`` and
    ``kl_reference_rows`` also KL(reference row || row) at the first number token.
    """
    from polydag.core.step_importance.kv_cache import SharedPrefixCache, engine_attention

    n_fed = model.num_latent if num_fed is None else int(num_fed)
    device = _device(model)
    dtype = next(model.parameters()).dtype
    n_rows = len(question_ids) * repeats
    if edits is not None:
        edits = RowEdits(
            input_mask=None if edits.input_mask is None else edits.input_mask.to(device),
            input_values=None if edits.input_values is None else edits.input_values.to(device=device, dtype=dtype),
            layer_masks={k: v.to(device) for k, v in edits.layer_masks.items()},
            layer_values={k: v.to(device=device, dtype=dtype) for k, v in edits.layer_values.items()},
            isolated=None if edits.isolated is None else edits.isolated.to(device),
        )
    state = _HookState()
    for layer in capture_layers:
        state.captured[layer] = []
    hooked = sorted(set(edits.layer_masks) if edits is not None else set()) + list(capture_layers)

    ids, mask, positions = left_pad(question_ids, model.pad_token_id, device)
    gold_width = max((len(r) for r in gold_reply_ids), default=0) if gold_reply_ids is not None else 0
    cache = SharedPrefixCache(len(model.decoder_layers), mask, reserve=n_fed + 2 + gold_width + min(max_new_tokens, 32))
    result = LoopOutput(token_ids=None)
    step = _Stepper(model, cache)
    slot_maps: list[torch.Tensor] = []
    fed: list[torch.Tensor] = []
    logical_steps = n_rows * (n_fed + 1)

    with engine_attention(model, cache), layer_hooks(model, hooked, state):
        model.body(input_ids=ids, position_ids=positions, cache=cache, use_cache=True)
        cache.start_suffix()
        phys = torch.arange(n_rows, device=device) // repeats
        latent = None
        for slot in range(n_fed + 1):
            signature = _slot_signature(edits, slot, n_rows, device)
            isolated = edits.isolated if (edits is not None and slot == 0) else None
            phys_new, parent, representative = _fork(phys, signature, isolated, share)
            if parent.numel() != cache.row_problem.numel() or not torch.equal(
                    parent, torch.arange(parent.numel(), device=device)):
                step.select(parent)
                if latent is not None:
                    latent = latent[parent]
            phys = phys_new
            if edits is not None:
                for layer in edits.layer_masks:
                    state.masks[layer] = edits.layer_masks[layer][representative, slot]
                    state.values[layer] = edits.layer_values[layer][representative, slot]
            state.active = True
            if slot == 0:
                bot = torch.full((parent.numel(), 1), model.bot_id, dtype=torch.long, device=device)
                hidden = step.hidden(input_ids=bot)
            else:
                if edits is not None and edits.input_mask is not None:
                    keep = edits.input_mask[representative, slot - 1]
                    latent = torch.where(keep[:, None], edits.input_values[representative, slot - 1], latent)
                if capture_inputs:
                    fed.append(latent.detach().clone()[phys])
                hidden = step.hidden(inputs_embeds=latent[:, None, :])
            state.active = False
            slot_maps.append(phys)
            latent = model.prj(hidden)

    if capture_inputs:
        result.fed_thoughts = torch.stack(fed, dim=1)
    for layer in capture_layers:
        result.layer_outputs[layer] = torch.stack([c[m] for c, m in zip(state.captured[layer], slot_maps)], dim=1)
    if not decode:
        result.row_steps, result.logical_row_steps = step.row_steps, logical_steps
        return result

    representative_final = representative       # of the physical rows after the last slot
    with engine_attention(model, cache):
        eot = torch.full((cache.row_problem.numel(), 1), model.eot_id, dtype=torch.long, device=device)
        logits = step.logits(eot)
        if gold_reply_ids is not None:
            problem = cache.row_problem.tolist()
            kl_rows = None
            if first_answer_index is not None and kl_reference_rows is not None:
                kl_rows = phys[kl_reference_rows.to(device)[representative_final]]
            gold, kl = _gold_metrics(step, logits, [gold_reply_ids[p] for p in problem],
                                     [first_answer_index[p] for p in problem] if first_answer_index is not None else None,
                                     kl_rows, model.pad_token_id)
            result.gold_logprob = gold[phys]
            result.kl_to_reference = None if kl is None else kl[phys]
        tokens = _greedy_decode(step, logits, cache.row_problem.numel(), eos_token_id, max_new_tokens)
    result.token_ids = [tokens[p] for p in phys.tolist()]
    logical_steps += n_rows * (1 + gold_width) + sum(len(t) - 1 for t in result.token_ids)
    result.row_steps, result.logical_row_steps = step.row_steps, logical_steps
    return result


def _gold_metrics(step, eot_logits, replies, first_answer_index, kl_rows, pad_id):
    """Teacher-forced gold log-probability (summed over the reply's tokens) and, optionally,
    KL(reference || row) = sum_v p_ref(v) (log p_ref(v) - log p_row(v)) at the first number
    token, both over the decoding slice of the vocabulary. One reply per physical row."""
    device = eot_logits.device
    width = max(len(r) for r in replies) - 1
    block = torch.full((len(replies), width), pad_id, dtype=torch.long)
    targets = torch.full((len(replies), width + 1), -1, dtype=torch.long)
    for i, reply in enumerate(replies):
        block[i, : len(reply) - 1] = torch.tensor(list(reply[:-1]))
        targets[i, : len(reply)] = torch.tensor(list(reply))
    block_logits = step.block_logits(block.to(device))
    # Position j of [eot, block] predicts reply token j.
    logprobs = torch.log_softmax(torch.cat([eot_logits[:, None, :], block_logits], dim=1).float(), dim=-1)
    targets = targets.to(device)
    picked = logprobs.gather(-1, targets.clamp(min=0)[..., None])[..., 0]
    gold = (picked * (targets >= 0)).sum(-1)
    if first_answer_index is None or kl_rows is None:
        return gold, None
    rows = torch.arange(len(replies), device=device)
    at_first = logprobs[rows, torch.tensor(list(first_answer_index), device=device)]    # (rows, vocab - 1)
    reference = at_first[kl_rows]
    return gold, (reference.exp() * (reference - at_first)).sum(-1).clamp(min=0.0)


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
