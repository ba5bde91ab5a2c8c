"""Simulator config: radar parameters and the population of walking people."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass
class SimulateConfig:
    """Defaults give the simulated default dataset (31 people x 120 windows)."""

    identities: int = 31
    per_identity: int = 120
    recordings_per_identity: int = 2  # each recording is one continuous walk cut into windows
    size: int = 128
    carrier_ghz: float = 77.0
    prf_hz: float = 2000.0  # slow-time sampling rate of the simulated returns
    window_s: float = 3.0  # spectrogram window length (like the measured data)
    hop_s: float = 1.0  # windows overlap by window_s - hop_s
    dynamic_range_db: float = 40.0
    format: Literal["png", "npy"] = "png"
    colormap: str = "jet"
    seed: int = 0
