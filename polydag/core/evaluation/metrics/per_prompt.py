"""Per-(λ, seed, prompt) metric table from the generated samples.

Input: one row per sample with columns ``lambda_key`` (str), ``prompt_id``, ``sample_idx`` (int),
``text`` (str) and ``passed`` (bool, the quality checker's verdict); optionally ``seed_key``
(str, the seed partition key) and ``seed`` (int) — a table without ``seed_key`` is one seed,
"0" — and ``reply_intent`` (str, nullable: the ground-truth verifier's intent label). An
optional prompt-truth frame (``prompt_id``, ``admitted_intents``) gives each prompt's admitted
intents. Output: one row per (lambda_key, seed_key, prompt_id) with ``diversity_weight``,
``seed``, ``n_samples``, ``n_passed``, the diversity metrics ``distinct_1``, ``distinct_2``,
``self_bleu``, ``semantic_diversity`` and ``vendi``, and the class metrics (module
``classes``): ``distinct_k``, ``coverage``, ``pass_at_<k>_distinct_<m>``, with ``n_classed``,
``n_admitted_intents``, ``distinct_k_source`` and ``class_similarity_threshold``.

All texts are embedded in ONE ``embedder.encode`` call (the embedder batches and caches by text
hash), not one call per prompt; then each prompt's rows of the embedding matrix are sliced.
Memory is the model (~450 MB for MiniLM) plus texts × 384 float32 (15 MB at 10k texts) plus one
prompt's m×m similarity matrix at a time; never an all-texts × all-texts matrix.

Metrics that are undefined for a prompt (see the metric modules: e.g. Distinct-2 when no sample
has two tokens, Self-BLEU and semantic diversity for a single sample) are stored as null, never
as 0.0. Diversity metrics are computed over ALL samples of a prompt, passed or not: they
describe what the model generates; ``n_passed`` feeds pass@k.

Class metrics count only the quality replies (``passed``). Where the classes come from is
decided once per table, so every row's ``distinct_k`` is comparable:

- ``distinct_k_source = "intent"`` when the samples have a ``reply_intent`` column and either
  some value is set or prompt truth is given (the default data: a prompt whose replies were
  all malformed then has 0 classes, not an embedding guess). A class is a distinct non-null
  intent among the passed samples (``n_classed`` passed samples carry one).
- ``"embedding"`` otherwise (user data): the passed samples' embeddings are partitioned at
  cosine ≥ ``class_similarity_threshold`` (``classes.embedding_classes``).

``coverage`` = |intents of the passed samples ∩ admitted intents| / |admitted intents|; it needs
intents and prompt truth, and is null (for every row) without them. ``pass_at_<k>_distinct_<m>``
is :func:`classes.distinct_pass_at_k` over the classes (the other samples are invalid draws),
null (with a warning) for a prompt with fewer than k samples.
"""

from __future__ import annotations

import logging
import math

import polars as pl

from polydag.core.evaluation.config import DistinctClassesConfig
from polydag.core.polychromic.lambdas import lambda_value
from polydag.core.evaluation.metrics.classes import count_classes, distinct_pass_at_k, embedding_classes
from polydag.core.evaluation.metrics.ground_truth import validate_prompt_truth
from polydag.core.evaluation.metrics.lexical import distinct_n_from_tokens
from polydag.core.evaluation.metrics.registry import distinct_pass_at_k_column
from polydag.core.evaluation.metrics.seeds import with_seed_columns
from polydag.core.evaluation.metrics.self_bleu import self_bleu
from polydag.core.evaluation.metrics.semantic import mean_pairwise_cosine_distance, vendi_score
from polydag.core.evaluation.metrics.tokens import DEFAULT_TOKENIZER, get_word_tokenizer

SAMPLE_COLUMNS = ("lambda_key", "prompt_id", "sample_idx", "text", "passed")
GROUP_KEY = ("lambda_key", "seed_key", "prompt_id")
DIVERSITY_COLUMNS = ("distinct_1", "distinct_2", "self_bleu", "semantic_diversity", "vendi")
METRIC_COLUMNS = (
    "lambda_key",
    "diversity_weight",
    "seed_key",
    "seed",
    "prompt_id",
    "n_samples",
    "n_passed",
    *DIVERSITY_COLUMNS,
    "distinct_k",
    "coverage",
)
CLASS_DETAIL_COLUMNS = ("n_classed", "n_admitted_intents", "distinct_k_source", "class_similarity_threshold")
INTENT_SOURCE, EMBEDDING_SOURCE = "intent", "embedding"


def metric_columns(classes: DistinctClassesConfig | None = None) -> list[str]:
    """The columns of :func:`per_prompt_metrics`' table under ``classes``, in order."""
    classes = classes or DistinctClassesConfig()
    return [*METRIC_COLUMNS, distinct_pass_at_k_column(classes.distinct_pass_k, classes.distinct_pass_m),
            *CLASS_DETAIL_COLUMNS]


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
    if "reply_intent" in samples.columns and samples.schema["reply_intent"] not in (pl.String, pl.Null):
        raise ValueError(f"samples column 'reply_intent' has type {samples.schema['reply_intent']}, expected "
                         "String (null where the verifier gave no intent)")
    key = ["lambda_key", "seed_key", "prompt_id", "sample_idx"] if "seed_key" in samples.columns \
        else ["lambda_key", "prompt_id", "sample_idx"]
    duplicated = samples.filter(pl.struct(key).is_duplicated())
    if duplicated.height:
        row = duplicated.row(0, named=True)
        raise ValueError(
            f"samples has {duplicated.height} rows with a repeated ({', '.join(key)}), e.g. "
            f"({', '.join(repr(row[c]) for c in key)}); "
            "a re-run must replace a partition's rows, not append to them"
        )


def _null_if_nan(value: float) -> float | None:
    return None if math.isnan(value) else float(value)


def class_source(samples: pl.DataFrame, prompt_truth: pl.DataFrame | None) -> str:
    """Where the table's classes come from: "intent" or "embedding" (see module doc)."""
    if "reply_intent" not in samples.columns:
        return EMBEDDING_SOURCE
    has_values = samples.get_column("reply_intent").null_count() < samples.height
    return INTENT_SOURCE if has_values or prompt_truth is not None else EMBEDDING_SOURCE


def per_prompt_metrics(
    samples: pl.DataFrame,
    embedder=None,
    *,
    prompt_truth: pl.DataFrame | None = None,
    classes: DistinctClassesConfig | None = None,
    tokenizer: str = DEFAULT_TOKENIZER,
    logger: logging.Logger | None = None,
) -> pl.DataFrame:
    """One row per (lambda_key, seed_key, prompt_id) with the metrics (see module doc).

    ``embedder`` is a :class:`polydag.core.evaluation.embeddings.Embedder` (default: all-MiniLM-L6-v2,
    loaded once per process). ``prompt_truth`` has one row per prompt: ``prompt_id``,
    ``admitted_intents`` (list of str). ``classes`` sets the class metrics (default
    ``DistinctClassesConfig()``). ``tokenizer`` names the word tokenizer for Distinct-n.
    """
    logger = logger or logging.getLogger(__name__)
    classes = classes or DistinctClassesConfig()
    validate_samples(samples)
    samples = with_seed_columns(samples)
    seeds_per_key = samples.group_by("seed_key").agg(pl.col("seed").n_unique())
    if seeds_per_key.get_column("seed").max() > 1:
        raise ValueError("samples have one seed_key with several seed values; seed_key names one seed")
    for key in samples.get_column("lambda_key").unique().to_list():
        lambda_value(key)  # raises on a non-canonical λ key
    tokenize = get_word_tokenizer(tokenizer)  # fails now, with the fix, if it needs NLTK data
    admitted = validate_prompt_truth(prompt_truth) if prompt_truth is not None else None
    source = class_source(samples, prompt_truth)
    if source == INTENT_SOURCE and admitted is not None:
        lacking = sorted(set(samples.get_column("prompt_id").unique().to_list()) - set(admitted), key=str)
        if lacking:
            raise ValueError(f"prompt_truth has no admitted_intents for {len(lacking)} sampled prompts, e.g. "
                             f"{lacking[:3]}; it must cover every test prompt")
    k, m = classes.distinct_pass_k, classes.distinct_pass_m
    utility_column = distinct_pass_at_k_column(k, m)
    if embedder is None:
        from polydag.core.evaluation.metrics.semantic import default_embedder

        embedder = default_embedder()

    ordered = samples.sort([*GROUP_KEY, "sample_idx"])
    texts = ordered.get_column("text").to_list()
    passed = ordered.get_column("passed").to_list()
    intents = ordered.get_column("reply_intent").to_list() if source == INTENT_SOURCE else None
    groups = (
        ordered.with_row_index("row")
        .group_by(list(GROUP_KEY), maintain_order=True)
        .agg(
            seed=pl.col("seed").first(),
            start=pl.col("row").first(),
            n_samples=pl.len(),
            n_passed=pl.col("passed").sum(),
        )
    )
    logger.info(
        "scoring %d texts: %d (λ, seed, prompt) groups over %d λ and %d seeds; classes from %s%s",
        len(texts), groups.height, groups.get_column("lambda_key").n_unique(),
        groups.get_column("seed_key").n_unique(), source,
        f" (cosine ≥ {classes.class_similarity_threshold})" if source == EMBEDDING_SOURCE else "",
    )
    too_few = groups.filter(pl.col("n_samples") < k)
    if too_few.height:
        logger.warning(
            "%s is null for %d (λ, seed, prompt) groups with fewer than k=%d samples (e.g. n_samples=%d); "
            "raise GenerationConfig.n_samples or lower DistinctClassesConfig.distinct_pass_k",
            utility_column, too_few.height, k, too_few.get_column("n_samples").min(),
        )
    embeddings = embedder.encode(texts)  # one batched, cached call for every text
    if embeddings.shape[0] != len(texts):
        raise RuntimeError(f"embedder returned {embeddings.shape[0]} rows for {len(texts)} texts")

    rows = []
    for g, (lambda_key, seed_key, prompt_id, seed, start, n_samples, n_passed) in enumerate(groups.iter_rows()):
        stop = start + n_samples
        group_texts = texts[start:stop]
        tokens = [tokenize(t) for t in group_texts]
        group_embeddings = embeddings[start:stop]
        quality = [i for i in range(start, stop) if passed[i]]
        coverage = n_admitted = None
        if source == INTENT_SOURCE:
            labels = [intents[i] for i in quality if intents[i] is not None]
            if admitted is not None:
                n_admitted = len(admitted[prompt_id])
                coverage = len(set(labels) & admitted[prompt_id]) / n_admitted
        else:
            labels = embedding_classes(embeddings[quality], classes.class_similarity_threshold) if quality else []
        sizes = list(count_classes(labels).values())
        rows.append(
            {
                "lambda_key": lambda_key,
                "diversity_weight": lambda_value(lambda_key),
                "seed_key": seed_key,
                "seed": seed,
                "prompt_id": prompt_id,
                "n_samples": int(n_samples),
                "n_passed": int(n_passed),
                "distinct_1": _null_if_nan(distinct_n_from_tokens(tokens, 1)),
                "distinct_2": _null_if_nan(distinct_n_from_tokens(tokens, 2)),
                "self_bleu": _null_if_nan(self_bleu(group_texts)),
                "semantic_diversity": _null_if_nan(mean_pairwise_cosine_distance(group_embeddings)),
                "vendi": _null_if_nan(vendi_score(group_embeddings)),
                "distinct_k": len(sizes),
                "coverage": coverage,
                utility_column: distinct_pass_at_k(sizes, int(n_samples), k, m) if n_samples >= k else None,
                "n_classed": len(labels),
                "n_admitted_intents": n_admitted,
                "distinct_k_source": source,
                "class_similarity_threshold": (classes.class_similarity_threshold
                                               if source == EMBEDDING_SOURCE else None),
            }
        )
        if (g + 1) % 250 == 0:
            logger.info("scored %d/%d prompts", g + 1, groups.height)

    schema = {
        "lambda_key": pl.String,
        "diversity_weight": pl.Float64,
        "seed_key": pl.String,
        "seed": pl.Int64,
        "prompt_id": samples.schema["prompt_id"],
        "n_samples": pl.Int64,
        "n_passed": pl.Int64,
        **{c: pl.Float64 for c in DIVERSITY_COLUMNS},
        "distinct_k": pl.Int64,
        "coverage": pl.Float64,
        utility_column: pl.Float64,
        "n_classed": pl.Int64,
        "n_admitted_intents": pl.Int64,
        "distinct_k_source": pl.String,
        "class_similarity_threshold": pl.Float64,
    }
    return pl.DataFrame(rows, schema=schema)
