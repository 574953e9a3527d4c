"""Where polydag keeps its files.

Everything lives under one data directory: the DuckDB results file, model artifacts and the
default Dagster instance. It is ``$POLYDAG_DATA_DIR`` when set, else ``data/`` of the source
checkout (editable install), else ``./data``.
"""

from __future__ import annotations

import os
from pathlib import Path

_PACKAGE_ROOT = Path(__file__).resolve().parents[3]


def data_dir() -> Path:
    env = os.environ.get("POLYDAG_DATA_DIR")
    if env:
        return Path(env).expanduser().resolve()
    if (_PACKAGE_ROOT / "pyproject.toml").is_file() and (_PACKAGE_ROOT / "data").is_dir():
        return _PACKAGE_ROOT / "data"
    return (Path.cwd() / "data").resolve()


def duckdb_path() -> Path:
    env = os.environ.get("POLYDAG_DUCKDB")
    return Path(env).expanduser().resolve() if env else data_dir() / "polydag.duckdb"


def artifacts_dir() -> Path:
    """Model artifacts (base models, adapters, CODI checkpoints); ignored by git."""
    return data_dir() / "artifacts"


def shipped_file(name: str) -> Path:
    """A dataset shipped in the repository's ``data/`` folder. It stays there when
    ``POLYDAG_DATA_DIR`` moves results elsewhere; without a checkout (a non-editable install)
    it is looked up in the data directory."""
    shipped = _PACKAGE_ROOT / "data" / name
    return shipped if shipped.is_file() else data_dir() / name
