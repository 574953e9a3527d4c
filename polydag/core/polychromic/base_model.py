"""Base models: build the offline default, or resolve a local Hugging Face directory.

Two sources, one interface (a directory that ``load_model_and_tokenizer`` can load):

- ``local``: an existing Hugging Face model directory such as Qwen3-8B on a GPU box. It must
  hold ``config.json``, a tokenizer and ``*.safetensors`` weights; it is loaded with
  ``trust_remote_code=False`` and safetensors only. Nothing is downloaded.
- ``built-in-pipeline``: the offline default. A byte-level BPE tokenizer is trained on the
  dataset with ``tokenizers``, a tiny Qwen3 (or LLaMA) decoder is built from a config, and it is
  pretrained briefly as a causal LM on the (prompt, reply) texts in the shared format of
  :mod:`polydag.core.polychromic.prompting`, so the base already speaks the format and its samples are
  language-like. It is saved (safetensors + tokenizer) atomically.

Token layout, shared by pretraining, LoRA training and generation: ``encode_prompt`` gives the
tokenizer's own prefix (the tiny tokenizer adds ``<|bos|>``; Qwen adds nothing) followed by
``format_prompt(prompt)``; ``encode_reply`` gives ``format_reply(reply)`` plus EOS. Prompt and
reply are tokenized separately, so the reply tokens a model is trained on are exactly the tokens
it generates after the prompt.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Sequence

from polydag.core.ops.atomic_dir import atomic_output_dir
from polydag.core.ops.hashing import refuse_nonfinite
from polydag.core.ops.progress import progress
from polydag.core.polychromic.config import BaseModelConfig
from polydag.core.polychromic.prompting import (
    CHATML_SPECIAL_TOKENS,
    CHATML_TEMPLATE,
    encode_prompt,
    encode_reply,
    format_prompt,
    format_reply,
)
from polydag.core.polychromic.sampling import SamplingConfig, sample_replies

_log = logging.getLogger(__name__)

PAD, BOS, EOS = "<|pad|>", "<|bos|>", "<|endoftext|>"
BUILD_INFO_FILE = "polydag_base.json"


class ModelPathError(FileNotFoundError):
    """A local model path is missing or is not a loadable Hugging Face model directory."""


class DeviceError(RuntimeError):
    """The requested device is not available on this machine."""


@dataclass
class BaseModelInfo:
    path: str
    source: str  # "built-in-pipeline" | "local"
    n_params: int
    weights_sha256: str
    pretrain_final_loss: float | None  # mean loss of the last pretraining steps; None for local
    wall_s: float
    device: str
    sample_replies: list[str] = field(default_factory=list)  # "prompt -> reply" after pretraining


def resolve_device(requested: str = "auto") -> str:
    """"cuda" if requested or "auto" and available, else "cpu"; a clear error for bad requests."""
    import torch

    req = (requested or "auto").strip().lower()
    if req == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if req == "cpu":
        return "cpu"
    if req == "cuda" or req.startswith("cuda:"):
        if not torch.cuda.is_available():
            raise DeviceError(f"device {requested!r} was requested but torch sees no CUDA GPU (torch {torch.__version__})")
        if ":" in req:
            index = int(req.split(":", 1)[1])
            if index >= torch.cuda.device_count():
                raise DeviceError(f"device {requested!r}: only {torch.cuda.device_count()} CUDA device(s) visible")
        return req
    raise DeviceError(f"unknown device {requested!r}; use 'auto', 'cpu' or 'cuda'")


def default_dtype(device: str):
    import torch

    return torch.bfloat16 if device.startswith("cuda") else torch.float32


def weights_sha256(model_dir: str | Path) -> str:
    """sha256 over the model's ``*.safetensors`` files (names and bytes, in name order)."""
    files = sorted(Path(model_dir).glob("*.safetensors"))
    if not files:
        raise ModelPathError(f"{model_dir} holds no *.safetensors weights")
    digest = hashlib.sha256()
    for path in files:
        if len(files) > 1:
            digest.update(path.name.encode() + b"\0")
        with path.open("rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 22), b""):
                digest.update(chunk)
    return digest.hexdigest()


def _count_params_from_safetensors(model_dir: Path) -> int:
    from safetensors import safe_open

    total = 0
    for path in sorted(model_dir.glob("*.safetensors")):
        with safe_open(str(path), framework="pt") as fh:
            for name in fh.keys():
                total += math.prod(fh.get_slice(name).get_shape())
    return total


def _check_model_dir(path: Path) -> None:
    if not path.exists():
        raise ModelPathError(f"base model path {path} does not exist")
    if not path.is_dir():
        raise ModelPathError(f"base model path {path} is not a directory")
    if not (path / "config.json").is_file():
        raise ModelPathError(f"base model path {path} has no config.json (not a Hugging Face model directory)")
    if not any((path / name).is_file() for name in ("tokenizer.json", "tokenizer.model", "vocab.json")):
        raise ModelPathError(f"base model path {path} has no tokenizer (tokenizer.json, tokenizer.model or vocab.json)")
    if not any(path.glob("*.safetensors")):
        raise ModelPathError(f"base model path {path} has no *.safetensors weights (polydag loads safetensors only)")


def resolve_local_base_model(path: str | Path, *, device: str = "auto", hash_weights: bool = True) -> BaseModelInfo:
    """Validate a local Hugging Face model directory without loading it.

    Counts parameters from the safetensors headers and hashes the weight files
    (``hash_weights=False`` skips the hash, which reads every byte: ~16 GB for an 8B model).
    """
    start = time.perf_counter()
    path = Path(path).expanduser().resolve()
    _check_model_dir(path)
    config = json.loads((path / "config.json").read_text())
    if config.get("auto_map"):
        raise ModelPathError(f"{path}/config.json needs remote code (auto_map); polydag loads with trust_remote_code=False")
    return BaseModelInfo(
        path=str(path),
        source="local",
        n_params=_count_params_from_safetensors(path),
        weights_sha256=weights_sha256(path) if hash_weights else "",
        pretrain_final_loss=None,
        wall_s=time.perf_counter() - start,
        device=resolve_device(device),
    )


def load_model_and_tokenizer(model_dir: str | Path, *, device: str = "cpu", dtype=None, quantization_config=None):
    """Load ``(model, tokenizer)`` from a directory: safetensors, no remote code, eval mode.

    The weights load straight onto ``device`` in ``dtype`` (``device_map``), never first in full
    fp32 on the CPU. ``dtype`` defaults to bfloat16 on CUDA and float32 on CPU;
    ``quantization_config`` (a ``BitsAndBytesConfig``) loads them in 4 bits. A tokenizer without
    a pad token gets its EOS token as pad.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model_dir = Path(model_dir)
    _check_model_dir(model_dir)
    device = resolve_device(device)
    tokenizer = AutoTokenizer.from_pretrained(str(model_dir), trust_remote_code=False)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    model = AutoModelForCausalLM.from_pretrained(
        str(model_dir),
        trust_remote_code=False,
        use_safetensors=True,
        dtype=dtype or default_dtype(device),
        device_map={"": device},
        quantization_config=quantization_config,
    )
    refuse_nonfinite(model.named_parameters(), f"model {model_dir}", ModelPathError)
    model.eval()
    return model, tokenizer


# ---------------------------------------------------------------------------------------------
# The built-in default


def _documents(texts: Sequence[str] | Sequence[tuple[str, str]]) -> list[tuple[str, str] | str]:
    docs: list[tuple[str, str] | str] = []
    for i, item in enumerate(texts):
        if isinstance(item, str):
            if not item.strip():
                raise ValueError(f"pretraining text {i} is empty")
            docs.append(item)
        elif isinstance(item, (tuple, list)) and len(item) == 2 and all(isinstance(x, str) for x in item):
            docs.append((item[0], item[1]))
        else:
            raise ValueError(f"pretraining item {i} must be a text or a (prompt, reply) pair, got {item!r:.80}")
    if not docs:
        raise ValueError("no pretraining texts")
    return docs


def _train_tokenizer(docs: list, cfg: BaseModelConfig):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    corpus = [format_prompt(d[0]) + format_reply(d[1]) if isinstance(d, tuple) else d for d in docs]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=cfg.vocab_size,
        special_tokens=[PAD, BOS, EOS, *CHATML_SPECIAL_TOKENS],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(corpus, trainer)
    tok.post_processor = processors.TemplateProcessing(
        single=f"{BOS} $A", pair=f"{BOS} $A $B", special_tokens=[(BOS, tok.token_to_id(BOS))]
    )
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token=PAD, bos_token=BOS, eos_token=EOS,
        additional_special_tokens=list(CHATML_SPECIAL_TOKENS),
        model_max_length=cfg.max_length, clean_up_tokenization_spaces=False,
    )
    tokenizer.chat_template = CHATML_TEMPLATE  # so prompt_format='chat' works offline too
    return tokenizer


def _build_model(cfg: BaseModelConfig, tokenizer):
    from transformers import LlamaConfig, LlamaForCausalLM, Qwen3Config, Qwen3ForCausalLM

    common = dict(
        vocab_size=len(tokenizer),
        hidden_size=cfg.hidden_size,
        intermediate_size=cfg.intermediate_size,
        num_hidden_layers=cfg.num_layers,
        num_attention_heads=cfg.num_heads,
        num_key_value_heads=cfg.num_kv_heads,
        head_dim=cfg.hidden_size // cfg.num_heads,
        max_position_embeddings=max(256, 2 * cfg.max_length),
        tie_word_embeddings=True,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    if cfg.architecture == "qwen3":
        return Qwen3ForCausalLM(Qwen3Config(**common))
    return LlamaForCausalLM(LlamaConfig(**common))


def _encode_docs(tokenizer, docs: list, max_length: int) -> list[tuple[list[int], int]]:
    """(token ids, number of leading prompt tokens) per document; a plain text has no prompt."""
    encoded = []
    for d in docs:
        if isinstance(d, tuple):
            prompt = encode_prompt(tokenizer, d[0])
            ids, n_prompt = prompt + encode_reply(tokenizer, d[1]), len(prompt)
        else:
            ids, n_prompt = list(tokenizer(d, add_special_tokens=True)["input_ids"]) + [tokenizer.eos_token_id], 0
        encoded.append((ids[:max_length], min(n_prompt, max_length)))
    return encoded


def pretrain_batch(batch: Sequence[tuple[list[int], int]], pad_token_id: int, *, reply_only: bool):
    """Right-padded ``(input_ids, attention_mask, labels)`` of ``(ids, n_prompt_tokens)`` documents.
    Labels are -100 on padding and, with ``reply_only``, on each document's prompt tokens (the
    model still reads them; it is only not trained to predict them)."""
    import torch

    width = max(len(ids) for ids, _ in batch)
    input_ids = torch.full((len(batch), width), pad_token_id, dtype=torch.long)
    attention = torch.zeros((len(batch), width), dtype=torch.long)
    scored = torch.zeros((len(batch), width), dtype=torch.bool)  # positions the loss counts
    for row, (ids, n_prompt) in enumerate(batch):
        input_ids[row, : len(ids)] = torch.tensor(ids)
        attention[row, : len(ids)] = 1
        scored[row, (n_prompt if reply_only else 0): len(ids)] = True
    return input_ids, attention, input_ids.masked_fill(~scored, -100)


def _lr_at(step: int, total: int, peak: float) -> float:
    """Linear warm-up over 5% of the steps, then cosine decay to 10% of the peak."""
    warmup = max(1, total // 20)
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return peak * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))


def build_default_base_model(
    texts: Sequence[tuple[str, str]] | Sequence[str],
    out_dir: str | Path,
    cfg: BaseModelConfig | None = None,
    logger: logging.Logger | None = None,
) -> BaseModelInfo:
    """Train a tokenizer and a tiny decoder on ``texts`` and save both atomically to ``out_dir``.

    ``texts`` are (prompt, reply) pairs, formatted with :mod:`polydag.core.polychromic.prompting` (pass the
    *training* split, so evaluation prompts stay unseen), or finished documents (plain strings).
    The result is reproducible for a given seed. Progress (step, loss, tokens/s, ETA) is logged
    every ``cfg.progress_every_s`` seconds.
    """
    import torch

    cfg = cfg or BaseModelConfig()
    if cfg.local_path is not None:
        raise ValueError("build_default_base_model builds the built-in model; use resolve_local_base_model for local_path")
    logger = logger or _log
    start = time.perf_counter()
    device = resolve_device(cfg.device)
    docs = _documents(texts)

    tokenizer = _train_tokenizer(docs, cfg)
    encoded = _encode_docs(tokenizer, docs, cfg.max_length)
    logger.info("trained a byte-level BPE tokenizer: %d tokens on %d texts (%.1fs)",
                len(tokenizer), len(docs), time.perf_counter() - start)

    torch.manual_seed(cfg.seed)
    model = _build_model(cfg, tokenizer).to(device)
    n_params = sum(p.numel() for p in model.parameters())
    logger.info("built a %s decoder with %d parameters on %s; pretraining %d steps",
                cfg.architecture, n_params, device, cfg.pretrain_steps)

    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.learning_rate, weight_decay=cfg.weight_decay)
    order_rng = random.Random(cfg.seed)
    order: list[int] = []
    losses: list[float] = []
    model.train()
    with progress(cfg.pretrain_steps, "pretrain", unit="step", logger=logger,
                  log_every_s=cfg.progress_every_s) as bar:
        for step in range(cfg.pretrain_steps):
            if len(order) < cfg.batch_size:
                epoch = list(range(len(encoded)))
                order_rng.shuffle(epoch)
                order.extend(epoch)
            batch = [encoded[i] for i in order[: cfg.batch_size]]
            del order[: cfg.batch_size]
            input_ids, attention, labels = pretrain_batch(batch, tokenizer.pad_token_id,
                                                          reply_only=cfg.pretrain_loss == "reply")
            input_ids, attention, labels = input_ids.to(device), attention.to(device), labels.to(device)
            for group in optimizer.param_groups:
                group["lr"] = _lr_at(step, cfg.pretrain_steps, cfg.learning_rate)
            loss = model(input_ids=input_ids, attention_mask=attention, labels=labels).loss
            if not torch.isfinite(loss):
                raise FloatingPointError(f"pretraining loss became {loss.item()} at step {step + 1}")
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            losses.append(loss.item())
            bar.update(1, loss=sum(losses[-10:]) / len(losses[-10:]))
    final_loss = sum(losses[-10:]) / len(losses[-10:])

    sample_prompts = [d[0] for d in docs if isinstance(d, tuple)][: cfg.n_sample_replies]
    replies = [texts[0] for texts in sample_replies(
        model, tokenizer, [encode_prompt(tokenizer, p) for p in sample_prompts], 1,
        SamplingConfig(temperature=0.9, top_p=0.95), seed=cfg.seed)]
    samples = [f"{p} -> {r}" for p, r in zip(sample_prompts, replies)]
    for s in samples:
        logger.info("sample: %s", s)

    model.eval()
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.bos_token_id = tokenizer.bos_token_id
    build_info = {"config": asdict(cfg), "n_params": n_params, "pretrain_final_loss": final_loss,
                  "n_texts": len(docs), "sample_replies": samples}
    with atomic_output_dir(out_dir) as tmp:
        model.save_pretrained(str(tmp))
        tokenizer.save_pretrained(str(tmp))
        (tmp / BUILD_INFO_FILE).write_text(json.dumps(build_info, indent=2, ensure_ascii=False))
    out_dir = Path(out_dir).resolve()
    info = BaseModelInfo(
        path=str(out_dir),
        source="built-in-pipeline",
        n_params=n_params,
        weights_sha256=weights_sha256(out_dir),
        pretrain_final_loss=final_loss,
        wall_s=time.perf_counter() - start,
        device=device,
        sample_replies=samples,
    )
    logger.info("saved base model to %s (%.1fs, final loss %.3f)", out_dir, info.wall_s, final_loss)
    return info


def provide_base_model(
    cfg: BaseModelConfig,
    train_pairs: Sequence[tuple[str, str]],
    artifacts_dir: str | Path,
    *,
    logger: logging.Logger | None = None,
) -> BaseModelInfo:
    """The base model of ``cfg``: the local directory it names, or the built-in default built
    from ``train_pairs`` into ``artifacts_dir/<fingerprint of config and data>``."""
    if cfg.local_path:
        return resolve_local_base_model(cfg.local_path, device=cfg.device)
    fingerprint = hashlib.sha256(
        json.dumps([asdict(cfg), [list(p) for p in train_pairs]], sort_keys=True).encode()
    ).hexdigest()[:16]
    out_dir = Path(artifacts_dir) / fingerprint
    built = out_dir / BUILD_INFO_FILE
    if built.is_file():  # the build is deterministic: the same config and data give these bytes again
        (logger or _log).info("reusing the built-in base model built from the same config and data: %s", out_dir)
        info = json.loads(built.read_text())
        return BaseModelInfo(path=str(out_dir.resolve()), source="built-in-pipeline", n_params=info["n_params"],
                             weights_sha256=weights_sha256(out_dir), pretrain_final_loss=info["pretrain_final_loss"],
                             wall_s=0.0, device=resolve_device(cfg.device), sample_replies=info["sample_replies"])
    return build_default_base_model(train_pairs, out_dir, cfg, logger=logger)
