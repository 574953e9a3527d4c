"""λ and seed partition keys.

A λ key is the canonical string of a finite float (``repr(float(x))``: "0.0", "0.3", "1.0").
Keys are stored as VARCHAR equal to the partition key, so "1" and "1.0" can never become
two rows for the same weight.

User input (``polydag lambdas add``) goes through :func:`parse_lambda_key`, which is stricter
than :func:`canonical_lambda_key`:

* only a plain decimal: digits, optionally a point and more digits, optionally a leading
  ``-`` ("1", "0.50", "2.0", "007"); no exponent ("1e3"), inf or nan, hex ("0x10"), comma
  ("1,0"), sign ``+``, bare point (".5", "1.") or surrounding whitespace (" 1 "); when the text
  is a number in another spelling the error names the plain one;
* its canonical key must itself be a plain decimal, so 0 < |λ| < 0.0001 and |λ| ≥ 1e16 (whose
  ``repr`` has an exponent) are refused;
* negative λ rewards sameness, so it needs ``allow_negative=True``; "-0" is 0.0, not negative.

Removal takes keys exactly as registered (see ``polydag lambdas remove``), so a key added by
the UI or GraphQL that breaks these rules can still be removed.
"""

from __future__ import annotations

import math
import re
from typing import NamedTuple

DEFAULT_LAMBDA_KEYS = ("0.0", "0.3", "1.0", "2.0")
BASELINE_LAMBDA_KEY = "0.0"


class LambdaKeyError(ValueError):
    pass


_PLAIN_DECIMAL = re.compile(r"-?[0-9]+(?:\.[0-9]+)?")


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


def parse_lambda_key(text: str, *, allow_negative: bool = False) -> str:
    """The canonical key of λ typed by a user (``"1"`` -> ``"1.0"``, ``"0.50"`` -> ``"0.5"``);
    LambdaKeyError unless ``text`` is a plain decimal (rules in the module docstring)."""
    if not isinstance(text, str) or not _PLAIN_DECIMAL.fullmatch(text):
        try:
            number = float(text)
        except (TypeError, ValueError):
            number = None
        if number is None or not math.isfinite(number):
            kind = "not a number" if number is None else "not finite"
            raise LambdaKeyError(
                f"λ key {text!r} is {kind}; λ partition keys are plain decimal diversity weights "
                f"such as {', '.join(DEFAULT_LAMBDA_KEYS)}"
            )
        plain = format(number, "f").rstrip("0").rstrip(".") or "0"
        raise LambdaKeyError(
            f"λ key {text!r} is not a plain decimal number (digits, optionally a point and "
            f"digits, e.g. 0.3 or 2); write it as {plain}"
        )
    number = float(text)
    if not math.isfinite(number):
        raise LambdaKeyError(f"λ key {text!r} is too large")
    key = canonical_lambda_key(number)
    if not _PLAIN_DECIMAL.fullmatch(key):
        raise LambdaKeyError(
            f"λ {text} would be stored as key {key!r}; λ keys are plain decimals, so λ must be 0 "
            "or have 0.0001 ≤ |λ| < 1e16"
        )
    if number < 0 and not allow_negative:
        raise LambdaKeyError(
            f"λ {text} is negative: a negative diversity weight rewards sameness; pass "
            "--allow-negative if that is what you want"
        )
    return key


# Seed keys: the second dimension of a sweep. A seed key is the decimal string of a
# non-negative integer ("0", "1", "42"), stored as VARCHAR next to an INTEGER ``seed``.
DEFAULT_SEED_KEYS = ("0",)


def parse_seed_key(text: str) -> str:
    """The canonical key of a training seed typed by a user (``"007"`` -> ``"7"``)."""
    if not isinstance(text, str) or not re.fullmatch(r"[0-9]+", text):
        raise LambdaKeyError(f"seed key {text!r} is not a non-negative integer; seed partition keys are "
                             f"training seeds such as 0, 1, 2")
    return str(int(text))


def seed_value(key: str) -> int:
    """The training seed of a stored seed key; the key must already be canonical."""
    canonical = parse_seed_key(key)
    if canonical != key:
        raise LambdaKeyError(f"seed key {key!r} is not canonical; add it as {canonical!r} "
                             f"(`polydag seeds add {canonical}`)")
    return int(canonical)


class SweepKey(NamedTuple):
    """One unit of a sweep: a λ and a training seed (a λ × seed partition)."""

    lambda_key: str
    seed_key: str = "0"

    @property
    def label(self) -> str:
        return f"λ={self.lambda_key} seed={self.seed_key}"

    @property
    def dirname(self) -> str:
        """Where the unit's artifacts live, below the sweep's root: ``<λ>/seed-<seed>``."""
        return f"{self.lambda_key}/seed-{self.seed_key}"
