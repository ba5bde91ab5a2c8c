"""Data-layer config: how image folders are read, normalised, split and augmented."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

MAX_SIZE = 4096  # larger images do not fit any model here; a typo like 100000 would exhaust memory


@dataclass
class SplitConfig:
    """Leak-free split: contiguous blocks of windows per recording, a guard gap between blocks."""

    train: float = 0.7
    val: float = 0.15
    test: float = 0.15
    # Windows dropped between blocks; 3 s windows at 1 s hop overlap their 2 neighbours on each side.
    gap_windows: int = 2
    seed: int = 0

    def __post_init__(self) -> None:
        parts = (self.train, self.val, self.test)
        if any(p < 0 for p in parts) or abs(sum(parts) - 1.0) > 1e-6:
            raise ValueError(f"split fractions must be >= 0 and sum to 1, got {parts}")
        if self.gap_windows < 0:
            raise ValueError("gap_windows must be >= 0")


@dataclass
class AugmentConfig:
    """Spectrogram-valid augmentations (the Doppler axis is never flipped)."""

    time_shift: bool = True  # circular shift along time
    time_crop: float = 0.0  # max fraction of width cropped then resized back
    gain_jitter: float = 0.05  # additive offset in normalised units (a dB gain change)
    noise_std: float = 0.0  # additive Gaussian noise in normalised units
    # SpecAugment-style masks (Park et al. 2019): each of ``*_masks`` bands is up to ``*_mask`` of the axis,
    # filled with the window's mean; the Doppler band is masked in place, never moved
    time_mask: float = 0.0  # max fraction of the width per time mask (0 = off)
    time_masks: int = 1
    doppler_mask: float = 0.0  # max fraction of the height per Doppler-band mask (0 = off)
    doppler_masks: int = 1
    mixup: float = 0.0  # Beta(a, a) of mixup (Zhang et al. 2018) in classifier training, 0 = off

    def __post_init__(self) -> None:
        for name in ("time_crop", "time_mask", "doppler_mask"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ValueError(f"data.augment.{name} must be in [0, 1), got {getattr(self, name)}")
        for name in ("gain_jitter", "noise_std", "mixup", "time_masks", "doppler_masks"):
            if getattr(self, name) < 0:
                raise ValueError(f"data.augment.{name} must be >= 0, got {getattr(self, name)}")


@dataclass
class DataConfig:
    """How spectrogram folders are turned into tensors."""

    size: int = 64  # images are resized to size x size
    channels: Literal[1, 3] = 1  # 1: invert the colormap to intensity; 3: keep RGB
    colormap: str = "jet"  # colormap used to read (and write back) RGB images; 'gray' for grayscale
    resample: Literal["bilinear", "area", "bicubic", "lanczos"] = "bilinear"  # PIL filter, on intensity
    workers: int = 0  # decoding threads; 0 = automatic
    split: SplitConfig = field(default_factory=SplitConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    # Real-data budget: keep only the first N training windows of each identity (recording by recording,
    # in time order: a short recording), for every stage; val/test are unchanged. None = the whole split.
    train_per_identity: int | None = None

    def __post_init__(self) -> None:
        if not 8 <= self.size <= MAX_SIZE:
            raise ValueError(f"data.size must be in [8, {MAX_SIZE}], got {self.size}")
        if self.train_per_identity is not None and self.train_per_identity < 1:
            raise ValueError(f"data.train_per_identity must be >= 1 or null, got {self.train_per_identity}")
        if self.workers < 0:
            raise ValueError(f"data.workers must be >= 0, got {self.workers}")
