"""Simulator config: radar parameters and the population of walking people."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from dopplerdiff.config.data import MAX_SIZE
from dopplerdiff.errors import ConfigError

MIN_SIZE = 16


@dataclass(frozen=True)
class WalkCondition:
    """A walking condition: how it changes the walk of every person (1.0 / 0.0 = unchanged).

    Per-side pairs are (right, left). ``speed`` scales the walking speed, so Boulic's rule (cycle length
    1.346 sqrt(rv)) changes the cadence and the swing; ``aspect_deg`` turns the walking direction away from
    the radar's line of sight, which scales every radial velocity by about cos(aspect)."""

    name: str
    speed: float = 1.0
    arm_swing: tuple[float, float] = (1.0, 1.0)  # shoulder swing amplitude factor
    elbow_swing: tuple[float, float] = (1.0, 1.0)  # elbow flexion excursion factor
    elbow_bend_deg: tuple[float, float] = (0.0, 0.0)  # extra mean elbow flexion (forearm raised)
    aspect_deg: float = 0.0


# The simulator's conditions; ``aspect_<deg>`` (e.g. aspect_45) is accepted besides these.
WALK_CONDITIONS: dict[str, WalkCondition] = {c.name: c for c in (
    WalkCondition("normal"),
    # Load on the shoulders: smaller swing, the strap side (left) held closer, a slightly slower walk.
    WalkCondition("backpack", speed=0.9, arm_swing=(0.55, 0.35), elbow_swing=(0.7, 0.5)),
    # Hands in the pockets: both arms nearly frozen against the torso, elbows a little bent.
    WalkCondition("hands_in_pockets", arm_swing=(0.08, 0.08), elbow_swing=(0.1, 0.1),
                  elbow_bend_deg=(20.0, 20.0)),
    # Looking at a phone held in the right hand: that arm frozen, forearm raised in front of the body.
    WalkCondition("phone_in_hand", speed=0.95, arm_swing=(0.05, 1.0), elbow_swing=(0.05, 1.0),
                  elbow_bend_deg=(65.0, 0.0)),
    WalkCondition("fast", speed=1.35),
    WalkCondition("slow", speed=0.7),
)}
_ASPECT = re.compile(r"^aspect_(\d{1,2})$")


def walk_condition(name: str) -> WalkCondition:
    """The condition called ``name`` (ConfigError naming it and the known ones otherwise)."""
    if name in WALK_CONDITIONS:
        return WALK_CONDITIONS[name]
    m = _ASPECT.match(name)
    if m and 0 < int(m.group(1)) < 90:
        return WalkCondition(name, aspect_deg=float(m.group(1)))
    raise ConfigError(
        f"simulate.conditions: unknown condition '{name}'; known: {', '.join(WALK_CONDITIONS)} "
        f"or aspect_<degrees 1-89> (e.g. aspect_45)"
    )


@dataclass
class SimulateConfig:
    """Defaults give the simulated default dataset (31 people x 120 windows)."""

    identities: int = 31
    per_identity: int = 120
    recordings_per_identity: int = 2  # each recording is one continuous walk cut into windows
    size: int = 128
    carrier_ghz: float = 77.0
    prf_hz: float = 3500.0  # slow-time sampling rate; the image shows Doppler in [-prf/2, prf/2)
    window_s: float = 3.0  # spectrogram window length (like the measured data)
    hop_s: float = 1.0  # windows overlap by window_s - hop_s
    dynamic_range_db: float = 35.0
    format: Literal["png", "npy"] = "png"
    colormap: str = "jet"
    seed: int = 0
    # --- scene and signal processing ---
    scene: Literal["treadmill", "overground"] = "treadmill"  # treadmill: torso near zero Doppler
    stft_window_s: float = 0.1  # STFT analysis window (Doppler resolution ~ 1 / stft_window_s)
    stft_taper: Literal["hann", "blackman"] = "hann"
    scatterers_per_segment: int = 6  # point-like ellipsoids along each body segment (fills the envelope)
    kinematics_upsample: int = 8  # body motion evaluated every N slow-time samples, cubic-upsampled
    fading: float = 0.5  # std of the log-amplitude scintillation of each scatterer (0 = constant RCS)
    fading_hz: float = 25.0  # bandwidth of that scintillation
    time_bins: int = 120  # STFT columns per window before resizing to `size` (hop_s must be a multiple)
    clutter_filter: Literal["none", "mean", "highpass"] = "none"
    clutter_db: float = -6.0  # static clutter power relative to the torso return
    snr_db: tuple[float, float] = (18.0, 30.0)  # per-recording SNR (per slow-time sample) range
    normalize: Literal["window", "recording"] = "window"  # dB reference: each window's or recording's peak
    ref_quantile: float = 0.999  # quantile of the power used as 0 dB (robust peak)
    burst_prob: float = 0.15  # chance a recording has broadband interference bursts (vertical stripes)
    # --- population: identity spread vs per-recording variation (tune difficulty here) ---
    speed_mean: float = 0.85  # m/s
    speed_std: float = 0.15
    height_mean: float = 1.72  # m
    height_std: float = 0.08
    identity_spread: float = 0.35  # scales the spread of every per-person gait parameter
    recording_jitter: float = 1.0  # scales per-recording variation (speed jitter, aspect, SNR, drift)
    aspect_deg_std: float = 6.0  # walking direction vs radar line of sight: per-recording mean
    # --- within-recording drift: slow random walks (Ornstein-Uhlenbeck) of the recording's conditions, so
    # that a stretch of a recording is not recognisable from its fixed conditions alone ---
    drift_tau_s: float = 8.0  # correlation time of the condition walks
    aspect_walk_deg: float = 12.0  # stationary std of the aspect-angle walk
    speed_walk: float = 0.06  # relative std of the walking-speed walk
    snr_walk_db: float = 4.0  # std of the SNR walk
    # --- stride-to-stride gait variability (a few percent in healthy adults) ---
    stride_tau_s: float = 1.0  # correlation time of the stride jitter
    cadence_jitter: float = 0.03  # relative std of the step rate
    swing_jitter: float = 0.12  # relative std of arm / leg swing amplitude
    range_m: tuple[float, float] = (2.0, 4.0)
    workers: int = 0  # processes; 0 = automatic (serial for small runs)
    # Walking conditions to simulate (WALK_CONDITIONS names); empty = one condition, flat DATA/ID_k layout.
    conditions: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        checks = [
            (self.identities >= 1, f"simulate.identities must be >= 1, got {self.identities}"),
            (self.recordings_per_identity >= 1,
             f"simulate.recordings_per_identity must be >= 1, got {self.recordings_per_identity}"),
            (self.per_identity >= self.recordings_per_identity,
             f"simulate.per_identity ({self.per_identity}) must be >= recordings_per_identity "
             f"({self.recordings_per_identity}): every recording needs at least one window"),
            (MIN_SIZE <= self.size <= MAX_SIZE,
             f"simulate.size must be in [{MIN_SIZE}, {MAX_SIZE}], got {self.size}"),
            (self.carrier_ghz > 0, f"simulate.carrier_ghz must be > 0, got {self.carrier_ghz}"),
            (self.prf_hz >= 100, f"simulate.prf_hz must be >= 100, got {self.prf_hz}"),
            (self.window_s > 0 and self.hop_s > 0, "simulate.window_s and simulate.hop_s must be > 0"),
            (0 < self.stft_window_s < self.window_s,
             f"simulate.stft_window_s must be in (0, window_s), got {self.stft_window_s}"),
            (self.scatterers_per_segment >= 1,
             f"simulate.scatterers_per_segment must be >= 1, got {self.scatterers_per_segment}"),
            (self.fading >= 0 and self.fading_hz > 0, "simulate.fading must be >= 0 and fading_hz > 0"),
            (self.kinematics_upsample >= 1,
             f"simulate.kinematics_upsample must be >= 1, got {self.kinematics_upsample}"),
            (self.time_bins >= 8, f"simulate.time_bins must be >= 8, got {self.time_bins}"),
            (self.dynamic_range_db > 0,
             f"simulate.dynamic_range_db must be > 0, got {self.dynamic_range_db}"),
            (0.5 <= self.ref_quantile <= 1.0,
             f"simulate.ref_quantile must be in [0.5, 1], got {self.ref_quantile}"),
            (len(self.snr_db) == 2 and self.snr_db[0] <= self.snr_db[1],
             f"simulate.snr_db must be [low, high], got {list(self.snr_db)}"),
            (len(self.range_m) == 2 and 0 < self.range_m[0] <= self.range_m[1],
             f"simulate.range_m must be [low, high] > 0, got {list(self.range_m)}"),
            (0 <= self.burst_prob <= 1, f"simulate.burst_prob must be in [0, 1], got {self.burst_prob}"),
            (self.speed_mean > 0 and self.height_mean > 0, "simulate.speed_mean and height_mean must be > 0"),
            (min(self.speed_std, self.height_std, self.identity_spread, self.recording_jitter,
                 self.aspect_deg_std, self.aspect_walk_deg, self.speed_walk, self.snr_walk_db,
                 self.cadence_jitter, self.swing_jitter) >= 0,
             "simulate spreads (*_std, *_walk*, *_jitter, identity_spread, recording_jitter) must be >= 0"),
            (self.drift_tau_s > 0 and self.stride_tau_s > 0,
             "simulate.drift_tau_s and simulate.stride_tau_s must be > 0"),
            (self.workers >= 0, f"simulate.workers must be >= 0, got {self.workers}"),
        ]
        for ok, message in checks:
            if not ok:
                raise ConfigError(message)
        for name in self.conditions:
            walk_condition(name)
        if len(set(self.conditions)) != len(self.conditions):
            raise ConfigError(f"simulate.conditions names a condition twice: {list(self.conditions)}")
        # Windows are cut on the STFT column grid; a fractional hop would make overlaps inexact.
        cols = self.hop_s * self.time_bins / self.window_s
        if abs(cols - round(cols)) > 1e-6:
            raise ConfigError(
                f"simulate.hop_s * time_bins / window_s must be an integer number of columns, got {cols:g} "
                f"(e.g. time_bins=120 for 3 s windows with 1 s hop)"
            )
