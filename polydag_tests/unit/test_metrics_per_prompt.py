"""per_prompt_metrics: one row per (λ, prompt), values equal to the scalar metric functions."""

import hashlib

import numpy as np
import polars as pl
import pytest

from polydag.core.evaluation.metrics.lexical import distinct_n
from polydag.core.evaluation.metrics.per_prompt import metric_columns, per_prompt_metrics
from polydag.core.evaluation.metrics.self_bleu import self_bleu
from polydag.core.evaluation.metrics.semantic import mean_pairwise_cosine_distance, vendi_score


class TrigramEmbedder:
    """A small deterministic stand-in for a sentence model: hashed character trigrams, unit norm.

    It is the embedder dependency, not the thing under test; it records every encode call.
    """

    dimension = 64

    def __init__(self):
        self.calls = []

    def encode(self, texts):
        self.calls.append(list(texts))
        out = np.zeros((len(texts), self.dimension), dtype=np.float32)
        for row, text in enumerate(texts):
            padded = f"  {text} "
            for i in range(len(padded) - 2):
                slot = int.from_bytes(hashlib.md5(padded[i:i + 3].encode()).digest()[:4], "little")
                out[row, slot % self.dimension] += 1.0
        out /= np.linalg.norm(out, axis=1, keepdims=True)
        return out


def _samples():
    rows = []
    texts = {
        ("0.0", "p1"): ["great game tonight", "great game tonight", "what a game"],
        ("0.0", "p2"): ["so tired today", "", "need coffee now"],
        ("1.0", "p1"): ["refs were awful", "great game tonight", "who else watched"],
        ("1.0", "p2"): ["monday again", "coffee first", "so tired today"],
    }
    passed = {("0.0", "p1"): [True, True, False], ("0.0", "p2"): [True, False, True],
              ("1.0", "p1"): [True, True, True], ("1.0", "p2"): [False, False, True]}
    for (key, pid), group in texts.items():
        for idx, text in enumerate(group):
            rows.append({"lambda_key": key, "prompt_id": pid, "sample_idx": idx, "text": text,
                         "passed": passed[(key, pid)][idx]})
    return pl.DataFrame(rows), texts


def test_values_equal_the_scalar_functions():
    samples, texts = _samples()
    embedder = TrigramEmbedder()
    table = per_prompt_metrics(samples.sample(fraction=1.0, shuffle=True, seed=3), embedder)
    assert table.columns == metric_columns()
    assert table.height == 4
    for row in table.iter_rows(named=True):
        group = texts[(row["lambda_key"], row["prompt_id"])]
        e = embedder.encode(group)
        assert row["n_samples"] == 3
        assert row["diversity_weight"] == float(row["lambda_key"])
        assert row["distinct_1"] == pytest.approx(distinct_n(group, 1))
        assert row["distinct_2"] == pytest.approx(distinct_n(group, 2))
        assert row["self_bleu"] == pytest.approx(self_bleu(group))
        assert row["semantic_diversity"] == pytest.approx(mean_pairwise_cosine_distance(e))
        assert row["vendi"] == pytest.approx(vendi_score(e))
    n_passed = {(r["lambda_key"], r["prompt_id"]): r["n_passed"] for r in table.iter_rows(named=True)}
    assert n_passed == {("0.0", "p1"): 2, ("0.0", "p2"): 2, ("1.0", "p1"): 3, ("1.0", "p2"): 1}


def test_all_texts_are_encoded_in_one_call():
    samples, _ = _samples()
    embedder = TrigramEmbedder()
    per_prompt_metrics(samples, embedder)
    assert len(embedder.calls) == 1 and len(embedder.calls[0]) == samples.height


def test_sample_order_follows_sample_idx():
    samples, texts = _samples()
    reordered = samples.with_columns(sample_idx=2 - pl.col("sample_idx"))
    a = per_prompt_metrics(samples, TrigramEmbedder()).sort("lambda_key", "prompt_id")
    b = per_prompt_metrics(reordered, TrigramEmbedder()).sort("lambda_key", "prompt_id")
    # the metrics are symmetric in the samples, so order must not change them
    for column in ("distinct_1", "distinct_2", "self_bleu", "semantic_diversity", "vendi"):
        np.testing.assert_allclose(a[column].to_numpy(), b[column].to_numpy(), rtol=1e-12)


def test_undefined_metrics_are_null_not_zero():
    samples = pl.DataFrame({
        "lambda_key": ["0.0", "0.0", "0.0"],
        "prompt_id": ["single", "short", "short"],
        "sample_idx": [0, 0, 1],
        "text": ["only one sample here", "yes", "no"],
        "passed": [True, True, False],
    })
    table = per_prompt_metrics(samples, TrigramEmbedder()).sort("prompt_id")
    short, single = table.row(0, named=True), table.row(1, named=True)
    assert short["distinct_2"] is None and short["distinct_1"] == 1.0  # no bigrams at all
    assert single["self_bleu"] is None and single["semantic_diversity"] is None
    assert single["vendi"] == pytest.approx(1.0)


@pytest.mark.parametrize(
    "change, match",
    [
        (lambda df: df.drop("passed"), "lacks columns \\['passed'\\]"),
        (lambda df: df.with_columns(passed=pl.col("passed").cast(pl.Int64)), "'passed' has type"),
        (lambda df: df.with_columns(text=pl.when(pl.col("sample_idx") == 1).then(None).otherwise(pl.col("text"))),
         "'text' has .* null"),
        (lambda df: pl.concat([df, df.head(1)]), "repeated"),
        (lambda df: df.with_columns(lambda_key=pl.col("lambda_key").replace("1.0", "1")), "not canonical"),
        (lambda df: df.head(0), "empty"),
    ],
)
def test_bad_samples_are_refused(change, match):
    samples, _ = _samples()
    with pytest.raises(ValueError, match=match):
        per_prompt_metrics(change(samples), TrigramEmbedder())
