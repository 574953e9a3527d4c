import itertools
import math

import numpy as np
import pytest
import torch

from polydag.core.polychromic.objective import (
    diversity_grad_share,
    diversity_surrogate_loss,
    loo_advantages,
    pairwise_distances,
    polychromic_set_advantages,
    set_diversity,
)

# A categorical "policy" over K one-token replies; the distance between two replies is the
# real `distinct` metric of their texts.
REPLIES = [
    "the cat sat on the mat",
    "a dog ran in the park",
    "the cat sat in the park",
    "lovely weather for a walk today",
]
LOGITS = [0.3, -0.8, 1.1, -0.2]


def _exact_and_estimated_gradients(n: int, metric: str = "distinct"):
    """∇E[D(S)] by autograd through the exact expectation, and E[∇(−L_div)] by enumerating all
    K^n sample tuples, for i.i.d. samples from softmax(θ)."""
    theta = torch.tensor(LOGITS, dtype=torch.float64, requires_grad=True)
    logp = torch.log_softmax(theta, dim=0)
    k = len(REPLIES)
    expected_d = torch.zeros((), dtype=torch.float64)
    expected_surrogate = torch.zeros((), dtype=torch.float64)
    for tup in itertools.product(range(k), repeat=n):
        idx = list(tup)
        dist = pairwise_distances([REPLIES[i] for i in idx], metric)
        prob = torch.exp(logp[idx].sum())
        expected_d = expected_d + prob * set_diversity(dist)
        # One prompt; one-token replies, so mean_t log π is exactly log π(y_i).
        advantages = torch.tensor(loo_advantages(dist), dtype=torch.float64)
        l_div = diversity_surrogate_loss(advantages, logp[idx], diversity_weight=1.0, n_prompts=1)
        expected_surrogate = expected_surrogate + prob.detach() * (-l_div)
    (exact,) = torch.autograd.grad(expected_d, theta, retain_graph=True)
    (estimated,) = torch.autograd.grad(expected_surrogate, theta)
    return exact, estimated


@pytest.mark.parametrize("n", [3, 4])
def test_loo_estimator_is_exactly_unbiased_by_enumeration(n):
    exact, estimated = _exact_and_estimated_gradients(n)
    assert torch.linalg.vector_norm(exact) > 1e-3  # a real, non-zero gradient
    assert torch.allclose(estimated, exact, atol=1e-6, rtol=0), (estimated, exact)
    # The same enumeration tells a wrongly scaled estimator apart (mean_i instead of Σ_i).
    assert not torch.allclose(estimated / n, exact, atol=1e-6, rtol=0)


def test_float_valued_diversity_term_has_zero_gradient():
    """The researchers' bug: combined = ce − λ·float(D). Its gradient is exactly ∇ce."""
    theta = torch.tensor(LOGITS, dtype=torch.float64, requires_grad=True)
    logp = torch.log_softmax(theta, dim=0)
    ce = -logp[1]
    sample = [0, 2, 3]
    dist = pairwise_distances([REPLIES[i] for i in sample], "distinct")
    lam = 2.0
    bug = ce - lam * float(set_diversity(dist))
    (g_ce,) = torch.autograd.grad(ce, theta, retain_graph=True)
    (g_bug,) = torch.autograd.grad(bug, theta, retain_graph=True)
    assert torch.equal(g_bug, g_ce)
    g_div_bug = g_bug - g_ce
    assert diversity_grad_share(float(g_ce.norm()), float(g_div_bug.norm())) == 0.0

    advantages = torch.tensor(loo_advantages(dist))
    real = diversity_surrogate_loss(advantages, logp[sample], lam, n_prompts=1)
    (g_div,) = torch.autograd.grad(real, theta)
    assert diversity_grad_share(float(g_ce.norm()), float(g_div.norm())) > 0.01


def test_loo_advantages_match_the_definition():
    rng = np.random.default_rng(0)
    for n in (3, 4, 6):
        x = rng.random((n, n))
        dist = np.triu(x, 1) + np.triu(x, 1).T
        full = set_diversity(dist)
        brute = [full - set_diversity(dist, [j for j in range(n) if j != i]) for i in range(n)]
        assert np.allclose(loo_advantages(dist), brute, atol=1e-12)
        d_i = dist.sum(1) / (n - 1)
        without = [set_diversity(dist, [j for j in range(n) if j != i]) for i in range(n)]
        assert np.allclose(loo_advantages(dist), 2 / n * (d_i - np.array(without)), atol=1e-12)
    with pytest.raises(ValueError, match="n_generations >= 3"):
        loo_advantages(np.zeros((2, 2)))


def test_pairwise_distances_per_metric():
    texts = ["the cat sat", "the cat sat", "dogs bark loudly"]
    for metric in ("bleu", "distinct"):
        d = pairwise_distances(texts, metric)
        assert d.shape == (3, 3) and np.allclose(d, d.T) and np.all(np.diag(d) == 0)
        assert d[0, 1] == pytest.approx(0.0, abs=1e-9)  # identical texts
        assert d[0, 2] == pytest.approx(1.0)  # nothing in common
    # distinct: uni+bigram Jaccard. {the, cat, the cat} vs {the, dog, the dog}: 1 shared of 5.
    assert pairwise_distances(["the cat", "the dog", "the cat"], "distinct")[0, 1] == pytest.approx(1 - 1 / 5)
    # bleu is symmetrised: d(a, b) = 1 − (BLEU(a|b) + BLEU(b|a)) / 200.
    from sacrebleu.metrics import BLEU

    bleu = BLEU(effective_order=True)
    a, b = "the cat sat on the mat today", "the cat sat on a mat"
    expected = 1 - (bleu.sentence_score(a, [b]).score + bleu.sentence_score(b, [a]).score) / 200
    assert pairwise_distances([a, b], "bleu")[0, 1] == pytest.approx(expected)
    with pytest.raises(ValueError, match="diversity_metric must be one of"):
        pairwise_distances(texts, "vendi")
    with pytest.raises(ValueError, match="needs an embedder"):
        pairwise_distances(texts, "semantic")


class _AxisEmbedder:
    """Maps each text to a fixed unit vector: a real (if tiny) embedding table."""

    def __init__(self, table):
        self.table = table

    def encode(self, texts):
        return np.array([self.table[t] for t in texts], dtype=np.float64)


def test_semantic_distance_is_one_minus_cosine():
    s = math.sqrt(0.5)
    emb = _AxisEmbedder({"a": [1.0, 0.0], "b": [0.0, 1.0], "c": [s, s]})
    d = pairwise_distances(["a", "b", "c"], "semantic", embedder=emb)
    assert d[0, 1] == pytest.approx(1.0) and d[0, 2] == pytest.approx(1 - s)


def test_polychromic_set_advantages():
    dist = np.array([[0, 0.2, 0.8], [0.2, 0, 0.6], [0.8, 0.6, 0]])
    rewards = [1.0, 1.0, 0.0]
    adv = polychromic_set_advantages(dist, rewards, set_size=2)
    # sets {0,1}: 1·0.2 = 0.2, {0,2}: 0.5·0.8 = 0.4, {1,2}: 0.5·0.6 = 0.3; mean 0.3
    set_adv = {(0, 1): -0.1, (0, 2): 0.1, (1, 2): 0.0}
    expected = [
        (set_adv[(0, 1)] + set_adv[(0, 2)]) / 2,
        (set_adv[(0, 1)] + set_adv[(1, 2)]) / 2,
        (set_adv[(0, 2)] + set_adv[(1, 2)]) / 2,
    ]
    assert np.allclose(adv, expected)
    assert np.allclose(polychromic_set_advantages(dist, [0, 0, 0]), 0.0)  # no quality, no signal
    big = np.ones((6, 6)) - np.eye(6)
    a1 = polychromic_set_advantages(big * np.arange(1, 7), [1] * 6, set_size=3, n_sets=5, seed=7)
    a2 = polychromic_set_advantages(big * np.arange(1, 7), [1] * 6, set_size=3, n_sets=5, seed=7)
    assert np.array_equal(a1, a2)
    with pytest.raises(ValueError, match="set_size"):
        polychromic_set_advantages(dist, rewards, set_size=4)
    with pytest.raises(ValueError, match="one reward per sample"):
        polychromic_set_advantages(dist, [1.0, 0.0])


def test_diversity_grad_share():
    assert diversity_grad_share(0.0, 0.0) == 0.0
    assert diversity_grad_share(3.0, 1.0) == 0.25
    assert diversity_grad_share(0.0, 2.0) == 1.0
    with pytest.raises(ValueError):
        diversity_grad_share(-1.0, 1.0)
    with pytest.raises(ValueError):
        diversity_grad_share(float("nan"), 1.0)


def test_surrogate_detaches_advantages_and_checks_shapes():
    adv = torch.tensor([0.5, -0.5, 0.0], requires_grad=True)
    lp = torch.tensor([-1.0, -2.0, -3.0], requires_grad=True)
    loss = diversity_surrogate_loss(adv, lp, 2.0, n_prompts=1)
    assert loss.item() == pytest.approx(-2.0 * (0.5 * -1.0 + -0.5 * -2.0))
    loss.backward()
    assert adv.grad is None and torch.equal(lp.grad, torch.tensor([-1.0, 1.0, 0.0]))
    with pytest.raises(ValueError, match="differ in shape"):
        diversity_surrogate_loss(adv, lp[:2], 1.0, 1)


def test_identical_short_samples_have_zero_bleu_distance():
    from polydag.core.polychromic.objective import pairwise_distances

    dist = pairwise_distances(["", "", "ok", "ok"], "bleu")
    assert dist[0, 1] == 0.0 and dist[2, 3] == 0.0
    assert dist[0, 2] == 1.0
