"""Embedding-index config: search backend and open-set identification."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass
class EmbedConfig:
    backend: Literal["auto", "numpy", "faiss"] = "auto"
    k: int = 10
    method: Literal["knn", "centroid"] = "centroid"
    target_far: float = 0.05  # false-accept rate used by --threshold auto
