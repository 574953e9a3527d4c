"""Validators of a step-importance sweep, as pure functions over its rows.

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
