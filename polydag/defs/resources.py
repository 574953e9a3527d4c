"""Resources: where the results database and artifacts live.

Both come from one data directory (``polydag.core.paths``), so the IO manager, the direct SQL
resource and the artifact folders always agree. Tests build the same resources over a
temporary directory with ``build_resources(tmp_path)``.
"""


from pathlib import Path

from dagster import ConfigurableResource
from dagster_duckdb import DuckDBResource

from polydag.core import paths
from polydag.defs.io_manager import PolydagDuckDBIOManager


class PolydagStorage(ConfigurableResource):
    """The results database file and the artifact folder of this deployment."""

    data_dir: str

    @property
    def duckdb_path(self) -> Path:
        return Path(self.data_dir) / "polydag.duckdb"

    @property
    def artifacts_dir(self) -> Path:
        return Path(self.data_dir) / "artifacts"

    @property
    def embedding_cache_dir(self) -> Path:
        """Sentence embeddings by text hash: the quality checker and metrics share them."""
        return Path(self.data_dir) / "cache" / "embeddings"

    def artifact_path(self, *parts: str) -> Path:
        path = self.artifacts_dir.joinpath(*parts)
        path.parent.mkdir(parents=True, exist_ok=True)
        return path


def build_resources(data_dir: str | Path | None = None) -> dict:
    data_dir = Path(data_dir) if data_dir is not None else paths.data_dir()
    storage = PolydagStorage(data_dir=str(data_dir))
    database = str(storage.duckdb_path)
    return {
        "storage": storage,
        # schema "main" (not a key prefix): `SELECT * FROM metrics` works without a schema
        # and `--select 'metrics*'` keeps matching (a key prefix breaks it).
        "io_manager": PolydagDuckDBIOManager(database=database, schema="main"),
        "duckdb": DuckDBResource(database=database),
    }
