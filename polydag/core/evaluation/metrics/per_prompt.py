"""Per-(λ, prompt) metric table from the generated samples.

Input: one row per sample with columns ``lambda_key`` (str), ``prompt_id``, ``sample_idx`` (int),
``text`` (str) and ``passed`` (bool, the quality checker's verdict). Output: one row per
(lambda_key, prompt_id) with ``diversity_weight``, ``n_samples``, ``n_passed``, ``distinct_1``,
``distinct_2``, ``self_bleu``, ``semantic_diversity`` and ``vendi``.

All texts are embedded in ONE ``embedder.encode`` call (the embedder batches and caches by text
hash), not one call per prompt; then each prompt's rows of the embedding matrix are sliced.
Memory is the model (~450 MB for MiniLM) plus texts × 384 float32 (15 MB at 10k texts) plus one
prompt's m×m similarity matrix at a time; never an all-texts × all-texts matrix.

Metrics that are undefined for a prompt (see the metric modules: e.g. Distinct-2 when no sample
has two tokens, Self-BLEU and semantic diversity for a single sample) are stored as null, never
as 0.0. Diversity metrics are computed over ALL samples of a prompt, passed or not: they
describe what the model generates; ``n_passed`` feeds pass@k.
"""

from __future__ import annotations

import logging
import math

import polars as pl

from polydag.core.polychromic.lambdas import lambda_value
from polydag.core.evaluation.metrics.lexical import distinct_n_from_tokens
from polydag.core.evaluation.metrics.self_bleu import self_bleu
from polydag.core.evaluation.metrics.semantic import mean_pairwise_cosine_distance, vendi_score
from polydag.core.evaluation.metrics.tokens import DEFAULT_TOKENIZER, get_word_tokenizer

SAMPLE_COLUMNS = ("lambda_key", "prompt_id", "sample_idx", "text", "passed")
METRIC_COLUMNS = (
    "lambda_key",
    "diversity_weight",
    "prompt_id",
    "n_samples",
    "n_passed",
    "distinct_1",
    "distinct_2",
    "self_bleu",
    "semantic_diversity",
    "vendi",
)


def validate_samples(samples: pl.DataFrame) -> None:
    """Raise ValueError naming the column/rows when ``samples`` is not a valid generations table."""
    if not isinstance(samples, pl.DataFrame):
        raise TypeError(f"samples must be a polars DataFrame, got {type(samples).__name__}")
    missing = [c for c in SAMPLE_COLUMNS if c not in samples.columns]
    if missing:
        raise ValueError(
            f"samples table lacks columns {missing}; it has {samples.columns} "
            f"(expected {list(SAMPLE_COLUMNS)})"
        )
    if samples.height == 0:
        raise ValueError("samples table is empty: no generations to score")
    expected = {"lambda_key": pl.String, "text": pl.String, "passed": pl.Boolean}
    for column, dtype in expected.items():
        if samples.schema[column] != dtype:
            raise ValueError(f"samples column {column!r} has type {samples.schema[column]}, expected {dtype}")
    if not samples.schema["sample_idx"].is_integer():
        raise ValueError(f"samples column 'sample_idx' has type {samples.schema['sample_idx']}, expected an integer")
    for column in SAMPLE_COLUMNS:
        nulls = samples.get_column(column).null_count()
        if nulls:
            first = samples.with_row_index("row").filter(pl.col(column).is_null()).row(0, named=True)
            raise ValueError(
                f"samples column {column!r} has {nulls} null values (first at row {first['row']}: "
                f"lambda_key={first['lambda_key']!r}, prompt_id={first['prompt_id']!r}, "
                f"sample_idx={first['sample_idx']!r})"
            )
    duplicated = samples.filter(pl.struct("lambda_key", "prompt_id", "sample_idx").is_duplicated())
    if duplicated.height:
        row = duplicated.row(0, named=True)
        raise ValueError(
            f"samples has {duplicated.height} rows with a repeated (lambda_key, prompt_id, "
            f"sample_idx), e.g. ({row['lambda_key']!r}, {row['prompt_id']!r}, {row['sample_idx']!r}); "
            "a re-run must replace a partition's rows, not append to them"
        )


def _null_if_nan(value: float) -> float | None:
    return None if math.isnan(value) else float(value)


def per_prompt_metrics(
    samples: pl.DataFrame,
    embedder=None,
    *,
    tokenizer: str = DEFAULT_TOKENIZER,
    logger: logging.Logger | None = None,
) -> pl.DataFrame:
    """One row per (lambda_key, prompt_id) with the diversity metrics (see module doc).

    ``embedder`` is a :class:`polydag.core.evaluation.embeddings.Embedder` (default: all-MiniLM-L6-v2,
    loaded once per process). ``tokenizer`` names the word tokenizer for Distinct-n.
    """
    logger = logger or logging.getLogger(__name__)
    validate_samples(samples)
    for key in samples.get_column("lambda_key").unique().to_list():
        lambda_value(key)  # raises on a non-canonical λ key
    tokenize = get_word_tokenizer(tokenizer)  # fails now, with the fix, if it needs NLTK data
    if embedder is None:
        from polydag.core.evaluation.metrics.semantic import default_embedder

        embedder = default_embedder()

    ordered = samples.sort(["lambda_key", "prompt_id", "sample_idx"])
    texts = ordered.get_column("text").to_list()
    groups = (
        ordered.with_row_index("row")
        .group_by(["lambda_key", "prompt_id"], maintain_order=True)
        .agg(
            start=pl.col("row").first(),
            n_samples=pl.len(),
            n_passed=pl.col("passed").sum(),
        )
    )
    logger.info(
        "scoring %d texts: %d (λ, prompt) groups over %d λ",
        len(texts), groups.height, groups.get_column("lambda_key").n_unique(),
    )
    embeddings = embedder.encode(texts)  # one batched, cached call for every text
    if embeddings.shape[0] != len(texts):
        raise RuntimeError(f"embedder returned {embeddings.shape[0]} rows for {len(texts)} texts")

    rows = []
    for g, (lambda_key, prompt_id, start, n_samples, n_passed) in enumerate(groups.iter_rows()):
        stop = start + n_samples
        group_texts = texts[start:stop]
        tokens = [tokenize(t) for t in group_texts]
        group_embeddings = embeddings[start:stop]
        rows.append(
            {
                "lambda_key": lambda_key,
                "diversity_weight": lambda_value(lambda_key),
                "prompt_id": prompt_id,
                "n_samples": int(n_samples),
                "n_passed": int(n_passed),
                "distinct_1": _null_if_nan(distinct_n_from_tokens(tokens, 1)),
                "distinct_2": _null_if_nan(distinct_n_from_tokens(tokens, 2)),
                "self_bleu": _null_if_nan(self_bleu(group_texts)),
                "semantic_diversity": _null_if_nan(mean_pairwise_cosine_distance(group_embeddings)),
                "vendi": _null_if_nan(vendi_score(group_embeddings)),
            }
        )
        if (g + 1) % 250 == 0:
            logger.info("scored %d/%d prompts", g + 1, groups.height)

    schema = {
        "lambda_key": pl.String,
        "diversity_weight": pl.Float64,
        "prompt_id": samples.schema["prompt_id"],
        "n_samples": pl.Int64,
        "n_passed": pl.Int64,
        **{c: pl.Float64 for c in METRIC_COLUMNS[5:]},
    }
    return pl.DataFrame(rows, schema=schema)

