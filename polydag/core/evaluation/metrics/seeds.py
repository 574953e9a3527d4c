"""Training seeds in the metric tables: the seed columns, their defaults, and the pooled row.

Each (λ, seed) is its own training and its own samples. Tables from before seeds existed (and
callers that pass no seed) have no ``seed_key`` column; they are read as one seed, "0", so
every function downstream sees the same shape.

- ``seed_key``: the seed partition key as text ("0", "1", ...), next to ``lambda_key``.
- ``seed``: the seed as an integer (null when the key is not a plain integer).
- ``POOLED_SEED_KEY`` ("pooled") marks rows that aggregate every seed of a λ (summary and
  comparison tables); it is never a partition key, since seed keys are integers.
"""

from __future__ import annotations

import polars as pl

SINGLE_SEED_KEY = "0"
POOLED_SEED_KEY = "pooled"


def with_seed_columns(frame: pl.DataFrame) -> pl.DataFrame:
    """``frame`` with ``seed_key`` (String) and ``seed`` (Int64) columns.

    A frame without ``seed_key`` is one seed, "0". A missing ``seed`` is read from the key.
    """
    if "seed_key" not in frame.columns:
        frame = frame.with_columns(seed_key=pl.lit(SINGLE_SEED_KEY, dtype=pl.String))
    elif frame.schema["seed_key"] != pl.String:
        raise ValueError(f"column 'seed_key' has type {frame.schema['seed_key']}, expected String "
                         "(the seed partition key as text, e.g. '0')")
    if frame.get_column("seed_key").null_count():
        raise ValueError("column 'seed_key' has null values; every row belongs to one seed partition")
    if POOLED_SEED_KEY in frame.get_column("seed_key").unique().to_list():
        raise ValueError(f"seed_key {POOLED_SEED_KEY!r} is reserved for rows pooled over seeds; "
                         "pass per-seed rows only")
    if "seed" not in frame.columns:
        frame = frame.with_columns(seed=pl.col("seed_key").cast(pl.Int64, strict=False))
    elif not frame.schema["seed"].is_integer():
        raise ValueError(f"column 'seed' has type {frame.schema['seed']}, expected an integer")
    else:
        frame = frame.with_columns(pl.col("seed").cast(pl.Int64))
    return frame


def seed_order(keys) -> list[str]:
    """Seed keys in numeric order where they are integers, then the rest as text."""
    def key(k: str):
        try:
            return (0, int(k), k)
        except ValueError:
            return (1, 0, k)

    return sorted(set(keys), key=key)
