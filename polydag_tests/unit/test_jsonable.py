"""Metadata with numpy and torch values must serialise (the researchers' JSON crash)."""

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch

from polydag.core.ops.jsonable import to_jsonable


@dataclass
class _Cfg:
    lr: float
    steps: np.int64


def test_metadata_with_numpy_and_torch_values_serialises():
    metadata = {
        "distinct_2": np.float32(0.25),
        "n": np.int64(10),
        "ok": np.bool_(True),
        "loss": torch.tensor(1.0),
        "vector": torch.tensor([1.5, 2.5]),
        "array": np.arange(3, dtype=np.int32),
        "nan": float("nan"),
        "np_nan": np.float64("nan"),
        "inf": np.float32("inf"),
        "nested": {1: [np.float16(0.5), (np.int8(3),)]},
        "cfg": _Cfg(lr=1e-3, steps=np.int64(5)),
        "path": Path("/tmp/x"),
    }
    with pytest.raises(TypeError):
        json.dumps(metadata)  # what crashed the researchers' evaluation
    converted = to_jsonable(metadata)
    text = json.dumps(converted, allow_nan=False)
    back = json.loads(text)
    assert back["distinct_2"] == pytest.approx(0.25)
    assert back["n"] == 10 and isinstance(back["n"], int)
    assert back["ok"] is True
    assert back["loss"] == 1.0
    assert back["vector"] == [1.5, 2.5]
    assert back["array"] == [0, 1, 2]
    assert back["nan"] is None and back["np_nan"] is None and back["inf"] is None
    assert back["nested"] == {"1": [0.5, [3]]}
    assert back["cfg"] == {"lr": 1e-3, "steps": 5}
    assert back["path"] == "/tmp/x"


def test_plain_values_pass_through():
    assert to_jsonable({"a": [1, 2.5, "x", None, True]}) == {"a": [1, 2.5, "x", None, True]}
    assert to_jsonable(math.inf) is None


def test_unknown_types_are_an_error_naming_the_type():
    with pytest.raises(TypeError, match="object"):
        to_jsonable({"x": object()})
