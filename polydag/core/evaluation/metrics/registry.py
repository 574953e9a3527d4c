"""The metrics polydag reports, each with its direction (which way is better) and range.

Direction matters for the verdict: a lower Self-BLEU means more diverse samples. pass@k
columns are derived from ``n_samples``/``n_passed`` for each k and registered on the fly by
:func:`metric_info`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class MetricInfo:
    name: str
    higher_is_better: bool
    low: float  # smallest possible value
    high: float | None  # largest possible value (None: depends on the number of samples)
    description: str


DIVERSITY_METRICS: dict[str, MetricInfo] = {
    m.name: m
    for m in (
        MetricInfo("distinct_1", True, 0.0, 1.0, "unique unigrams / all unigrams across a prompt's samples"),
        MetricInfo("distinct_2", True, 0.0, 1.0, "unique bigrams / all bigrams across a prompt's samples"),
        MetricInfo("self_bleu", False, 0.0, 1.0, "mean sacrebleu BLEU/100 of each sample against the others"),
        MetricInfo("semantic_diversity", True, 0.0, 2.0, "mean pairwise cosine distance of sentence embeddings"),
        MetricInfo("vendi", True, 1.0, None, "Vendi score of the embeddings (effective number of samples)"),
    )
}

PER_PROMPT_METRICS: tuple[str, ...] = tuple(DIVERSITY_METRICS)

_PASS_AT_K = re.compile(r"^pass_at_(\d+)$")


def pass_at_k_column(k: int) -> str:
    return f"pass_at_{k}"


def pass_at_k_of(name: str) -> int | None:
    """k of a ``pass_at_<k>`` column name, else None."""
    match = _PASS_AT_K.match(name)
    return int(match.group(1)) if match else None


def metric_info(name: str) -> MetricInfo:
    if name in DIVERSITY_METRICS:
        return DIVERSITY_METRICS[name]
    k = pass_at_k_of(name)
    if k is not None and k >= 1:
        return MetricInfo(name, True, 0.0, 1.0, f"unbiased pass@{k} (Chen et al. 2021)")
    raise ValueError(
        f"unknown metric {name!r}; known: {sorted(DIVERSITY_METRICS)} and pass_at_<k> (k ≥ 1)"
    )
