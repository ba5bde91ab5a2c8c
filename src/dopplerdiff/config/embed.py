"""Embedding-index config: search backend and open-set identification."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass
class EmbedConfig:
    backend: Literal["auto", "numpy", "torch", "faiss"] = "auto"  # auto: faiss if installed, else numpy
    k: int = 10  # neighbours for search and for the k-NN vote
    method: Literal["knn", "centroid"] = "centroid"
    target_far: float = 0.05  # false-accept rate used by --threshold auto
    batch_size: int = 256  # images per encoder forward pass

    def __post_init__(self) -> None:
        if self.k < 1:
            raise ValueError(f"embed.k must be >= 1, got {self.k}")
        if not 0.0 <= self.target_far < 1.0:
            raise ValueError(f"embed.target_far must be in [0, 1), got {self.target_far}")
        if self.batch_size < 1:
            raise ValueError(f"embed.batch_size must be >= 1, got {self.batch_size}")
