"""Evaluation metrics: pure functions from samples to numbers, and tables of them.

No dagster and no torch at import time (the embedding model is loaded on first use).

- ``tokens``        word tokenizers that need no NLTK data (clear error when one does)
- ``lexical``       Distinct-n
- ``self_bleu``     Self-BLEU with sacrebleu (fast path + reference path, identical values)
- ``semantic``      mean pairwise cosine distance and Vendi score of sentence embeddings
- ``pass_at_k``     unbiased pass@k (Chen et al. 2021), stable product form
- ``per_prompt``    samples table -> one row per (λ, prompt)
- ``summary``       per-λ means, bootstrap SEs, pass@k
- ``significance``  paired comparison vs the baseline λ (bootstrap CI, Wilcoxon, d_z, Holm)
- ``verdict``       the researchers' workshop / main-conference bars; Markdown table
- ``plot``          λ against each metric, PNG
- ``registry``      metric names, directions, ranges
"""

from polydag.core.ops.jsonable import to_jsonable
from polydag.core.evaluation.metrics.lexical import distinct_n
from polydag.core.evaluation.metrics.pass_at_k import pass_at_k
from polydag.core.evaluation.metrics.per_prompt import per_prompt_metrics
from polydag.core.evaluation.metrics.plot import plot_comparison
from polydag.core.evaluation.metrics.registry import DIVERSITY_METRICS, PER_PROMPT_METRICS, metric_info
from polydag.core.evaluation.metrics.self_bleu import self_bleu, self_bleu_reference, self_bleu_signature
from polydag.core.evaluation.metrics.semantic import semantic_diversity, vendi_score
from polydag.core.evaluation.metrics.significance import DEFAULT_COMPARISON_METRICS, compare_to_baseline
from polydag.core.evaluation.metrics.summary import summarize_metrics
from polydag.core.evaluation.metrics.tokens import TokenizerResourceError, tokenize
from polydag.core.evaluation.metrics.verdict import VerdictThresholds, verdict, verdict_markdown

__all__ = [
    "DEFAULT_COMPARISON_METRICS",
    "DIVERSITY_METRICS",
    "PER_PROMPT_METRICS",
    "TokenizerResourceError",
    "VerdictThresholds",
    "compare_to_baseline",
    "distinct_n",
    "metric_info",
    "pass_at_k",
    "per_prompt_metrics",
    "plot_comparison",
    "self_bleu",
    "self_bleu_reference",
    "self_bleu_signature",
    "semantic_diversity",
    "summarize_metrics",
    "to_jsonable",
    "tokenize",
    "vendi_score",
    "verdict",
    "verdict_markdown",
]
