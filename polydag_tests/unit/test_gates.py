"""The gates a trained adapter must pass before it replaces the stored one."""

import math
from types import SimpleNamespace

from polydag.core.polychromic.gates import TrainingGateError, adapter_gates


def _result(**overrides):
    values = dict(final_quality_loss=0.7, eval_loss=0.75, base_eval_loss=0.9, final_combined_loss=0.7,
                  diversity_weight=0.0, grad_shares=[])
    values.update(overrides)
    return SimpleNamespace(**values)


def _failed(result, ratio=1.05):
    return {g.name for g in adapter_gates(result, vocab_size=2048, max_loss_ratio=ratio) if not g.passed}


def test_a_healthy_adapter_passes_every_gate():
    assert _failed(_result()) == set()
    assert _failed(_result(diversity_weight=1.0, grad_shares=[0.0, 0.2])) == set()


def test_a_uniform_model_fails_even_at_lambda_zero():
    # learning_rate 1e9 on λ = 0: loss ln(vocab), every other check passed
    assert _failed(_result(eval_loss=math.log(2048), base_eval_loss=math.log(2048) * 1.2)) == {"not_collapsed"}


def test_worse_than_the_base_fails():
    assert _failed(_result(eval_loss=1.0)) == {"not_collapsed"}
    assert _failed(_result(eval_loss=0.93), ratio=1.05) == set()  # within the allowed trade-off
    assert _failed(_result(eval_loss=0.93), ratio=1.0) == {"not_collapsed"}


def test_non_finite_losses_fail():
    assert _failed(_result(eval_loss=float("nan"))) == {"finite"}
    assert _failed(_result(final_combined_loss=float("inf"))) == {"finite"}


def test_lambda_above_zero_needs_a_diversity_gradient():
    assert _failed(_result(diversity_weight=1.0, grad_shares=[0.0, 0.0])) == {"diversity_gradient"}
    assert _failed(_result(diversity_weight=1.0, grad_shares=[])) == {"diversity_gradient"}


def test_the_error_names_the_gate_and_says_nothing_was_replaced():
    gates = adapter_gates(_result(eval_loss=1.0), vocab_size=2048, max_loss_ratio=1.05)
    message = str(TrainingGateError("λ=2.0 seed=0", [g for g in gates if not g.passed]))
    assert "λ=2.0" in message and "not_collapsed" in message and "unchanged" in message
