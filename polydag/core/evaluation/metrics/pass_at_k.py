"""Unbiased pass@k (Chen et al. 2021, "Evaluating Large Language Models Trained on Code").

With n samples of which c pass, the probability that at least one of k samples drawn without
replacement passes is

    pass@k = 1 − C(n−c, k) / C(n, k)
           = 1 − Π_{i=n−c+1}^{n} (1 − k/i)        (product form, numerically stable)
           = 1                                    when n − c < k (every k-subset has a pass).

The binomial ratio in floats overflows to inf/inf = NaN at n = 2000, k = 1000; the product form
stays in [0, 1]. The textbook code returns 1.0 for k > n even when c = 0, so k > n is refused
here with an error instead.
"""

from __future__ import annotations

import numbers

import numpy as np


def _check_int(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"pass_at_k: {name} must be an integer, got {value!r}")
    return int(value)


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k for n samples with c passing (see module doc).

    Raises ValueError for negative counts, c > n, k < 1 and k > n (pass@k needs at least k
    samples: generate more samples per prompt or use a smaller k).
    """
    n, c, k = _check_int("n", n), _check_int("c", c), _check_int("k", k)
    if n < 0 or c < 0:
        raise ValueError(f"pass_at_k: counts must be ≥ 0, got n={n}, c={c}")
    if c > n:
        raise ValueError(f"pass_at_k: c={c} passing samples is more than n={n} samples")
    if k < 1:
        raise ValueError(f"pass_at_k: k must be ≥ 1, got k={k}")
    if k > n:
        raise ValueError(
            f"pass_at_k: k={k} is larger than the n={n} samples per prompt; pass@{k} needs at "
            f"least {k} samples (raise GenerationConfig.n_samples or drop k={k})"
        )
    if n - c < k:
        return 1.0
    i = np.arange(n - c + 1, n + 1, dtype=np.float64)
    return float(1.0 - np.prod(1.0 - k / i))
