"""The batched step-importance ablation engine.

For every problem it answers once with all thoughts (``baseline``), once through the ablation
path with nothing ablated (``null``, the control: it must reproduce the baseline exactly)
and once per ablation variant, all rows of a chunk of problems in one batch
(:func:`polydag.core.step_importance.inference.run_thought_loop`): each question is encoded once and its
keys and values shared by all of its variants, rows with identical edits so far computed once
(the null control always on its own row), and rows leave the batch when they emit EOS.

Variants (``AblationSpec``):

- scheme ``prefix`` ablates positions 0..i-1 (the researchers' scheme; ``position`` = i - 1,
  the last ablated position); ``single`` ablates position i only.
- mode ``zero`` replaces the value by zeros; ``mean`` by the per-step mean, the dataset mean
  at that position (:func:`compute_mean_thoughts`); ``global_mean`` by the mean over the
  dataset and all positions (one vector); ``gaussian`` by noise with the dataset's mean and
  standard deviation at that position, per dimension (:func:`gaussian_values`, seeded by the
  problem id, the site and the seed); ``resample`` by the value of another problem at that
  position. These are the four replacements of Li et al. 2026 (causal-latent-cot) plus
  resampling. The partner is a deterministic function of the problem id, the seed and the pool
  of problem ids (:func:`resample_partner`), so it does not depend on how problems are
  chunked into runs; pass the full problem table as ``reference_problems``.
- site ``input`` replaces the thought embedding fed back at that position (z_i, i =
  0..num_latent-1); ``layer:L`` replaces the residual output of decoder layer L at the
  position of that latent step (a forward hook, attached in a context manager).

Researchers' protocol (``compat_researchers=True``, see :meth:`AblationSpec.researchers`):
the bot step counts as position 0 and only five thoughts are fed (positions 1..5 are the five
latent steps), and the output of decoder layer 8 is zeroed at the ablated positions, for
``prefix`` sizes 1..5. Its baseline and null rows also feed five thoughts. Their script also
fed the end-of-thought embedding twice on the ablation path (once on the baseline path); that
bug is deliberately NOT reproduced: every row here, in both protocols, feeds eot once, and the
null control would reveal any such path difference.

Metrics per row: the answer text and extracted number (CODI's extraction), correctness,
``flipped`` (correctness differs from the baseline), ``answer_changed``, ``gold_logprob``
(teacher-forced log-probability of "The answer is: N" + EOS after eot, summed over its
tokens) and ``kl_to_baseline`` = KL(baseline || variant) of the next-token distributions at
the first token of the number (after teacher-forcing "The answer is:").
"""

from __future__ import annotations

import hashlib
import logging
from typing import Callable, Collection, Mapping, Sequence

import polars as pl
import torch

from polydag.core.ops.progress import progress
from polydag.core.step_importance.answers import answers_equal, extract_answer_number
from polydag.core.step_importance.config import (
    MODES,
    AblationSpec,
    Protocol,
    Variant,
    layer_of_site,
    make_protocol,
)
from polydag.core.step_importance.inference import (
    RowEdits,
    ThoughtEdit,
    decode_answer,
    encode_gold_reply,
    encode_question,
    first_answer_token_index,
    reference_answer_one,
    run_thought_loop,
)
from polydag.core.step_importance.model import ContinuousThoughtModel

ROW_SCHEMA = {
    "problem_id": pl.String,
    "variant": pl.String,
    "protocol": pl.String,
    "scheme": pl.String,
    "mode": pl.String,
    "site": pl.String,
    "position": pl.Int64,
    "ablated_positions": pl.String,
    "partner_id": pl.String,
    "answer_text": pl.String,
    "predicted": pl.String,
    "gold": pl.String,
    "correct": pl.Boolean,
    "baseline_correct": pl.Boolean,
    "flipped": pl.Boolean,
    "answer_changed": pl.Boolean,
    "gold_logprob": pl.Float64,
    "kl_to_baseline": pl.Float64,
    "n_answer_tokens": pl.Int64,
    "reference_checked": pl.Boolean,
    "reference_answer_text": pl.String,
}


# --------------------------------------------------------------------------- thought banks


def resample_partner(problem_id: str, pool_ids: Sequence[str], seed: int) -> str:
    """The problem whose thoughts replace ``problem_id``'s in ``resample`` mode.

    ``sha256(f"{seed}:{problem_id}")`` indexes the sorted, de-duplicated pool; the next id is
    taken if that is the problem itself. Depends only on the id, the seed and the pool.
    """
    pool = sorted(set(pool_ids))
    if len(pool) < 2 and (not pool or pool[0] == problem_id):
        raise ValueError("resample mode needs a pool of at least two problems")
    digest = hashlib.sha256(f"{seed}:{problem_id}".encode("utf-8")).digest()
    index = int.from_bytes(digest[:8], "big") % len(pool)
    if pool[index] == problem_id:
        index = (index + 1) % len(pool)
    return pool[index]


def _bank_layers(sites: Sequence[str]) -> list[int]:
    return sorted({layer for layer in map(layer_of_site, sites) if layer is not None})


def compute_thought_bank(
    model: ContinuousThoughtModel,
    tokenizer,
    questions: Sequence[str],
    *,
    sites: Sequence[str] = ("input",),
    protocol: Protocol | None = None,
    batch_size: int = 64,
) -> dict[str, torch.Tensor]:
    """Per question, the un-ablated value at every position of every site:
    ``{site: tensor (n_questions, n_positions, d)}`` (float32, on CPU)."""
    protocol = protocol or make_protocol(model)
    layers = _bank_layers(sites)
    want_input = "input" in sites
    parts: dict[str, list[torch.Tensor]] = {site: [] for site in sites}
    for start in range(0, len(questions), batch_size):
        ids = [encode_question(tokenizer, q) for q in questions[start:start + batch_size]]
        out = run_thought_loop(model, ids, eos_token_id=tokenizer.eos_token_id, num_fed=protocol.num_fed,
                               decode=False, capture_inputs=want_input, capture_layers=layers)
        if want_input:
            parts["input"].append(out.fed_thoughts.float().cpu())
        for layer in layers:
            slots = out.layer_outputs[layer][:, protocol.slot_offset: protocol.slot_offset + protocol.n_positions]
            parts[f"layer:{layer}"].append(slots.float().cpu())
    return {site: torch.cat(chunks, dim=0) for site, chunks in parts.items()}


def compute_thought_moments(
    model: ContinuousThoughtModel,
    tokenizer,
    questions: Sequence[str],
    *,
    sites: Sequence[str] = ("input",),
    compat_researchers: bool = False,
    batch_size: int = 64,
    logger: logging.Logger | None = None,
) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """The dataset mean and standard deviation (per dimension, ``n - 1`` in the denominator;
    0 for a single question) at each position of each site: ``{site: (mean, std)}``, each
    ``(n_positions, d)`` float32.

    For ``input`` the values are the fed thoughts z_i; for ``layer:L`` the outputs of layer L
    at latent step i (under the researchers' protocol, position 0 is the bot step). Sums are
    accumulated in float64 over batches, so memory does not grow with the pool.
    """
    if not questions:
        raise ValueError("compute_thought_moments needs at least one question")
    log = logger or logging.getLogger(__name__)
    if compat_researchers and "input" in sites:
        raise ValueError("the researchers' protocol has no 'input' site (position 0 is the bot step)")
    protocol = make_protocol(model, compat_researchers)
    sums: dict[str, torch.Tensor] = {}
    squares: dict[str, torch.Tensor] = {}
    for start in range(0, len(questions), batch_size):
        bank = compute_thought_bank(model, tokenizer, questions[start:start + batch_size], sites=sites,
                                    protocol=protocol, batch_size=batch_size)
        for site, values in bank.items():
            values = values.double()
            sums[site] = sums.get(site, 0) + values.sum(dim=0)
            squares[site] = squares.get(site, 0) + (values * values).sum(dim=0)
    n = len(questions)
    log.info("thought moments over %d questions for sites %s", n, ", ".join(sites))
    moments = {}
    for site, total in sums.items():
        mean = total / n
        var = ((squares[site] - n * mean * mean) / (n - 1)).clamp(min=0) if n > 1 else torch.zeros_like(mean)
        moments[site] = (mean.float(), var.sqrt().float())
    return moments


def compute_mean_thoughts(model: ContinuousThoughtModel, tokenizer, questions: Sequence[str], **kwargs
                          ) -> dict[str, torch.Tensor]:
    """The dataset mean at each position of each site: ``{site: (n_positions, d)}`` (the
    ``mean`` of :func:`compute_thought_moments`, same arguments)."""
    return {site: mean for site, (mean, _) in compute_thought_moments(model, tokenizer, questions, **kwargs).items()}


def gaussian_values(problem_id: str, site: str, mean: torch.Tensor, std: torch.Tensor, seed: int) -> torch.Tensor:
    """``gaussian`` mode's replacement for one problem at one site: ``mean + std * eps`` with
    ``eps ~ N(0, 1)`` of shape ``(n_positions, d)``, drawn from a generator seeded by
    ``sha256(f"{seed}:{problem_id}:{site}")``, so it depends only on these (not on chunking)."""
    digest = hashlib.sha256(f"{seed}:{problem_id}:{site}".encode("utf-8")).digest()
    generator = torch.Generator().manual_seed(int.from_bytes(digest[:8], "big") & (2**63 - 1))
    eps = torch.randn(tuple(mean.shape), generator=generator, dtype=torch.float32)
    return mean.float() + std.float() * eps


# --------------------------------------------------------------------------- the engine


def _replacement_values(variant: Variant, protocol: Protocol, moments, partner_bank, partner_index, problem_id,
                        seed, d):
    """(n_positions, d) replacement values of one variant at its site."""
    n = protocol.n_positions
    if variant.mode == "zero":
        return torch.zeros(n, d)
    if variant.mode == "mean":
        return moments[variant.site][0]
    if variant.mode == "global_mean":
        return moments[variant.site][0].mean(dim=0, keepdim=True).expand(n, d)
    if variant.mode == "gaussian":
        mean, std = moments[variant.site]
        return gaussian_values(problem_id, variant.site, mean, std, seed)
    if variant.mode == "resample":
        return partner_bank[variant.site][partner_index]
    raise AssertionError(variant.mode)


def _build_edits(variants, protocol, problem_ids, problem_partner_index, moments, partner_bank, seed, d) -> RowEdits:
    """Row edits for a chunk: rows are problem-major, ``len(variants)`` rows per problem."""
    n_problems, n_variants = len(problem_partner_index), len(variants)
    n_rows, n_slots = n_problems * n_variants, protocol.num_fed + 1
    sites = sorted({v.site for v in variants if v.site != "none"})
    # The null control is computed on its own row: the engine shares the states of rows with
    # identical edits, and a null row shared with the baseline could not disagree with it.
    null = torch.tensor([v.scheme == "null" for v in variants], dtype=torch.bool)
    edits = RowEdits(isolated=null.repeat(n_problems))
    for site in sites:
        layer = layer_of_site(site)
        width = protocol.num_fed if layer is None else n_slots
        mask = torch.zeros(n_rows, width, dtype=torch.bool)
        values = torch.zeros(n_rows, width, d)
        for p, partner in enumerate(problem_partner_index):
            for v, variant in enumerate(variants):
                if variant.site != site or not variant.ablated:
                    continue
                repl = _replacement_values(variant, protocol, moments, partner_bank, partner, problem_ids[p], seed, d)
                row = p * n_variants + v
                for pos in variant.ablated:
                    index = pos if layer is None else pos + protocol.slot_offset
                    mask[row, index] = True
                    values[row, index] = repl[pos]
        if layer is None:
            edits.input_mask, edits.input_values = mask, values
        else:
            edits.layer_masks[layer], edits.layer_values[layer] = mask, values
    return edits


def reference_edits(variant: Variant, protocol: Protocol, hidden_size: int, *, mean_thoughts=None,
                    std_thoughts=None, partner_values=None, problem_id: str | None = None,
                    seed: int = 0) -> list[ThoughtEdit]:
    """The same ablation as one-row :class:`ThoughtEdit`s for ``reference_answer_one``
    (``mean_thoughts`` / ``std_thoughts``: ``{site: (n_positions, d)}``; ``partner_values``:
    the same for the resample partner; ``problem_id`` and ``seed`` seed ``gaussian`` mode)."""
    if not variant.ablated:
        return []
    if variant.mode == "resample":
        values = partner_values[variant.site]
    else:
        moments = {site: (mean, (std_thoughts or {}).get(site)) for site, mean in (mean_thoughts or {}).items()}
        values = _replacement_values(variant, protocol, moments, None, 0, problem_id, seed, hidden_size)
    layer = layer_of_site(variant.site)
    offset = 0 if layer is None else protocol.slot_offset
    return [ThoughtEdit(variant.site, {pos + offset: values[pos] for pos in variant.ablated})]


def run_ablations(
    model: ContinuousThoughtModel,
    tokenizer,
    problems: pl.DataFrame,
    spec: AblationSpec | None = None,
    *,
    chunk_size: int = 32,
    logger: logging.Logger | None = None,
    mean_thoughts: Mapping[str, torch.Tensor] | None = None,
    std_thoughts: Mapping[str, torch.Tensor] | None = None,
    reference_problems: pl.DataFrame | None = None,
    reference_problem_ids: Collection[str] = (),
    engine: Callable = run_thought_loop,
) -> pl.DataFrame:
    """One row per (problem, variant) for every problem of ``problems`` (columns: ROW_SCHEMA).

    Every variant of the problems in ``reference_problem_ids`` is also answered by the
    independent one-row loop (:func:`reference_answer_one`, written like CODI's test.py), with
    the same replacement values; its text goes to ``reference_answer_text`` and
    ``reference_checked`` is true (the runtime reference gate compares them). ``engine`` is
    the batched loop (tests pass a deliberately broken one to show that the gate sees it).

    ``reference_problems`` (default: ``problems``) is the pool for resample partners and, for
    the sites whose ``mean_thoughts`` (mean, global_mean and gaussian modes) or
    ``std_thoughts`` (gaussian) are not given, for :func:`compute_thought_moments`; pass the
    full problem table so that results do not depend on which problems a run covers.
    """
    spec = spec or AblationSpec()
    log = logger or logging.getLogger(__name__)
    for column in ("problem_id", "question", "answer"):
        if column not in problems.columns:
            raise ValueError(f"problems table has no {column!r} column (columns: {problems.columns})")
    if chunk_size < 1:
        raise ValueError("chunk_size must be >= 1")
    if problems.is_empty():
        return pl.DataFrame(schema=ROW_SCHEMA)
    protocol = spec.protocol(model)
    variants = spec.variants(protocol)
    pool = reference_problems if reference_problems is not None else problems
    d = model.hidden_size
    sites_by_mode = {mode: sorted({v.site for v in variants if v.mode == mode}) for mode in MODES}

    moments: dict[str, tuple[torch.Tensor, torch.Tensor | None]] = {}
    need_mean = sorted(set(sites_by_mode["mean"]) | set(sites_by_mode["global_mean"]) | set(sites_by_mode["gaussian"]))
    if need_mean:
        given_mean, given_std = dict(mean_thoughts or {}), dict(std_thoughts or {})
        missing = [s for s in need_mean if s not in given_mean or (s in sites_by_mode["gaussian"] and s not in given_std)]
        if missing:
            log.info("computing thought moments over %d reference problems", pool.height)
            computed = compute_thought_moments(model, tokenizer, pool["question"].to_list(), sites=missing,
                                               compat_researchers=spec.compat_researchers,
                                               batch_size=max(chunk_size, 16))
            for site, (mean, std) in computed.items():
                given_mean.setdefault(site, mean)
                given_std.setdefault(site, std)
        for site in need_mean:
            moments[site] = (given_mean[site].float().cpu(),
                             given_std[site].float().cpu() if site in given_std else None)
            for name, value in (("mean_thoughts", moments[site][0]), ("std_thoughts", moments[site][1])):
                if value is not None and tuple(value.shape) != (protocol.n_positions, d):
                    raise ValueError(f"{name}[{site!r}] has shape {tuple(value.shape)}, "
                                     f"expected {(protocol.n_positions, d)}")
    partners: dict[str, str] = {}
    if sites_by_mode["resample"]:
        pool_ids = pool["problem_id"].to_list()
        partners = {pid: resample_partner(pid, pool_ids, spec.seed) for pid in problems["problem_id"].to_list()}
        pool_questions = dict(zip(pool["problem_id"].to_list(), pool["question"].to_list()))

    questions = problems["question"].to_list()
    ids = [encode_question(tokenizer, q) for q in questions]
    checked = set(reference_problem_ids)
    # Chunks of similar length waste less compute on padding; rows go back to input order.
    order = sorted(range(problems.height), key=lambda i: (len(ids[i]), i))
    records: list[dict | None] = [None] * problems.height
    problem_ids = problems["problem_id"].to_list()
    golds = problems["answer"].to_list()
    n_chunks = (len(order) + chunk_size - 1) // chunk_size
    desc = f"ablate ({protocol.name}, {len(variants)} variants)"
    with progress(len(order), desc, unit="problem", logger=log) as bar:
        for c, start in enumerate(range(0, len(order), chunk_size)):
            chunk = order[start:start + chunk_size]
            partner_bank, partner_index = None, [0] * len(chunk)
            if partners:
                partner_ids = sorted({partners[problem_ids[i]] for i in chunk})
                partner_bank = compute_thought_bank(model, tokenizer, [pool_questions[p] for p in partner_ids],
                                                    sites=sites_by_mode["resample"], protocol=protocol,
                                                    batch_size=max(len(partner_ids), 1))
                partner_index = [partner_ids.index(partners[problem_ids[i]]) for i in chunk]
            edits = _build_edits(variants, protocol, [problem_ids[i] for i in chunk], partner_index, moments,
                                 partner_bank, spec.seed, d)
            gold_ids = [encode_gold_reply(tokenizer, golds[i]) for i in chunk] if spec.with_metrics else None
            n_var = len(variants)
            out = engine(
                model, [ids[i] for i in chunk], eos_token_id=tokenizer.eos_token_id, repeats=n_var,
                num_fed=protocol.num_fed, edits=edits, max_new_tokens=spec.max_new_tokens,
                gold_reply_ids=gold_ids,
                first_answer_index=[first_answer_token_index(tokenizer, g) for g in gold_ids] if gold_ids else None,
                kl_reference_rows=torch.arange(len(chunk)).repeat_interleave(n_var) * n_var if gold_ids else None,
            )
            for p, i in enumerate(chunk):
                records[i] = _rows_for_problem(
                    problem_ids[i], golds[i], variants, protocol, out, p * n_var, tokenizer,
                    partners.get(problem_ids[i]))
                if problem_ids[i] in checked:
                    partner_values = None
                    if partner_bank is not None:
                        partner_values = {site: bank[partner_index[p]] for site, bank in partner_bank.items()}
                    for row, variant in zip(records[i], variants):
                        edits_one = reference_edits(
                            variant, protocol, d, mean_thoughts={k: m for k, (m, _) in moments.items()},
                            std_thoughts={k: sd for k, (_, sd) in moments.items() if sd is not None},
                            partner_values=partner_values, problem_id=problem_ids[i], seed=spec.seed)
                        ref = reference_answer_one(model, tokenizer, questions[i], edits_one, num_fed=protocol.num_fed,
                                                   max_new_tokens=spec.max_new_tokens)
                        row["reference_checked"], row["reference_answer_text"] = True, ref.answer_text
            bar.update(len(chunk), chunk=f"{c + 1}/{n_chunks}")
    rows = [row for problem_rows in records for row in problem_rows]
    return pl.DataFrame(rows, schema=ROW_SCHEMA)


def _rows_for_problem(problem_id, gold, variants, protocol, out, offset, tokenizer, partner_id) -> list[dict]:
    texts = [decode_answer(tokenizer, out.token_ids[offset + v]) for v in range(len(variants))]
    predicted = [extract_answer_number(t) for t in texts]
    correct = [answers_equal(p, gold) for p in predicted]
    base = 0  # variants[0] is the baseline
    rows = []
    for v, variant in enumerate(variants):
        rows.append({
            "problem_id": problem_id,
            "variant": variant.variant,
            "protocol": protocol.name,
            "scheme": variant.scheme,
            "mode": variant.mode,
            "site": variant.site,
            "position": variant.position,
            "ablated_positions": ",".join(str(p) for p in variant.ablated),
            "partner_id": partner_id if variant.mode == "resample" else None,
            "answer_text": texts[v],
            "predicted": predicted[v],
            "gold": gold,
            "correct": correct[v],
            "baseline_correct": correct[base],
            "flipped": correct[v] != correct[base],
            "answer_changed": predicted[v] != predicted[base],
            "gold_logprob": float(out.gold_logprob[offset + v]) if out.gold_logprob is not None else None,
            "kl_to_baseline": float(out.kl_to_reference[offset + v]) if out.kl_to_reference is not None else None,
            "n_answer_tokens": len(out.token_ids[offset + v]),
            "reference_checked": False,
            "reference_answer_text": None,
        })
    return rows
