"""Content hashes: files (datasets, weights; streamed, so a multi-GB file never sits in memory),
tables and sets of keyed hashes. They are the data versions the assets report."""

from __future__ import annotations

import hashlib
from pathlib import Path


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


def frame_sha256(frame) -> str:
    """Content hash of a polars DataFrame: its column names, dtypes and rows, in order.

    Built from the rows' JSON rather than Arrow bytes, which depend on chunking; floats print
    as ``repr`` (exact), NaN as ``NaN``.
    """
    import json

    digest = hashlib.sha256(json.dumps([[c, str(t)] for c, t in frame.schema.items()]).encode())
    for row in frame.iter_rows():
        digest.update(json.dumps(row, default=str, ensure_ascii=False).encode())
        digest.update(b"\n")
    return digest.hexdigest()


def keyed_sha256(values: dict[str, str]) -> str:
    """One hash for several keyed hashes (e.g. the adapter sha256 of each λ of a ranged run);
    a single entry is returned as it is."""
    if len(values) == 1:
        return next(iter(values.values()))
    lines = "".join(f"{key}:{value}\n" for key, value in sorted(values.items()))
    return hashlib.sha256(lines.encode()).hexdigest()


def nonfinite_tensors(named_tensors) -> list[str]:
    """Names of the tensors of ``(name, tensor)`` pairs that hold a NaN or an infinity."""
    import torch

    bad = []
    for name, tensor in named_tensors:
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            bad.append(name)
    return bad


def refuse_nonfinite(named_tensors, source: str, error=ValueError) -> None:
    """Raise ``error`` naming the tensors of ``source`` that are not all finite."""
    bad = nonfinite_tensors(named_tensors)
    if bad:
        shown = ", ".join(bad[:10]) + (f", … ({len(bad) - 10} more)" if len(bad) > 10 else "")
        raise error(f"{source} has {len(bad)} tensor(s) with NaN or infinite values: {shown}; "
                    "the weights are corrupt (or came from a diverged run) and are refused")
