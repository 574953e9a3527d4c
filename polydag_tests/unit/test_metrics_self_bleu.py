"""Self-BLEU: the fast path equals sacrebleu's own sentence_score; edge cases."""

import math
import random

import pytest
import sacrebleu

from polydag.core.evaluation.metrics.self_bleu import (
    bleu_metric,
    self_bleu,
    self_bleu_reference,
    self_bleu_scores,
    self_bleu_signature,
)

WORDS = "the a cat dog sat on mat , . ! ? hello world I love it so much yes no Dogs CAT 3.5 don't".split()


def _random_texts(rng, n):
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(0, 18))) for _ in range(n)]


def test_fast_path_equals_sacrebleu_sentence_score_on_random_texts():
    rng = random.Random(7)
    for _ in range(200):
        texts = _random_texts(rng, rng.randint(2, 10))
        fast = self_bleu_scores(texts)
        for i, value in enumerate(fast):
            others = texts[:i] + texts[i + 1:]
            expected = min(bleu_metric().sentence_score(texts[i], others).score / 100, 1.0)
            assert value == pytest.approx(expected, abs=1e-9), (texts, i)
        assert self_bleu(texts) == pytest.approx(self_bleu_reference(texts), abs=1e-9)


def test_matches_sacrebleu_sentence_bleu_function():
    texts = ["I love this so much", "I love it so much!", "never again", "love love love"]
    expected = [
        sacrebleu.sentence_bleu(texts[i], texts[:i] + texts[i + 1:]).score / 100 for i in range(len(texts))
    ]
    assert self_bleu(texts) == pytest.approx(sum(expected) / len(expected), abs=1e-9)


def test_hand_worked_two_samples():
    # hyp "a b c d" vs ref "a b c e": p1=3/4, p2=2/3, p3=1/2, p4: 0 matches of 1 -> exp
    # smoothing 100/(2*1); equal lengths so BP=1. BLEU = exp(mean(log(75, 66.67, 50, 50)))/100.
    expected = math.exp((math.log(75) + math.log(200 / 3) + math.log(50) + math.log(50)) / 4) / 100
    assert self_bleu(["a b c d", "a b c e"]) == pytest.approx(expected, abs=1e-12)


def test_identical_samples_score_one():
    assert self_bleu(["what a great day to be outside"] * 10) == 1.0
    assert self_bleu(["yes", "yes"]) == 1.0  # effective order: unigram only


def test_disjoint_samples_score_zero():
    assert self_bleu(["alpha beta", "gamma delta", "epsilon zeta"]) == 0.0


def test_one_sample_is_nan():
    assert math.isnan(self_bleu(["only one"]))
    assert math.isnan(self_bleu_reference(["only one"]))


def test_empty_texts():
    # an empty hypothesis scores 0 (sacrebleu: no n-grams, BP 0); as a reference it adds nothing
    assert self_bleu(["", ""]) == 0.0
    scores = self_bleu_scores(["", "a b", "a b"])
    assert scores == [0.0, 1.0, 1.0]
    assert self_bleu(["", "a b", "a b"]) == pytest.approx(self_bleu_reference(["", "a b", "a b"]), abs=1e-12)


def test_no_samples_is_an_error():
    with pytest.raises(ValueError):
        self_bleu([])
    with pytest.raises(TypeError):
        self_bleu("a string")


def test_signature_names_the_settings():
    signature = self_bleu_signature()
    for part in ("nrefs:n-1", "case:mixed", "eff:yes", "tok:13a", "smooth:exp", f"version:{sacrebleu.__version__}"):
        assert part in signature


def test_bleu_object_is_built_once():
    assert bleu_metric() is bleu_metric()
