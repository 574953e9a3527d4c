r"""The polychromic objective: a diversity term that really has a gradient.

The researchers trained with ``combined = quality_loss − λ · float(diversity_score)``. The
float carries no gradient, so ∇combined = ∇quality_loss for every λ: λ changed nothing.
Here the diversity of sampled replies enters the gradient through a score-function
(REINFORCE) estimator.

Set diversity
-------------
For N sampled replies y_1..y_N of one prompt and a distance d(a, b) in [0, 1]:

    d_ij  = d(y_i, y_j)                                  (N×N, symmetric, zero diagonal)
    D(S)  = 2 / (N(N−1)) · Σ_{i<j} d_ij                  (mean pairwise distance)

with three distances (``diversity_metric``):

- ``semantic``: d = 1 − cos(e_a, e_b) of L2-normalised sentence embeddings;
- ``bleu``: d = 1 − (BLEU(a | b) + BLEU(b | a)) / 200, sacrebleu sentence BLEU with
  ``effective_order=True`` (symmetrised because BLEU is not);
- ``distinct``: d = 1 − |G_a ∩ G_b| / |G_a ∪ G_b|, G the set of unigrams and bigrams of the
  lower-cased TweetTokenizer tokens (two empty texts have distance 0).

Leave-one-out advantage (``objective="loo"``)
---------------------------------------------
    d_i        = 1/(N−1) · Σ_{j≠i} d_ij             (mean distance of i to the others)
    A_i        = D(S) − D(S∖i) = (2/N) · (d_i − D(S∖i))          (N ≥ 3)

Because the samples are i.i.d., E[D(S∖i) ∇log π(y_i)] = 0, hence

    ∇_θ E[D(S)] = E[ Σ_i A_i ∇_θ log π(y_i) ]

exactly (checked by exact enumeration in ``polydag_tests/core/test_polychromic.py``). The
training term, with the advantages detached (constants), is

    L_div = −λ · (1/P) Σ_prompts Σ_i A_i · mean_t log π(y_{i,t})

so that minimising ``L_quality + L_div`` follows −∇L_quality + λ∇E[D]. Note the sum over i:
the issue writes ``mean_i``, which is the same direction scaled by 1/N (a rescaled λ); the
sum keeps λ on the scale of E[D]. ``mean_t`` over the tokens of a reply is a length-normalised
variant of the sequence score function Σ_t log π(y_{i,t}): it is biased for multi-token
replies (it down-weights long ones), and for one-token outputs it is exactly the unbiased
estimator above. π is the temperature-scaled policy we sample from
(log softmax(logits / T)); top-p truncation is ignored in log π.

Polychromic set objective (``objective="polychromic_set"``, Hamid et al., arXiv 2509.25424)
-----------------------------------------------------------------------------------------
Split the N samples into M subsets s_1..s_M of size k (all C(N, k) subsets, or a seeded
sample of ``n_sets`` of them). With a reward r_i ∈ {0, 1} (the quality checker's pass):

    f(s)     = mean_{i∈s} r_i · D(s)                (quality × diversity of the set)
    Â(s)     = f(s) − (1/M) Σ_m f(s_m)              (set advantage, baseline = mean over sets)
    A_i      = mean_{s ∋ i} Â(s)                    (each sample shares its sets' advantages)

and A_i enters L_div exactly as above (0 for a sample in no set).

Gradient audit
--------------
``diversity_grad_share = ‖g_div‖ / (‖g_quality‖ + ‖g_div‖)`` over the trainable parameters;
a float-valued diversity term gives exactly 0.
"""

from __future__ import annotations

import itertools
import random
from functools import lru_cache
from typing import TYPE_CHECKING, Sequence

import numpy as np

if TYPE_CHECKING:
    import torch

from polydag.core.polychromic.config import DISTANCE_METRICS


@lru_cache(maxsize=1)
def _bleu():
    from sacrebleu.metrics import BLEU

    return BLEU(effective_order=True)


def _ngram_set(text: str) -> frozenset:
    from polydag.core.evaluation.quality import tokenize

    tokens = tokenize(text)
    return frozenset(tokens) | frozenset(zip(tokens, tokens[1:]))


def pairwise_distances(texts: Sequence[str], metric: str, *, embedder=None) -> np.ndarray:
    """N×N distance matrix (float64, symmetric, zero diagonal; in [0, 1], semantic in [0, 2])."""
    if metric not in DISTANCE_METRICS:
        raise ValueError(f"diversity_metric must be one of {DISTANCE_METRICS}, got {metric!r}")
    texts = list(texts)
    n = len(texts)
    dist = np.zeros((n, n), dtype=np.float64)
    if metric == "semantic":
        if embedder is None:
            raise ValueError("diversity_metric='semantic' needs an embedder (polydag.core.evaluation.embeddings.load_embedder())")
        emb = np.asarray(embedder.encode(texts), dtype=np.float64)
        if emb.shape[0] != n:
            raise ValueError(f"embedder returned {emb.shape[0]} rows for {n} texts")
        dist = np.clip(1.0 - emb @ emb.T, 0.0, 2.0)
    elif metric == "bleu":
        bleu = _bleu()
        for i, j in itertools.combinations(range(n), 2):
            if texts[i] == texts[j]:
                # identical samples are not diverse, but sacrebleu scores an empty or
                # one-token pair 0, which would read as maximal distance
                continue
            s = bleu.sentence_score(texts[i], [texts[j]]).score + bleu.sentence_score(texts[j], [texts[i]]).score
            dist[i, j] = dist[j, i] = 1.0 - s / 200.0
    else:  # distinct
        grams = [_ngram_set(t) for t in texts]
        for i, j in itertools.combinations(range(n), 2):
            union = grams[i] | grams[j]
            sim = len(grams[i] & grams[j]) / len(union) if union else 1.0
            dist[i, j] = dist[j, i] = 1.0 - sim
    np.fill_diagonal(dist, 0.0)
    return dist


def _check_square(dist: np.ndarray) -> np.ndarray:
    dist = np.asarray(dist, dtype=np.float64)
    if dist.ndim != 2 or dist.shape[0] != dist.shape[1]:
        raise ValueError(f"distance matrix must be square, got shape {dist.shape}")
    if not np.all(np.isfinite(dist)):
        raise ValueError("distance matrix has non-finite entries")
    return dist


def set_diversity(dist: np.ndarray, members: Sequence[int] | None = None) -> float:
    """D = mean pairwise distance among ``members`` (all rows by default); needs ≥ 2 members."""
    dist = _check_square(dist)
    idx = list(range(dist.shape[0])) if members is None else list(members)
    if len(idx) < 2:
        raise ValueError(f"set diversity needs at least 2 members, got {len(idx)}")
    sub = dist[np.ix_(idx, idx)]
    k = len(idx)
    return float(sub[np.triu_indices(k, 1)].mean())


def loo_advantages(dist: np.ndarray) -> np.ndarray:
    """A_i = D(S) − D(S∖i) = (2/N)(d_i − D(S∖i)) for each sample i; needs N ≥ 3."""
    dist = _check_square(dist)
    n = dist.shape[0]
    if n < 3:
        raise ValueError(f"leave-one-out advantages need n_generations >= 3 samples, got {n}")
    row_sums = dist.sum(axis=1)
    total = dist[np.triu_indices(n, 1)].sum()
    d_i = row_sums / (n - 1)
    d_without_i = (total - row_sums) / ((n - 1) * (n - 2) / 2)
    return (2.0 / n) * (d_i - d_without_i)


def polychromic_set_advantages(
    dist: np.ndarray,
    rewards: Sequence[float],
    *,
    set_size: int = 2,
    n_sets: int | None = None,
    seed: int = 0,
) -> np.ndarray:
    """Per-sample advantages of the polychromic set objective (see module docstring).

    ``n_sets=None`` uses all C(N, set_size) subsets; otherwise a sample of that many distinct
    subsets drawn with ``random.Random(seed)``.
    """
    dist = _check_square(dist)
    n = dist.shape[0]
    rewards = np.asarray(rewards, dtype=np.float64)
    if rewards.shape != (n,):
        raise ValueError(f"need one reward per sample: {n} samples, rewards shape {rewards.shape}")
    if not 2 <= set_size <= n:
        raise ValueError(f"set_size must be in [2, n_generations={n}], got {set_size}")
    subsets = list(itertools.combinations(range(n), set_size))
    if n_sets is not None:
        if n_sets < 1:
            raise ValueError(f"n_sets must be >= 1 or None, got {n_sets}")
        if n_sets < len(subsets):
            subsets = random.Random(seed).sample(subsets, n_sets)
    f = np.array([rewards[list(s)].mean() * set_diversity(dist, s) for s in subsets])
    set_adv = f - f.mean()
    sums = np.zeros(n)
    counts = np.zeros(n)
    for s, a in zip(subsets, set_adv):
        sums[list(s)] += a
        counts[list(s)] += 1
    return np.divide(sums, counts, out=np.zeros(n), where=counts > 0)


def diversity_surrogate_loss(
    advantages: "torch.Tensor",
    sequence_logprobs: "torch.Tensor",
    diversity_weight: float,
    n_prompts: int,
) -> "torch.Tensor":
    """L_div = −λ · (1/P) · Σ A_i · ℓ_i with the advantages detached.

    ``advantages`` and ``sequence_logprobs`` (ℓ_i = mean_t log π(y_{i,t}), with grad) are
    flat tensors over all P prompts × N samples.
    """
    if advantages.shape != sequence_logprobs.shape:
        raise ValueError(f"advantages {tuple(advantages.shape)} and log-probs {tuple(sequence_logprobs.shape)} differ in shape")
    if n_prompts < 1:
        raise ValueError(f"n_prompts must be >= 1, got {n_prompts}")
    adv = advantages.detach().to(sequence_logprobs.dtype)
    return -float(diversity_weight) * (adv * sequence_logprobs).sum() / n_prompts


def diversity_grad_share(g_quality_norm: float, g_div_norm: float) -> float:
    """‖g_div‖ / (‖g_quality‖ + ‖g_div‖); 0.0 when both norms are zero."""
    g_quality_norm, g_div_norm = float(g_quality_norm), float(g_div_norm)
    if g_quality_norm < 0 or g_div_norm < 0 or not np.isfinite(g_quality_norm) or not np.isfinite(g_div_norm):
        raise ValueError(f"gradient norms must be finite and >= 0, got {g_quality_norm}, {g_div_norm}")
    total = g_quality_norm + g_div_norm
    return 0.0 if total == 0.0 else g_div_norm / total
