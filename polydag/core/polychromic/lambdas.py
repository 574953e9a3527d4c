"""λ partition keys.

A λ key is the canonical string of a finite float (``repr(float(x))``: "0.0", "0.3", "1.0").
Keys are stored as VARCHAR equal to the partition key, so "1" and "1.0" can never become
two rows for the same weight.
"""

from __future__ import annotations

import math

DEFAULT_LAMBDA_KEYS = ("0.0", "0.3", "1.0", "2.0")
BASELINE_LAMBDA_KEY = "0.0"


class LambdaKeyError(ValueError):
    pass


def canonical_lambda_key(value: str | float) -> str:
    """Canonical key for a λ given as text or number; raises LambdaKeyError on bad input."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise LambdaKeyError(
            f"λ key {value!r} is not a number; λ partition keys are diversity weights such as "
            f"{', '.join(DEFAULT_LAMBDA_KEYS)}"
        ) from None
    if not math.isfinite(number):
        raise LambdaKeyError(f"λ key {value!r} is not finite")
    if number == 0.0:
        number = 0.0  # fold -0.0 into 0.0
    return repr(number)


def lambda_value(key: str) -> float:
    """The diversity weight of a stored λ key; the key must already be canonical."""
    canonical = canonical_lambda_key(key)
    if canonical != key:
        raise LambdaKeyError(
            f"λ key {key!r} is not canonical; add it as {canonical!r} "
            f"(`polydag lambdas add {canonical}`)"
        )
    return float(canonical)
