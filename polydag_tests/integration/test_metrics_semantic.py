"""Mean pairwise cosine distance and Vendi score: crafted embeddings, then the real model."""

import math

import numpy as np
import pytest

from polydag.core.evaluation.metrics.semantic import (
    default_embedder,
    mean_pairwise_cosine_distance,
    semantic_diversity,
    vendi_score,
)


def test_distance_of_crafted_vectors():
    e = np.eye(3)
    assert mean_pairwise_cosine_distance(e) == pytest.approx(1.0)
    assert mean_pairwise_cosine_distance(np.ones((4, 3))) == 0.0
    assert mean_pairwise_cosine_distance(np.array([[1.0, 0.0], [-1.0, 0.0]])) == pytest.approx(2.0)
    # rows are normalised first: scale does not matter
    assert mean_pairwise_cosine_distance(np.array([[2.0, 0.0], [0.0, 5.0]])) == pytest.approx(1.0)
    # three vectors: cos(0,1)=0, cos(0,2)=cos(45°), cos(1,2)=cos(45°)
    v = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    expected = ((1 - 0) + 2 * (1 - math.sqrt(0.5))) / 3
    assert mean_pairwise_cosine_distance(v) == pytest.approx(expected)


def test_distance_of_one_row_is_nan():
    assert math.isnan(mean_pairwise_cosine_distance(np.ones((1, 3))))


def test_vendi_of_crafted_vectors():
    assert vendi_score(np.ones((5, 3))) == pytest.approx(1.0)
    assert vendi_score(np.eye(4)) == pytest.approx(4.0)
    # two vectors with cosine c: eigenvalues of K/2 are (1 ± c)/2
    c = 0.6
    v = np.array([[1.0, 0.0], [c, math.sqrt(1 - c * c)]])
    lam = np.array([(1 + c) / 2, (1 - c) / 2])
    assert vendi_score(v) == pytest.approx(math.exp(-np.sum(lam * np.log(lam))))
    assert vendi_score(np.ones((1, 3))) == pytest.approx(1.0)


def test_vendi_small_and_large_gram_agree():
    rng = np.random.default_rng(0)
    wide = rng.normal(size=(6, 3))  # m > d: uses the d×d matrix
    k = wide / np.linalg.norm(wide, axis=1, keepdims=True)
    lam = np.clip(np.linalg.eigvalsh(k @ k.T / 6), 0, None)
    lam = lam[lam > 0]
    assert vendi_score(wide) == pytest.approx(math.exp(-np.sum(lam * np.log(lam))), rel=1e-9)


def test_bad_embeddings_are_errors():
    with pytest.raises(ValueError, match="all zeros"):
        vendi_score(np.array([[1.0, 0.0], [0.0, 0.0]]))
    with pytest.raises(ValueError, match="NaN"):
        mean_pairwise_cosine_distance(np.array([[1.0, np.nan], [0.0, 1.0]]))
    with pytest.raises(ValueError, match="2-D"):
        vendi_score(np.ones(3))


def test_semantic_diversity_with_the_default_model():
    same = semantic_diversity(["I love this song"] * 4)
    assert 0.0 <= same < 1e-6
    varied = semantic_diversity(["I love this song", "Taxes are due in April", "The cat sleeps all day"])
    paraphrases = semantic_diversity(["I love this song", "I adore this song", "This song is great"])
    assert varied > paraphrases > same
    assert varied > 0.5
    assert math.isnan(semantic_diversity(["just one"]))
    assert semantic_diversity(["", "not empty"]) > 0  # empty text is encoded, not rejected
    assert default_embedder() is default_embedder()
