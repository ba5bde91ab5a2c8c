"""FMCW radar capture config (JSON or YAML) and the raw -> spectrogram processing settings.

Every radar field is required: a capture read with a wrong sample count or rate gives a plausible-looking
but wrong spectrogram, so nothing is guessed. ``processing`` is optional (defaults below).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from dopplerdiff.config.base import from_dict, read_yaml, require
from dopplerdiff.errors import ConfigError

SPEED_OF_LIGHT = 299_792_458.0
BIT_DEPTHS = (12, 14, 16)


@dataclass
class ProcessingConfig:
    """Range FFT, range gate, clutter removal, STFT and image settings."""

    range_window: Literal["hann", "blackman", "none"] = "hann"  # fast-time taper before the range FFT
    gate: Literal["track", "fixed"] = "track"  # fixed: every bin in range_m; track: the strongest bins
    range_m: tuple[float, float] = (0.5, 8.0)  # fixed gate, or the region the tracker searches
    track_bins: int = 9  # tracked gate width in range bins, centred on the frame's energy peak
    clutter: Literal["none", "mean", "mti"] = "mean"  # mean: subtract each bin's mean; mti: x[m] - x[m-1]
    flip_doppler: bool = False  # for sensors whose IF phase runs the other way (I/Q swapped)
    window_s: float = 3.0
    hop_s: float = 1.0
    stft_window_s: float = 0.1
    stft_taper: Literal["hann", "blackman"] = "hann"
    time_bins: int = 120  # STFT columns per window before resizing to size
    size: int = 128
    dynamic_range_db: float = 35.0
    ref_quantile: float = 0.999  # robust per-window peak used as 0 dB
    format: Literal["png", "npy"] = "png"
    colormap: str = "jet"

    def __post_init__(self) -> None:
        cols = self.hop_s * self.time_bins / self.window_s if self.window_s > 0 else 0.5
        require([
            (len(self.range_m) == 2 and 0 <= self.range_m[0] < self.range_m[1],
             f"range_m must be [low, high] with 0 <= low < high, got {list(self.range_m)}"),
            (self.track_bins >= 1, f"track_bins must be >= 1, got {self.track_bins}"),
            (self.window_s > 0 and self.hop_s > 0, "window_s and hop_s must be > 0"),
            (0 < self.stft_window_s < self.window_s, "stft_window_s must be in (0, window_s)"),
            (self.time_bins >= 8 and self.size >= 16, "time_bins must be >= 8 and size >= 16"),
            (self.dynamic_range_db > 0, "dynamic_range_db must be > 0"),
            (0.5 <= self.ref_quantile <= 1.0, "ref_quantile must be in [0.5, 1]"),
            (abs(cols - round(cols)) < 1e-6,
             f"hop_s * time_bins / window_s must be a whole number of columns, got {cols:g}"),
        ])


@dataclass
class RadarConfig:
    """One FMCW capture: chirp, ADC and frame parameters as the sensor was configured."""

    carrier_ghz: float  # chirp start frequency
    bandwidth_mhz: float  # swept bandwidth of one chirp
    chirp_time_us: float  # ramp duration
    adc_samples: int  # ADC samples per chirp (fast time)
    sample_rate_ksps: float  # ADC sampling rate
    chirps_per_frame: int
    frame_period_ms: float  # chirps are taken as evenly spaced: PRF = chirps_per_frame / frame_period
    rx: int  # receivers in the file, 1-4
    complex: bool  # complex IQ (complex1x) or real-only ADC samples
    bits: int  # ADC bit depth: 12, 14 or 16
    lane_layout: Literal["2lane", "4lane"]  # 2lane: xWR16xx/18xx/68xx; 4lane: xWR12xx/14xx
    slope_mhz_per_us: float | None = None  # optional cross-check: must equal bandwidth / chirp time
    processing: ProcessingConfig = field(default_factory=ProcessingConfig)

    def __post_init__(self) -> None:
        require([
            (self.carrier_ghz > 0, f"carrier_ghz must be > 0, got {self.carrier_ghz}"),
            (self.bandwidth_mhz > 0, f"bandwidth_mhz must be > 0, got {self.bandwidth_mhz}"),
            (self.chirp_time_us > 0, f"chirp_time_us must be > 0, got {self.chirp_time_us}"),
            (self.adc_samples >= 2, f"adc_samples must be >= 2, got {self.adc_samples}"),
            (self.sample_rate_ksps > 0, f"sample_rate_ksps must be > 0, got {self.sample_rate_ksps}"),
            (self.chirps_per_frame >= 1, f"chirps_per_frame must be >= 1, got {self.chirps_per_frame}"),
            (self.frame_period_ms > 0, f"frame_period_ms must be > 0, got {self.frame_period_ms}"),
            (1 <= self.rx <= 4, f"rx must be 1-4, got {self.rx}"),
            (self.bits in BIT_DEPTHS, f"bits must be one of {list(BIT_DEPTHS)}, got {self.bits}"),
            (self.adc_samples / self.sample_rate_ksps * 1e3 <= self.chirp_time_us * (1 + 1e-9),
             f"adc_samples / sample_rate ({self.adc_samples / self.sample_rate_ksps * 1e3:g} us) is longer "
             f"than chirp_time_us ({self.chirp_time_us:g})"),
            (self.chirp_time_us <= self.chirp_period_s * 1e6 * (1 + 1e-9),
             f"chirp_time_us ({self.chirp_time_us:g}) is longer than frame_period_ms / chirps_per_frame "
             f"({self.chirp_period_s * 1e6:g} us)"),
            (self.slope_mhz_per_us is None
             or abs(self.slope_mhz_per_us / (self.bandwidth_mhz / self.chirp_time_us) - 1) < 0.01,
             f"slope_mhz_per_us ({self.slope_mhz_per_us}) differs from bandwidth_mhz / chirp_time_us "
             f"({self.bandwidth_mhz / self.chirp_time_us:g}) by more than 1%"),
        ])

    @property
    def chirp_period_s(self) -> float:
        return self.frame_period_ms * 1e-3 / self.chirps_per_frame

    @property
    def prf_hz(self) -> float:
        """Slow-time sampling rate (chirps per second)."""
        return 1.0 / self.chirp_period_s

    @property
    def slope_hz_per_s(self) -> float:
        return self.bandwidth_mhz * 1e6 / (self.chirp_time_us * 1e-6)

    @property
    def wavelength_m(self) -> float:
        return SPEED_OF_LIGHT / (self.carrier_ghz * 1e9)

    @property
    def fs_hz(self) -> float:
        return self.sample_rate_ksps * 1e3

    def range_of_bin(self, k: Any) -> Any:
        """Range (m) of range-FFT bin ``k``: beat frequency k fs / N, R = f c / (2 slope)."""
        return k * self.fs_hz / self.adc_samples * SPEED_OF_LIGHT / (2 * self.slope_hz_per_s)


RADAR_FIELDS = tuple(f.name for f in dataclasses.fields(RadarConfig) if f.default is dataclasses.MISSING
                     and f.default_factory is dataclasses.MISSING)


def load_radar_config(path: Path, overrides: dict[str, Any] | None = None) -> RadarConfig:
    """Read a JSON/YAML radar config (JSON is YAML); ``overrides`` replace ``processing`` keys.

    A missing field, a wrong type or a bad value is one ConfigError naming the file and the field.
    """
    path = Path(path)
    data = read_yaml(path)
    missing = [name for name in RADAR_FIELDS if name not in data]
    if missing:
        raise ConfigError(f"radar config '{path}' is missing field '{missing[0]}' "
                          f"(required: {', '.join(RADAR_FIELDS)})")
    proc = data.get("processing") or {}
    if not isinstance(proc, dict):
        raise ConfigError(f"radar config '{path}': field 'processing' must be a mapping")
    data = {**data, "processing": {**proc, **(overrides or {})}}
    try:
        return from_dict(RadarConfig, data)
    except ConfigError as exc:
        raise ConfigError(f"radar config '{path}': {exc}") from None
