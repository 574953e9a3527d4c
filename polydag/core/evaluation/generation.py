"""Evaluation samples of one λ adapter: drawn with the one sampler, checked, cached by content.

What it knows:

- ``generate_samples`` draws ``n_samples`` replies for every prompt with one ``generate`` call
  per batch of ``prompt_batch_size`` prompts, through :mod:`polydag.core.polychromic.sampling`
  (the sampler training's diversity samples use too: same stop rules, same options).
- Every prompt has its own seed, ``prompt_seed(cfg.seed, prompt)``, and its own generator in
  the sampler (``prompt_seeds=``), so a prompt's texts are a function of (adapter, config,
  prompt, seed) only: not of which prompts share its batch, of ``prompt_batch_size`` (up to the
  float rounding of a padded batch) or of which prompts an earlier, interrupted run already
  drew. The seed is the same for every λ (common random numbers, which helps the paired
  comparison). Measured on the tiny default model (CPU, 1 thread, 10 samples of up to 32
  tokens, batches of 16, median of 5 on 2 contended cores): 3.31 s for 16 prompts and 4.25 s
  for 32, against 3.17 s and 3.91 s for the old call seeded once per batch (1.05× and 1.09×),
  while one ``generate`` call per prompt (the other way to seed per prompt) took 6.07 s and
  10.40 s (1.9× and 2.7×). The texts were identical with batches of 16, 5 and 1.
- ``generate_samples_one_at_a_time`` is the naive loop (one sample per call), kept only as the
  benchmark's reference.
- Prompts are framed as the adapter was trained (``prompting.frame_prompt`` with the format in
  its stored ``train_config``: plain, or its chat template) and tokenized exactly like
  ``encode_prompt`` at training time.
- :func:`generation_cache_key` names the inputs of a partition's samples; :func:`reuse_cached`
  decides whether stored rows can be reused; :func:`generate_partition` does one λ partition
  end to end (load, sample, check, table), which is all the ``generations`` asset calls.
- Resuming: given a :class:`~polydag.core.storage.generation_batches.GenerationBatches`,
  ``generate_partition`` writes each finished prompt batch there at once, and a rerun under the
  same cache key takes the finished prompts from it and samples only the missing ones.

What it doesn't: choose the device (the caller does; the dtype is the loader's default for
it, bfloat16 on CUDA and float32 on CPU, and part of the cache key), or store the partition.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Mapping, Sequence

import polars as pl

from polydag.core.ops.hashing import refuse_nonfinite
from polydag.core.polychromic.lambdas import SweepKey
from polydag.core.ops.progress import progress
from polydag.core.evaluation.config import GenerationConfig, QualityConfig
from polydag.core.polychromic.sampling import (
    decode_reply,
    sample_replies,
    sample_token_ids,
    sampling_seed,
    stop_tokens,
)
from polydag.core.storage.generation_batches import GenerationBatches

_log = logging.getLogger(__name__)

__all__ = ["GenerationConfig", "generate_samples", "generate_samples_one_at_a_time", "generation_cache_key",
           "generate_partition", "load_model_with_adapter", "reuse_cached", "evaluation_prompts", "prompt_seed"]

# 2: prompts seeded one by one (prompt_seed), the model dtype in ``extra``
CACHE_KEY_VERSION = 2


def generation_cache_key(
    adapter_sha256: str, cfg: GenerationConfig, *, extra: Mapping[str, str] | None = None
) -> str:
    """sha256 hex over the adapter hash, the full generation config and ``extra``.

    Stored with every generated row: a changed adapter or config gives a new key, so samples
    are never scored against the wrong checkpoint. ``extra`` takes further identities of the
    inputs (e.g. ``{"base_model": <weights sha256>, "prompts": <sha256 of the prompt set>}``).
    """
    if not (isinstance(adapter_sha256, str) and len(adapter_sha256) == 64
            and all(ch in "0123456789abcdef" for ch in adapter_sha256)):
        raise ValueError(f"adapter_sha256 must be a 64-character lowercase hex sha256, got {adapter_sha256!r}")
    payload = {
        "adapter_sha256": adapter_sha256,
        "generation_config": asdict(cfg),
        "extra": dict(sorted((extra or {}).items())),
        "key_version": CACHE_KEY_VERSION,
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def _check_prompts(prompts: Sequence[str]) -> None:
    if isinstance(prompts, str):
        raise TypeError("prompts must be a list of formatted prompt strings, got one str")
    for i, prompt in enumerate(prompts):
        if not isinstance(prompt, str) or not prompt:
            raise ValueError(f"prompt {i} must be a non-empty str, got {prompt!r:.80}")


def prompt_seed(seed: int, prompt: str) -> int:
    """The sampler seed of one formatted prompt: a 63-bit hash of the base seed and its text."""
    digest = hashlib.sha256(f"polydag-prompt:{seed}:{prompt}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


def generate_samples(
    model,
    tokenizer,
    prompts: Sequence[str],
    cfg: GenerationConfig,
    *,
    seeds: Sequence[int] | None = None,
    done: Mapping[int, Sequence[str]] | None = None,
    on_batch: Callable[[dict[int, list[str]]], object] | None = None,
    add_special_tokens: bool = True,
    logger: logging.Logger | None = None,
) -> list[list[str]]:
    """``cfg.n_samples`` sampled replies for each formatted prompt, batched, seeded per prompt.

    ``prompts`` are framed texts (``prompting.frame_prompt``); ``add_special_tokens`` is False
    for chat-template texts, which carry their own special tokens.

    Returns one list per prompt, in prompt order, each with exactly ``cfg.n_samples`` strings
    (a reply may be empty if the model stops at once; the quality checker judges that).

    ``seeds`` gives each prompt's sampler seed (default ``prompt_seed(cfg.seed, prompt)``).
    ``done`` maps prompt indices to replies drawn before (a resumed run): they are returned
    as given and not drawn again. The batches are the slices ``[b·size, (b+1)·size)`` of
    ``prompts`` less their done prompts, so a run that resumes after whole batches draws the
    very batches an uninterrupted run draws. ``on_batch`` is called after each ``generate``
    call with ``{prompt index: replies}`` of that batch (to keep them durably).
    """
    logger = logger or _log
    _check_prompts(prompts)
    if seeds is None:
        seeds = [prompt_seed(cfg.seed, p) for p in prompts]
    elif len(seeds) != len(prompts):
        raise ValueError(f"{len(seeds)} seeds for {len(prompts)} prompts")
    done = dict(done or {})
    for i, replies in done.items():
        if not 0 <= i < len(prompts) or len(replies) != cfg.n_samples:
            raise ValueError(f"done[{i}] must be {cfg.n_samples} replies of one of the {len(prompts)} prompts")
    size = cfg.prompt_batch_size
    batches = [todo for b in range(0, len(prompts), size)
               if (todo := [i for i in range(b, min(b + size, len(prompts))) if i not in done])]
    results: dict[int, list[str]] = {i: list(replies) for i, replies in done.items()}
    with progress(sum(map(len, batches)) * cfg.n_samples, "generate", unit="sample", logger=logger) as bar:
        for b, batch in enumerate(batches):
            encoded = [tokenizer(prompts[i], add_special_tokens=add_special_tokens)["input_ids"] for i in batch]
            drawn = dict(zip(batch, sample_replies(model, tokenizer, encoded, cfg.n_samples, cfg.sampling(),
                                                   prompt_seeds=[seeds[i] for i in batch])))
            results.update(drawn)
            if on_batch is not None:
                on_batch(drawn)
            bar.update(len(batch) * cfg.n_samples, batch=f"{b + 1}/{len(batches)}")
    return [results[i] for i in range(len(prompts))]


def generate_samples_one_at_a_time(
    model,
    tokenizer,
    prompts: Sequence[str],
    cfg: GenerationConfig,
    *,
    logger: logging.Logger | None = None,
) -> list[list[str]]:
    """The naive reference: one ``generate`` call per (prompt, sample). Benchmark use only.

    Same tokenization, sampling options and decoding as :func:`generate_samples`; sample j of
    prompt i is seeded with sampling_seed(cfg.seed, i * n_samples + j).
    """
    logger = logger or _log
    _check_prompts(prompts)
    end = stop_tokens(model, tokenizer).end
    results: list[list[str]] = []
    for i, prompt in enumerate(prompts):
        ids = tokenizer(prompt, add_special_tokens=True)["input_ids"]
        replies = []
        for j in range(cfg.n_samples):
            (row,) = sample_token_ids(model, tokenizer, [ids], 1, cfg.sampling(),
                                      seed=sampling_seed(cfg.seed, i * cfg.n_samples + j))
            replies.append(decode_reply(tokenizer, row, end))
        results.append(replies)
        logger.debug("one-at-a-time: prompt %d/%d done", i + 1, len(prompts))
    return results


class AdapterPathError(FileNotFoundError):
    """The LoRA adapter directory is missing or is not a peft adapter."""


def load_model_with_adapter(
    base_model_dir: str | Path,
    adapter_dir: str | Path,
    *,
    device: str = "cpu",
    dtype=None,
    merge: bool = False,
):
    """``(model, tokenizer)``: the base model with the LoRA adapter in ``adapter_dir``, eval mode.

    The adapter is attached with ``peft.PeftModel.from_pretrained`` (not trainable). With
    ``merge=True`` it is merged into the base weights (``merge_and_unload``), which makes
    sampling faster and gives the same function up to float rounding.
    """
    from peft import PeftModel

    from polydag.core.polychromic.base_model import load_model_and_tokenizer

    adapter_dir = Path(adapter_dir)
    if not adapter_dir.is_dir():
        raise AdapterPathError(
            f"LoRA adapter directory {adapter_dir} does not exist; materialize the checkpoint "
            "for this λ first (the adapter is written by the LoRA trainer with save_pretrained)"
        )
    if not (adapter_dir / "adapter_config.json").is_file():
        raise AdapterPathError(
            f"{adapter_dir} has no adapter_config.json, so it is not a peft adapter directory"
        )
    model, tokenizer = load_model_and_tokenizer(base_model_dir, device=device, dtype=dtype)
    model = PeftModel.from_pretrained(model, str(adapter_dir), is_trainable=False)
    refuse_nonfinite(((n, p) for n, p in model.named_parameters() if "lora_" in n), f"adapter {adapter_dir}",
                     AdapterPathError)
    if merge:
        model = model.merge_and_unload()
    model.eval()
    return model, tokenizer


# --------------------------------------------------------------------------- one λ partition


def evaluation_prompts(reply_pairs: pl.DataFrame) -> pl.DataFrame:
    """The distinct test prompts (``prompt_id``, ``prompt``), in ``prompt_id`` order, with the
    prompt's ground truth ``topic`` and ``admitted_intents`` when ``reply_pairs`` has those
    columns (the first non-null value among the prompt's rows; the loader made them agree)."""
    test = reply_pairs.filter(pl.col("split") == "test")
    truth = [c for c in ("topic", "admitted_intents") if c in reply_pairs.columns]
    return (
        test.group_by("prompt_id", maintain_order=True)
        .agg(pl.col("prompt").first(), *[pl.col(c).drop_nulls().first() for c in truth])
        .sort("prompt_id")
    )


def prompt_set_sha256(prompts: pl.DataFrame) -> str:
    return hashlib.sha256(json.dumps(prompts.rows(), ensure_ascii=False).encode()).hexdigest()


def reuse_cached(cached: pl.DataFrame | None, cache_key: str, n_expected: int) -> bool:
    """Whether stored rows can stand in for a fresh draw: all ``n_expected`` rows are there and
    every one carries ``cache_key`` (same adapter, config, checker, base model and prompts)."""
    if cached is None or cached.is_empty() or "cache_key" not in cached.columns:
        return False
    return cached.height == n_expected and cached["cache_key"].eq(cache_key).all()


def partition_cache_key(checkpoint: Mapping, prompts: pl.DataFrame, gen_cfg: GenerationConfig,
                        quality_cfg: QualityConfig, *, device: str, dtype, checker_identity: str = "") -> str:
    """The cache key of one λ partition's samples: the adapter, the generation config with the
    resolved ``device``, the checker config and the identity of the checker it resolved to
    (``checkers.ResolvedChecker.identity``: grammar or function source hash), the base model,
    the prompt set with its ground truth and the model ``dtype`` (samples differ across devices
    and dtypes), and the prompt framing the adapter is sampled in."""
    from polydag.core.polychromic.prompting import stored_prompt_format

    fmt = stored_prompt_format(json.loads(checkpoint.get("train_config") or "{}"))
    return generation_cache_key(
        checkpoint["adapter_sha256"],
        dataclasses.replace(gen_cfg, device=device),
        extra={
            "quality": json.dumps(asdict(quality_cfg), sort_keys=True),
            "checker": checker_identity,
            "base_model": str(checkpoint["base_model_sha256"]),
            "prompts": prompt_set_sha256(prompts),
            "dtype": str(dtype).removeprefix("torch."),
            "prompt_format": json.dumps(asdict(fmt), sort_keys=True),
        },
    )


@dataclass
class PartitionSamples:
    table: pl.DataFrame
    cache_key: str
    reused: bool  # the whole stored partition stood in (reuse_cached)
    n_resumed_prompts: int = 0  # prompts taken from generation_batches (an interrupted draw)
    n_generated_prompts: int = 0  # prompts sampled by this call


def generate_partition(
    checkpoint: Mapping,
    prompts: pl.DataFrame,
    gen_cfg: GenerationConfig,
    quality_cfg: QualityConfig,
    *,
    cached: pl.DataFrame | None = None,
    batches: GenerationBatches | None = None,
    embedder=None,
    logger: logging.Logger | None = None,
) -> PartitionSamples:
    """The ``generations`` rows of one λ: ``gen_cfg.n_samples`` checked replies per prompt.

    ``checkpoint`` is the λ's ``lora_checkpoints`` row. Rows in ``cached`` (that λ's stored
    rows) are reused when :func:`reuse_cached` says so. Otherwise the prompts finished under
    the same cache key in ``batches`` are taken from there (an interrupted run), the adapter is
    loaded on the resolved device only if prompts are missing, and each newly finished batch is
    added to ``batches`` at once. The quality checker ``quality_cfg.checker`` selects
    (:mod:`polydag.core.evaluation.checkers`) then judges all the partition's samples
    together, so a resumed partition is row for row the one an uninterrupted run gives; when
    ``prompts`` carry the default grammar's ground truth (``topic``, ``admitted_intents``), each
    sample also gets the verifier's ``reply_intent`` and ``reply_topic`` (null otherwise).
    ``embedder`` serves the relevance checker's ``min_relevance`` rule.
    """
    from polydag.core.evaluation.checkers import judge_samples, resolve_checker
    from polydag.core.polychromic.prompting import frame_prompt, stored_prompt_format

    from polydag.core.polychromic.base_model import default_dtype, resolve_device

    logger = logger or _log
    unit = SweepKey(checkpoint["lambda_key"], checkpoint.get("seed_key") or "0")
    key = unit.label
    if checkpoint.get("gates_passed") is not True:
        raise ValueError(
            f"{key}: the stored adapter has not passed its training gates (its lora_checkpoints row has "
            f"gates_passed={checkpoint.get('gates_passed')!r}); re-materialize it first: dagster asset "
            f"materialize -m polydag --select lora_checkpoints --partition '{unit.lambda_key}|{unit.seed_key}'"
        )
    # a seed replicate samples its own random numbers; λ values of one seed share them (paired)
    gen_cfg = dataclasses.replace(gen_cfg, seed=gen_cfg.seed + int(checkpoint.get("seed") or 0))
    device = resolve_device(gen_cfg.device)
    dtype = default_dtype(device)
    checker = resolve_checker(quality_cfg, prompts, logger=logger)
    cache_key = partition_cache_key(checkpoint, prompts, gen_cfg, quality_cfg, device=device, dtype=dtype,
                                    checker_identity=checker.identity)
    n_expected = prompts.height * gen_cfg.n_samples
    if reuse_cached(cached, cache_key, n_expected):
        logger.info("%s: reusing %d stored samples (%s)", key, cached.height, cache_key[:12])
        if batches is not None:
            batches.prune(unit)  # the stored partition holds them all
        return PartitionSamples(cached, cache_key, True)
    prompt_ids = [str(pid) for pid in prompts["prompt_id"].to_list()]
    done: dict[int, list[str]] = {}
    if batches is not None:
        batches.prune(unit, keep_cache_key=cache_key)
        finished = batches.finished(cache_key, gen_cfg.n_samples)
        done = {i: finished[pid] for i, pid in enumerate(prompt_ids) if pid in finished}
    n_missing = prompts.height - len(done)
    logger.info("%s: %d of %d prompts already drawn under %s (resumed), sampling %d", key, len(done),
                prompts.height, cache_key[:12], n_missing)
    if not n_missing:
        texts = [done[i] for i in range(prompts.height)]
    else:
        model, tokenizer = load_model_with_adapter(checkpoint["base_model_path"], checkpoint["adapter_dir"],
                                                   device=device, dtype=dtype)

        def keep(drawn: dict[int, list[str]]) -> None:
            if batches is not None:
                batches.add(cache_key, unit, {prompt_ids[i]: replies for i, replies in drawn.items()})

        # sampled in the framing the adapter was trained with (plain or its chat template)
        fmt = stored_prompt_format(json.loads(checkpoint.get("train_config") or "{}"))
        framed = [frame_prompt(tokenizer, p, fmt) for p in prompts["prompt"].to_list()]
        texts = generate_samples(model, tokenizer, framed, gen_cfg, done=done, on_batch=keep,
                                 add_special_tokens=fmt.kind == "plain", logger=logger)
        del model
        if batches is not None and not batches.flush():
            logger.warning("%s: some finished samples could not be kept in generation_batches; they are "
                           "in this run's output only", key)
    n = gen_cfg.n_samples
    flat = [
        (pid, prompt, i, text)
        for pid, prompt, samples in zip(prompts["prompt_id"], prompts["prompt"], texts)
        for i, text in enumerate(samples)
    ]
    truth = {}
    if checker.has_ground_truth:
        truth = {"topics": [t for t in prompts["topic"].to_list() for _ in range(n)],
                 "admitted_intents": [a for a in prompts["admitted_intents"].to_list() for _ in range(n)]}
    judged = judge_samples(checker, quality_cfg, [row[1] for row in flat], [row[3] for row in flat],
                           embedder=embedder, **truth)
    table = pl.DataFrame(
        {
            "lambda_key": [unit.lambda_key] * len(flat),
            "diversity_weight": [checkpoint["diversity_weight"]] * len(flat),
            "seed_key": [unit.seed_key] * len(flat),
            "seed": [int(checkpoint.get("seed") or 0)] * len(flat),
            "prompt_id": [row[0] for row in flat],
            "prompt": [row[1] for row in flat],
            "sample_idx": [row[2] for row in flat],
            "text": [row[3] for row in flat],
            "passed": judged.passed,
            "quality_reasons": judged.reasons,
            "quality_checker": [checker.name] * len(flat),
            "reply_intent": judged.reply_intent,
            "reply_topic": judged.reply_topic,
            "adapter_sha256": [checkpoint["adapter_sha256"]] * len(flat),
            "cache_key": [cache_key] * len(flat),
        },
        schema_overrides={"sample_idx": pl.Int32, "seed": pl.Int64, "reply_intent": pl.String,
                          "reply_topic": pl.String},
    )
    return PartitionSamples(table, cache_key, False, n_resumed_prompts=len(done), n_generated_prompts=n_missing)


def _units(table: pl.DataFrame) -> list[SweepKey]:
    if not table.height:
        return []
    seeds = table["seed_key"] if "seed_key" in table.columns else pl.Series(["0"] * table.height)
    return [SweepKey(*row) for row in zip(table["lambda_key"], seeds)]


def check_coverage(registered: Sequence[SweepKey], generations: pl.DataFrame, checkpoints: pl.DataFrame,
                   baseline_key: str) -> None:
    """Raise, naming the λ × seed partitions and the command, when samples are missing or
    stale: every registered (λ, seed) (the baseline λ among them) needs generations from its
    current adapter."""
    registered = [u if isinstance(u, SweepKey) else SweepKey(u) for u in registered]
    have = set(_units(generations))
    missing = [u for u in registered if u not in have]
    if baseline_key not in {u.lambda_key for u in registered}:
        raise ValueError(
            f"the baseline λ={baseline_key} is not a registered partition; "
            f"add it: polydag lambdas add {baseline_key}"
        )
    if missing:
        first, last = registered[0], registered[-1]
        raise ValueError(
            f"λ × seed partitions {', '.join(u.label for u in missing)} have no generations. Materialize them "
            f"first, e.g. dagster asset materialize -m polydag --select 'lora_checkpoints,generations' "
            f"--partition '{missing[0].lambda_key}|{missing[0].seed_key}' (or --partition-range "
            f"'{first.lambda_key}|{first.seed_key}...{last.lambda_key}|{last.seed_key}' for all)"
        )
    current = dict(zip(_units(checkpoints), checkpoints["adapter_sha256"]))
    stale = sorted({unit for unit, sha in zip(_units(generations), generations["adapter_sha256"])
                    if current.get(unit) != sha})
    if stale:
        raise ValueError(
            f"generations of {', '.join(u.label for u in stale)} were sampled from an older adapter; "
            "re-materialize generations for those partitions before scoring"
        )
