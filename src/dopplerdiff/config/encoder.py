"""Spectrogram encoder config (identity classifier and feature extractor)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from dopplerdiff.config.loop import LoopConfig


@dataclass
class EncoderConfig:
    kind: Literal["vit", "cnn"] = "cnn"
    embed_dim: int = 128
    # ViT
    patch_size: int = 8
    depth: int = 4
    heads: int = 4
    # CNN
    channels: list[int] = field(default_factory=lambda: [32, 64, 128])
    supcon_weight: float = 0.1
    supcon_temperature: float = 0.1
    train: LoopConfig = field(default_factory=LoopConfig)
