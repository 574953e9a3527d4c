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
   (‖g_quality‖ + ‖g_div‖)`` is logged; ``θ.grad += g_quality + g_div``; the optimizer steps.

The loop is ``transformers.Trainer`` (:mod:`polydag.core.polychromic.hf_trainer`): schedules,
accumulation, mixed precision, gradient checkpointing, evaluation and early stopping,
checkpoints and resume, trackers and multi-process training come from it.

Reproducibility. Same base, same data order (the Trainer's sampler seeded with ``seed``), same LoRA init
(``torch.manual_seed(seed)``) for every λ, so partitions differ only by λ. The diversity
sampling and the log-prob recomputation run under ``torch.random.fork_rng`` seeded from
``(diversity_seed + seed, step)``, so they never consume the main RNG stream (which drives LoRA
dropout in the quality forward pass). When λ == 0 no diversity gradient is formed or added at
all: its share is exactly 0 (the term is identically zero), and the adapter is bit-identical
whether or not the diversity sampling ran (``sample_diversity_when_zero``).

The adapter is saved with peft ``save_pretrained`` into a temporary sibling directory that is
renamed into place, so ``PeftModel.from_pretrained(base, out_dir)`` works outside polydag and a
failed run (e.g. a non-finite loss, raised as :class:`NonFiniteLossError`) leaves nothing behind.
"""

from __future__ import annotations

from polydag.core.ops.hashing import file_sha256

import contextlib
import json
import logging
import math
import os
import resource
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from polydag.core.ops.atomic_dir import atomic_output_dir
from polydag.core.polychromic.base_model import load_model_and_tokenizer, resolve_device
from polydag.core.polychromic.prompting import PLAIN, PromptFormat, encode_prompt, encode_reply
from polydag.core.polychromic.config import PolychromicTrainConfig
from polydag.core.polychromic.objective import (
    diversity_surrogate_loss,
    loo_advantages,
    pairwise_distances,
    polychromic_set_advantages,
    set_diversity,
)
from polydag.core.evaluation.quality import QualityConfig, check_replies
from polydag.core.polychromic.lambdas import SweepKey
from polydag.core.polychromic.sampling import sampling_seed
from polydag.core.storage.training_log import LOG_FIELDS

_log = logging.getLogger(__name__)

ADAPTER_WEIGHTS_FILE = "adapter_model.safetensors"
TRAINING_INFO_FILE = "polydag_training.json"
LOG_KEYS = LOG_FIELDS  # one row layout: what the trainer logs is what training_log stores
# an advantage below this in magnitude is zero up to float error (identical samples, or samples
# all at the same distance from the others): that sample carries no diversity signal
ZERO_ADVANTAGE = 1e-9


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
    n_effective_diversity_steps: int = 0  # diversity steps with some non-zero advantage
    mean_advantage_std: float | None = None  # mean over diversity steps of std(A_i)
    kl_to_base: float | None = None  # mean per-token KL(adapter ‖ base) on the gate pairs' gold replies
    diversity_weight: float = 0.0
    grad_shares: list[float] = field(default_factory=list)  # one per diversity step
    base_eval_loss: float | None = None  # quality loss of the base on the gate pairs
    eval_loss: float | None = None  # quality loss of the trained adapter on the same pairs
    vocab_size: int | None = None
    resumed_from_step: int = 0  # the checkpoint step a crashed run resumed from (0: a fresh start)


# ---------------------------------------------------------------------------------------------
# helpers


def _encode_pairs(tokenizer, pairs: Sequence[tuple[str, str]], max_length: int,
                  fmt: PromptFormat = PLAIN) -> list[tuple[list[int], list[int]]]:
    """(prompt ids, reply ids + its end token) per pair in format ``fmt``, cut to ``max_length``
    keeping >= 1 reply token."""
    out = []
    for i, pair in enumerate(pairs):
        if not (isinstance(pair, (tuple, list)) and len(pair) == 2 and all(isinstance(x, str) and x.strip() for x in pair)):
            raise ValueError(f"train_pairs[{i}] must be a (prompt, reply) pair of non-empty strings, got {pair!r:.80}")
        p, r = encode_prompt(tokenizer, pair[0], fmt), encode_reply(tokenizer, pair[1], fmt)
        if len(p) + len(r) > max_length:
            r = r[: max(1, max_length - len(p))]
            p = p[-(max_length - len(r)):]
        out.append((p, r))
    return out


def _padded_pairs(batch: list[tuple[list[int], list[int]]], pad_id: int):
    """Right-padded ``(input_ids, attention_mask, labels)`` of (prompt, reply) id pairs; labels
    are the reply tokens and -100 elsewhere."""
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
    return ids, att, labels


def _quality_loss(model, batch: list[tuple[list[int], list[int]]], pad_id: int, device):
    """Mean cross-entropy over the reply tokens of the batch (prompt tokens are not scored)."""
    import torch

    ids, att, labels = _padded_pairs(batch, pad_id)
    logits = model(input_ids=ids.to(device), attention_mask=att.to(device)).logits.float()
    targets = labels[:, 1:].to(device)
    return torch.nn.functional.cross_entropy(
        logits[:, :-1].reshape(-1, logits.shape[-1]), targets.reshape(-1), ignore_index=-100
    )


def _eval_batches(model, examples, batch_size: int):
    """``examples`` in batches, with the model in eval mode (no dropout, no RNG use) and no
    gradients; the model's mode is restored afterwards."""
    import torch

    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            for start in range(0, len(examples), batch_size):
                yield examples[start:start + batch_size]
    finally:
        model.train(was_training)


def _eval_loss(model, examples, batch_size: int, pad_id: int, device) -> float:
    """Mean reply cross-entropy over ``examples`` in eval mode."""
    total = weight = 0.0
    for batch in _eval_batches(model, examples, batch_size):
        n_tokens = sum(len(r) for _, r in batch)
        total += float(_quality_loss(model, batch, pad_id, device)) * n_tokens
        weight += n_tokens
    return total / weight


def kl_to_base(model, examples, batch_size: int, pad_id: int, device) -> float:
    """Mean per-token KL(π_adapter ‖ π_base) in nats over the reply tokens of ``examples``
    (teacher-forced on the gold replies, temperature 1, eval mode). The base is the same peft
    model with its adapter disabled, so no second copy of the weights is loaded."""
    import torch

    total = n_tokens = 0.0
    for batch in _eval_batches(model, examples, batch_size):
        ids, att, labels = (t.to(device) for t in _padded_pairs(batch, pad_id))
        scored = labels[:, 1:] != -100  # the positions that predict a reply token
        logp = torch.log_softmax(model(input_ids=ids, attention_mask=att).logits[:, :-1].float(), dim=-1)
        with model.disable_adapter():
            base_logp = torch.log_softmax(model(input_ids=ids, attention_mask=att).logits[:, :-1].float(), dim=-1)
        kl = (logp.exp() * (logp - base_logp)).sum(-1)
        total += float(kl[scored].sum())
        n_tokens += float(scored.sum())
    return total / max(n_tokens, 1.0)


def _rng_devices(device: str) -> list[int]:
    import torch

    if device.startswith("cuda"):
        return [torch.device(device).index or 0]
    return []


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


def diversity_samples(model, tokenizer, prompt_ids: list[list[int]], cfg: PolychromicTrainConfig, step: int):
    """The diversity samples of training step ``step``: ``(token ids, texts)``, ``n_generations``
    per prompt, prompt-major, drawn by the evaluation sampler with seed
    ``sampling_seed(diversity_seed + seed, step)``. Token ids keep the stop token (its log-probability
    is part of the sample's score)."""
    from polydag.core.polychromic.sampling import decode_reply, sample_token_ids, stop_tokens

    ids = sample_token_ids(model, tokenizer, prompt_ids, cfg.n_generations, cfg.sampling(),
                           seed=sampling_seed(cfg.diversity_stream_seed, step))
    end = stop_tokens(model, tokenizer).end
    return ids, [decode_reply(tokenizer, row, end) for row in ids]


def _diversity_prompts(batch_idx: list[int], train_pairs, limit: int) -> list[int]:
    """Indices of the first ``limit`` distinct prompts of the batch, in batch order."""
    chosen: list[int] = []
    seen: set[str] = set()
    for i in batch_idx:
        prompt = train_pairs[i][0]
        if prompt not in seen:
            seen.add(prompt)
            chosen.append(i)
        if len(chosen) == limit:
            break
    return chosen


@dataclass
class _DiversityOutcome:
    score: float
    term: Any  # the diversity loss tensor (None at λ = 0: no term is formed)
    loss_value: float
    advantage_std: float | None = None  # std of the step's advantages (None: not recorded)
    tied_prompt_share: float | None = None  # prompts whose advantages are all zero


def advantage_stats(advantages: Sequence[float], n_generations: int) -> tuple[float, float]:
    """(std of all advantages, share of prompts whose ``n_generations`` advantages are all zero).

    The score-function term moves the policy only through non-zero advantages: a prompt whose
    samples are identical, or all equally far apart, teaches nothing about diversity however
    large λ is. These two numbers say how much signal a diversity step really had."""
    values = np.asarray(advantages, dtype=np.float64)
    if values.size == 0 or values.size % n_generations:
        raise ValueError(f"need a whole number of prompts × {n_generations} advantages, got {values.size}")
    per_prompt = np.abs(values.reshape(-1, n_generations)).max(axis=1)
    return float(values.std()), float((per_prompt < ZERO_ADVANTAGE).mean())


class _DiversityContext:
    """The diversity half of a λ's training: which steps sample, and the term they form."""

    def __init__(self, cfg: PolychromicTrainConfig, train_pairs, examples, tokenizer, device, *, term_fn,
                 embedder, quality_cfg):
        self.cfg, self.train_pairs, self.examples, self.tokenizer, self.device = cfg, train_pairs, examples, tokenizer, device
        self.lam, self.term_fn, self.embedder, self.quality_cfg = cfg.diversity_weight, term_fn, embedder, quality_cfg

    def is_diversity_step(self, step: int) -> bool:
        return step % self.cfg.compute_diversity_every_n_steps == 0 and (
            self.lam != 0.0 or self.cfg.sample_diversity_when_zero)

    def __call__(self, model, step: int, batch_idx: list[int], quality_value: float) -> _DiversityOutcome:
        """Sample, score the sets, and (for λ != 0) form the diversity term with its gradient."""
        import torch

        cfg, n = self.cfg, self.cfg.n_generations
        chosen = _diversity_prompts(batch_idx, self.train_pairs, cfg.max_examples_for_diversity)
        prompts = [self.train_pairs[i][0] for i in chosen]
        prompt_ids = [self.examples[i][0] for i in chosen]
        sample_ids, texts = diversity_samples(model, self.tokenizer, prompt_ids, cfg, step)
        step_seed = sampling_seed(cfg.diversity_stream_seed, step)
        rewards = None
        if cfg.objective == "polychromic_set":
            rewards = [float(r.passed) for r in check_replies(
                [p for p in prompts for _ in range(n)], texts, self.quality_cfg, self.embedder)]
        scores, advantages = [], []
        for k in range(len(prompts)):
            dist = pairwise_distances(texts[k * n:(k + 1) * n], cfg.diversity_metric, embedder=self.embedder)
            scores.append(set_diversity(dist))
            if cfg.objective == "loo":
                advantages.extend(loo_advantages(dist).tolist())
            else:
                advantages.extend(polychromic_set_advantages(
                    dist, rewards[k * n:(k + 1) * n], set_size=cfg.polychromic_set_size,
                    n_sets=cfg.polychromic_n_sets, seed=step_seed + k).tolist())
        score = float(sum(scores) / len(scores))
        adv_std, tied = advantage_stats(advantages, n)
        if self.lam == 0.0:  # −0 · (...) is identically zero: no gradient (the statistics say what it would have had)
            return _DiversityOutcome(score, None, 0.0, adv_std, tied)

        def logprobs():
            return sequence_logprobs(model, prompt_ids, sample_ids, n, cfg.temperature,
                                     self.tokenizer.pad_token_id, self.device)

        ds = DiversityStep(
            step=step, diversity_weight=self.lam, diversity_score=score,
            advantages=torch.tensor(advantages, dtype=torch.float32, device=self.device),
            n_prompts=len(prompts), n_generations=n, prompts=prompts, samples=texts, sequence_logprobs=logprobs,
        )
        with torch.random.fork_rng(devices=_rng_devices(self.device)):
            torch.manual_seed(step_seed + 1)
            model.eval()  # log π of the policy we sampled from (no dropout)
            term = self.term_fn(ds)
        model.train()
        if not isinstance(term, torch.Tensor):
            term = torch.tensor(float(term), device=self.device)
        loss_value = float(term.detach())
        if not math.isfinite(loss_value):
            raise NonFiniteLossError(step, quality_value, loss_value)
        return _DiversityOutcome(score, term, loss_value, adv_std, tied)


def _quantization(cfg: PolychromicTrainConfig, device: str):
    """The ``BitsAndBytesConfig`` of ``load_in_4bit``, or None; a clear error where it cannot run."""
    if not cfg.load_in_4bit:
        return None
    import importlib.util

    if not device.startswith("cuda") or importlib.util.find_spec("bitsandbytes") is None:
        raise ValueError("load_in_4bit needs a CUDA device and the bitsandbytes package (pip install "
                         f"bitsandbytes); this run is on {device}. Set load_in_4bit: false to train unquantized.")
    import torch
    from transformers import BitsAndBytesConfig

    return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_compute_dtype=getattr(torch, cfg.bnb_4bit_compute_dtype),
                              bnb_4bit_quant_type=cfg.bnb_4bit_quant_type,
                              bnb_4bit_use_double_quant=cfg.bnb_4bit_use_double_quant)


@contextlib.contextmanager
def _tracker_environment(cfg: PolychromicTrainConfig, output_dir: Path):
    """Local, offline defaults for the trackers transformers' callbacks talk to, for the length
    of one training; variables the user set win. The process environment is restored after, so
    one training's W&B directory or project never leaks into the next (or into a subprocess)."""
    saved = dict(os.environ)
    try:
        _set_tracker_environment(cfg, output_dir)
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


def _set_tracker_environment(cfg: PolychromicTrainConfig, output_dir: Path) -> None:
    from polydag.core.ops import paths

    if "wandb" in cfg.report_to:
        os.environ.setdefault("WANDB_MODE", "offline")
        os.environ.setdefault("WANDB_DIR", str(paths.data_dir()))
        os.environ["WANDB_PROJECT"] = cfg.wandb_project or os.environ.get("WANDB_PROJECT", "polydag")
        if cfg.wandb_tags:
            os.environ["WANDB_TAGS"] = ",".join(cfg.wandb_tags)
    if "mlflow" in cfg.report_to:
        # a local SQLite store: MLflow 3 keeps the ./mlruns file store in maintenance mode only
        os.environ.setdefault("MLFLOW_TRACKING_URI", f"sqlite:///{(paths.data_dir() / 'mlflow.db').resolve()}")
        os.environ.setdefault("MLFLOW_EXPERIMENT_NAME", "polydag")
    if "tensorboard" in cfg.report_to:
        os.environ["TENSORBOARD_LOGGING_DIR"] = cfg.logging_dir or str(output_dir / "runs")


def _check_trackers_installed(cfg: PolychromicTrainConfig) -> None:
    for tracker, module in (("wandb", "wandb"), ("mlflow", "mlflow"), ("tensorboard", "tensorboard")):
        if tracker in cfg.report_to:
            import importlib.util

            if importlib.util.find_spec(module) is None:
                raise ValueError(f"report_to {tracker} needs the {module} package: pip install 'polydag[tracking]'")


def _finish_trackers(cfg: PolychromicTrainConfig) -> None:
    """End the tracker runs transformers' callbacks opened, so everything is written (a W&B
    offline run is flushed to its file only when it finishes)."""
    if "wandb" in cfg.report_to:
        import wandb

        if wandb.run is not None:
            wandb.finish()
    if "mlflow" in cfg.report_to:
        import mlflow

        if mlflow.active_run() is not None:
            mlflow.end_run()


def _training_arguments(cfg: PolychromicTrainConfig, output_dir: Path, device: str, *, resumable: bool,
                        has_eval: bool):
    from transformers import TrainingArguments

    _check_trackers_installed(cfg)
    on_cuda = device.startswith("cuda")
    bf16 = on_cuda if cfg.bf16 is None else cfg.bf16
    save = resumable and cfg.save_steps > 0
    evaluate = has_eval and cfg.eval_strategy != "no"
    return TrainingArguments(
        output_dir=str(output_dir),
        run_name=cfg.run_name or f"lora-lambda{cfg.diversity_weight}",
        seed=cfg.seed, data_seed=cfg.seed,
        max_steps=cfg.max_steps, num_train_epochs=cfg.num_train_epochs,
        per_device_train_batch_size=cfg.per_device_train_batch_size,
        per_device_eval_batch_size=cfg.per_device_eval_batch_size,
        gradient_accumulation_steps=cfg.gradient_accumulation_steps,
        # transformers 5 folds warmup_ratio into warmup_steps: a float in [0, 1) is a ratio
        learning_rate=cfg.learning_rate, lr_scheduler_type=cfg.lr_scheduler_type, warmup_steps=cfg.warmup_ratio,
        optim=cfg.optim, weight_decay=cfg.weight_decay, max_grad_norm=cfg.max_grad_norm or 0.0,
        bf16=bf16, fp16=cfg.fp16, use_cpu=not on_cuda,
        gradient_checkpointing=cfg.gradient_checkpointing,
        gradient_checkpointing_kwargs={"use_reentrant": False} if cfg.gradient_checkpointing else None,
        save_strategy="steps" if save else "no", save_steps=max(cfg.save_steps, 1),
        save_total_limit=cfg.save_total_limit,
        eval_strategy=cfg.eval_strategy if evaluate else "no", eval_steps=cfg.eval_steps,
        load_best_model_at_end=cfg.load_best_model_at_end and evaluate and save,
        metric_for_best_model=cfg.metric_for_best_model, greater_is_better=cfg.greater_is_better,
        logging_steps=cfg.logging_steps, logging_strategy="steps", report_to=list(cfg.report_to) or "none",
        disable_tqdm=True,  # polydag's own progress bar (core.ops.progress) shows the run
        remove_unused_columns=False, dataloader_num_workers=0, save_only_model=False,
        # several CPU processes (torchrun/accelerate launch set WORLD_SIZE) talk over gloo
        ddp_backend="gloo" if not on_cuda and int(os.environ.get("WORLD_SIZE", "1")) > 1 else None,
    )


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
    work_dir: str | Path | None = None,
    eval_pairs: Sequence[tuple[str, str]] | None = None,
    on_resume: Callable[[int], None] | None = None,
) -> TrainResult:
    """Train a LoRA adapter on ``train_pairs`` and save it atomically to ``out_dir``.

    ``log_fn(row)`` receives one dict per optimizer step with exactly the keys of ``LOG_KEYS``
    (plain Python numbers; the diversity fields are None on steps without a diversity
    computation). ``diversity_term`` replaces the score-function estimator (tests use it to
    reproduce the float-valued bug); like the default it is only called on diversity steps
    with λ != 0. ``embedder`` serves diversity_metric="semantic" (loaded with
    ``polydag.core.evaluation.embeddings.load_embedder()`` when None); ``quality_cfg`` is the
    reward of objective="polychromic_set".

    ``work_dir`` holds the Trainer's checkpoints: a run that dies resumes from the newest
    complete one there (``on_resume(step)`` is called with that step, 0 for a fresh start,
    before training continues). Without it the run is not resumable. ``eval_pairs`` are the
    validation pairs of ``eval_strategy``/early stopping.
    """
    import tempfile

    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import EarlyStoppingCallback, PrinterCallback

    from polydag.core.ops.progress import progress
    from polydag.core.polychromic.hf_trainer import (
        PairCollator,
        PairDataset,
        PolychromicTrainer,
        StepLogCallback,
        complete_checkpoints,
        drop_incomplete_checkpoints,
        load_adapter_weights,
    )

    logger = logger or _log
    if not isinstance(cfg, PolychromicTrainConfig):
        raise TypeError(f"cfg must be a PolychromicTrainConfig, got {type(cfg).__name__}")
    if not train_pairs:
        raise ValueError("train_pairs is empty")
    start = time.perf_counter()
    device = resolve_device(cfg.device)
    quality_cfg = quality_cfg or QualityConfig()
    needs_embedder = cfg.diversity_metric == "semantic" or (
        cfg.objective == "polychromic_set" and quality_cfg.min_relevance is not None)
    if needs_embedder and embedder is None:
        from polydag.core.evaluation.embeddings import load_embedder

        embedder = load_embedder(cfg.embedding_model_path)
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats(torch.device(device))
    base, tokenizer = load_model_and_tokenizer(base_model_dir, device=device,
                                               quantization_config=_quantization(cfg, device))
    missing = [m for m in cfg.target_modules
               if not any(name.endswith("." + m) or name == m for name, _ in base.named_modules())]
    if missing:
        raise ValueError(f"target_modules {missing} do not exist in the base model {base_model_dir} "
                         f"({type(base).__name__})")
    fmt = cfg.prompt()
    examples = _encode_pairs(tokenizer, train_pairs, cfg.max_length, fmt)
    eval_examples = _encode_pairs(tokenizer, eval_pairs, cfg.max_length, fmt) if eval_pairs else None
    if cfg.load_in_4bit:
        from peft import prepare_model_for_kbit_training

        base = prepare_model_for_kbit_training(base, use_gradient_checkpointing=cfg.gradient_checkpointing)
    if cfg.gradient_checkpointing:
        base.enable_input_require_grads()  # checkpointed LoRA needs a grad path from the inputs
    torch.manual_seed(cfg.seed)  # LoRA init: the same for every λ
    model = get_peft_model(base, LoraConfig(
        r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout,
        target_modules=list(cfg.target_modules), task_type="CAUSAL_LM",
    ))
    params = [p for p in model.parameters() if p.requires_grad]
    gate_examples = examples[: cfg.gate_eval_pairs]
    with model.disable_adapter():  # the base itself, whatever state a resumed adapter is in
        base_eval_loss = _eval_loss(model, gate_examples, cfg.per_device_eval_batch_size,
                                    tokenizer.pad_token_id, device)
    logger.info("training LoRA λ=%s on %s: %d trainable params, %d pairs, %s steps, objective=%s, metric=%s",
                cfg.diversity_weight, device, sum(p.numel() for p in params), len(examples), cfg.max_steps,
                cfg.objective, cfg.diversity_metric)

    scratch = None
    if work_dir is None:
        scratch = tempfile.TemporaryDirectory(prefix="polydag-train-")
        output_dir = Path(scratch.name)
    else:
        output_dir = Path(work_dir)
        output_dir.mkdir(parents=True, exist_ok=True)
        if int(os.environ.get("RANK", "0")) == 0:
            drop_incomplete_checkpoints(output_dir, logger)
    found = complete_checkpoints(output_dir) if work_dir is not None else []
    resume = found[-1] if found else None
    resumed_from = resume.step if resume else 0
    if on_resume is not None:
        on_resume(resumed_from)
    if resume:
        logger.info("λ=%s: %s %s (step %d)", cfg.diversity_weight,
                    "reusing the finished training in" if resume.is_final else "resuming from",
                    resume.path, resumed_from)

    context = _DiversityContext(cfg, train_pairs, examples, tokenizer, device,
                                term_fn=diversity_term or score_function_term, embedder=embedder,
                                quality_cfg=quality_cfg)
    args = _training_arguments(cfg, output_dir, device, resumable=work_dir is not None,
                               has_eval=eval_examples is not None)
    # one example list for both datasets (a collator serves both): eval pairs after the train pairs
    every = examples + (eval_examples or [])
    trainer = PolychromicTrainer(
        model=model, args=args, train_dataset=PairDataset(range(len(examples))),
        eval_dataset=PairDataset(range(len(examples), len(every))) if eval_examples else None,
        data_collator=PairCollator(every, tokenizer.pad_token_id),
        diversity_fn=context, is_diversity_step=context.is_diversity_step,
    )
    trainer.remove_callback(PrinterCallback)  # the progress bar and the run log report instead
    earlier = _logged_rows(resume.path) if resume else []  # the steps a resumed run already took
    grad_shares = [r["diversity_grad_share"] for r in earlier if r.get("diversity_grad_share") is not None]
    adv_stds = [r["advantage_std"] for r in earlier if r.get("advantage_std") is not None]
    last: dict[str, Any] = dict(earlier[-1]) if earlier else {}
    last_div: list = [_logged_diversity(earlier)]
    total_steps = args.max_steps if args.max_steps > 0 else None

    with progress(total_steps or 0, f"LoRA λ={cfg.diversity_weight}", unit="step", logger=logger,
                  log_every_s=cfg.progress_every_s) as bar:
        def on_row(row, div):
            last.update(row)
            if row["diversity_grad_share"] is not None:
                grad_shares.append(row["diversity_grad_share"])
                last_div[0] = div
            if row["advantage_std"] is not None:
                adv_stds.append(row["advantage_std"])
            bar.update(1, quality=row["quality_loss"], diversity=row["diversity_score"],
                       share=grad_shares[-1] if grad_shares else None)

        trainer.add_callback(StepLogCallback(trainer, log_fn=log_fn, started=start, on_row=on_row, params=params))
        if cfg.early_stopping_patience is not None and eval_examples:
            trainer.add_callback(EarlyStoppingCallback(cfg.early_stopping_patience, cfg.early_stopping_threshold))
        try:
            if resume and resume.is_final:
                load_adapter_weights(model, resume.path)
            else:
                with _tracker_environment(cfg, output_dir):
                    try:
                        trainer.train(resume_from_checkpoint=str(resume.path) if resume else None)
                    finally:
                        _finish_trackers(cfg)
        finally:
            if scratch is not None:
                scratch.cleanup()
    steps = resume.step if resume and resume.is_final else trainer.state.global_step
    eval_loss = _eval_loss(model, gate_examples, cfg.per_device_eval_batch_size, tokenizer.pad_token_id, device)
    moved = kl_to_base(model, gate_examples, cfg.per_device_eval_batch_size, tokenizer.pad_token_id, device)
    div = last_div[0]
    result = TrainResult(
        adapter_dir=str(Path(out_dir).resolve()),
        adapter_sha256="",
        steps=steps,
        wall_s=0.0,
        device=device,
        peak_memory_bytes=_peak_memory_bytes(device),
        final_quality_loss=float(last["quality_loss"]),
        final_diversity_score=None if div is None else div.score,
        final_diversity_loss=None if div is None else div.loss_value,
        final_combined_loss=float(last["combined_loss"]),
        mean_diversity_grad_share=(sum(grad_shares) / len(grad_shares)) if grad_shares else None,
        n_diversity_steps=len(grad_shares),
        n_effective_diversity_steps=sum(a >= ZERO_ADVANTAGE for a in adv_stds)
        if cfg.diversity_weight != 0 else 0,
        mean_advantage_std=(sum(adv_stds) / len(adv_stds)) if adv_stds else None,
        kl_to_base=moved,
        diversity_weight=cfg.diversity_weight,
        grad_shares=grad_shares,
        base_eval_loss=base_eval_loss,
        eval_loss=eval_loss,
        vocab_size=len(tokenizer),
        resumed_from_step=resumed_from,
    )
    if int(os.environ.get("RANK", "0")) != 0:  # DDP: rank 0 alone writes the adapter
        trainer.accelerator.wait_for_everyone()
        return result
    with atomic_output_dir(out_dir) as tmp:
        model.save_pretrained(str(tmp))
        result.adapter_sha256 = adapter_sha256(tmp)
        if cfg.export_dir:
            import shutil

            with atomic_output_dir(Path(cfg.export_dir) / f"lambda-{cfg.diversity_weight}") as export:
                shutil.copytree(tmp, export, dirs_exist_ok=True)
        result.wall_s = time.perf_counter() - start
        info = {"config": asdict(cfg), "result": asdict(result), "base_model_dir": str(Path(base_model_dir).resolve())}
        (tmp / TRAINING_INFO_FILE).write_text(json.dumps(info, indent=2))
    if trainer.accelerator.num_processes > 1:
        trainer.accelerator.wait_for_everyone()
    logger.info("saved adapter λ=%s to %s in %.1fs (sha256 %s…, mean grad share %s)", cfg.diversity_weight,
                out_dir, result.wall_s, result.adapter_sha256[:12],
                "-" if result.mean_diversity_grad_share is None else f"{result.mean_diversity_grad_share:.3f}")
    return result


def _logged_rows(checkpoint: Path) -> list[dict]:
    """The per-step rows (our records in the Trainer's log history) up to ``checkpoint``."""
    state = json.loads((checkpoint / "trainer_state.json").read_text())
    return [dict(r) for r in state.get("log_history", []) if "quality_loss" in r]


def _logged_diversity(rows: list[dict]) -> _DiversityOutcome | None:
    for row in reversed(rows):
        if row.get("diversity_score") is not None:
            return _DiversityOutcome(row["diversity_score"], None, row.get("diversity_loss") or 0.0)
    return None


def checkpoint_row(unit: SweepKey | str, cfg: PolychromicTrainConfig, result: TrainResult, base_row: dict) -> dict:
    """The ``lora_checkpoints`` row of one trained λ and seed (``result`` already carries λ)."""
    unit = unit if isinstance(unit, SweepKey) else SweepKey(unit)
    row = {"lambda_key": unit.lambda_key, "seed_key": unit.seed_key, "seed": cfg.seed, **asdict(result)}
    row["adapter_dir"] = str(row["adapter_dir"])
    row["base_model_path"] = base_row["path"]
    row["base_model_sha256"] = base_row.get("weights_sha256")
    row["train_config"] = json.dumps(asdict(cfg), sort_keys=True)
    return row


# fields that change nothing a training computes (how it is watched, reported or gated)
_NOT_IDENTITY = ("progress_every_s", "report_to", "run_name", "logging_steps", "save_total_limit",
                 "gate_eval_pairs", "gate_max_loss_ratio")


def training_identity(cfg: PolychromicTrainConfig, train_pairs, base_row: dict, eval_pairs=None) -> str:
    """sha256 of everything that determines a training: its config, its data and its base weights.
    A re-run with the same identity resumes (or, if finished, reuses) its checkpoints."""
    import hashlib

    from polydag.core.polychromic.base_model import resolve_device

    settings = {k: v for k, v in asdict(cfg).items() if k not in _NOT_IDENTITY}
    settings["device"] = resolve_device(cfg.device)
    payload = json.dumps([settings, [list(p) for p in train_pairs], [list(p) for p in eval_pairs or []],
                          base_row.get("weights_sha256") or base_row["path"]], sort_keys=True, default=str)
    return hashlib.sha256(payload.encode()).hexdigest()


def train_partitions(
    base_row: dict,
    train_pairs: Sequence[tuple[str, str]],
    cfgs: dict[SweepKey, PolychromicTrainConfig],
    lora_dir: str | Path,
    *,
    db_path: str | Path,
    run_id: str,
    eval_pairs: Sequence[tuple[str, str]] | None = None,
    logger: logging.Logger | None = None,
    launch: Callable[[list[str], dict], None] | None = None,
) -> list[dict]:
    """Train every sweep unit of ``cfgs`` (:class:`SweepKey` (λ, seed) -> config; a plain λ key
    means seed 0) from the base model of ``base_row``.

    A config with ``num_processes`` > 1 trains under torchrun
    (:mod:`polydag.core.polychromic.distributed`; ``launch`` runs its command, e.g. through
    dagster-pipes).

    Each unit's training lives in ``lora_dir/<λ>/seed-<seed>/<identity>/``: Trainer checkpoints in
    ``trainer/`` (a crashed run of the same identity resumes from the newest complete one), the
    adapter of this run in ``run-<run_id>/``. Steps are logged live to ``training_log`` of
    ``db_path``. Every adapter must pass its gates (:mod:`polydag.core.polychromic.gates`)
    before anything is kept; the trainings' rows become the units' logs only when every unit passed.
    A failure that would repeat (a gate, a non-finite loss, bad input) removes this run's rows,
    adapters and the failed training's checkpoints, so the stored adapters, rows and logs stay
    exactly as they were; an interruption (SIGTERM, Ctrl-C, a kill) keeps the checkpoints and
    the rows up to them, to resume. Returns one ``lora_checkpoints`` row per unit.
    """
    import shutil

    from polydag.core.polychromic.gates import TrainingGateError, adapter_gates, gates_record
    from polydag.core.storage import training_log

    logger = logger or _log
    rows, trainings, dirs = [], {}, {}
    try:
        for key, cfg in cfgs.items():
            unit = key if isinstance(key, SweepKey) else SweepKey(key)
            identity = training_identity(cfg, train_pairs, base_row, eval_pairs)
            root = Path(lora_dir) / unit.dirname / identity[:16]
            trainings[unit], dirs[unit] = identity, root
            writer = training_log.TrainingLogWriter(db_path, run_id=run_id, lambda_key=unit.lambda_key,
                                                    seed_key=unit.seed_key, diversity_weight=cfg.diversity_weight,
                                                    train_id=identity)
            logger.info("training %s on %d pairs (training %s)", unit.label, len(train_pairs), identity[:16])
            if cfg.num_processes > 1:
                from polydag.core.polychromic.distributed import train_distributed

                result = train_distributed(base_row["path"], train_pairs, cfg, root / f"run-{run_id}",
                                           work_dir=root / "trainer", eval_pairs=eval_pairs, db_path=db_path,
                                           run_id=run_id, unit=unit, train_id=identity, logger=logger,
                                           launch=launch)
            else:
                result = train_lora_adapter(base_row["path"], train_pairs, cfg, root / f"run-{run_id}",
                                            log_fn=writer, logger=logger, work_dir=root / "trainer",
                                            eval_pairs=eval_pairs, on_resume=writer.resume_from)
                writer.flush()
            gates = adapter_gates(result, vocab_size=result.vocab_size, max_loss_ratio=cfg.gate_max_loss_ratio)
            failed = [g for g in gates if not g.passed]
            if failed:
                raise TrainingGateError(unit.label, failed)
            logger.info("%s passed its gates: %s", unit.label, "; ".join(g.detail for g in gates))
            rows.append({**checkpoint_row(unit, cfg, result, base_row), "train_id": identity,
                         "gates_passed": True, "gates": json.dumps(gates_record(gates))})
    except (KeyboardInterrupt, SystemExit):
        raise  # interrupted: checkpoints and logged rows stay, the next run resumes
    except BaseException as exc:
        training_log.discard_training(db_path, trainings)
        for key, root in dirs.items():
            shutil.rmtree(root / f"run-{run_id}", ignore_errors=True)  # never referenced by a stored row
        if isinstance(exc, (TrainingGateError, NonFiniteLossError)) and dirs:
            # resuming the failed training would reproduce the failure
            shutil.rmtree(list(dirs.values())[-1] / "trainer", ignore_errors=True)
        raise
    training_log.commit_training(db_path, trainings)
    return rows
