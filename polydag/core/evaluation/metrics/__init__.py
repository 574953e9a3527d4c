"""Evaluation metrics: pure functions from samples to numbers, and tables of them.

No dagster and no torch at import time (the embedding model is loaded on first use).

- ``tokens``        word tokenizers that need no NLTK data (clear error when one does)
- ``lexical``       Distinct-n
- ``self_bleu``     Self-BLEU with sacrebleu (fast path + reference path, identical values)
- ``semantic``      mean pairwise cosine distance and Vendi score of sentence embeddings
- ``pass_at_k``     unbiased pass@k (Chen et al. 2021), stable product form
- ``classes``       equivalence classes of quality replies: embedding partition, distinct pass@k DP
- ``ground_truth``  the prompts' admitted intents (coverage's denominator)
- ``seeds``         seed columns, the single-seed default, the pooled row
- ``per_prompt``    samples table -> one row per (λ, seed, prompt)
- ``summary``       per-(λ, seed) and pooled per-λ means, bootstrap SEs, pass@k
- ``significance``  paired comparison vs the baseline λ per seed and pooled (bootstrap CI,
                    Wilcoxon, d_z, Holm)
- ``trend``         dose-response across λ: Page's L on per-prompt values
- ``validity``      rank correlation of each diversity metric with ground-truth distinct_k
- ``verdict``       the researchers' workshop / main-conference bars, seed consistency; Markdown
- ``plot``          λ against each metric, per seed and pooled, PNG
- ``registry``      metric names, directions, ranges
"""

from polydag.core.ops.jsonable import to_jsonable
from polydag.core.evaluation.metrics.classes import distinct_pass_at_k, embedding_classes
from polydag.core.evaluation.metrics.ground_truth import prompt_truth_from_reply_pairs
from polydag.core.evaluation.metrics.lexical import distinct_n
from polydag.core.evaluation.metrics.pass_at_k import pass_at_k
from polydag.core.evaluation.metrics.per_prompt import per_prompt_metrics
from polydag.core.evaluation.metrics.plot import plot_comparison
from polydag.core.evaluation.metrics.registry import CLASS_METRICS, DIVERSITY_METRICS, PER_PROMPT_METRICS, metric_info
from polydag.core.evaluation.metrics.self_bleu import self_bleu, self_bleu_reference, self_bleu_signature
from polydag.core.evaluation.metrics.semantic import semantic_diversity, vendi_score
from polydag.core.evaluation.metrics.significance import DEFAULT_COMPARISON_METRICS, compare_to_baseline
from polydag.core.evaluation.metrics.summary import summarize_metrics
from polydag.core.evaluation.metrics.tokens import TokenizerResourceError, tokenize
from polydag.core.evaluation.metrics.trend import dose_response_trends
from polydag.core.evaluation.metrics.validity import metric_validity, plot_validity
from polydag.core.evaluation.metrics.verdict import VerdictThresholds, verdict, verdict_markdown

__all__ = [
    "CLASS_METRICS",
    "DEFAULT_COMPARISON_METRICS",
    "DIVERSITY_METRICS",
    "PER_PROMPT_METRICS",
    "TokenizerResourceError",
    "VerdictThresholds",
    "compare_to_baseline",
    "distinct_n",
    "distinct_pass_at_k",
    "dose_response_trends",
    "embedding_classes",
    "metric_info",
    "metric_validity",
    "pass_at_k",
    "per_prompt_metrics",
    "plot_comparison",
    "plot_validity",
    "prompt_truth_from_reply_pairs",
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
