"""The polychromic objective on ``transformers.Trainer``.

The Trainer (with accelerate underneath) provides what a real run needs and polydag does not
re-implement: bf16/fp16, gradient checkpointing, gradient accumulation, learning-rate
schedules with warm-up, evaluation with early stopping and best-model loading, checkpoints
every ``save_steps`` with optimizer, scheduler, RNG states and data position,
``resume_from_checkpoint``, ``report_to`` trackers, and multi-process training (DDP through
``torchrun`` or ``accelerate launch``).

What stays hand-written, and why:

- :meth:`PolychromicTrainer.training_step`: on a diversity step the quality and diversity
  gradients are computed apart (the audit needs ‖g_quality‖ and ‖g_div‖ before they are
  summed), and the samples are drawn from the model under their own RNG stream, so a λ = 0
  run is bit-identical with or without diversity sampling. In one process the two
  gradients are added into ``.grad`` directly; with several processes (or fp16 loss scaling)
  the summed loss is back-propagated through accelerate so DDP synchronises it.
- :class:`StepLogCallback`: one ``training_log`` row per optimizer step, a completion marker
  in each checkpoint (a checkpoint without it was cut off mid-write and is never resumed
  from), and the NaN stop.
"""

from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
from transformers import Trainer, TrainerCallback

from polydag.core.polychromic.trainer import NonFiniteLossError

COMPLETE_MARKER = "polydag_complete.json"


class PairDataset(torch.utils.data.Dataset):
    """Indices of the encoded (prompt, reply) pairs; the collator pads them."""

    def __init__(self, indices):
        self.indices = list(indices)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> dict:
        return {"index": self.indices[i]}


@dataclass
class PairCollator:
    """Right-padded ``input_ids``/``attention_mask``; ``labels`` score the reply tokens only
    (prompt tokens and padding are -100, as the researchers' trainer masked them)."""

    examples: list[tuple[list[int], list[int]]]
    pad_id: int

    def __call__(self, features: list[dict]) -> dict:
        index = [f["index"] for f in features]
        batch = [self.examples[i] for i in index]
        width = max(len(p) + len(r) for p, r in batch)
        ids = torch.full((len(batch), width), self.pad_id, dtype=torch.long)
        att = torch.zeros((len(batch), width), dtype=torch.long)
        labels = torch.full((len(batch), width), -100, dtype=torch.long)
        for row, (p, r) in enumerate(batch):
            seq = p + r
            ids[row, : len(seq)] = torch.tensor(seq)
            att[row, : len(seq)] = 1
            labels[row, len(p): len(seq)] = torch.tensor(r)
        return {"input_ids": ids, "attention_mask": att, "labels": labels, "index": torch.tensor(index)}


def reply_cross_entropy(model, inputs: dict) -> torch.Tensor:
    """Mean cross-entropy over the reply tokens (labels != -100) of a collated batch."""
    logits = model(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"]).logits.float()
    targets = inputs["labels"][:, 1:]
    return torch.nn.functional.cross_entropy(
        logits[:, :-1].reshape(-1, logits.shape[-1]), targets.reshape(-1), ignore_index=-100)


def global_norm(grads) -> float:
    return float(torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g.double()) for g in grads])))


@dataclass
class StepRecord:
    """What one optimizer step produced, summed over its micro-batches."""

    quality: list[float] = field(default_factory=list)
    diversity: Any = None  # the _DiversityOutcome of the step, if it was a diversity step
    share: float | None = None


class PolychromicTrainer(Trainer):
    """``Trainer`` whose loss is reply cross-entropy plus, on diversity steps, the polychromic
    diversity term (``diversity_fn(model, step, batch indices, quality value)`` returns it)."""

    def __init__(self, *args, diversity_fn: Callable, is_diversity_step: Callable[[int], bool], **kwargs):
        super().__init__(*args, **kwargs)
        self.diversity_fn, self.is_diversity_step = diversity_fn, is_diversity_step
        self.record = StepRecord()
        self._record_step: int | None = None

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        inputs = {k: v for k, v in inputs.items() if k != "index"}
        loss = reply_cross_entropy(model, inputs)
        return (loss, {"loss": loss}) if return_outputs else loss

    def training_step(self, model, inputs, num_items_in_batch=None):
        model.train()
        step = self.state.global_step + 1  # the optimizer step these micro-batches build
        if self._record_step != step:
            self.record, self._record_step = StepRecord(), step
        first_micro = not self.record.quality
        index = inputs["index"].tolist()
        inputs = self._prepare_inputs(inputs)
        with self.compute_loss_context_manager():
            quality = self.compute_loss(model, inputs)
        quality_value = float(quality.detach())
        if not math.isfinite(quality_value):
            raise NonFiniteLossError(step, quality_value, None)
        self.record.quality.append(quality_value)
        scale = 1.0 / self.args.gradient_accumulation_steps
        # samples and their log-probs come from the bare model (DDP's wrapper has no generate, and
        # its backward hooks sit on the parameters, so the summed loss still synchronises)
        div = self.diversity_fn(self.accelerator.unwrap_model(model), step, index, quality_value) \
            if first_micro and self.is_diversity_step(step) else None
        if div is not None:
            self.record.diversity = div
        if div is None or div.term is None:
            if div is not None:
                self.record.share = 0.0  # λ = 0: the term is identically zero, no gradient is formed
            self.accelerator.backward(quality * scale)
            return quality.detach() * scale
        params = [p for p in model.parameters() if p.requires_grad]
        separate = self.accelerator.num_processes == 1 and self.accelerator.scaler is None
        g_quality = torch.autograd.grad(quality, params, retain_graph=not separate)
        if div.term.requires_grad:
            g_div = torch.autograd.grad(div.term, params, allow_unused=True, retain_graph=not separate)
            g_div = [torch.zeros_like(p) if g is None else g for g, p in zip(g_div, params)]
        else:  # a float-valued term: no path to the parameters, its gradient is exactly zero
            g_div = [torch.zeros_like(p) for p in params]
        from polydag.core.polychromic.objective import diversity_grad_share

        self.record.share = diversity_grad_share(global_norm(g_quality), global_norm(g_div))
        if separate:
            for p, gq, gd in zip(params, g_quality, g_div):
                update = (gq + gd) * scale
                p.grad = update if p.grad is None else p.grad + update
        else:  # DDP must see one backward to synchronise; fp16 needs the scaler
            self.accelerator.backward((quality + (div.term if div.term.requires_grad else 0.0)) * scale)
        return (quality.detach() + div.loss_value) * scale


class StepLogCallback(TrainerCallback):
    """One ``training_log`` row per optimizer step, completion markers, and the NaN stop."""

    def __init__(self, trainer: PolychromicTrainer, *, log_fn: Callable[[dict], None] | None, started: float,
                 on_row: Callable[[dict, Any], None], params: list):
        self.trainer, self.log_fn, self.started, self.on_row, self.params = trainer, log_fn, started, on_row, params

    def on_step_end(self, args, state, control, **kwargs):
        record = self.trainer.record
        step = state.global_step
        quality = sum(record.quality) / len(record.quality)
        div = record.diversity
        if any(not bool(torch.isfinite(p).all()) for p in self.params):
            raise NonFiniteLossError(step, quality, div.loss_value if div else None, what="parameters after the update")
        scheduler = kwargs.get("lr_scheduler")
        lr = float(scheduler.get_last_lr()[0]) if scheduler is not None else float(args.learning_rate)
        row = {
            "step": step,
            "quality_loss": quality,
            "diversity_score": None if div is None else div.score,
            "diversity_loss": None if div is None else div.loss_value,
            "combined_loss": float(quality + (div.loss_value if div else 0.0)),
            "diversity_grad_share": None if record.share is None else float(record.share),
            "advantage_std": None if div is None else div.advantage_std,
            "tied_prompt_share": None if div is None else div.tied_prompt_share,
            "learning_rate": lr,
            "wall_time": float(time.perf_counter() - self.started),
        }
        if state.is_world_process_zero and self.log_fn is not None:
            self.log_fn(row)
        self.on_row(row, div)
        # every step, into the trackers and the Trainer's log history (a resumed run reads the
        # steps it already took from there, and checkpoints carry it)
        # (trackers add their own "train/" prefix: W&B shows train/quality_loss)
        self.trainer.log({k: v for k, v in row.items() if k != "step" and v is not None})
        if step >= state.max_steps and args.save_strategy != "no":
            control.should_save = True  # the last step is always a complete checkpoint
        return control

    def on_save(self, args, state, control, **kwargs):
        if not state.is_world_process_zero:
            return control
        flush = getattr(self.log_fn, "flush", None)
        if flush is not None:
            flush()  # the log up to this checkpoint is durable before the checkpoint counts
        folder = Path(args.output_dir) / f"checkpoint-{state.global_step}"
        if folder.is_dir():
            (folder / COMPLETE_MARKER).write_text(json.dumps({"step": state.global_step,
                                                              "max_steps": state.max_steps}))
        return control


@dataclass(frozen=True, order=True)
class Checkpoint:
    step: int
    max_steps: int
    path: Path

    @property
    def is_final(self) -> bool:
        """The training it belongs to had finished: resuming would only load its weights."""
        return self.step >= self.max_steps


def complete_checkpoints(work_dir: Path) -> list[Checkpoint]:
    """Every checkpoint in ``work_dir`` whose writing finished, oldest first."""
    found = []
    for folder in work_dir.glob("checkpoint-*"):
        marker = folder / COMPLETE_MARKER
        if folder.is_dir() and marker.is_file():
            info = json.loads(marker.read_text())
            found.append(Checkpoint(int(info["step"]), int(info["max_steps"]), folder))
    return sorted(found)


def load_adapter_weights(model, checkpoint: Path) -> None:
    """Put a checkpoint's LoRA weights into ``model`` (a finished training, nothing to resume)."""
    from peft import set_peft_model_state_dict
    from safetensors.torch import load_file

    result = set_peft_model_state_dict(model, load_file(str(checkpoint / "adapter_model.safetensors")))
    unexpected = getattr(result, "unexpected_keys", [])
    if unexpected:
        raise ValueError(f"{checkpoint} holds adapter weights the model does not have: {unexpected[:5]}")


def drop_incomplete_checkpoints(work_dir: Path, logger: logging.Logger) -> None:
    import shutil

    for folder in work_dir.glob("checkpoint-*"):
        if folder.is_dir() and not (folder / COMPLETE_MARKER).is_file():
            logger.warning("removing %s: a checkpoint cut off mid-write (no %s)", folder, COMPLETE_MARKER)
            shutil.rmtree(folder, ignore_errors=True)
