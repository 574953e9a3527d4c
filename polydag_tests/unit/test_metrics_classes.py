"""distinct_k, coverage and pass@k over distinct classes, recomputed by hand from small frames."""

import itertools

import numpy as np
import polars as pl
import pytest

from polydag.core.evaluation.config import DistinctClassesConfig
from polydag.core.evaluation.metrics.classes import distinct_pass_at_k, embedding_classes
from polydag.core.evaluation.metrics.ground_truth import prompt_truth_from_reply_pairs
from polydag.core.evaluation.metrics.pass_at_k import pass_at_k
from polydag.core.evaluation.metrics.per_prompt import per_prompt_metrics
from polydag_tests.unit.fakes import TableEmbedder


# (λ, prompt) -> [(text, passed, reply_intent)]
SAMPLES = {
    ("0.0", "dogs"): [("good boy", True, "cheer"), ("so cute", True, "cheer"), ("what breed?", True, "ask"),
                      ("buy a mat", False, "advise"), ("lol", True, None)],
    ("0.0", "code"): [("ship it", True, "hype"), ("ship it!", True, "hype"), ("nice", True, "hype"),
                      ("tabs > spaces", False, "disagree"), ("ok", True, "hype")],
    ("1.0", "dogs"): [("good boy", True, "cheer"), ("what breed?", True, "ask"), ("buy a mat", True, "advise"),
                      ("mine too!", True, "story"), ("meh", True, "disagree")],
    ("1.0", "code"): [("ship it", True, "hype"), ("why rust?", True, "ask"), ("tabs > spaces", True, "disagree"),
                      ("haha", True, "joke"), ("", False, None)],
}
# the reply_pairs of the ground-truth branch repeat a prompt's admitted intents on each of its rows
REPLY_PAIRS = pl.DataFrame({
    "prompt_id": ["dogs", "dogs", "code"],
    "admitted_intents": [["cheer", "ask", "advise", "story"], ["cheer", "ask", "advise", "story"],
                         ["hype", "ask", "joke", "disagree", "advise"]],
})


def _generations(with_intents=True, seeds=("0",)):
    rows = []
    for seed in seeds:
        for (key, pid), group in SAMPLES.items():
            for idx, (text, passed, intent) in enumerate(group):
                row = {"lambda_key": key, "prompt_id": pid, "sample_idx": idx, "text": text, "passed": passed}
                if seeds != ("0",):
                    row.update(seed_key=seed, seed=int(seed))
                if with_intents:
                    row["reply_intent"] = intent
                rows.append(row)
    return pl.DataFrame(rows)


CLASSES = DistinctClassesConfig(distinct_pass_k=3, distinct_pass_m=2)


def _by_hand(key, pid, admitted):
    group = SAMPLES[(key, pid)]
    intents = {intent for _, passed, intent in group if passed and intent is not None}
    return len(intents), len(intents & set(admitted)) / len(admitted)


def test_distinct_k_and_coverage_are_counted_from_the_intents_of_the_quality_replies():
    truth = prompt_truth_from_reply_pairs(REPLY_PAIRS)
    table = per_prompt_metrics(_generations(), TableEmbedder(), prompt_truth=truth, classes=CLASSES)
    admitted = dict(truth.iter_rows())
    assert table.height == 4 and set(table["distinct_k_source"]) == {"intent"}
    for row in table.iter_rows(named=True):
        distinct_k, coverage = _by_hand(row["lambda_key"], row["prompt_id"], admitted[row["prompt_id"]])
        assert row["distinct_k"] == distinct_k, row
        assert row["coverage"] == pytest.approx(coverage), row
        assert row["n_admitted_intents"] == len(admitted[row["prompt_id"]])
    got = {(r["lambda_key"], r["prompt_id"]): (r["distinct_k"], r["coverage"]) for r in table.iter_rows(named=True)}
    # written out once, so a wrong helper above cannot hide a wrong metric
    assert got[("0.0", "dogs")] == (2, 0.5)  # cheer, ask (advise failed; "lol" has no intent)
    assert got[("0.0", "code")] == (1, 0.2)  # hype only (disagree failed)
    assert got[("1.0", "dogs")] == (5, 1.0)  # 5 intents; disagree is not admitted: 4/4
    assert got[("1.0", "code")] == (4, pytest.approx(0.8))
    # the utility pass@3 (≥ 2 classes) of ("0.0", "code"): one class only, so 0
    assert table.filter((pl.col("lambda_key") == "0.0") & (pl.col("prompt_id") == "code"))[
        "pass_at_3_distinct_2"].item() == 0.0


def test_without_admitted_intents_coverage_is_null_and_without_intents_classes_come_from_embeddings():
    table = per_prompt_metrics(_generations(), TableEmbedder(), classes=CLASSES)
    assert table["coverage"].null_count() == table.height
    assert table.filter(pl.col("prompt_id") == "dogs")["distinct_k"].to_list() == [2, 5]

    # no reply_intent column (user data): an embedding partition; "good boy" and "so cute" are
    # near each other (cosine 0.9), every other text is orthogonal to the rest
    vectors = {"good boy": [1.0, 0.0], "so cute": [0.9, np.sqrt(1 - 0.81)]}
    table = per_prompt_metrics(_generations(with_intents=False), TableEmbedder(vectors), classes=CLASSES)
    assert set(table["distinct_k_source"]) == {"embedding"}
    assert table["class_similarity_threshold"].unique().to_list() == [CLASSES.class_similarity_threshold]
    assert table["coverage"].null_count() == table.height
    dogs0 = table.filter((pl.col("lambda_key") == "0.0") & (pl.col("prompt_id") == "dogs")).row(0, named=True)
    # passed: good boy + so cute (one class), what breed?, lol -> 3 classes
    assert dogs0["distinct_k"] == 3 and dogs0["n_classed"] == 4
    strict = DistinctClassesConfig(class_similarity_threshold=0.95, distinct_pass_k=3, distinct_pass_m=2)
    table = per_prompt_metrics(_generations(with_intents=False), TableEmbedder(vectors), classes=strict)
    assert table.filter((pl.col("lambda_key") == "0.0") & (pl.col("prompt_id") == "dogs"))["distinct_k"].item() == 4


def test_two_seeds_of_one_lambda_are_separate_rows():
    table = per_prompt_metrics(_generations(seeds=("0", "1")), TableEmbedder(), classes=CLASSES)
    assert table.height == 8
    assert sorted(table.select("lambda_key", "seed_key").unique().rows()) == [
        ("0.0", "0"), ("0.0", "1"), ("1.0", "0"), ("1.0", "1")]
    assert table["seed"].dtype == pl.Int64
    # no seed columns: one seed, "0"
    single = per_prompt_metrics(_generations(), TableEmbedder(), classes=CLASSES)
    assert single["seed_key"].unique().to_list() == ["0"] and single["seed"].unique().to_list() == [0]


def test_prompt_truth_must_cover_every_prompt_and_agree_with_itself():
    truth = prompt_truth_from_reply_pairs(REPLY_PAIRS.filter(pl.col("prompt_id") == "dogs"))
    with pytest.raises(ValueError, match="no admitted_intents for 1 sampled prompts"):
        per_prompt_metrics(_generations(), TableEmbedder(), prompt_truth=truth, classes=CLASSES)
    contradicting = pl.DataFrame({"prompt_id": ["dogs", "dogs"], "admitted_intents": [["cheer"], ["ask"]]})
    with pytest.raises(ValueError, match="different admitted_intents"):
        prompt_truth_from_reply_pairs(contradicting)
    assert prompt_truth_from_reply_pairs(REPLY_PAIRS.drop("admitted_intents")) is None


def _brute_force(labels, k, m):
    """Enumerate every k-subset of the samples (labels: class or None for an invalid sample)."""
    subsets = list(itertools.combinations(range(len(labels)), k))
    hits = sum(len({labels[i] for i in s if labels[i] is not None}) >= m for s in subsets)
    return hits / len(subsets)


@pytest.mark.parametrize("labels,k,m", [
    (["a", "a", "b", None, "c", None, "c", "a"], 3, 2),
    (["a", "a", "b", None, "c", None, "c", "a"], 4, 3),
    (["a", "b", "c", "d"], 2, 2),
    ([None, None, "a", "a"], 2, 1),
    (["a"] * 5, 3, 2),
])
def test_distinct_pass_at_k_equals_enumeration(labels, k, m):
    sizes = [labels.count(c) for c in dict.fromkeys(x for x in labels if x is not None)]
    assert distinct_pass_at_k(sizes, len(labels), k, m) == pytest.approx(_brute_force(labels, k, m))


def test_distinct_pass_at_k_with_one_class_needed_is_pass_at_k():
    # m = 1: "at least one valid reply" is Chen et al.'s pass@k, whatever the classes
    for c in range(0, 11):
        assert distinct_pass_at_k([1] * c, 10, 5, 1) == pytest.approx(pass_at_k(10, c, 5))
    with pytest.raises(ValueError, match="larger than the n=4"):
        distinct_pass_at_k([1, 1], 4, 5, 1)


def test_embedding_classes_use_complete_linkage():
    # a chain: a~b (cos 0.8) and b~c (cos 0.8), but a and c only 0.28 apart -> never one class
    a = np.array([1.0, 0.0])
    b = np.array([0.8, 0.6])
    c = np.array([0.28, 0.96])
    labels = embedding_classes(np.stack([a, b, c]), threshold=0.75)
    assert len(set(labels)) == 2 and labels[0] != labels[2]
    assert embedding_classes(np.stack([a, b, c]), threshold=0.2) == [0, 0, 0]
    assert embedding_classes(np.stack([a, b, c]), threshold=0.99) == [0, 1, 2]
    assert embedding_classes(np.zeros((0, 2))) == []


def test_class_metrics_are_registered_with_direction_range_and_aggregation():
    from polydag.core.evaluation.metrics.registry import MetricInfo, metric_info

    for name, high in (("distinct_k", None), ("coverage", 1.0), ("pass_at_5_distinct_3", 1.0)):
        info = metric_info(name)
        assert info.higher_is_better is True and info.low == 0.0 and info.high == high
        assert info.aggregation == "mean"
    with pytest.raises(ValueError, match="aggregation 'median'"):
        MetricInfo("x", True, 0.0, 1.0, "x", aggregation="median")
