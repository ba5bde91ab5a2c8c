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
    mlp_ratio: float = 2.0
    vit_patches: Literal["square", "time"] = "square"  # "time": tokens span all Doppler bins
    dropout: float = 0.0
    # CNN
    channels: list[int] = field(default_factory=lambda: [32, 64, 128])
    doppler_bins: int = 8  # Doppler rows kept after time pooling
    # Loss: cross-entropy + supcon_weight * supervised contrastive on the L2-normalised embedding
    supcon_weight: float = 0.1
    supcon_temperature: float = 0.1
    label_smoothing: float = 0.0
    augment: bool = True  # spectrogram augmentations (data.augment) during training
    eval_batch_size: int = 256
    train: LoopConfig = field(default_factory=LoopConfig)

    def __post_init__(self) -> None:
        if self.embed_dim < 2:
            raise ValueError(f"encoder.embed_dim must be >= 2, got {self.embed_dim}")
        if not self.channels:
            raise ValueError("encoder.channels must list at least one CNN width")
        if self.supcon_weight < 0 or self.supcon_temperature <= 0:
            raise ValueError("encoder.supcon_weight must be >= 0 and supcon_temperature > 0")
