"""Shared test setup.

Every test runs against its own data directory and Dagster instance, never the checkout's
``data/``: POLYDAG_DATA_DIR points at a per-session temporary folder before polydag loads.
"""

import os
import tempfile

import pytest

_SESSION_DATA = tempfile.mkdtemp(prefix="polydag-test-data-")
os.environ.setdefault("POLYDAG_DATA_DIR", _SESSION_DATA)
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

try:
    import torch

    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
except ImportError:  # pragma: no cover
    pass


@pytest.fixture
def data_dir(tmp_path, monkeypatch):
    """A fresh data directory (DuckDB file, artifacts) for one test."""
    monkeypatch.setenv("POLYDAG_DATA_DIR", str(tmp_path))
    return tmp_path
