"""Equivalence classes of one prompt's samples, and the metrics counted over them.

NoveltyBench (Zhang et al. 2025) measures diversity as the number of *equivalence classes*
among a prompt's k samples (``distinct_k``): two replies in one class say the same thing, so
rewording does not count as diversity. Where the classes come from:

- **ground truth** (the default data): a sample's class is its reply intent (agree, ask,
  advise, ...), as the ground-truth verifier labels it (``reply_intent``);
- **embedding partition** (user data, no intents): :func:`embedding_classes`, complete-linkage
  agglomerative clustering of the sentence embeddings, cut at cosine similarity ≥ τ: every two
  samples of one class have cosine ≥ τ, and no two classes could merge without breaking that.
  Complete linkage (not single linkage) so that a chain of near neighbours, each a small step
  from the next, never puts two unrelated replies in one class. On the default data this
  partition matches the intents' *count* best at τ = 0.5 but agrees only weakly with the
  intents themselves (adjusted Rand ≤ 0.10; bench/results/class_threshold.json): MiniLM
  mostly encodes the topic, so for user data distinct_k is a coarse proxy, and
  ``metric_validity`` is computed on ground truth only. scipy's hierarchical
  clustering does the work; ties in the merge order are broken by sample order, so the
  partition is deterministic.

Only samples that pass the quality checker are classed ("among quality replies", as in
NoveltyBench, whose utility weighs classes by quality): a malformed or off-topic reply is not a
new idea. :func:`distinct_pass_at_k` is the utility-style pass@k over these classes.
"""

from __future__ import annotations

import math
import numbers
from typing import Sequence

import numpy as np

from polydag.core.evaluation.config import DEFAULT_CLASS_SIMILARITY  # documented there


def embedding_classes(embeddings, threshold: float = DEFAULT_CLASS_SIMILARITY) -> list[int]:
    """Class label (0, 1, ...) of each row of ``embeddings`` (see module doc).

    Labels are numbered in order of first appearance. Rows are L2-normalised here, so any
    embedding scale works. 0 rows give ``[]``, 1 row ``[0]``.
    """
    from scipy.cluster.hierarchy import fcluster, linkage

    if not -1.0 <= threshold <= 1.0:
        raise ValueError(f"class similarity threshold must be a cosine in [-1, 1], got {threshold}")
    e = np.asarray(embeddings, dtype=np.float64)
    if e.ndim != 2:
        raise ValueError(f"embeddings must be a 2-D array (samples × dims), got shape {e.shape}")
    if e.shape[0] == 0:
        return []
    if not np.all(np.isfinite(e)):
        raise ValueError("embeddings contain NaN or inf")
    norms = np.linalg.norm(e, axis=1, keepdims=True)
    if np.any(norms == 0):
        raise ValueError(f"embedding rows {np.flatnonzero(norms[:, 0] == 0).tolist()} are all zeros")
    if e.shape[0] == 1:
        return [0]
    e = e / norms
    similarity = np.clip(e @ e.T, -1.0, 1.0)
    distance = 1.0 - similarity[np.triu_indices(e.shape[0], k=1)]  # condensed form, as scipy wants
    tree = linkage(np.clip(distance, 0.0, 2.0), method="complete")
    # fcluster keeps merges whose complete-linkage distance is ≤ t; 1e-12 absorbs rounding of
    # a pair exactly at the threshold
    raw = fcluster(tree, t=1.0 - threshold + 1e-12, criterion="distance")
    relabel: dict[int, int] = {}
    return [relabel.setdefault(int(label), len(relabel)) for label in raw]


def count_classes(labels: Sequence) -> dict:
    """Members per class label, labels in order of first appearance."""
    counts: dict = {}
    for label in labels:
        counts[label] = counts.get(label, 0) + 1
    return counts


def _check_int(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"distinct_pass_at_k: {name} must be an integer, got {value!r}")
    return int(value)


def distinct_pass_at_k(class_sizes: Sequence[int], n: int, k: int, m: int) -> float:
    """P(k samples drawn without replacement from the n contain ≥ m distinct classes).

    ``class_sizes`` are the sizes of the valid classes among the n samples; the other
    n − Σ sizes samples are invalid (failed the quality checker) and belong to no class.
    With m = 1 and every valid sample its own class this is the unbiased pass@k of Chen et
    al. (2021); in general it is its utility-style version: the chance a user shown k replies
    sees at least m different valid ones.

    Exact, by a dynamic programme over the classes (no library offers this distribution:
    scipy's ``multivariate_hypergeom`` gives one count vector at a time, and summing it over
    all vectors is exponential). ``ways[s][j]`` is the number of ways to pick s samples from
    the classes seen so far covering j of them (j capped at m, since "≥ m" is all that
    matters); a class contributes C(size, t) ways for t ≥ 1 picked members. The invalid
    samples fill the rest: the count of k-subsets covering ≥ m classes is
    Σ_s ways[s][m] · C(invalid, k − s), divided by C(n, k). Python integers keep every count
    exact; one float division at the end. Cost O(n · k · m).
    """
    n, k, m = _check_int("n", n), _check_int("k", k), _check_int("m", m)
    sizes = [_check_int("class size", s) for s in class_sizes]
    if any(s < 1 for s in sizes):
        raise ValueError(f"distinct_pass_at_k: class sizes must be ≥ 1, got {sizes}")
    valid = sum(sizes)
    if n < 0 or valid > n:
        raise ValueError(f"distinct_pass_at_k: {valid} classed samples is more than n={n} samples")
    if k < 1 or m < 1:
        raise ValueError(f"distinct_pass_at_k: k and m must be ≥ 1, got k={k}, m={m}")
    if k > n:
        raise ValueError(
            f"distinct_pass_at_k: k={k} is larger than the n={n} samples per prompt (raise "
            f"GenerationConfig.n_samples or lower distinct_pass_k)"
        )
    if len(sizes) < m or m > k:
        return 0.0
    ways = [[0] * (m + 1) for _ in range(k + 1)]
    ways[0][0] = 1
    for size in sizes:
        new = [row[:] for row in ways]  # t = 0: the class is not picked
        for s in range(k + 1):
            for j in range(m + 1):
                count = ways[s][j]
                if not count:
                    continue
                covered = min(j + 1, m)
                for t in range(1, min(size, k - s) + 1):
                    new[s + t][covered] += count * math.comb(size, t)
        ways = new
    invalid = n - valid
    hits = sum(ways[s][m] * math.comb(invalid, k - s) for s in range(k + 1))
    return hits / math.comb(n, k)
