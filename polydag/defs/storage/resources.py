"""The storage resource: where the results database and artifacts live.

Both come from one data directory (``polydag.core.ops.paths``), so the IO manager, the direct
SQL resource and the artifact folders always agree (``polydag.defs.resources.build_resources``).
"""


from pathlib import Path

from dagster import ConfigurableResource
from pydantic import Field


class PolydagStorage(ConfigurableResource):
    """The results database file and the artifact folder of this deployment."""

    data_dir: str = Field(description="Folder holding polydag.duckdb, artifacts/ and cache/ (POLYDAG_DATA_DIR).")

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
