"""The metrics polydag reports, each with its direction (which way is better) and range.

Direction matters for the verdict: a lower Self-BLEU means more diverse samples. pass@k
columns are derived from ``n_samples``/``n_passed`` for each k and registered on the fly by
:func:`metric_info`.

Two families of per-prompt metrics:

- ``DIVERSITY_METRICS``: the cheap ones every table has (lexical and embedding diversity over
  all of a prompt's samples);
- ``CLASS_METRICS``: counted over equivalence classes of the quality replies
  (``polydag.core.evaluation.metrics.classes``): ``distinct_k`` (NoveltyBench), ``coverage``
  (null without ground truth), and the utility-style ``pass_at_<k>_distinct_<m>``, whose k and
  m are settings (``DistinctClassesConfig``) and which is registered on the fly like pass@k.
"""

from __future__ import annotations

import re
from dataclasses import dataclass


# How a metric's per-prompt values become one number per (λ, seed) (``summary``), as in
# lm-evaluation-harness's metric registry. Every metric here is a per-prompt quantity whose
# sweep-level value is its mean over prompts (pass@k included: the mean of the per-prompt
# unbiased estimates is the unbiased estimate of the mean); the pooled row and the paired tests
# use the same mean.
AGGREGATIONS = ("mean",)


@dataclass(frozen=True)
class MetricInfo:
    name: str
    higher_is_better: bool
    low: float  # smallest possible value
    high: float | None  # largest possible value (None: depends on the number of samples)
    description: str
    aggregation: str = "mean"  # one of AGGREGATIONS

    def __post_init__(self) -> None:
        if self.aggregation not in AGGREGATIONS:
            raise ValueError(f"metric {self.name!r}: aggregation {self.aggregation!r} is not one of {AGGREGATIONS}")


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

CLASS_METRICS: dict[str, MetricInfo] = {
    m.name: m
    for m in (
        MetricInfo("distinct_k", True, 0.0, None,
                   "NoveltyBench distinct_k: equivalence classes among a prompt's quality replies "
                   "(ground-truth intents, else an embedding partition; see distinct_k_source)"),
        MetricInfo("coverage", True, 0.0, 1.0,
                   "distinct admitted intents among the quality replies / intents the prompt admits "
                   "(null without ground truth)"),
    )
}

_PASS_AT_K = re.compile(r"^pass_at_(\d+)$")
_DISTINCT_PASS_AT_K = re.compile(r"^pass_at_(\d+)_distinct_(\d+)$")


def pass_at_k_column(k: int) -> str:
    return f"pass_at_{k}"


def pass_at_k_of(name: str) -> int | None:
    """k of a ``pass_at_<k>`` column name, else None."""
    match = _PASS_AT_K.match(name)
    return int(match.group(1)) if match else None


def distinct_pass_at_k_column(k: int, m: int) -> str:
    return f"pass_at_{k}_distinct_{m}"


def distinct_pass_at_k_of(name: str) -> tuple[int, int] | None:
    """(k, m) of a ``pass_at_<k>_distinct_<m>`` column name, else None."""
    match = _DISTINCT_PASS_AT_K.match(name)
    return (int(match.group(1)), int(match.group(2))) if match else None


def class_metric_columns(columns) -> list[str]:
    """The class metrics among ``columns`` (a table's column names), in registry order."""
    columns = list(columns)
    found = [c for c in CLASS_METRICS if c in columns]
    return found + sorted((c for c in columns if distinct_pass_at_k_of(c) is not None),
                          key=distinct_pass_at_k_of)


def metric_info(name: str) -> MetricInfo:
    if name in DIVERSITY_METRICS:
        return DIVERSITY_METRICS[name]
    if name in CLASS_METRICS:
        return CLASS_METRICS[name]
    k = pass_at_k_of(name)
    if k is not None and k >= 1:
        return MetricInfo(name, True, 0.0, 1.0, f"unbiased pass@{k} (Chen et al. 2021)")
    km = distinct_pass_at_k_of(name)
    if km is not None and km[0] >= 1 and km[1] >= 1:
        return MetricInfo(name, True, 0.0, 1.0,
                          f"chance that {km[0]} samples drawn without replacement contain ≥ {km[1]} "
                          "distinct classes of quality replies (exact)")
    raise ValueError(
        f"unknown metric {name!r}; known: {sorted(DIVERSITY_METRICS) + sorted(CLASS_METRICS)}, "
        "pass_at_<k> (k ≥ 1) and pass_at_<k>_distinct_<m>"
    )
