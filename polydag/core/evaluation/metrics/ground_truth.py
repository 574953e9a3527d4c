"""The prompts' ground truth that the class metrics need: which reply intents each prompt admits.

The default data ships it (``reply_pairs.admitted_intents``, one list per prompt, repeated on
each of its rows); user data usually has none, and then ``coverage`` is null and says so.
The prompt-truth frame has one row per ``prompt_id`` with ``admitted_intents`` (a list of
strings).
"""

from __future__ import annotations

import polars as pl

PROMPT_TRUTH_COLUMNS = ("prompt_id", "admitted_intents")


def prompt_truth_from_reply_pairs(reply_pairs: pl.DataFrame) -> pl.DataFrame | None:
    """One row per prompt: ``prompt_id``, ``admitted_intents``; None when the data has none.

    Raises when one prompt carries two different lists (the data would contradict itself).
    """
    if "admitted_intents" not in reply_pairs.columns:
        return None
    frame = reply_pairs.select("prompt_id", "admitted_intents").filter(pl.col("admitted_intents").is_not_null())
    if frame.height == 0:
        return None
    frame = frame.with_columns(pl.col("admitted_intents").list.unique().list.sort())
    conflicts = frame.unique().filter(pl.col("prompt_id").is_duplicated())
    if conflicts.height:
        pid = conflicts.get_column("prompt_id")[0]
        raise ValueError(
            f"{conflicts.get_column('prompt_id').n_unique()} prompts have rows with different "
            f"admitted_intents, e.g. prompt_id={pid!r}: "
            f"{conflicts.filter(pl.col('prompt_id') == pid).get_column('admitted_intents').to_list()}"
        )
    return frame.unique("prompt_id", maintain_order=True)


def validate_prompt_truth(prompt_truth: pl.DataFrame) -> dict:
    """{prompt_id: frozenset of admitted intents}, refusing a malformed frame."""
    if not isinstance(prompt_truth, pl.DataFrame):
        raise TypeError(f"prompt_truth must be a polars DataFrame, got {type(prompt_truth).__name__}")
    missing = [c for c in PROMPT_TRUTH_COLUMNS if c not in prompt_truth.columns]
    if missing:
        raise ValueError(f"prompt_truth lacks columns {missing}; it has {prompt_truth.columns}")
    dtype = prompt_truth.schema["admitted_intents"]
    if not (isinstance(dtype, pl.List) and dtype.inner == pl.String):
        raise ValueError(f"prompt_truth column 'admitted_intents' has type {dtype}, expected List(String)")
    if prompt_truth.get_column("prompt_id").is_duplicated().any():
        raise ValueError("prompt_truth has repeated prompt_id rows; one row per prompt")
    out = {}
    for pid, intents in prompt_truth.select(PROMPT_TRUTH_COLUMNS).iter_rows():
        if not intents:
            raise ValueError(f"prompt {pid!r} admits no intents: coverage would divide by zero")
        out[pid] = frozenset(intents)
    return out
