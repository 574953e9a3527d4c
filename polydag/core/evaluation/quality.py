"""Quality checker for generated replies.

A reply passes when every rule holds; each failed rule adds a reason ``"<code>: <detail>"``.
The codes are stable, so results can be counted per rule:

- ``empty``: no tokens at all.
- ``too_short`` / ``too_long``: the number of *words* (TweetTokenizer tokens holding at least
  one letter or digit, so hashtags and mentions count, punctuation and emojis do not) is
  outside ``[min_words, max_words]``.
- ``copies_prompt``: the reply copies the prompt. Overlap is the larger of the token Jaccard
  similarity ``|P ∩ R| / |P ∪ R|`` of the two token sets and the shared-prefix share
  ``lcp(P, R) / len(R)`` of the token sequences; it fails when ``overlap >= max_prompt_overlap``.
- ``repetitive``: degenerate repetition. Fails when the most frequent token's share of all
  tokens, or the repeated-bigram share ``1 − distinct bigrams / bigrams``, exceeds
  ``max_repeat_fraction`` (only for replies of at least ``min_tokens_for_repeat`` tokens, as
  two-word replies cannot be judged).
- ``off_topic``: only with ``min_relevance`` set; cosine similarity of the prompt and reply
  embeddings below it. Needs an embedder with ``encode(list[str]) -> np.ndarray`` of
  L2-normalised rows (e.g. ``polydag.core.evaluation.embeddings.load_embedder()``).

Tokens come from ``nltk.tokenize.TweetTokenizer(preserve_case=False)``, which needs no
downloaded NLTK data.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from functools import lru_cache
from typing import Protocol, Sequence

import numpy as np

from polydag.core.evaluation.config import QualityConfig


class Embedder(Protocol):
    def encode(self, texts: list[str]) -> np.ndarray: ...


@dataclass(frozen=True)
class QualityResult:
    passed: bool
    reasons: tuple[str, ...]


@lru_cache(maxsize=1)
def _tokenizer():
    from nltk.tokenize import TweetTokenizer

    return TweetTokenizer(preserve_case=False)


def tokenize(text: str) -> list[str]:
    """Lower-cased tweet tokens (keeps hashtags, mentions and emojis whole)."""
    return _tokenizer().tokenize(text)


def _is_word(token: str) -> bool:
    return any(ch.isalnum() for ch in token)


def prompt_overlap(prompt_tokens: Sequence[str], reply_tokens: Sequence[str]) -> float:
    """max(token-set Jaccard, shared-prefix tokens / reply tokens); 0 for an empty reply."""
    if not reply_tokens:
        return 0.0
    p, r = set(prompt_tokens), set(reply_tokens)
    jaccard = len(p & r) / len(p | r)
    lcp = 0
    for a, b in zip(prompt_tokens, reply_tokens):
        if a != b:
            break
        lcp += 1
    return max(jaccard, lcp / len(reply_tokens))


def repeat_fraction(tokens: Sequence[str]) -> float:
    """max(top token share, 1 − distinct bigrams / bigrams); 0 for fewer than 2 tokens."""
    if len(tokens) < 2:
        return 0.0
    top_share = Counter(tokens).most_common(1)[0][1] / len(tokens)
    bigrams = list(zip(tokens, tokens[1:]))
    repeated_bigrams = 1.0 - len(set(bigrams)) / len(bigrams)
    return max(top_share, repeated_bigrams)


def _rule_reasons(prompt: str, reply: str, cfg: QualityConfig) -> list[str]:
    reply_tokens = tokenize(reply)
    if not reply_tokens:
        return ["empty: the reply has no tokens"]
    reasons: list[str] = []
    n_words = sum(_is_word(t) for t in reply_tokens)
    if n_words < cfg.min_words:
        reasons.append(f"too_short: {n_words} words < min_words={cfg.min_words}")
    if n_words > cfg.max_words:
        reasons.append(f"too_long: {n_words} words > max_words={cfg.max_words}")
    overlap = prompt_overlap(tokenize(prompt), reply_tokens)
    if overlap >= cfg.max_prompt_overlap:
        reasons.append(f"copies_prompt: overlap {overlap:.2f} >= max_prompt_overlap={cfg.max_prompt_overlap}")
    if len(reply_tokens) >= cfg.min_tokens_for_repeat:
        rep = repeat_fraction(reply_tokens)
        if rep > cfg.max_repeat_fraction:
            reasons.append(f"repetitive: repeat fraction {rep:.2f} > max_repeat_fraction={cfg.max_repeat_fraction}")
    return reasons


def check_replies(
    prompts: Sequence[str],
    replies: Sequence[str],
    cfg: QualityConfig | None = None,
    embedder: Embedder | None = None,
) -> list[QualityResult]:
    """Check each ``replies[i]`` against ``prompts[i]``; embeddings are computed in one batch."""
    cfg = cfg or QualityConfig()
    if len(prompts) != len(replies):
        raise ValueError(f"got {len(prompts)} prompts but {len(replies)} replies")
    reasons = [_rule_reasons(p, r, cfg) for p, r in zip(prompts, replies)]
    if cfg.min_relevance is not None and len(replies):
        if embedder is None:
            raise ValueError(
                "QualityConfig.min_relevance is set but no embedder was given; pass "
                "embedder=polydag.core.evaluation.embeddings.load_embedder() or set min_relevance=None"
            )
        emb = np.asarray(embedder.encode(list(prompts) + list(replies)), dtype=np.float64)
        if emb.shape[0] != 2 * len(replies):
            raise ValueError(f"embedder returned {emb.shape[0]} rows for {2 * len(replies)} texts")
        cos = np.sum(emb[: len(prompts)] * emb[len(prompts) :], axis=1)
        for i, c in enumerate(cos):
            if c < cfg.min_relevance:
                reasons[i].append(f"off_topic: relevance {c:.2f} < min_relevance={cfg.min_relevance}")
    return [QualityResult(passed=not r, reasons=tuple(r)) for r in reasons]


def check_reply(
    prompt: str,
    reply: str,
    cfg: QualityConfig | None = None,
    embedder: Embedder | None = None,
) -> QualityResult:
    """Check one reply; see the module docstring for the rules."""
    return check_replies([prompt], [reply], cfg, embedder)[0]
