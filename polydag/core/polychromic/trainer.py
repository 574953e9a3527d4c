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
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from polydag.core.ops.atomic_dir import atomic_output_dir
from polydag.core.ops.progress import progress
from polydag.core.polychromic.base_model import encode_prompt, encode_reply, load_model_and_tokenizer, resolve_device
from polydag.core.polychromic.config import PolychromicTrainConfig
from polydag.core.polychromic.objective import (
    diversity_grad_share,
    diversity_surrogate_loss,
    loo_advantages,
    pairwise_distances,
    polychromic_set_advantages,
    set_diversity,
)
from polydag.core.evaluation.quality import QualityConfig, check_replies
from polydag.core.polychromic.sampling import sampling_seed

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
    base_eval_loss: float | None = None  # quality loss of the base on the gate pairs
    eval_loss: float | None = None  # quality loss of the trained adapter on the same pairs
    vocab_size: int | None = None


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


def _eval_loss(model, examples, batch_size: int, pad_id: int, device) -> float:
    """Mean reply cross-entropy over ``examples`` in eval mode (no dropout, no RNG use)."""
    import torch

    was_training = model.training
    model.eval()
    total = weight = 0.0
    try:
        with torch.no_grad():
            for start in range(0, len(examples), batch_size):
                batch = examples[start:start + batch_size]
                n_tokens = sum(len(r) for _, r in batch)
                total += float(_quality_loss(model, batch, pad_id, device)) * n_tokens
                weight += n_tokens
    finally:
        model.train(was_training)
    return total / weight


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


def diversity_samples(model, tokenizer, prompt_ids: list[list[int]], cfg: PolychromicTrainConfig, step: int):
    """The diversity samples of training step ``step``: ``(token ids, texts)``, ``n_generations``
    per prompt, prompt-major, drawn by the evaluation sampler with seed
    ``sampling_seed(diversity_seed, step)``. Token ids keep the stop token (its log-probability
    is part of the sample's score)."""
    from polydag.core.polychromic.sampling import decode_reply, sample_token_ids, stop_tokens

    ids = sample_token_ids(model, tokenizer, prompt_ids, cfg.n_generations, cfg.sampling(),
                           seed=sampling_seed(cfg.diversity_seed, step))
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


class _Training:
    """One λ partition's training run: the model, the optimizer and the per-step work.

    Hand-written rather than ``transformers.Trainer`` because every step computes two
    gradients separately (the audit needs ‖g_quality‖ and ‖g_div‖ before they are summed) and
    samples from the model under its own RNG stream.
    """

    def __init__(self, base_model_dir, train_pairs, cfg: PolychromicTrainConfig, *, logger, diversity_term,
                 embedder, quality_cfg):
        import torch
        from peft import LoraConfig, get_peft_model

        self.cfg, self.train_pairs, self.logger = cfg, train_pairs, logger
        self.device = resolve_device(cfg.device)
        self.lam = cfg.diversity_weight
        self.term_fn = diversity_term or score_function_term
        self.quality_cfg = quality_cfg or QualityConfig()
        needs_embedder = cfg.diversity_metric == "semantic" or (
            cfg.objective == "polychromic_set" and self.quality_cfg.min_relevance is not None)
        if needs_embedder and embedder is None:
            from polydag.core.evaluation.embeddings import load_embedder

            embedder = load_embedder()
        self.embedder = embedder
        if self.device.startswith("cuda"):
            torch.cuda.reset_peak_memory_stats(torch.device(self.device))
        base, self.tokenizer = load_model_and_tokenizer(base_model_dir, device=self.device)
        missing = [m for m in cfg.target_modules
                   if not any(name.endswith("." + m) or name == m for name, _ in base.named_modules())]
        if missing:
            raise ValueError(f"target_modules {missing} do not exist in the base model {base_model_dir} "
                             f"({type(base).__name__})")
        self.examples = _encode_pairs(self.tokenizer, train_pairs, cfg.max_length)
        torch.manual_seed(cfg.seed)  # LoRA init and dropout: the same stream for every λ
        self.model = get_peft_model(base, LoraConfig(
            r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout,
            target_modules=list(cfg.target_modules), task_type="CAUSAL_LM",
        ))
        self.params = [p for p in self.model.parameters() if p.requires_grad]
        # LoRA starts as the identity (B = 0), so this is the base model's loss (gates.py)
        self.gate_examples = self.examples[: cfg.gate_eval_pairs]
        self.base_eval_loss = self.eval_loss()
        self.optimizer = torch.optim.AdamW(self.params, lr=cfg.learning_rate, weight_decay=cfg.weight_decay)
        logger.info("training LoRA λ=%s on %s: %d trainable params, %d pairs, %d steps, objective=%s, metric=%s",
                    self.lam, self.device, sum(p.numel() for p in self.params), len(self.examples),
                    cfg.max_steps, cfg.objective, cfg.diversity_metric)
        self.order_rng = random.Random(cfg.seed)
        self.order: list[int] = []

    def eval_loss(self) -> float:
        return _eval_loss(self.model, self.gate_examples, self.cfg.batch_size, self.tokenizer.pad_token_id,
                          self.device)

    def next_batch(self) -> list[int]:
        if len(self.order) < self.cfg.batch_size:
            epoch = list(range(len(self.examples)))
            self.order_rng.shuffle(epoch)
            self.order.extend(epoch)
        batch_idx = self.order[: self.cfg.batch_size]
        del self.order[: self.cfg.batch_size]
        return batch_idx

    def is_diversity_step(self, step: int) -> bool:
        return step % self.cfg.compute_diversity_every_n_steps == 0 and (
            self.lam != 0.0 or self.cfg.sample_diversity_when_zero)

    def diversity(self, step: int, batch_idx: list[int], quality_value: float) -> _DiversityOutcome:
        """Sample, score the sets, and (for λ != 0) form the diversity term with its gradient."""
        import torch

        cfg, n = self.cfg, self.cfg.n_generations
        chosen = _diversity_prompts(batch_idx, self.train_pairs, cfg.max_examples_for_diversity)
        prompts = [self.train_pairs[i][0] for i in chosen]
        prompt_ids = [self.examples[i][0] for i in chosen]
        sample_ids, texts = diversity_samples(self.model, self.tokenizer, prompt_ids, cfg, step)
        step_seed = sampling_seed(cfg.diversity_seed, step)
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
        if self.lam == 0.0:
            return _DiversityOutcome(score, None, 0.0)  # −0 · (...) is identically zero: no gradient

        def logprobs():
            return sequence_logprobs(self.model, prompt_ids, sample_ids, n, cfg.temperature,
                                     self.tokenizer.pad_token_id, self.device)

        ds = DiversityStep(
            step=step, diversity_weight=self.lam, diversity_score=score,
            advantages=torch.tensor(advantages, dtype=torch.float32, device=self.device),
            n_prompts=len(prompts), n_generations=n, prompts=prompts, samples=texts, sequence_logprobs=logprobs,
        )
        with torch.random.fork_rng(devices=_rng_devices(self.device)):
            torch.manual_seed(step_seed + 1)
            self.model.eval()  # log π of the policy we sampled from (no dropout)
            term = self.term_fn(ds)
        if not isinstance(term, torch.Tensor):
            term = torch.tensor(float(term), device=self.device)
        loss_value = float(term.detach())
        if not math.isfinite(loss_value):
            raise NonFiniteLossError(step, quality_value, loss_value)
        return _DiversityOutcome(score, term, loss_value)

    def apply_gradients(self, step: int, quality, quality_value: float, div: _DiversityOutcome | None):
        """θ.grad = g_quality + g_div (computed apart for the audit), clip, AdamW step; the share."""
        import torch

        params = self.params
        g_quality = torch.autograd.grad(quality, params)
        share = None
        grads = list(g_quality)
        if div is not None and div.term is not None:
            if div.term.requires_grad:
                g_div = torch.autograd.grad(div.term, params, allow_unused=True)
                g_div = [torch.zeros_like(p) if g is None else g for g, p in zip(g_div, params)]
            else:  # a float-valued term: no path to the parameters, its gradient is exactly zero
                g_div = [torch.zeros_like(p) for p in params]
            share = diversity_grad_share(_global_norm(g_quality), _global_norm(g_div))
            grads = [gq + gd for gq, gd in zip(g_quality, g_div)]
        elif div is not None:
            share = 0.0
        for p, g in zip(params, grads):
            p.grad = g
        if self.cfg.max_grad_norm is not None:
            total_norm = torch.nn.utils.clip_grad_norm_(params, self.cfg.max_grad_norm)
            if not torch.isfinite(total_norm):
                raise NonFiniteLossError(step, quality_value, div.loss_value if div else None, what="gradient norm")
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        return share

    def step(self, step: int, started: float) -> tuple[dict, _DiversityOutcome | None, float | None]:
        """One optimizer step; returns its ``training_log`` row."""
        batch_idx = self.next_batch()
        self.model.train()
        quality = _quality_loss(self.model, [self.examples[i] for i in batch_idx], self.tokenizer.pad_token_id,
                                self.device)
        quality_value = float(quality.detach())
        if not math.isfinite(quality_value):
            raise NonFiniteLossError(step, quality_value, None)
        div = self.diversity(step, batch_idx, quality_value) if self.is_diversity_step(step) else None
        share = self.apply_gradients(step, quality, quality_value, div)
        row = {
            "step": step,
            "quality_loss": quality_value,
            "diversity_score": None if div is None else div.score,
            "diversity_loss": None if div is None else div.loss_value,
            "combined_loss": float(quality_value + (div.loss_value if div else 0.0)),
            "diversity_grad_share": None if share is None else float(share),
            "learning_rate": float(self.optimizer.param_groups[0]["lr"]),
            "wall_time": float(time.perf_counter() - started),
        }
        return row, div, share


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
    float-valued bug); like the default it is only called on diversity steps with λ != 0.
    ``embedder`` serves diversity_metric="semantic" (loaded with
    ``polydag.core.evaluation.embeddings.load_embedder()`` when None); ``quality_cfg`` is the
    reward of objective="polychromic_set".
    """
    logger = logger or _log
    if not isinstance(cfg, PolychromicTrainConfig):
        raise TypeError(f"cfg must be a PolychromicTrainConfig, got {type(cfg).__name__}")
    if not train_pairs:
        raise ValueError("train_pairs is empty")
    start = time.perf_counter()
    run = _Training(base_model_dir, train_pairs, cfg, logger=logger, diversity_term=diversity_term,
                    embedder=embedder, quality_cfg=quality_cfg)
    grad_shares: list[float] = []
    last: dict[str, Any] = {}
    last_div: _DiversityOutcome | None = None
    with progress(cfg.max_steps, f"LoRA λ={run.lam}", unit="step", logger=logger,
                  log_every_s=cfg.progress_every_s) as bar:
        for step in range(1, cfg.max_steps + 1):
            last, div, share = run.step(step, start)
            if share is not None:
                grad_shares.append(float(share))
                last_div = div
            if log_fn is not None:
                log_fn(last)
            bar.update(1, quality=last["quality_loss"], diversity=None if last_div is None else last_div.score,
                       share=grad_shares[-1] if grad_shares else None)

    result = TrainResult(
        adapter_dir=str(Path(out_dir).resolve()),
        adapter_sha256="",
        steps=cfg.max_steps,
        wall_s=0.0,
        device=run.device,
        peak_memory_bytes=_peak_memory_bytes(run.device),
        final_quality_loss=float(last["quality_loss"]),
        final_diversity_score=None if last_div is None else last_div.score,
        final_diversity_loss=None if last_div is None else last_div.loss_value,
        final_combined_loss=float(last["combined_loss"]),
        mean_diversity_grad_share=(sum(grad_shares) / len(grad_shares)) if grad_shares else None,
        n_diversity_steps=len(grad_shares),
        diversity_weight=run.lam,
        grad_shares=grad_shares,
        base_eval_loss=run.base_eval_loss,
        eval_loss=run.eval_loss(),
        vocab_size=len(run.tokenizer),
    )
    with atomic_output_dir(out_dir) as tmp:
        run.model.save_pretrained(str(tmp))
        result.adapter_sha256 = adapter_sha256(tmp)
        result.wall_s = time.perf_counter() - start
        info = {"config": asdict(cfg), "result": asdict(result), "base_model_dir": str(Path(base_model_dir).resolve())}
        (tmp / TRAINING_INFO_FILE).write_text(json.dumps(info, indent=2))
    logger.info("saved adapter λ=%s to %s in %.1fs (sha256 %s…, mean grad share %s)", run.lam, out_dir,
                result.wall_s, result.adapter_sha256[:12],
                "-" if result.mean_diversity_grad_share is None else f"{result.mean_diversity_grad_share:.3f}")
    return result


def checkpoint_row(lambda_key: str, cfg: PolychromicTrainConfig, result: TrainResult, base_row: dict) -> dict:
    """The ``lora_checkpoints`` row of one trained λ (``result`` already carries λ)."""
    row = {"lambda_key": lambda_key, **asdict(result)}
    row["adapter_dir"] = str(row["adapter_dir"])
    row["base_model_path"] = base_row["path"]
    row["base_model_sha256"] = base_row.get("weights_sha256")
    row["train_config"] = json.dumps(asdict(cfg), sort_keys=True)
    return row


def train_partitions(
    base_row: dict,
    train_pairs: Sequence[tuple[str, str]],
    cfgs: dict[str, PolychromicTrainConfig],
    adapter_dir: Callable[[str], Path],
    *,
    db_path: str | Path,
    run_id: str,
    logger: logging.Logger | None = None,
) -> list[dict]:
    """Train every λ of ``cfgs`` (λ key -> config) from the base model of ``base_row``.

    Each λ's adapter goes to ``adapter_dir(key)``; its steps are logged live to the
    ``training_log`` table of ``db_path`` under ``run_id``. Every adapter must pass its gates
    (:mod:`polydag.core.polychromic.gates`) before anything is kept: the run's log rows
    replace the older logs of these λ only when every λ trained and passed; on any failure
    they are removed, and so are this run's adapter directories, so the stored adapters, rows
    and logs stay exactly as they were. Returns one ``lora_checkpoints`` row per λ.
    """
    import shutil

    from polydag.core.polychromic.gates import TrainingGateError, adapter_gates, gates_record
    from polydag.core.storage import training_log

    logger = logger or _log
    rows = []
    try:
        for key, cfg in cfgs.items():
            writer = training_log.TrainingLogWriter(db_path, run_id=run_id, lambda_key=key,
                                                    diversity_weight=cfg.diversity_weight)
            logger.info("training λ=%s on %d pairs", key, len(train_pairs))
            result = train_lora_adapter(base_row["path"], train_pairs, cfg, adapter_dir(key), log_fn=writer,
                                        logger=logger)
            writer.flush()
            gates = adapter_gates(result, vocab_size=result.vocab_size, max_loss_ratio=cfg.gate_max_loss_ratio)
            failed = [g for g in gates if not g.passed]
            if failed:
                raise TrainingGateError(key, failed)
            logger.info("λ=%s passed its gates: %s", key, "; ".join(g.detail for g in gates))
            rows.append({**checkpoint_row(key, cfg, result, base_row), "gates_passed": True,
                         "gates": json.dumps(gates_record(gates))})
    except BaseException:
        training_log.discard_run(db_path, run_id)
        for key in cfgs:
            shutil.rmtree(adapter_dir(key), ignore_errors=True)  # never referenced by a stored row
        raise
    training_log.commit_runs(db_path, run_id, list(cfgs))
    return rows
