"""Validators that decide whether a freshly trained adapter may replace the stored one.

They run inside the training step, before anything is stored (``train_partitions``), so a
run that fails one leaves the previous adapter, its ``lora_checkpoints`` row and its
``training_log`` exactly as they were:

- ``finite``: every recorded loss is a finite number (a NaN step already stops training;
  this also covers the evaluation losses);
- ``not_collapsed`` (every λ, the baseline included): on the first ``gate_eval_pairs``
  training pairs, the adapter's quality loss is at most ``gate_max_loss_ratio`` times the
  base's, and below 95% of ln(vocabulary), the loss of a uniform model (what
  ``learning_rate: 1e9`` produced while passing every other check);
- ``diversity_gradient`` (λ != 0): some diversity step had a non-zero share of the gradient
  (the researchers' ``ce − λ·float(D)`` has none).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

UNIFORM_FRACTION = 0.95


@dataclass(frozen=True)
class Gate:
    name: str
    passed: bool
    detail: str


class TrainingGateError(RuntimeError):
    """A trained adapter failed a gate; nothing was stored."""

    def __init__(self, unit: str, failed: list[Gate]):
        self.unit, self.failed = unit, failed
        lines = "; ".join(f"{g.name}: {g.detail}" for g in failed)
        super().__init__(
            f"{unit}: the trained adapter failed {len(failed)} gate(s), so it does not replace "
            f"the stored one (that adapter, its row and its training_log are unchanged): {lines}. "
            "Check learning_rate and diversity_weight, or the base model."
        )


def adapter_gates(result, *, vocab_size: int, max_loss_ratio: float) -> list[Gate]:
    """The gates of one :class:`polydag.core.polychromic.trainer.TrainResult`."""
    losses = {"final_quality_loss": result.final_quality_loss, "eval_loss": result.eval_loss,
              "base_eval_loss": result.base_eval_loss, "final_combined_loss": result.final_combined_loss}
    bad = {k: v for k, v in losses.items() if v is None or not math.isfinite(v)}
    gates = [Gate("finite", not bad, f"non-finite {bad}" if bad else "every loss is finite")]
    if not bad:
        uniform = math.log(vocab_size)
        limit = max_loss_ratio * result.base_eval_loss
        ok = result.eval_loss <= limit and result.eval_loss < UNIFORM_FRACTION * uniform
        gates.append(Gate(
            "not_collapsed", ok,
            f"quality loss {result.eval_loss:.4g} after training vs {result.base_eval_loss:.4g} for the base "
            f"(limit {limit:.4g}); a uniform model scores ln(vocab) = {uniform:.4g}",
        ))
    if result.diversity_weight != 0:
        shares = [s for s in result.grad_shares if s is not None and math.isfinite(s)]
        ok = bool(shares) and max(shares) > 0
        gates.append(Gate(
            "diversity_gradient", ok,
            f"max diversity gradient share {max(shares):.3g} over {len(shares)} diversity steps" if shares
            else "no diversity step was logged",
        ))
    return gates


def gates_record(gates: list[Gate]) -> list[dict]:
    return [asdict(g) for g in gates]
