"""Distinct-n and the word tokenizers behind it (hand-worked values, edge cases, missing NLTK data)."""

import math

import nltk
import pytest

from polydag.core.evaluation.metrics.lexical import distinct_n, distinct_n_from_tokens
from polydag.core.evaluation.metrics.tokens import TokenizerResourceError, get_word_tokenizer, tokenize


def test_tweet_tokenizer_lowercases_and_keeps_tweet_tokens():
    assert tokenize("Great GAME tonight!! #NBA @bob :)") == ["great", "game", "tonight", "!", "!", "#nba", "@bob", ":)"]


def test_distinct_hand_worked():
    texts = ["the cat sat", "the cat ran"]
    # unigrams: the cat sat the cat ran -> 6 total, {the, cat, sat, ran} = 4 unique
    assert distinct_n(texts, 1) == pytest.approx(4 / 6)
    # bigrams: (the cat)(cat sat)(the cat)(cat ran) -> 4 total, 3 unique
    assert distinct_n(texts, 2) == pytest.approx(3 / 4)


def test_distinct_ngrams_do_not_span_samples():
    # "a b" + "c d": bigrams are (a b), (c d); a spanning bigram (b c) would make 3.
    assert distinct_n_from_tokens([["a", "b"], ["c", "d"]], 2) == 1.0
    assert distinct_n(["a b", "c d"], 2) == 1.0


def test_identical_samples_have_low_distinct():
    texts = ["what a great day to be outside"] * 10
    assert distinct_n(texts, 1) == pytest.approx(1 / 10)
    assert distinct_n(texts, 2) == pytest.approx(1 / 10)


def test_distinct_is_case_insensitive():
    assert distinct_n(["Hello world", "hello WORLD"], 2) == 0.5


def test_empty_samples_count_no_ngrams():
    # Empty texts are legitimate samples; they add no n-grams.
    assert distinct_n(["", "a b c"], 1) == 1.0
    assert distinct_n(["", "a a"], 1) == 0.5


def test_no_ngrams_at_all_is_nan_not_zero():
    assert math.isnan(distinct_n(["", ""], 1))
    assert math.isnan(distinct_n(["one", "two"], 2))  # single tokens: no bigrams
    assert distinct_n(["one", "two"], 1) == 1.0


def test_single_sample():
    assert distinct_n(["a b a b"], 2) == pytest.approx(2 / 3)


def test_bad_input_is_an_error():
    with pytest.raises(ValueError, match="at least one text"):
        distinct_n([], 1)
    with pytest.raises(TypeError, match="one str"):
        distinct_n("the cat", 1)
    with pytest.raises(TypeError, match="text 1"):
        distinct_n(["ok", None], 1)
    with pytest.raises(ValueError, match="n must be"):
        distinct_n(["ok"], 0)
    with pytest.raises(ValueError, match="unknown word tokenizer"):
        distinct_n(["ok"], 1, tokenizer="nope")


def test_missing_nltk_resource_is_a_clear_error(monkeypatch, tmp_path):
    """The researchers' bug: punkt missing -> swallowed LookupError -> all zeros. Here: an error."""
    get_word_tokenizer.cache_clear()
    monkeypatch.setattr(nltk.data, "path", [str(tmp_path)])
    try:
        with pytest.raises(TokenizerResourceError) as info:
            distinct_n(["a b c", "d e f"], 2, tokenizer="word_tokenize")
        message = str(info.value)
        assert "punkt_tab" in message and "nltk.download('punkt_tab')" in message
        # the default tokenizer needs no data, even with an empty NLTK data path
        assert distinct_n(["a b c", "d e f"], 2) == 1.0
    finally:
        get_word_tokenizer.cache_clear()


def test_data_free_tokenizers_work_without_nltk_data(monkeypatch, tmp_path):
    get_word_tokenizer.cache_clear()
    monkeypatch.setattr(nltk.data, "path", [str(tmp_path)])
    try:
        for name in ("tweet", "nltk_word", "treebank", "wordpunct"):
            assert tokenize("Hello, World", name)[0] == "hello"
    finally:
        get_word_tokenizer.cache_clear()
