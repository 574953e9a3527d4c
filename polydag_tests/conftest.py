"""Shared test setup.

Every test runs against its own data directory and Dagster instance, never the checkout's
``data/``: POLYDAG_DATA_DIR points at a per-session temporary folder before polydag loads.

Tiers, one folder each, and the marker every test in it gets (``pytest -m "not e2e and not
ops"`` is the fast loop; CI runs everything):

- ``unit/``: no model (pure functions, tables, configs, the instance without runs);
- ``integration/``: tiny models built in the test (torch, transformers, the packaged MiniLM);
- ``e2e/``: real Dagster runs of polydag's assets;
- ``ops/``: the daemon, the webserver, the browser, other processes.
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


TIERS = ("unit", "integration", "e2e", "ops")


def pytest_collection_modifyitems(config, items):
    for item in items:
        parts = item.path.relative_to(config.rootpath).parts
        tier = parts[1] if len(parts) > 2 and parts[0] == "polydag_tests" else None
        if tier not in TIERS:
            raise pytest.UsageError(f"{item.nodeid}: tests live in one of polydag_tests/{{{','.join(TIERS)}}}/")
        item.add_marker(getattr(pytest.mark, tier))


@pytest.fixture
def data_dir(tmp_path, monkeypatch):
    """A fresh data directory (DuckDB file, artifacts) for one test."""
    monkeypatch.setenv("POLYDAG_DATA_DIR", str(tmp_path))
    return tmp_path
