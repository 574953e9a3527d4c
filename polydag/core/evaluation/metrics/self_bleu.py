"""Self-BLEU (Zhu et al. 2018) of one prompt's samples, on a 0–1 scale, computed with sacrebleu.

    self_bleu(S) = (1/|S|) Σ_i BLEU(s_i, refs = S ∖ {s_i}) / 100

BLEU is sacrebleu's sentence BLEU with the settings of ``sacrebleu.sentence_bleu``: 13a
tokenization, case-sensitive, ``exp`` smoothing, effective order on (n-gram orders the
hypothesis does not have are left out), max order 4, multi-reference clipping (an n-gram is
credited at most as often as it appears in the single reference that has it most often) and the
brevity penalty against the closest reference length (ties: the shorter one). The ``BLEU``
object is built once per process (:func:`bleu_metric`); :func:`self_bleu_signature` is stored
with results so they can be reproduced.

Two implementations give identical values (tests and ``bench/bench_self_bleu.py`` check 1e-9):

- :func:`self_bleu_reference` calls ``BLEU.sentence_score`` once per sample, which re-tokenizes
  and re-extracts the n-grams of all other samples every time: O(|S|²) extractions.
- :func:`self_bleu` (the fast path) tokenizes each sample and extracts its n-grams once with
  sacrebleu's own ``extract_all_word_ngrams``. For every n-gram it keeps the largest and
  second-largest count over the samples (and which sample holds the largest), so the clipping
  count "max over the other samples" is the largest count unless sample i holds it, then the
  second largest. The clipped match counts, totals and lengths are then scored by sacrebleu's
  own ``BLEU.compute_bleu``, so smoothing, brevity penalty and effective order are sacrebleu's.

Edge cases (documented choices, tested):
- identical samples (non-empty) → 1.0;
- one sample → NaN: there is no reference, Self-BLEU is undefined (never 0.0);
- an empty sample scores BLEU 0 as a hypothesis (sacrebleu: no n-grams, brevity penalty 0) and
  contributes nothing as a reference; so a set of only empty samples has Self-BLEU 0.0, which
  is sacrebleu's value, and the quality checker is what flags empty samples;
- no samples → ValueError.
"""

from __future__ import annotations

import functools
import math
from typing import Sequence

from polydag.core.evaluation.metrics.lexical import _check_texts

# The settings of sacrebleu.sentence_bleu (its defaults), spelled out so they are visible.
BLEU_SETTINGS = dict(
    lowercase=False,
    tokenize="13a",
    smooth_method="exp",
    smooth_value=None,
    max_ngram_order=4,
    effective_order=True,
)


@functools.lru_cache(maxsize=1)
def bleu_metric():
    """The one ``sacrebleu.metrics.BLEU`` object used for Self-BLEU in this process."""
    from sacrebleu.metrics import BLEU

    return BLEU(**BLEU_SETTINGS)


def self_bleu_signature() -> str:
    """sacrebleu's reproducibility signature of the BLEU used, prefixed with how it is averaged.

    The number of references is |S|−1 for each sample (written ``nrefs:n-1``).
    """
    from sacrebleu.metrics.bleu import BLEUSignature

    bleu = bleu_metric()
    signature = BLEUSignature({**bleu.__dict__, "num_refs": -1})
    signature.info["nrefs"] = "n-1"
    return "self-bleu:mean-over-samples/100|" + signature.format()


def _mean(values: Sequence[float]) -> float:
    return math.fsum(values) / len(values)


def _unit_score(bleu_score: float) -> float:
    """sacrebleu's 0–100 score on 0–1. A perfect match comes out of sacrebleu's exp(mean log)
    as 100.00000000000004; it is capped at 1.0 so range checks hold (a 4e-16 change)."""
    return min(bleu_score / 100.0, 1.0)


def self_bleu_reference(texts: Sequence[str]) -> float:
    """Self-BLEU by calling sacrebleu's ``BLEU.sentence_score`` once per sample (slow, exact)."""
    _check_texts(texts, "self_bleu")
    if len(texts) < 2:
        return math.nan
    bleu = bleu_metric()
    scores = [
        _unit_score(bleu.sentence_score(texts[i], list(texts[:i]) + list(texts[i + 1 :])).score)
        for i in range(len(texts))
    ]
    return _mean(scores)


def _closest_ref_len(hyp_len: int, ref_lens: Sequence[int]) -> int:
    """sacrebleu's rule: the reference length closest to the hypothesis, ties to the shorter."""
    best_diff, best_len = -1, -1
    for ref_len in ref_lens:
        diff = abs(hyp_len - ref_len)
        if best_diff == -1 or diff < best_diff or (diff == best_diff and ref_len < best_len):
            best_diff, best_len = diff, ref_len
    return best_len


def self_bleu_scores(texts: Sequence[str]) -> list[float]:
    """Per-sample BLEU/100 of each sample against the others (fast path; see module doc)."""
    from sacrebleu.metrics.bleu import BLEU
    from sacrebleu.metrics.helpers import extract_all_word_ngrams

    _check_texts(texts, "self_bleu")
    if len(texts) < 2:
        return [math.nan] * len(texts)
    bleu = bleu_metric()
    max_order = bleu.max_ngram_order

    ngram_counts = []
    lengths = []
    for text in texts:
        # _preprocess_segment is exactly what sentence_score applies (lowercase + tokenizer).
        counts, length = extract_all_word_ngrams(bleu._preprocess_segment(text), 1, max_order)
        ngram_counts.append(counts)
        lengths.append(length)

    # ngram -> [largest count, index of the sample holding it, second-largest count]
    best: dict[tuple[str, ...], list[int]] = {}
    for j, counts in enumerate(ngram_counts):
        for ngram, count in counts.items():
            entry = best.get(ngram)
            if entry is None:
                best[ngram] = [count, j, 0]
            elif count > entry[0]:
                entry[2] = entry[0]
                entry[0] = count
                entry[1] = j
            elif count > entry[2]:
                entry[2] = count

    scores = []
    for i, counts in enumerate(ngram_counts):
        correct = [0] * max_order
        total = [0] * max_order
        for ngram, count in counts.items():
            order = len(ngram) - 1
            total[order] += count
            top, owner, second = best[ngram]
            ref_count = second if owner == i else top
            if ref_count:
                correct[order] += min(count, ref_count)
        ref_len = _closest_ref_len(lengths[i], lengths[:i] + lengths[i + 1 :])
        score = BLEU.compute_bleu(
            correct,
            total,
            lengths[i],
            ref_len,
            smooth_method=bleu.smooth_method,
            smooth_value=bleu.smooth_value,
            effective_order=bleu.effective_order,
            max_ngram_order=max_order,
        )
        scores.append(_unit_score(score.score))
    return scores


def self_bleu(texts: Sequence[str]) -> float:
    """Self-BLEU of one prompt's samples on 0–1 (fast path; NaN for a single sample)."""
    scores = self_bleu_scores(texts)
    return math.nan if len(texts) < 2 else _mean(scores)
