"""Batched, seeded sampling of replies from a (LoRA-adapted) causal LM.

What it knows:
- ``generate_samples`` draws ``n_samples`` continuations for every prompt with one
  ``model.generate`` call per batch of ``prompt_batch_size`` prompts
  (``num_return_sequences=n_samples``, prompts left-padded with an attention mask), never one
  sample per call. ``generate_samples_one_at_a_time`` is that naive loop, kept only as the
  benchmark's reference.
- Sampling is reproducible and independent of the caller's RNG: each batch runs inside
  ``torch.random.fork_rng`` with ``torch.manual_seed(batch_seed(cfg.seed, batch_index))``. The
  samples therefore depend on (seed, prompt batching, model, device), and the same seeds are
  used for every λ (common random numbers, which helps the paired comparison).
- Prompts are already formatted (``polydag.core.polychromic.prompting.format_prompt``) and tokenized with the
  tokenizer's own special prefix (``add_special_tokens=True``), exactly like
  ``polydag.core.polychromic.base_model.encode_prompt`` at training time.
- Every sampling option is passed explicitly (temperature, top_p, top_k=0 i.e. off, no
  repetition penalty ...), because ``generate`` otherwise fills unset options from the model's
  ``generation_config.json`` (Qwen3 ships top_k=20, for instance).
- A reply ends at EOS or at the first newline (the training format is one line per reply).
  Tokens whose text contains a newline are added to the stop ids, so a finished row stops
  costing compute; the decoded text is then cut at the first newline and stripped.

What it doesn't: choose the device or dtype (the model is used where it is), or apply the
prompt template.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
import weakref
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Mapping, Sequence

_log = logging.getLogger(__name__)


@dataclass
class GenerationConfig:
    """How samples are drawn for evaluation (all fields are part of the generation cache key)."""

    n_samples: int = 10
    """Samples per prompt (pass@k needs n_samples ≥ k)."""
    temperature: float = 0.9
    """Softmax temperature (> 0)."""
    top_p: float = 0.95
    """Nucleus sampling mass in (0, 1]."""
    max_new_tokens: int = 32
    """Longest reply in tokens; replies usually stop earlier at EOS or newline."""
    prompt_batch_size: int = 16
    """Prompts per ``generate`` call; the call holds prompt_batch_size × n_samples sequences."""
    seed: int = 1234
    """Base seed; batch b is seeded with batch_seed(seed, b)."""
    top_k: int = 0
    """Top-k filter; 0 turns it off (transformers would otherwise default to 50)."""

    def __post_init__(self) -> None:
        for name in ("n_samples", "max_new_tokens", "prompt_batch_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"GenerationConfig.{name} must be an integer ≥ 1, got {value!r}")
        if isinstance(self.top_k, bool) or not isinstance(self.top_k, int) or self.top_k < 0:
            raise ValueError(f"GenerationConfig.top_k must be an integer ≥ 0, got {self.top_k!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            raise ValueError(f"GenerationConfig.seed must be an integer, got {self.seed!r}")
        if not (isinstance(self.temperature, (int, float)) and self.temperature > 0):
            raise ValueError(f"GenerationConfig.temperature must be > 0, got {self.temperature!r}")
        if not (isinstance(self.top_p, (int, float)) and 0 < self.top_p <= 1):
            raise ValueError(f"GenerationConfig.top_p must be in (0, 1], got {self.top_p!r}")


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
        "key_version": 1,
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def batch_seed(seed: int, batch_index: int) -> int:
    """A 63-bit seed for one batch, derived from the base seed and the batch index."""
    digest = hashlib.sha256(f"polydag-generation:{seed}:{batch_index}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


_NEWLINE_IDS: "weakref.WeakKeyDictionary[object, frozenset[int]]" = weakref.WeakKeyDictionary()


def newline_token_ids(tokenizer) -> frozenset[int]:
    """Ids of vocabulary tokens whose text contains a newline (computed once per tokenizer)."""
    try:
        return _NEWLINE_IDS[tokenizer]
    except (KeyError, TypeError):
        pass
    vocab_size = len(tokenizer)
    texts = tokenizer.batch_decode([[i] for i in range(vocab_size)], skip_special_tokens=False)
    ids = frozenset(i for i, text in enumerate(texts) if "\n" in text)
    try:
        _NEWLINE_IDS[tokenizer] = ids
    except TypeError:  # not weak-referenceable: just don't cache
        pass
    return ids


def _eos_ids(model, tokenizer) -> set[int]:
    ids: set[int] = set()
    for source in (tokenizer.eos_token_id, getattr(model.generation_config, "eos_token_id", None)):
        if source is None:
            continue
        ids.update([source] if isinstance(source, int) else list(source))
    if not ids:
        raise ValueError("the tokenizer has no EOS token and the model's generation_config names none")
    return ids


def _pad_id(tokenizer, eos_ids: set[int]) -> int:
    return tokenizer.pad_token_id if tokenizer.pad_token_id is not None else min(eos_ids)


def _model_device(model):
    return next(model.parameters()).device


def _left_pad(encoded: Sequence[Sequence[int]], pad_id: int, device):
    import torch

    width = max(len(ids) for ids in encoded)
    input_ids = torch.full((len(encoded), width), pad_id, dtype=torch.long)
    attention = torch.zeros((len(encoded), width), dtype=torch.long)
    for row, ids in enumerate(encoded):
        if len(ids) == 0:
            raise ValueError(f"prompt {row} of the batch tokenizes to no tokens")
        input_ids[row, width - len(ids):] = torch.tensor(list(ids), dtype=torch.long)
        attention[row, width - len(ids):] = 1
    return input_ids.to(device), attention.to(device)


def _sampling_kwargs(cfg: GenerationConfig, n_return: int, pad_id: int, stop_ids: Sequence[int]) -> dict:
    return dict(
        do_sample=True,
        temperature=float(cfg.temperature),
        top_p=float(cfg.top_p),
        top_k=int(cfg.top_k),
        min_p=0.0,  # keeps every token: overrides any min_p in the model's generation_config
        typical_p=1.0,
        repetition_penalty=1.0,
        no_repeat_ngram_size=0,
        max_new_tokens=int(cfg.max_new_tokens),
        num_return_sequences=n_return,
        pad_token_id=pad_id,
        eos_token_id=list(stop_ids),
        use_cache=True,
    )


def _decode_reply(tokenizer, ids: Sequence[int], end_ids: set[int]) -> str:
    """Text of the generated ids up to EOS/pad, cut at the first newline, stripped."""
    cut = len(ids)
    for position, token in enumerate(ids):
        if token in end_ids:
            cut = position
            break
    text = tokenizer.decode(list(ids[:cut]), skip_special_tokens=True)
    return text.split("\n", 1)[0].strip()


def _check_prompts(prompts: Sequence[str]) -> None:
    if isinstance(prompts, str):
        raise TypeError("prompts must be a list of formatted prompt strings, got one str")
    for i, prompt in enumerate(prompts):
        if not isinstance(prompt, str) or not prompt:
            raise ValueError(f"prompt {i} must be a non-empty str, got {prompt!r:.80}")


def _fork_rng_devices(device) -> list[int]:
    return [device.index or 0] if device.type == "cuda" else []


def generate_samples(
    model,
    tokenizer,
    prompts: Sequence[str],
    cfg: GenerationConfig,
    *,
    logger: logging.Logger | None = None,
) -> list[list[str]]:
    """``cfg.n_samples`` sampled replies for each formatted prompt, batched and seeded.

    Returns one list per prompt, in prompt order, each with exactly ``cfg.n_samples`` strings
    (a reply may be empty if the model stops at once; the quality checker judges that).
    """
    import torch

    logger = logger or _log
    _check_prompts(prompts)
    device = _model_device(model)
    eos_ids = _eos_ids(model, tokenizer)
    pad_id = _pad_id(tokenizer, eos_ids)
    stop_ids = sorted(eos_ids | newline_token_ids(tokenizer))
    end_ids = eos_ids | {pad_id}
    encoded = [tokenizer(p, add_special_tokens=True)["input_ids"] for p in prompts]
    n_batches = -(-len(prompts) // cfg.prompt_batch_size)
    kwargs = _sampling_kwargs(cfg, cfg.n_samples, pad_id, stop_ids)

    was_training = model.training
    model.eval()
    results: list[list[str]] = []
    start_time = time.perf_counter()
    last_log = start_time
    try:
        for b in range(n_batches):
            batch = encoded[b * cfg.prompt_batch_size:(b + 1) * cfg.prompt_batch_size]
            input_ids, attention = _left_pad(batch, pad_id, device)
            with torch.random.fork_rng(devices=_fork_rng_devices(device)), torch.inference_mode():
                torch.manual_seed(batch_seed(cfg.seed, b))
                output = model.generate(input_ids=input_ids, attention_mask=attention, **kwargs)
            new_tokens = output[:, input_ids.shape[1]:].tolist()
            if len(new_tokens) != len(batch) * cfg.n_samples:
                raise RuntimeError(
                    f"generate returned {len(new_tokens)} sequences for {len(batch)} prompts × "
                    f"{cfg.n_samples} samples"
                )
            for p in range(len(batch)):
                rows = new_tokens[p * cfg.n_samples:(p + 1) * cfg.n_samples]
                results.append([_decode_reply(tokenizer, ids, end_ids) for ids in rows])
            now = time.perf_counter()
            if now - last_log >= 5.0 or b + 1 == n_batches:
                done = len(results)
                rate = done * cfg.n_samples / (now - start_time)
                logger.info(
                    "generated %d/%d prompts × %d samples (batch %d/%d, %.1f samples/s, ETA %.0fs)",
                    done, len(prompts), cfg.n_samples, b + 1, n_batches, rate,
                    (len(prompts) - done) * cfg.n_samples / rate if rate else float("nan"),
                )
                last_log = now
    finally:
        model.train(was_training)
    return results


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
    prompt i is seeded with batch_seed(cfg.seed, i * n_samples + j).
    """
    import torch

    logger = logger or _log
    _check_prompts(prompts)
    device = _model_device(model)
    eos_ids = _eos_ids(model, tokenizer)
    pad_id = _pad_id(tokenizer, eos_ids)
    stop_ids = sorted(eos_ids | newline_token_ids(tokenizer))
    end_ids = eos_ids | {pad_id}
    kwargs = _sampling_kwargs(cfg, 1, pad_id, stop_ids)
    was_training = model.training
    model.eval()
    results: list[list[str]] = []
    try:
        for i, prompt in enumerate(prompts):
            ids = tokenizer(prompt, add_special_tokens=True)["input_ids"]
            input_ids, attention = _left_pad([ids], pad_id, device)
            replies = []
            for j in range(cfg.n_samples):
                with torch.random.fork_rng(devices=_fork_rng_devices(device)), torch.inference_mode():
                    torch.manual_seed(batch_seed(cfg.seed, i * cfg.n_samples + j))
                    output = model.generate(input_ids=input_ids, attention_mask=attention, **kwargs)
                replies.append(_decode_reply(tokenizer, output[0, input_ids.shape[1]:].tolist(), end_ids))
            results.append(replies)
            logger.debug("one-at-a-time: prompt %d/%d done", i + 1, len(prompts))
    finally:
        model.train(was_training)
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
    if merge:
        model = model.merge_and_unload()
    model.eval()
    return model, tokenizer
