"""Distinct-n (Li et al. 2016), computed over one prompt's set of samples.

    distinct_n(S) = |∪_{s∈S} ngrams_n(s)| / Σ_{s∈S} |ngrams_n(s)|

where ngrams_n(s) is the multiset of word n-grams *within* sample s (n-grams never span two
samples) and tokens come from :mod:`polydag.core.evaluation.metrics.tokens` (TweetTokenizer, lower-cased).
The numerator counts distinct n-grams across all samples, the denominator all n-gram
occurrences; 1.0 means no n-gram repeats anywhere, values near 1/|S| mean the samples repeat
each other.

Undefined case: when the samples contain no n-gram at all (every sample is empty or shorter
than n tokens) the ratio is 0/0 and ``distinct_n`` returns NaN, never 0.0. A 0.0 would claim
"no diversity" for what is really "no text to measure", which is exactly the silent zero the
researchers hit. Empty samples are otherwise legitimate: they add no n-grams and are counted
as samples by the caller. Downstream, per-prompt NaN becomes null in the metric tables, the
summary averages over prompts where the value is defined (and says how many), and the Dagster
check fails a λ whose metric is undefined for every prompt.
"""

from __future__ import annotations

import math
from typing import Iterable, Sequence

from polydag.core.evaluation.metrics.tokens import DEFAULT_TOKENIZER, get_word_tokenizer


def _check_texts(texts: Sequence[str], what: str) -> None:
    if isinstance(texts, str):
        raise TypeError(f"{what} expects a list of texts (one prompt's samples), got one str")
    if len(texts) == 0:
        raise ValueError(f"{what} needs at least one text, got an empty list")
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise TypeError(f"{what}: text {i} is {type(text).__name__}, not str: {text!r:.80}")


def distinct_n_from_tokens(token_lists: Iterable[Sequence[str]], n: int) -> float:
    """Distinct-n of already tokenized samples (NaN when there is no n-gram at all)."""
    if not isinstance(n, int) or n < 1:
        raise ValueError(f"distinct_n: n must be an integer ≥ 1, got {n!r}")
    unique: set[tuple[str, ...]] = set()
    total = 0
    for tokens in token_lists:
        count = len(tokens) - n + 1
        if count <= 0:
            continue
        total += count
        unique.update(tuple(tokens[i : i + n]) for i in range(count))
    if total == 0:
        return math.nan
    return len(unique) / total


def distinct_n(texts: Sequence[str], n: int, *, tokenizer: str = DEFAULT_TOKENIZER) -> float:
    """Distinct-n over one prompt's samples: unique n-grams / total n-grams (see module doc).

    Returns NaN when the samples contain no n-gram (all empty or shorter than n tokens).
    """
    _check_texts(texts, "distinct_n")
    tokenize = get_word_tokenizer(tokenizer)
    return distinct_n_from_tokens((tokenize(t) for t in texts), n)
