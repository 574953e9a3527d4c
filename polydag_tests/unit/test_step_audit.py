"""Pure validators of a step-importance sweep: the re-check sample and answer comparison."""

import polars as pl

from polydag.core.step_importance.audit import answers_differing, seeded_sample


def test_small_runs_recheck_every_problem():
    ids = [f"p{i}" for i in range(9)]
    assert seeded_sample(ids, chunk_size=32) == sorted(ids)


def test_sample_is_per_chunk_seeded_and_independent_of_order():
    ids = [f"p{i:03d}" for i in range(100)]
    sample = seeded_sample(ids, chunk_size=32, per_chunk=2, seed=0)
    assert len(sample) == 8                                  # 2 x ceil(100 / 32)
    assert set(sample) <= set(ids)
    assert seeded_sample(list(reversed(ids)), chunk_size=32, per_chunk=2, seed=0) == sample
    assert seeded_sample(ids, chunk_size=32, per_chunk=2, seed=1) != sample


def _rows(texts, predicted, correct):
    n = len(texts)
    return pl.DataFrame({"problem_id": [f"p{i // 2}" for i in range(n)], "protocol": ["codi"] * n,
                         "variant": [f"v{i % 2}" for i in range(n)], "answer_text": texts,
                         "predicted": predicted, "correct": correct})


def test_answers_differing_counts_text_number_and_correctness_separately():
    rows = _rows(["a 1", "a 2", "a 3", "a 4"], ["1", "2", "3", "4"], [True, False, False, True])
    assert answers_differing(rows, rows)["n_answer_differs"] == 0
    other = _rows(["a 1 ", "a 5", "a 3", "a 4"], ["1", "5", "3", None], [True, True, False, False])
    stats = answers_differing(rows, other.head(4))
    assert (stats["n_rows_compared"], stats["n_problems_compared"]) == (4, 2)
    assert (stats["n_text_differs"], stats["n_answer_differs"], stats["n_correctness_differs"]) == (2, 2, 2)
    assert stats["share_answer_differs"] == 0.5
    assert answers_differing(rows, other.head(1))["n_rows_compared"] == 1   # only rows both have


def test_reference_mismatches_only_look_at_checked_rows():
    from polydag.core.step_importance.audit import reference_mismatches

    rows = pl.DataFrame({"problem_id": ["p0", "p0", "p1", "p1"], "answer_text": ["a 1", "a 2", "a 3", "a 4"],
                         "reference_checked": [True, True, False, True],
                         "reference_answer_text": ["a 1", "a 9", None, None]})
    assert reference_mismatches(rows)["answer_text"].to_list() == ["a 2", "a 4"]
    assert reference_mismatches(rows.head(1)).is_empty()
