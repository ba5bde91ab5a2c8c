"""Exact inner-product (cosine on normalised rows) k-nearest-neighbour search with swappable backends.

Backends: ``numpy`` (BLAS matmul + argpartition), ``torch`` (mm + topk) and ``faiss`` (IndexFlatIP, used
when faiss-cpu is installed). All are exact, so they return the same neighbours up to ties; queries are
processed in chunks so the (queries x gallery) score block stays bounded in memory.
"""

from __future__ import annotations

import importlib.util
from typing import Protocol

import numpy as np

from dopplerdiff.errors import DopplerDiffError

BACKENDS = ("auto", "numpy", "torch", "faiss")
# Score block size (queries x gallery floats) per chunk: 16M floats = 64 MiB.
_BLOCK_FLOATS = 1 << 24


class SearchBackend(Protocol):
    name: str

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Return (scores (Q, k) float32 descending, indices (Q, k) int64) of the k best gallery rows."""
        ...


def _as_f32(x: np.ndarray) -> np.ndarray:
    x = np.ascontiguousarray(x, dtype=np.float32)
    if x.ndim != 2:
        raise DopplerDiffError(f"expected a 2-D array of vectors, got shape {x.shape}")
    return x


def _step(n_gallery: int) -> int:
    """Queries per chunk so that one score block holds about _BLOCK_FLOATS floats."""
    return max(1, _BLOCK_FLOATS // max(1, n_gallery))


class NumpySearch:
    name = "numpy"

    def __init__(self, vectors: np.ndarray) -> None:
        self.vectors = _as_f32(vectors)

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        queries, k = _check(queries, self.vectors, k)
        step = _step(len(self.vectors))
        scores = np.empty((len(queries), k), np.float32)
        ids = np.empty((len(queries), k), np.int64)
        for s in range(0, len(queries), step):
            sims = queries[s : s + step] @ self.vectors.T
            part = np.argpartition(-sims, k - 1, axis=1)[:, :k]
            top = np.take_along_axis(sims, part, axis=1)
            order = np.argsort(-top, axis=1, kind="stable")
            scores[s : s + len(sims)] = np.take_along_axis(top, order, axis=1)
            ids[s : s + len(sims)] = np.take_along_axis(part, order, axis=1)
        return scores, ids


class TorchSearch:
    name = "torch"

    def __init__(self, vectors: np.ndarray) -> None:
        import torch

        self._torch = torch
        self.vectors = _as_f32(vectors)
        self._t = torch.from_numpy(self.vectors)

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        torch = self._torch
        queries, k = _check(queries, self.vectors, k)
        step = _step(len(self.vectors))
        out_s, out_i = [], []
        with torch.no_grad():
            for s in range(0, len(queries), step):
                q = torch.from_numpy(queries[s : s + step])
                top = torch.topk(q @ self._t.T, k, dim=1)
                out_s.append(top.values.numpy())
                out_i.append(top.indices.numpy().astype(np.int64))
        return np.concatenate(out_s), np.concatenate(out_i)


class FaissSearch:
    name = "faiss"

    def __init__(self, vectors: np.ndarray) -> None:
        import logging

        logging.getLogger("faiss.loader").setLevel(logging.WARNING)  # its CPU-feature probing is noise
        import faiss

        self.vectors = _as_f32(vectors)
        self._index = faiss.IndexFlatIP(self.vectors.shape[1])
        self._index.add(self.vectors)

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        queries, k = _check(queries, self.vectors, k)
        scores, ids = self._index.search(queries, k)
        return scores.astype(np.float32), ids.astype(np.int64)


def _check(queries: np.ndarray, vectors: np.ndarray, k: int) -> tuple[np.ndarray, int]:
    queries = _as_f32(queries)
    if len(vectors) == 0:
        raise DopplerDiffError("the index has no gallery vectors to search")
    if queries.shape[1] != vectors.shape[1]:
        raise DopplerDiffError(
            f"query vectors have dimension {queries.shape[1]}, the index has {vectors.shape[1]}"
        )
    if k < 1:
        raise DopplerDiffError(f"k must be >= 1, got {k}")
    return queries, min(int(k), len(vectors))


def faiss_available() -> bool:
    return importlib.util.find_spec("faiss") is not None


def make_backend(vectors: np.ndarray, name: str = "auto") -> SearchBackend:
    """Build a search backend over ``vectors``; ``auto`` picks faiss when installed, else numpy."""
    if name not in BACKENDS:
        raise DopplerDiffError(f"unknown search backend '{name}' (choose one of {', '.join(BACKENDS)})")
    if name == "auto":
        name = "faiss" if faiss_available() else "numpy"
    if name == "faiss" and not faiss_available():
        raise DopplerDiffError("search backend 'faiss' needs faiss-cpu: pip install 'dopplerdiff[faiss]'")
    return {"numpy": NumpySearch, "torch": TorchSearch, "faiss": FaissSearch}[name](vectors)
