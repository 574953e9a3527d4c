"""Validators of a step-importance sweep, as pure functions over its rows.

The runtime reference gate: each run re-answers a seeded sample of its problems
(:func:`seeded_sample`) with the independent one-row loop, and any row whose engine answer
differs from it (:func:`reference_mismatches`) blocks the sweep. Unlike the null control,
this compares two different implementations.

The null ablation masks nothing but goes through the same code path as every ablation. If its
answer differs from the baseline on any problem, the ablation path itself changes answers (as
the researchers' double end-of-thought did) and every importance number is suspect.
"""

from __future__ import annotations

import polars as pl


def null_control_mismatches(rows: pl.DataFrame) -> pl.DataFrame:
    """(problem, protocol) pairs whose null-control output differs from the baseline's, or
    that lack one of the two rows. The full decoded text is compared, not just the number."""
    keys = ["problem_id", "protocol"]
    baseline = rows.filter(pl.col("scheme") == "baseline").select(*keys, baseline_text="answer_text")
    null = rows.filter(pl.col("scheme") == "null").select(*keys, null_text="answer_text")
    joined = baseline.join(null, on=keys, how="full", coalesce=True, nulls_equal=True)
    missing = pl.col("baseline_text").is_null() & pl.col("null_text").is_null()
    return joined.filter(missing | ~pl.col("baseline_text").eq_missing(pl.col("null_text")))


def seeded_sample(problem_ids: list[str], *, chunk_size: int, per_chunk: int = 2, all_below: int = 10,
                  seed: int = 0) -> list[str]:
    """The problems a run re-checks: all of them when the run has fewer than ``all_below``,
    else ``per_chunk`` for every ``chunk_size`` problems (rounded up). Chosen by
    ``sha256(seed:problem_id)`` order, so the sample depends only on the ids and the seed, not
    on the order the run was given them."""
    import hashlib
    import math

    ids = sorted(set(problem_ids))
    if len(ids) < all_below:
        return ids
    n = min(len(ids), per_chunk * math.ceil(len(ids) / chunk_size))
    ranked = sorted(ids, key=lambda pid: hashlib.sha256(f"{seed}:{pid}".encode()).hexdigest())
    return sorted(ranked[:n])


def answers_differing(rows: pl.DataFrame, other: pl.DataFrame) -> dict:
    """How often ``other`` (the same rows computed another way, e.g. in float32) differs from
    ``rows``, compared on the rows both have: decoded text, extracted number, correctness."""
    keys = ["problem_id", "protocol", "variant"]
    joined = rows.select(*keys, "answer_text", "predicted", "correct").join(
        other.select(*keys, other_text="answer_text", other_predicted="predicted", other_correct="correct"),
        on=keys, how="inner")
    n = joined.height
    text = int((~joined["answer_text"].eq_missing(joined["other_text"])).sum())
    number = int((~joined["predicted"].eq_missing(joined["other_predicted"])).sum())
    correct = int((joined["correct"] != joined["other_correct"]).sum())
    return {"n_rows_compared": n, "n_problems_compared": joined["problem_id"].n_unique(),
            "n_text_differs": text, "n_answer_differs": number, "n_correctness_differs": correct,
            "share_answer_differs": round(number / n, 6) if n else None}


def reference_mismatches(rows: pl.DataFrame) -> pl.DataFrame:
    """Rows the one-row reference loop re-answered (``reference_checked``) whose engine
    answer text differs from the reference's."""
    checked = rows.filter(pl.col("reference_checked"))
    return checked.filter(~pl.col("answer_text").eq_missing(pl.col("reference_answer_text")))
