"""Train one λ partition: a LoRA adapter with cross-entropy plus a diversity term that has a gradient.

Every step (see :mod:`polydag.core.polychromic.objective` for the formulas):

1. ``L_quality``: cross-entropy on the gold replies of the batch (loss on reply tokens only).
2. Every ``compute_diversity_every_n_steps`` steps, for up to ``max_examples_for_diversity``
   prompts of the batch: sample ``n_generations`` replies (eval mode, no grad, batched with
   ``num_return_sequences``), compute each prompt's distance matrix and set diversity D, and
   per-sample advantages (leave-one-out, or the polychromic set objective). Then recompute
   ``mean_t log π_T`` of the samples WITH grad and form ``L_div = −λ (1/P) Σ A_i ℓ_i``.
3. Gradient audit: ``g_quality = ∂L_quality/∂θ`` and ``g_div = ∂L_div/∂θ`` are computed
   separately over the trainable LoRA parameters; ``diversity_grad_share = ‖g_div‖ /
   (‖g_quality‖ + ‖g_div‖)`` is logged; ``θ.grad = g_quality + g_div``; AdamW steps.

Reproducibility. Same base, same data order (``random.Random(seed)``), same LoRA init
(``torch.manual_seed(seed)``) for every λ, so partitions differ only by λ. The diversity
sampling and the log-prob recomputation run under ``torch.random.fork_rng`` seeded from
``(diversity_seed, step)``, so they never consume the main RNG stream (which drives LoRA
dropout in the quality forward pass). When λ == 0 no diversity gradient is formed or added at
all: its share is exactly 0 (the term is identically zero), and the adapter is bit-identical
whether or not the diversity sampling ran (``sample_diversity_when_zero``).

The adapter is saved with peft ``save_pretrained`` into a temporary sibling directory that is
renamed into place, so ``PeftModel.from_pretrained(base, out_dir)`` works outside polydag and a
failed run (e.g. a non-finite loss, raised as :class:`NonFiniteLossError`) leaves nothing behind.
"""

from __future__ import annotations

from polydag.core.ops.hashing import file_sha256

import json
import logging
import math
import random
import resource
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from polydag.core.ops.atomic_dir import atomic_output_dir
from polydag.core.polychromic.base_model import encode_prompt, encode_reply, load_model_and_tokenizer, resolve_device
from polydag.core.polychromic.objective import (
    DIVERSITY_METRICS,
    OBJECTIVES,
    diversity_grad_share,
    diversity_surrogate_loss,
    loo_advantages,
    pairwise_distances,
    polychromic_set_advantages,
    set_diversity,
)
from polydag.core.evaluation.quality import QualityConfig, check_replies

_log = logging.getLogger(__name__)

ADAPTER_WEIGHTS_FILE = "adapter_model.safetensors"
TRAINING_INFO_FILE = "polydag_training.json"
LOG_KEYS = ("step", "quality_loss", "diversity_score", "diversity_loss", "combined_loss",
            "diversity_grad_share", "learning_rate", "wall_time")


class NonFiniteLossError(RuntimeError):
    """A loss or gradient became NaN/inf; the partition stops and nothing is written."""

    def __init__(self, step: int, quality_loss: float, diversity_loss: float | None, what: str = "loss"):
        self.step, self.quality_loss, self.diversity_loss = step, quality_loss, diversity_loss
        super().__init__(
            f"non-finite {what} at step {step}: quality_loss={quality_loss}, diversity_loss={diversity_loss}; "
            "stopping this partition without writing an adapter (lower learning_rate or diversity_weight, "
            "or check the base model for NaN weights)"
        )


@dataclass
class PolychromicTrainConfig:
    """Training settings of one λ partition. Names follow the researchers' configs."""

    diversity_weight: float = 0.0
    """λ: weight of the diversity term. 0 trains on cross-entropy only (the baseline)."""
    n_generations: int = 4
    """Replies sampled per prompt on diversity steps (N; the leave-one-out estimator needs N >= 3)."""
    max_examples_for_diversity: int = 4
    """At most this many distinct prompts of the batch get sampled replies on a diversity step."""
    compute_diversity_every_n_steps: int = 2
    """A diversity step happens when step % n == 0 (steps count from 1)."""
    diversity_metric: str = "bleu"
    """Pairwise distance of replies: "bleu" (1 − symmetric sentence BLEU, fast on CPU),
    "semantic" (1 − embedding cosine; loads the sentence embedder) or "distinct" (1 − n-gram Jaccard)."""
    temperature: float = 0.9
    """Sampling temperature; log π is computed at the same temperature."""
    top_p: float = 0.95
    """Nucleus sampling threshold for the diversity samples."""
    max_new_tokens: int = 32
    """Longest sampled reply in tokens."""
    objective: str = "loo"
    """"loo": score function with leave-one-out advantages on D(S); "polychromic_set": Hamid et
    al.'s set objective (mean quality pass × diversity of size-k subsets)."""
    polychromic_set_size: int = 2
    """Subset size k for objective="polychromic_set"."""
    polychromic_n_sets: int | None = None
    """Subsets per prompt for objective="polychromic_set" (None: all C(N, k))."""
    lora_r: int = 8
    """LoRA rank."""
    lora_alpha: float = 16.0
    """LoRA scaling numerator (scale = lora_alpha / lora_r)."""
    lora_dropout: float = 0.05
    """Dropout on the LoRA input (uses the main RNG stream in the quality forward pass only)."""
    target_modules: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "o_proj")
    """Modules that get LoRA: the attention projections of LLaMA and Qwen3 (tiny or 8B alike)."""
    learning_rate: float = 2e-3
    """AdamW learning rate (constant) of the LoRA parameters."""
    weight_decay: float = 0.0
    """AdamW weight decay of the LoRA parameters."""
    max_grad_norm: float | None = 1.0
    """Clip the combined gradient to this norm (None: no clipping); the audit uses unclipped norms."""
    max_steps: int = 120
    """Optimizer steps (~35 s for the default tiny base on one CPU core)."""
    batch_size: int = 16
    """Gold (prompt, reply) pairs per step."""
    max_length: int = 96
    """Longest prompt + reply in tokens; longer pairs lose reply tail / prompt head."""
    seed: int = 0
    """Seeds the data order, the LoRA init and LoRA dropout; the same for every λ."""
    diversity_seed: int = 1234
    """Seeds the diversity sampling (its own RNG stream, forked per step)."""
    sample_diversity_when_zero: bool = True
    """When λ == 0, still sample and log diversity_score (the gradient is never formed)."""
    device: str = "auto"
    """"auto" (cuda if available), "cpu" or "cuda". bfloat16 on CUDA, float32 on CPU."""
    progress_every_s: float = 5.0
    """Seconds between progress log lines."""

    def __post_init__(self) -> None:
        self.target_modules = tuple(self.target_modules)
        problems: list[str] = []

        def need(ok: bool, message: str) -> None:
            if not ok:
                problems.append(message)

        def is_int(v: Any) -> bool:
            return isinstance(v, int) and not isinstance(v, bool)

        def is_num(v: Any) -> bool:
            return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)

        need(is_num(self.diversity_weight), f"diversity_weight must be a finite number, got {self.diversity_weight!r}")
        min_n = 3 if self.objective == "loo" else 2
        need(is_int(self.n_generations) and self.n_generations >= min_n,
             f"n_generations must be an integer >= {min_n} for objective={self.objective!r}, got {self.n_generations!r}")
        need(is_int(self.max_examples_for_diversity) and self.max_examples_for_diversity >= 1,
             f"max_examples_for_diversity must be an integer >= 1, got {self.max_examples_for_diversity!r}")
        need(is_int(self.compute_diversity_every_n_steps) and self.compute_diversity_every_n_steps >= 1,
             f"compute_diversity_every_n_steps must be an integer >= 1, got {self.compute_diversity_every_n_steps!r}")
        need(self.diversity_metric in DIVERSITY_METRICS,
             f"diversity_metric must be one of {DIVERSITY_METRICS}, got {self.diversity_metric!r}")
        need(is_num(self.temperature) and self.temperature > 0, f"temperature must be > 0, got {self.temperature!r}")
        need(is_num(self.top_p) and 0 < self.top_p <= 1, f"top_p must be in (0, 1], got {self.top_p!r}")
        need(is_int(self.max_new_tokens) and self.max_new_tokens >= 1, f"max_new_tokens must be >= 1, got {self.max_new_tokens!r}")
        need(self.objective in OBJECTIVES, f"objective must be one of {OBJECTIVES}, got {self.objective!r}")
        if self.objective == "polychromic_set" and is_int(self.n_generations):
            need(is_int(self.polychromic_set_size) and 2 <= self.polychromic_set_size <= self.n_generations,
                 f"polychromic_set_size must be in [2, n_generations={self.n_generations}], got {self.polychromic_set_size!r}")
            need(self.polychromic_n_sets is None or (is_int(self.polychromic_n_sets) and self.polychromic_n_sets >= 1),
                 f"polychromic_n_sets must be None or >= 1, got {self.polychromic_n_sets!r}")
        need(is_int(self.lora_r) and self.lora_r >= 1, f"lora_r must be an integer >= 1, got {self.lora_r!r}")
        need(is_num(self.lora_alpha) and self.lora_alpha > 0, f"lora_alpha must be > 0, got {self.lora_alpha!r}")
        need(is_num(self.lora_dropout) and 0 <= self.lora_dropout < 1, f"lora_dropout must be in [0, 1), got {self.lora_dropout!r}")
        need(len(self.target_modules) > 0 and all(isinstance(m, str) and m for m in self.target_modules),
             f"target_modules must be a non-empty list of module names, got {self.target_modules!r}")
        need(is_num(self.learning_rate) and self.learning_rate > 0, f"learning_rate must be > 0, got {self.learning_rate!r}")
        need(is_num(self.weight_decay) and self.weight_decay >= 0, f"weight_decay must be >= 0, got {self.weight_decay!r}")
        need(self.max_grad_norm is None or (is_num(self.max_grad_norm) and self.max_grad_norm > 0),
             f"max_grad_norm must be None or > 0, got {self.max_grad_norm!r}")
        need(is_int(self.max_steps) and self.max_steps >= 1, f"max_steps must be an integer >= 1, got {self.max_steps!r}")
        need(is_int(self.batch_size) and self.batch_size >= 1, f"batch_size must be an integer >= 1, got {self.batch_size!r}")
        need(is_int(self.max_length) and self.max_length >= 4, f"max_length must be an integer >= 4, got {self.max_length!r}")
        need(is_int(self.seed) and is_int(self.diversity_seed), f"seed and diversity_seed must be integers, got {self.seed!r}, {self.diversity_seed!r}")
        need(isinstance(self.device, str), f"device must be a string, got {self.device!r}")
        if problems:
            raise ValueError("invalid PolychromicTrainConfig: " + "; ".join(problems))

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> "PolychromicTrainConfig":
        """Build from a mapping (e.g. a researchers' experiment YAML); unknown keys are an error."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown training config key(s) {unknown}; known keys: {sorted(known)}")
        return cls(**dict(values))


@dataclass
class DiversityStep:
    """What a diversity term sees on one diversity step (the ``diversity_term`` hook's input)."""

    step: int
    diversity_weight: float
    diversity_score: float  # mean over the prompts of D(S)
    advantages: Any  # torch.Tensor (P·N,), detached, prompt-major
    n_prompts: int
    n_generations: int
    prompts: list[str]
    samples: list[str]  # P·N decoded replies, prompt-major
    sequence_logprobs: Callable[[], Any]  # () -> torch.Tensor (P·N,) of mean_t log π_T, WITH grad


def score_function_term(ds: DiversityStep):
    """The default diversity term: L_div = −λ (1/P) Σ_i A_i · mean_t log π_T(y_i,t)."""
    return diversity_surrogate_loss(ds.advantages, ds.sequence_logprobs(), ds.diversity_weight, ds.n_prompts)


@dataclass
class TrainResult:
    adapter_dir: str
    adapter_sha256: str
    steps: int
    wall_s: float
    device: str
    peak_memory_bytes: int  # CUDA max allocated on GPU; process peak RSS on CPU
    final_quality_loss: float
    final_diversity_score: float | None  # last diversity step; None if there was none
    final_diversity_loss: float | None
    final_combined_loss: float
    mean_diversity_grad_share: float | None  # mean over diversity steps; None if there was none
    n_diversity_steps: int
    diversity_weight: float = 0.0
    grad_shares: list[float] = field(default_factory=list)  # one per diversity step


# ---------------------------------------------------------------------------------------------
# helpers


def _encode_pairs(tokenizer, pairs: Sequence[tuple[str, str]], max_length: int) -> list[tuple[list[int], list[int]]]:
    """(prompt ids, reply ids + EOS) per pair, cut to ``max_length`` keeping >= 1 reply token."""
    out = []
    for i, pair in enumerate(pairs):
        if not (isinstance(pair, (tuple, list)) and len(pair) == 2 and all(isinstance(x, str) and x.strip() for x in pair)):
            raise ValueError(f"train_pairs[{i}] must be a (prompt, reply) pair of non-empty strings, got {pair!r:.80}")
        p, r = encode_prompt(tokenizer, pair[0]), encode_reply(tokenizer, pair[1])
        if len(p) + len(r) > max_length:
            r = r[: max(1, max_length - len(p))]
            p = p[-(max_length - len(r)):]
        out.append((p, r))
    return out


def _quality_loss(model, batch: list[tuple[list[int], list[int]]], pad_id: int, device):
    """Mean cross-entropy over the reply tokens of the batch (prompt tokens are not scored)."""
    import torch

    width = max(len(p) + len(r) for p, r in batch)
    ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
    att = torch.zeros((len(batch), width), dtype=torch.long)
    labels = torch.full((len(batch), width), -100, dtype=torch.long)
    for row, (p, r) in enumerate(batch):
        seq = p + r
        ids[row, : len(seq)] = torch.tensor(seq)
        att[row, : len(seq)] = 1
        labels[row, len(p) : len(seq)] = torch.tensor(r)
    logits = model(input_ids=ids.to(device), attention_mask=att.to(device)).logits.float()
    targets = labels[:, 1:].to(device)
    return torch.nn.functional.cross_entropy(
        logits[:, :-1].reshape(-1, logits.shape[-1]), targets.reshape(-1), ignore_index=-100
    )


def _rng_devices(device: str) -> list[int]:
    import torch

    if device.startswith("cuda"):
        return [torch.device(device).index or 0]
    return []


def _generate_samples(model, tokenizer, prompt_ids: list[list[int]], cfg: PolychromicTrainConfig, device: str):
    """Sample N replies per prompt in one batched generate call; returns per-sample token lists."""
    import torch

    pad = tokenizer.pad_token_id
    width = max(len(p) for p in prompt_ids)
    ids = torch.full((len(prompt_ids), width), pad, dtype=torch.long)
    att = torch.zeros((len(prompt_ids), width), dtype=torch.long)
    for row, p in enumerate(prompt_ids):  # left padding: all prompts end at the same column
        ids[row, width - len(p):] = torch.tensor(p)
        att[row, width - len(p):] = 1
    out = model.generate(
        input_ids=ids.to(device), attention_mask=att.to(device), do_sample=True,
        temperature=cfg.temperature, top_p=cfg.top_p, top_k=0, repetition_penalty=1.0,
        max_new_tokens=cfg.max_new_tokens,
        num_return_sequences=cfg.n_generations, pad_token_id=pad, eos_token_id=tokenizer.eos_token_id,
    )
    samples: list[list[int]] = []
    for row in out[:, width:].tolist():
        if tokenizer.eos_token_id in row:  # keep EOS: stopping is part of the sampled reply
            row = row[: row.index(tokenizer.eos_token_id) + 1]
        samples.append(row)
    return samples


def sequence_logprobs(model, prompt_ids: list[list[int]], samples: list[list[int]], n_generations: int,
                      temperature: float, pad_id: int, device: str):
    """mean_t log softmax(logits/T)[y_t] over each sample's tokens, with grad; (P·N,) float32.

    Sample k belongs to prompt k // n_generations (prompt-major order, as generate returns).
    """
    import torch

    seqs = [prompt_ids[k // n_generations] + s for k, s in enumerate(samples)]
    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    att = torch.zeros((len(seqs), width), dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.bool)
    for row, (seq, s) in enumerate(zip(seqs, samples)):
        ids[row, : len(seq)] = torch.tensor(seq)
        att[row, : len(seq)] = 1
        mask[row, len(seq) - len(s) : len(seq)] = True
    ids, att, mask = ids.to(device), att.to(device), mask.to(device)
    logits = model(input_ids=ids, attention_mask=att).logits.float()
    logp = torch.log_softmax(logits[:, :-1] / temperature, dim=-1)
    token_logp = logp.gather(-1, ids[:, 1:].unsqueeze(-1)).squeeze(-1)
    target_mask = mask[:, 1:].to(token_logp.dtype)
    return (token_logp * target_mask).sum(dim=1) / target_mask.sum(dim=1)


def _global_norm(grads) -> float:
    import torch

    return float(torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g.double()) for g in grads])))


def _peak_memory_bytes(device: str) -> int:
    import torch

    if device.startswith("cuda"):
        return int(torch.cuda.max_memory_allocated(torch.device(device)))
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024  # Linux reports KiB


def adapter_sha256(adapter_dir: str | Path) -> str:
    path = Path(adapter_dir) / ADAPTER_WEIGHTS_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{adapter_dir} has no {ADAPTER_WEIGHTS_FILE}")
    return file_sha256(path)


# ---------------------------------------------------------------------------------------------


def train_lora_adapter(
    base_model_dir: str | Path,
    train_pairs: Sequence[tuple[str, str]],
    cfg: PolychromicTrainConfig,
    out_dir: str | Path,
    *,
    log_fn: Callable[[dict], None] | None = None,
    logger: logging.Logger | None = None,
    diversity_term: Callable[[DiversityStep], Any] | None = None,
    embedder=None,
    quality_cfg: QualityConfig | None = None,
) -> TrainResult:
    """Train a LoRA adapter on ``train_pairs`` and save it atomically to ``out_dir``.

    ``log_fn(row)`` receives one dict per step with exactly the keys of ``LOG_KEYS`` (plain
    Python numbers; the diversity fields are None on steps without a diversity computation).
    ``diversity_term`` replaces the score-function estimator (tests use it to reproduce the
    float-valued bug); like the default it is only called on diversity steps with λ != 0. ``embedder`` serves diversity_metric="semantic" (loaded with
    ``polydag.core.evaluation.embeddings.load_embedder()`` when None); ``quality_cfg`` is the reward of
    objective="polychromic_set".
    """
    import torch
    from peft import LoraConfig, get_peft_model

    logger = logger or _log
    if not isinstance(cfg, PolychromicTrainConfig):
        raise TypeError(f"cfg must be a PolychromicTrainConfig, got {type(cfg).__name__}")
    if not train_pairs:
        raise ValueError("train_pairs is empty")
    start = time.perf_counter()
    device = resolve_device(cfg.device)
    lam = float(cfg.diversity_weight)
    term_fn = diversity_term or score_function_term
    quality_cfg = quality_cfg or QualityConfig()
    if cfg.diversity_metric == "semantic" and embedder is None:
        try:
            from polydag.core.evaluation.embeddings import load_embedder
        except ImportError as exc:
            raise ImportError("diversity_metric='semantic' needs polydag.core.evaluation.embeddings.load_embedder") from exc
        embedder = load_embedder()
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats(torch.device(device))

    base, tokenizer = load_model_and_tokenizer(base_model_dir, device=device)
    missing = [m for m in cfg.target_modules if not any(name.endswith("." + m) or name == m for name, _ in base.named_modules())]
    if missing:
        raise ValueError(f"target_modules {missing} do not exist in the base model {base_model_dir} ({type(base).__name__})")
    examples = _encode_pairs(tokenizer, train_pairs, cfg.max_length)

    torch.manual_seed(cfg.seed)  # LoRA init and dropout: the same stream for every λ
    model = get_peft_model(base, LoraConfig(
        r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout,
        target_modules=list(cfg.target_modules), task_type="CAUSAL_LM",
    ))
    names_params = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    params = [p for _, p in names_params]
    optimizer = torch.optim.AdamW(params, lr=cfg.learning_rate, weight_decay=cfg.weight_decay)
    n_trainable = sum(p.numel() for p in params)
    logger.info("training LoRA λ=%s on %s: %d trainable params, %d pairs, %d steps, objective=%s, metric=%s",
                lam, device, n_trainable, len(examples), cfg.max_steps, cfg.objective, cfg.diversity_metric)

    order_rng = random.Random(cfg.seed)
    order: list[int] = []
    grad_shares: list[float] = []
    last: dict[str, Any] = {}
    last_div: dict[str, float] = {}
    train_start = last_log = time.perf_counter()

    for step in range(1, cfg.max_steps + 1):
        if len(order) < cfg.batch_size:
            epoch = list(range(len(examples)))
            order_rng.shuffle(epoch)
            order.extend(epoch)
        batch_idx = order[: cfg.batch_size]
        del order[: cfg.batch_size]
        batch = [examples[i] for i in batch_idx]

        model.train()
        quality = _quality_loss(model, batch, tokenizer.pad_token_id, device)
        quality_value = float(quality.detach())
        if not math.isfinite(quality_value):
            raise NonFiniteLossError(step, quality_value, None)

        diversity_score = diversity_loss_value = share = None
        div_term = None
        is_div_step = step % cfg.compute_diversity_every_n_steps == 0 and (lam != 0.0 or cfg.sample_diversity_when_zero)
        if is_div_step:
            # Distinct prompts of the batch, in batch order, with their prompt token ids.
            chosen: list[int] = []
            seen: set[str] = set()
            for i in batch_idx:
                prompt = train_pairs[i][0]
                if prompt not in seen:
                    seen.add(prompt)
                    chosen.append(i)
                if len(chosen) == cfg.max_examples_for_diversity:
                    break
            prompts = [train_pairs[i][0] for i in chosen]
            prompt_ids = [examples[i][0] for i in chosen]
            step_seed = cfg.diversity_seed * 1_000_003 + step
            with torch.random.fork_rng(devices=_rng_devices(device)):
                torch.manual_seed(step_seed)
                model.eval()
                with torch.no_grad():
                    sample_ids = _generate_samples(model, tokenizer, prompt_ids, cfg, device)
            texts = [tokenizer.decode(s, skip_special_tokens=True).strip() for s in sample_ids]
            n = cfg.n_generations
            scores, advantages = [], []
            rewards_all = None
            if cfg.objective == "polychromic_set":
                rewards_all = [float(r.passed) for r in check_replies(
                    [p for p in prompts for _ in range(n)], texts, quality_cfg, embedder)]
            for k in range(len(prompts)):
                dist = pairwise_distances(texts[k * n : (k + 1) * n], cfg.diversity_metric, embedder=embedder)
                scores.append(set_diversity(dist))
                if cfg.objective == "loo":
                    advantages.extend(loo_advantages(dist).tolist())
                else:
                    advantages.extend(polychromic_set_advantages(
                        dist, rewards_all[k * n : (k + 1) * n], set_size=cfg.polychromic_set_size,
                        n_sets=cfg.polychromic_n_sets, seed=step_seed + k).tolist())
            diversity_score = float(sum(scores) / len(scores))

            if lam == 0.0:
                diversity_loss_value = 0.0  # −0 · (...) is identically zero; no gradient is formed
                share = 0.0
            else:
                pad_id = tokenizer.pad_token_id

                def logprobs():
                    return sequence_logprobs(model, prompt_ids, sample_ids, n, cfg.temperature, pad_id, device)

                ds = DiversityStep(
                    step=step, diversity_weight=lam, diversity_score=diversity_score,
                    advantages=torch.tensor(advantages, dtype=torch.float32, device=device),
                    n_prompts=len(prompts), n_generations=n, prompts=prompts, samples=texts,
                    sequence_logprobs=logprobs,
                )
                with torch.random.fork_rng(devices=_rng_devices(device)):
                    torch.manual_seed(step_seed + 1)
                    model.eval()  # log π of the policy we sampled from (no dropout)
                    div_term = term_fn(ds)
                if not isinstance(div_term, torch.Tensor):
                    div_term = torch.tensor(float(div_term), device=device)
                diversity_loss_value = float(div_term.detach())
                if not math.isfinite(diversity_loss_value):
                    raise NonFiniteLossError(step, quality_value, diversity_loss_value)

        g_quality = torch.autograd.grad(quality, params)
        if div_term is not None:
            if div_term.requires_grad:
                g_div = torch.autograd.grad(div_term, params, allow_unused=True)
                g_div = [torch.zeros_like(p) if g is None else g for g, p in zip(g_div, params)]
            else:  # a float-valued term: no path to the parameters, its gradient is exactly zero
                g_div = [torch.zeros_like(p) for p in params]
            share = diversity_grad_share(_global_norm(g_quality), _global_norm(g_div))
            grads = [gq + gd for gq, gd in zip(g_quality, g_div)]
        else:
            grads = list(g_quality)
        for p, g in zip(params, grads):
            p.grad = g
        if cfg.max_grad_norm is not None:
            total_norm = torch.nn.utils.clip_grad_norm_(params, cfg.max_grad_norm)
            if not torch.isfinite(total_norm):
                raise NonFiniteLossError(step, quality_value, diversity_loss_value, what="gradient norm")
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

        combined = quality_value + (diversity_loss_value or 0.0)
        if share is not None:
            grad_shares.append(float(share))
            last_div = {"score": diversity_score, "loss": diversity_loss_value}
        row = {
            "step": step,
            "quality_loss": quality_value,
            "diversity_score": diversity_score,
            "diversity_loss": diversity_loss_value,
            "combined_loss": float(combined),
            "diversity_grad_share": None if share is None else float(share),
            "learning_rate": float(optimizer.param_groups[0]["lr"]),
            "wall_time": float(time.perf_counter() - start),
        }
        last = row
        if log_fn is not None:
            log_fn(row)
        now = time.perf_counter()
        if now - last_log >= cfg.progress_every_s or step == cfg.max_steps:
            rate = step / (now - train_start)
            logger.info(
                "λ=%s step %d/%d  quality %.3f  diversity %s  share %s  %.2f steps/s  ETA %.0fs",
                lam, step, cfg.max_steps, quality_value,
                "-" if last_div.get("score") is None else f"{last_div['score']:.3f}",
                "-" if not grad_shares else f"{grad_shares[-1]:.3f}", rate, (cfg.max_steps - step) / rate,
            )
            last_log = now

    result = TrainResult(
        adapter_dir=str(Path(out_dir).resolve()),
        adapter_sha256="",
        steps=cfg.max_steps,
        wall_s=0.0,
        device=device,
        peak_memory_bytes=_peak_memory_bytes(device),
        final_quality_loss=float(last["quality_loss"]),
        final_diversity_score=last_div.get("score"),
        final_diversity_loss=last_div.get("loss"),
        final_combined_loss=float(last["combined_loss"]),
        mean_diversity_grad_share=(sum(grad_shares) / len(grad_shares)) if grad_shares else None,
        n_diversity_steps=len(grad_shares),
        diversity_weight=lam,
        grad_shares=grad_shares,
    )
    with atomic_output_dir(out_dir) as tmp:
        model.save_pretrained(str(tmp))
        result.adapter_sha256 = adapter_sha256(tmp)
        result.wall_s = time.perf_counter() - start
        info = {"config": asdict(cfg), "result": asdict(result), "base_model_dir": str(Path(base_model_dir).resolve())}
        (tmp / TRAINING_INFO_FILE).write_text(json.dumps(info, indent=2))
    logger.info("saved adapter λ=%s to %s in %.1fs (sha256 %s…, mean grad share %s)", lam, out_dir,
                result.wall_s, result.adapter_sha256[:12],
                "-" if result.mean_diversity_grad_share is None else f"{result.mean_diversity_grad_share:.3f}")
    return result
