import hashlib

import numpy as np
import pytest

from polydag.core.evaluation.quality import (
    QualityConfig,
    check_replies,
    check_reply,
    prompt_overlap,
    repeat_fraction,
    tokenize,
)

PROMPT = "Just finished my first half marathon and honestly I feel amazing 🏃"
CFG = QualityConfig(min_relevance=None)  # the rules without an embedder


def _codes(result) -> set[str]:
    return {reason.split(":", 1)[0] for reason in result.reasons}


def test_good_reply_passes():
    result = check_reply(PROMPT, "Proud of you, keep going with those long Sunday runs! 💪", CFG)
    assert result.passed and result.reasons == ()


def test_empty_reply_fails():
    result = check_reply(PROMPT, "   ", CFG)
    assert not result.passed and _codes(result) == {"empty"}


def test_min_words_both_sides():
    assert _codes(check_reply(PROMPT, "Nice one 💪!!", CFG)) == {"too_short"}  # emoji/punct are not words
    assert check_reply(PROMPT, "Nice one, congrats", CFG).passed


def test_max_words_both_sides():
    cfg = QualityConfig(max_words=6, min_relevance=None)
    assert check_reply(PROMPT, "such a great result , well done 🎉", cfg).passed  # 6 words
    result = check_reply(PROMPT, "such a great result, well done #running", cfg)
    assert _codes(result) == {"too_long"} and "7 words > max_words=6" in result.reasons[0]


def test_prompt_copy_both_sides():
    assert _codes(check_reply(PROMPT, PROMPT, CFG)) == {"copies_prompt"}
    # A prefix copy: the reply is the start of the prompt.
    assert _codes(check_reply(PROMPT, "Just finished my first half marathon", CFG)) == {"copies_prompt"}
    # Sharing a few topic words is fine.
    assert check_reply(PROMPT, "My first half marathon was brutal, enjoy the rest", CFG).passed
    assert prompt_overlap(tokenize("a b c"), tokenize("a b c")) == 1.0
    assert prompt_overlap(tokenize("a b c d"), tokenize("x y")) == 0.0


def test_repetition_both_sides():
    result = check_reply(PROMPT, "so good so good so good so good", CFG)
    assert _codes(result) == {"repetitive"}
    assert _codes(check_reply(PROMPT, "lol lol lol lol lol", CFG)) == {"repetitive"}
    assert check_reply(PROMPT, "so good, you should be so proud of it", CFG).passed
    assert repeat_fraction(["a", "b", "a", "b", "a", "b"]) == pytest.approx(0.6)  # 3/5 repeated bigrams
    assert repeat_fraction(["a", "b", "c", "d"]) == 0.25


def test_several_failures_are_all_reported():
    result = check_reply("lol", "lol lol lol lol lol lol lol lol", QualityConfig(max_words=5, min_relevance=None))
    assert _codes(result) == {"too_long", "copies_prompt", "repetitive"}


def test_config_validation():
    with pytest.raises(ValueError, match="min_words"):
        QualityConfig(min_words=5, max_words=2)
    with pytest.raises(ValueError, match="max_prompt_overlap"):
        QualityConfig(max_prompt_overlap=0.0)
    with pytest.raises(ValueError, match="min_relevance"):
        QualityConfig(min_relevance=2.0)


class HashingBagOfWords:
    """A small real embedder: signed feature hashing of lower-cased tokens, L2-normalised."""

    def __init__(self, dim: int = 256):
        self.dim = dim

    def encode(self, texts):
        out = np.zeros((len(texts), self.dim))
        for row, text in enumerate(texts):
            for token in tokenize(text):
                h = int.from_bytes(hashlib.sha256(token.encode()).digest()[:8], "little")
                out[row, h % self.dim] += 1.0 if (h >> 32) & 1 else -1.0
            norm = np.linalg.norm(out[row])
            if norm:
                out[row] /= norm
        return out


def _embedder():
    try:
        from polydag.core.evaluation.embeddings import load_embedder

        return load_embedder()
    except Exception:  # the shared embedder needs its model package; the hashing one is real too
        return HashingBagOfWords()


def test_relevance_rule_both_sides():
    embedder = HashingBagOfWords()
    cfg = QualityConfig(min_relevance=0.2)
    on_topic = check_reply("my tomato plants are finally growing", "your tomato plants look great, keep watering", cfg, embedder)
    off_topic = check_reply("my tomato plants are finally growing", "the referee ruined that football match", cfg, embedder)
    assert on_topic.passed
    assert _codes(off_topic) == {"off_topic"}


def test_relevance_rule_with_the_shared_embedder():
    embedder = _embedder()
    prompts = ["Who else is stargazing in the countryside tonight?"] * 2
    replies = ["Clear skies and the milky way, enjoy the stars", "Best pasta recipe needs more garlic"]
    sims = np.sum(embedder.encode(prompts) * embedder.encode(replies), axis=1)
    threshold = float(sims.mean())  # between the two, whatever the embedder's scale
    results = check_replies(prompts, replies, QualityConfig(min_relevance=threshold), embedder)
    assert [r.passed for r in results] == [True, False]


def test_relevance_needs_an_embedder_and_matching_lengths():
    with pytest.raises(ValueError, match="no embedder"):
        check_reply(PROMPT, "great run today friend", QualityConfig(min_relevance=0.1))
    with pytest.raises(ValueError, match="2 prompts but 1 replies"):
        check_replies(["a", "b"], ["reply here now"])
