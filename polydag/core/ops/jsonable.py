"""Turn numpy / torch values into plain Python so ``json.dumps`` never crashes on metadata.

The researchers' evaluation crashed at the very end on ``TypeError: Object of type float32 is
not JSON serializable``. Every dict that leaves core code as metadata (Dagster asset metadata,
benchmark results) goes through :func:`to_jsonable` first.

Non-finite floats (NaN, ±inf) become ``None``: strict JSON has no NaN, and an undefined metric
is "no value", not a number. torch is never imported here; tensors are recognised by duck
typing (``.detach().cpu().tolist()``) so importing this module stays cheap.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import math
from pathlib import PurePath
from typing import Any

import numpy as np


def _finite_or_none(value: float) -> float | None:
    return value if math.isfinite(value) else None


def to_jsonable(value: Any) -> Any:
    """A JSON-serialisable copy of ``value`` (``json.dumps(..., allow_nan=False)`` accepts it).

    Handles dicts (keys become ``str``), lists/tuples/sets, dataclasses, numpy scalars and
    arrays, torch tensors (any shape), paths and datetimes. Raises ``TypeError`` naming the
    type for anything else, rather than guessing.
    """
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, int):  # includes bool handled above
        return int(value)
    if isinstance(value, float):
        return _finite_or_none(value)
    if isinstance(value, np.generic):  # np.float32, np.int64, np.bool_, np.str_ ...
        return to_jsonable(value.item())
    if isinstance(value, np.ndarray):
        return to_jsonable(value.tolist())
    if type(value).__module__.startswith("torch") and hasattr(value, "detach"):
        return to_jsonable(value.detach().cpu().tolist())  # 0-d tensors give a scalar
    if isinstance(value, dict):
        return {str(to_jsonable(k)) if not isinstance(k, str) else k: to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v) for v in value]
    if isinstance(value, (set, frozenset)):
        return [to_jsonable(v) for v in sorted(value, key=repr)]
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return to_jsonable(dataclasses.asdict(value))
    if isinstance(value, PurePath):
        return str(value)
    if isinstance(value, (_dt.datetime, _dt.date)):
        return value.isoformat()
    raise TypeError(
        f"to_jsonable: cannot convert a value of type {type(value).__module__}."
        f"{type(value).__qualname__} to JSON ({value!r:.80})"
    )
