"""The simulated population: per-identity and per-recording parameters, walking conditions, file names and
the dataset's metadata.json.

Every identity and recording draws from its own ``np.random.Generator`` derived from the seed with
``SeedSequence``; a person keeps the same identity parameters in every walking condition, while each
condition's recordings (and so its windows) draw from their own streams.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import numpy as np

from dopplerdiff.config.base import to_dict
from dopplerdiff.config.simulate import SimulateConfig, WalkCondition, walk_condition
from dopplerdiff.data import radar
from dopplerdiff.data.kinematics import ArmCarriage, Walker

VERSION = 2
RADAR_HEIGHT_M = 1.0
LAYOUT_FLAT = "ID_k/ID{k}_case1_{r}_Doppler{i}.<ext> (k, r, i from 1)"
LAYOUT_CONDITIONS = "<condition>/ID_k/ID{k}_case{c}_{r}_Doppler{i}.<ext> (c: condition number; all from 1)"


@dataclass(frozen=True)
class Person:
    """Stable per-identity parameters."""

    walker: Walker
    speed: float  # preferred walking speed, m/s
    cadence: float  # step-rate factor relative to Boulic's rule for this speed
    rcs_scale: float  # overall reflectivity (power) relative to the textbook body
    girth: float  # segment radius factor (torso / limb strength)


@dataclass(frozen=True)
class Recording:
    """Per-recording conditions."""

    speed: float
    cadence: float
    start_phase: float
    aspect_deg: float  # walking direction vs the radar line of sight (0 = straight at the radar)
    range_m: float
    snr_db: float
    burst_rate_hz: float
    drift: tuple[tuple[float, float, float], ...]  # (amplitude, frequency Hz, phase) of slow speed drift
    # Stationary stds of the random walks within the recording (0 = fixed conditions).
    aspect_walk_deg: float = 0.0
    speed_walk: float = 0.0
    snr_walk_db: float = 0.0
    cadence_jitter: float = 0.0
    swing_jitter: float = 0.0


def draw_person(cfg: SimulateConfig, k: int) -> Person:
    """Identity ``k`` (0-based) of the population for ``cfg.seed``."""
    rng = np.random.default_rng(np.random.SeedSequence([cfg.seed, 0, k]))
    s = cfg.identity_spread

    def normal(mean: float, std: float, lo: float, hi: float) -> float:
        return float(np.clip(rng.normal(mean, std * s), lo, hi))

    walker = Walker(
        height=normal(cfg.height_mean, cfg.height_std, 1.45, 2.05),
        leg_scale=normal(1.0, 0.03, 0.9, 1.1),
        arm_scale=normal(1.0, 0.04, 0.85, 1.15),
        hip_gain=normal(1.0, 0.10, 0.7, 1.3),
        knee_gain=normal(1.0, 0.12, 0.6, 1.4),
        arm_gain=float(np.clip(np.exp(rng.normal(0.0, 0.35 * s)), 0.3, 2.5)),
        elbow_gain=normal(1.0, 0.2, 0.4, 1.6),
        bounce_gain=normal(1.0, 0.2, 0.4, 1.6),
        asymmetry=normal(0.0, 0.08, -0.25, 0.25),
        lr_phase=normal(0.0, 0.015, -0.05, 0.05),
    )
    return Person(
        walker=walker,
        speed=normal(cfg.speed_mean, cfg.speed_std, 0.45, 1.8),
        cadence=normal(1.0, 0.06, 0.8, 1.2),
        rcs_scale=float(np.exp(rng.normal(0.0, 0.3 * s))),
        girth=normal(1.0, 0.08, 0.75, 1.25),
    )


def draw_recording(cfg: SimulateConfig, person: Person, k: int, r: int, case: int = 0) -> Recording:
    """Recording ``r`` (0-based) of identity ``k``: conditions that vary between sessions.

    ``case`` (1-based) is the walking condition; 0 is the single-condition dataset (its own streams)."""
    rng = np.random.default_rng(np.random.SeedSequence(seed_key(cfg.seed, 1, k, r, case)))
    j = cfg.recording_jitter
    lo, hi = cfg.snr_db
    mid, half = (lo + hi) / 2, (hi - lo) / 2
    drift = tuple(
        (float(rng.normal(0.0, 0.025 * j)), float(rng.uniform(0.02, 0.2)), float(rng.uniform(0, 2 * np.pi)))
        for _ in range(3)
    )
    return Recording(
        speed=float(person.speed * (1 + rng.normal(0.0, 0.03 * j))),
        cadence=float(person.cadence * (1 + rng.normal(0.0, 0.015 * j))),
        start_phase=float(rng.uniform(0.0, 1.0)),
        aspect_deg=float(np.clip(rng.normal(0.0, cfg.aspect_deg_std * j), -60, 60)),
        range_m=float(rng.uniform(*cfg.range_m)),
        snr_db=float(mid + half * min(j, 1.0) * rng.uniform(-1.0, 1.0)),
        # Interference comes in episodes (burst_prob of the time), drawn along the recording.
        burst_rate_hz=float(rng.uniform(0.2, 1.0)) if cfg.burst_prob > 0 else 0.0,
        drift=drift,
        aspect_walk_deg=cfg.aspect_walk_deg * j,
        speed_walk=cfg.speed_walk * j,
        snr_walk_db=cfg.snr_walk_db * j,
        cadence_jitter=cfg.cadence_jitter * j,
        swing_jitter=cfg.swing_jitter * j,
    )



def seed_key(*key: int) -> list[int]:
    """SeedSequence entropy ``[..., case]``; case 0 (no conditions) keeps the single-condition streams."""
    return list(key[:-1]) if key[-1] == 0 else list(key)


def walk_conditions(cfg: SimulateConfig) -> list[WalkCondition]:
    """The configured walking conditions in order (case c + 1 is ``conditions[c]``)."""
    return [walk_condition(name) for name in cfg.conditions]


def condition_recording(rec: Recording, cond: WalkCondition | None) -> Recording:
    """The recording walked under ``cond``: speed scaled, walking direction turned by aspect_deg."""
    if cond is None:
        return rec
    return dataclasses.replace(rec, speed=rec.speed * cond.speed, aspect_deg=rec.aspect_deg + cond.aspect_deg)


def arm_carriage(cond: WalkCondition | None) -> ArmCarriage | None:
    """How ``cond`` carries the arms (None: the free swing)."""
    if cond is None:
        return None
    return ArmCarriage(swing=cond.arm_swing, elbow_swing=cond.elbow_swing, elbow_bend_deg=cond.elbow_bend_deg)


def windows_per_recording(cfg: SimulateConfig) -> list[int]:
    """Split ``per_identity`` windows over the recordings (earlier recordings take the remainder)."""
    n, rem = divmod(cfg.per_identity, cfg.recordings_per_identity)
    return [n + (1 if r < rem else 0) for r in range(cfg.recordings_per_identity)]



def identity_name(k: int) -> str:
    return f"ID_{k + 1}"


def window_filename(k: int, r: int, i: int, fmt: str, case: int = 1) -> str:
    """ID{k}_case{case}_{r}_Doppler{i}.{fmt} with 1-based identity, case, recording and window numbers."""
    return f"ID{k + 1}_case{case}_{r + 1}_Doppler{i + 1}.{fmt}"



def cases(cfg: SimulateConfig) -> list[tuple[int, WalkCondition | None]]:
    """(case, condition) pairs to simulate: [(0, None)] without conditions, else (1, first), (2, second)..."""
    conds = walk_conditions(cfg)
    return list(enumerate(conds, 1)) if conds else [(0, None)]


def _recordings_meta(cfg: SimulateConfig, person: Person, k: int) -> list[dict[str, Any]]:
    """Per recording (and condition): its name, window count and parameters."""
    counts = windows_per_recording(cfg)
    out = []
    for case, cond in cases(cfg):
        for r in range(cfg.recordings_per_identity):
            rec = condition_recording(draw_recording(cfg, person, k, r, case), cond)
            row = {"name": f"case{max(case, 1)}_{r + 1}", "windows": counts[r],
                   "params": dataclasses.asdict(rec)}
            out.append(row if cond is None else {"condition": cond.name, **row})
    return out


def metadata(cfg: SimulateConfig) -> dict[str, Any]:
    """Deterministic description of the dataset: radar, axes, per-identity and per-recording parameters."""
    counts = windows_per_recording(cfg)
    identities = []
    for k in range(cfg.identities):
        person = draw_person(cfg, k)
        identities.append(
            {"name": identity_name(k), "params": dataclasses.asdict(person),
             "recordings": _recordings_meta(cfg, person, k)}
        )
    n_cases = len(cases(cfg))
    # Neither the worker count nor an empty condition list changes the data: both stay out of this file.
    config = {k: v for k, v in to_dict(cfg).items() if k != "workers" and (k != "conditions" or v)}
    extra: dict[str, Any] = {}
    if cfg.conditions:
        extra["conditions"] = [{"case": c, **dataclasses.asdict(cond)} for c, cond in cases(cfg)]
    return {
        "generator": "dopplerdiff.data.simulate",
        "version": VERSION,
        "seed": cfg.seed,
        "radar": {
            "carrier_ghz": cfg.carrier_ghz,
            "wavelength_m": radar.wavelength(cfg.carrier_ghz),
            "prf_hz": cfg.prf_hz,
            "hz_per_mps": radar.doppler_hz(1.0, cfg.carrier_ghz),
            "radar_height_m": RADAR_HEIGHT_M,
            "scene": cfg.scene,
            "stft_window_s": cfg.stft_window_s,
            "stft_taper": cfg.stft_taper,
            "clutter_filter": cfg.clutter_filter,
            "dynamic_range_db": cfg.dynamic_range_db,
        },
        "image": {
            "size": cfg.size,
            "format": cfg.format,
            "colormap": cfg.colormap,
            "rows": "Doppler, +prf/2 at the top row, zero Doppler in the middle, -prf/2 at the bottom",
            "columns": "time, left to right",
            "doppler_hz_top": cfg.prf_hz / 2,
            "seconds_per_column": cfg.window_s / cfg.size,
        },
        "windows": {
            "window_s": cfg.window_s, "hop_s": cfg.hop_s, "overlap_s": max(0.0, cfg.window_s - cfg.hop_s)
        },
        "counts": {
            "identities": cfg.identities,
            "recordings_per_identity": cfg.recordings_per_identity,
            "windows_per_identity": cfg.per_identity,
            "windows_per_recording": counts,
            "total": cfg.identities * cfg.per_identity * n_cases,
        },
        "layout": LAYOUT_CONDITIONS if cfg.conditions else LAYOUT_FLAT,
        "config": config,
        **extra,
        "identities": identities,
    }

