"""Test doubles for dependencies that are not under test (no model is loaded in unit tests)."""

import numpy as np


class TableEmbedder:
    """Embeds each text as the vector a test gives for it (the embedder is a dependency here,
    not the thing under test); unknown texts get a vector of their own, orthogonal to the rest."""

    def __init__(self, vectors: dict[str, list[float]] | None = None, dimension: int = 64):
        self.vectors = dict(vectors or {})
        self.dimension = dimension

    def encode(self, texts):
        out = np.zeros((len(texts), self.dimension))
        for row, text in enumerate(texts):
            if text not in self.vectors:
                axis = np.zeros(self.dimension)
                axis[len(self.vectors) % self.dimension] = 1.0
                self.vectors[text] = axis
            out[row, : len(self.vectors[text])] = self.vectors[text]
        return out
