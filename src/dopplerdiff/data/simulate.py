"""Walking-human micro-Doppler simulator: a seeded population of people, continuous recordings, windows.

Each identity is a stable set of anatomy / gait-style parameters; each recording adds its own speed jitter,
start phase, aspect angle, range, SNR and interference, which then drift along the recording (slow random
walks; stride-to-stride cadence and swing jitter on top), so a stretch of a recording cannot be recognised
from its fixed conditions alone. Each recording is simulated once as a continuous slow-time
signal whose spectrogram is cut into overlapping windows (window_s long, every hop_s). Every identity and
recording draws from its own ``np.random.Generator`` derived from the seed with ``SeedSequence``, so the
output does not depend on the order or the number of worker processes.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import time
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import numpy as np
from scipy.signal import lfilter

from dopplerdiff.config.base import to_dict
from dopplerdiff.config.simulate import SimulateConfig
from dopplerdiff.data import radar, spectrogram
from dopplerdiff.data.images import write_image
from dopplerdiff.data.kinematics import Walker, body_points, cycle_duration, trajectory_tables
from dopplerdiff.errors import DopplerDiffError
from dopplerdiff.utils.io import atomic_dir, write_json, write_manifest

log = logging.getLogger(__name__)
VERSION = 2
RADAR_HEIGHT_M = 1.0


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


def draw_recording(cfg: SimulateConfig, person: Person, k: int, r: int) -> Recording:
    """Recording ``r`` (0-based) of identity ``k``: conditions that vary between sessions."""
    rng = np.random.default_rng(np.random.SeedSequence([cfg.seed, 1, k, r]))
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


def random_walk(rng: np.random.Generator, t: np.ndarray, tau: float, std: float) -> np.ndarray:
    """Stationary Ornstein-Uhlenbeck process (std ``std``, correlation time ``tau``) sampled at times ``t``.

    Drawn on a coarse grid (tau / 8) and interpolated: the walks are slow next to the sample rate."""
    if std <= 0:
        return np.zeros_like(t)
    step = tau / 8
    grid = t[0] + step * np.arange(int(np.ceil((t[-1] - t[0]) / step)) + 2)
    a = np.exp(-step / tau)
    e = rng.standard_normal(grid.size)
    x, _ = lfilter([np.sqrt(1 - a * a)], [1.0, -a], e[1:], zi=[a * e[0]])
    return std * np.interp(t, grid, np.concatenate([e[:1], x]))


def _cumint(x: np.ndarray, dt: float) -> np.ndarray:
    """Running integral from the first sample (0 there)."""
    return np.concatenate([np.zeros_like(x[:1]), np.cumsum(0.5 * (x[1:] + x[:-1]), axis=0) * dt])


def windows_per_recording(cfg: SimulateConfig) -> list[int]:
    """Split ``per_identity`` windows over the recordings (earlier recordings take the remainder)."""
    n, rem = divmod(cfg.per_identity, cfg.recordings_per_identity)
    return [n + (1 if r < rem else 0) for r in range(cfg.recordings_per_identity)]


def _body_motion(
    cfg: SimulateConfig, person: Person, rec: Recording, t: np.ndarray, walk_rng: np.random.Generator
) -> dict[str, np.ndarray]:
    """World positions of the body points at times ``t``: gait phase, drifting speed, heading and swing."""
    walker = person.walker
    rv = rec.speed / walker.leg_length
    step_rate = rec.cadence / float(cycle_duration(rv))
    dt = float(t[1] - t[0]) if t.size > 1 else 1.0 / cfg.prf_hz
    speed_dev = random_walk(walk_rng, t, cfg.drift_tau_s, rec.speed_walk)  # relative speed deviation
    for amp, freq, ph in rec.drift:
        speed_dev += amp * np.cos(2 * np.pi * freq * t + ph)
    drift_int = _cumint(speed_dev, dt)  # integral of the relative speed drift
    stride_dev = random_walk(walk_rng, t, cfg.stride_tau_s, rec.cadence_jitter)
    phase = rec.start_phase + step_rate * (t + drift_int + _cumint(stride_dev, dt))
    # Swing amplitude wanders stride to stride and grows with the momentary speed.
    arm_mod = np.maximum(1 + random_walk(walk_rng, t, cfg.stride_tau_s, rec.swing_jitter) + speed_dev, 0.1)
    leg_mod = np.maximum(
        1 + random_walk(walk_rng, t, cfg.stride_tau_s, 0.5 * rec.swing_jitter) + 0.5 * speed_dev, 0.1
    )
    points = body_points(walker, trajectory_tables(rv), phase, arm_mod=arm_mod, leg_mod=leg_mod)

    aspect = np.deg2rad(rec.aspect_deg + random_walk(walk_rng, t, cfg.drift_tau_s, rec.aspect_walk_deg))
    heading = np.stack([-np.cos(aspect), -np.sin(aspect), np.zeros_like(aspect)], axis=1)  # facing the radar
    end = np.array([rec.range_m, 0.0, 0.0])
    if cfg.scene == "overground":
        # Walks towards the radar along the (turning) heading at the (drifting) speed and ends at range_m.
        vel = rec.speed * (1 + speed_dev)[:, None] * heading
        offset = end[None, :] - (_cumint(vel[::-1], dt)[::-1])
    else:
        offset = end  # treadmill: the body stays in place, the belt carries the stance foot backwards
    return {name: radar.body_to_world(p, np.pi + aspect, offset) for name, p in points.items()}


def _received(
    cfg: SimulateConfig, person: Person, rec: Recording, world: dict[str, np.ndarray], length: int,
    nperseg: int, walk_rng: np.random.Generator, noise_rng: np.random.Generator,
) -> np.ndarray:
    """Baseband returns of the body with fading, noise, clutter and interference bursts, clutter-filtered."""
    fs, up = cfg.prf_hz, cfg.kinematics_upsample
    fading = (noise_rng, cfg.fading, cfg.fading_hz * up / fs) if cfg.fading > 0 else None
    sig = radar.segment_returns(
        world, person.walker.height, radar.wavelength(cfg.carrier_ghz), np.array([0.0, 0.0, RADAR_HEIGHT_M]),
        person.girth, ref_range=rec.range_m, scatterers=cfg.scatterers_per_segment, fading=fading,
        upsample=up, n_out=length,
    )
    ref_power = float(np.mean(np.abs(sig) ** 2))
    sig = sig * np.float32(np.sqrt(person.rcs_scale))
    t_out = (np.arange(length) - nperseg / 2) / fs
    snr = rec.snr_db + random_walk(walk_rng, t_out, cfg.drift_tau_s, rec.snr_walk_db)
    burst_active = walk_rng.uniform(size=int(t_out[-1] // 10.0) + 1) < cfg.burst_prob
    sig = radar.add_noise_clutter(
        sig, noise_rng, snr, cfg.clutter_db, ref_power, fs, rec.burst_rate_hz, burst_active, 10.0
    )
    return spectrogram.clutter_filter(sig, cfg.clutter_filter, fs)


def _windows(cfg: SimulateConfig, sig: np.ndarray, nperseg: int, n_windows: int, hop_cols: int) -> np.ndarray:
    """STFT power of the whole recording cut into overlapping windows, in dB mapped to [0, 1]."""
    dt_col = cfg.window_s / cfg.time_bins
    total_cols = (n_windows - 1) * hop_cols + cfg.time_bins
    starts = spectrogram.frame_starts(total_cols, dt_col, cfg.prf_hz)
    power = spectrogram.stft_power(sig, nperseg, starts, spectrogram.taper(cfg.stft_taper, nperseg))
    return spectrogram.power_to_windows(
        power, n_windows, hop_cols, cfg.time_bins, cfg.size, cfg.dynamic_range_db, cfg.ref_quantile,
        per_recording=cfg.normalize == "recording",
    )


def simulate_recording(
    cfg: SimulateConfig, person: Person, rec: Recording, n_windows: int, seed_key: tuple[int, ...] = (0,)
) -> np.ndarray:
    """Simulate one continuous recording; returns (n_windows, size, size) float32 images in [0, 1]."""
    fs = cfg.prf_hz
    dt_col = cfg.window_s / cfg.time_bins
    hop_cols = int(round(cfg.hop_s / dt_col))
    total_cols = (n_windows - 1) * hop_cols + cfg.time_bins
    nperseg = max(8, int(round(cfg.stft_window_s * fs)))
    length = int(np.ceil(total_cols * dt_col * fs)) + nperseg + 1
    # Sample i is at time (i - nperseg / 2) / fs so frame j (start round((j + 0.5) dt_col fs)) is centred at
    # the middle of column j.
    up = cfg.kinematics_upsample
    # Body motion is evaluated on a coarser grid: one knot per `up` samples, with one extra knot before and
    # two after for the cubic upsampler. Output sample i is at time (i - nperseg / 2) / fs.
    if up > 1:
        t = ((np.arange(int(np.ceil(length / up)) + 3) - 1) * up - nperseg / 2) / fs
    else:
        t = (np.arange(length) - nperseg / 2) / fs
    walk_rng = np.random.default_rng(np.random.SeedSequence([cfg.seed, 3, *seed_key]))
    world = _body_motion(cfg, person, rec, t, walk_rng)
    noise_rng = np.random.default_rng(np.random.SeedSequence([cfg.seed, 2, *seed_key]))
    sig = _received(cfg, person, rec, world, length, nperseg, walk_rng, noise_rng)
    return _windows(cfg, sig, nperseg, n_windows, hop_cols)


def identity_name(k: int) -> str:
    return f"ID_{k + 1}"


def window_filename(k: int, r: int, i: int, fmt: str) -> str:
    """ID{k}_case1_{r}_Doppler{i}.{fmt} with 1-based identity, recording and window numbers."""
    return f"ID{k + 1}_case1_{r + 1}_Doppler{i + 1}.{fmt}"


def save_window(path: Path, img01: np.ndarray, colormap: str) -> None:
    """Write one (H, W) [0, 1] window; the suffix picks .npy float32 or a colormapped / grayscale PNG."""
    write_image(path, img01, colormap)


def _run_recording(cfg: SimulateConfig, k: int, r: int, n_windows: int, out: Path) -> int:
    """Simulate recording r of identity k and write its windows under ``out``; returns windows written."""
    person = draw_person(cfg, k)
    rec = draw_recording(cfg, person, k, r)
    images = simulate_recording(cfg, person, rec, n_windows, seed_key=(k, r))
    folder = out / identity_name(k)
    folder.mkdir(parents=True, exist_ok=True)
    for i, img in enumerate(images):
        save_window(folder / window_filename(k, r, i, cfg.format), img, cfg.colormap)
    return n_windows


@contextlib.contextmanager
def _single_threaded_children() -> Iterator[None]:
    """Spawned workers start with one BLAS/OpenMP thread each: one process per core already fills the
    machine, and oversubscribed OpenBLAS threads spin (about 4x the CPU time on a busy 2-core machine)."""
    names = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
    saved = {k: os.environ.get(k) for k in names}
    os.environ.update({k: "1" for k in names})
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _auto_workers(cfg: SimulateConfig, jobs: int) -> int:
    if cfg.workers:
        return min(cfg.workers, jobs)
    if cfg.identities * cfg.per_identity < 400:
        return 1  # process start-up costs more than it saves for small runs
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, min(cores, jobs, 8))


def _check(cfg: SimulateConfig, out: Path) -> None:
    import matplotlib

    if cfg.colormap != "gray" and cfg.colormap not in matplotlib.colormaps:
        raise DopplerDiffError(
            f"simulate.colormap '{cfg.colormap}' is not a matplotlib colormap (try jet or gray)"
        )
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise DopplerDiffError(
            f"output '{out}' already exists and is not empty; choose another --out or remove it"
        )


def metadata(cfg: SimulateConfig) -> dict[str, Any]:
    """Deterministic description of the dataset: radar, axes, per-identity and per-recording parameters."""
    counts = windows_per_recording(cfg)
    identities = []
    for k in range(cfg.identities):
        person = draw_person(cfg, k)
        recs = [
            {"name": f"case1_{r + 1}", "windows": counts[r],
             "params": dataclasses.asdict(draw_recording(cfg, person, k, r))}
            for r in range(cfg.recordings_per_identity)
        ]
        identities.append(
            {"name": identity_name(k), "params": dataclasses.asdict(person), "recordings": recs}
        )
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
            "total": cfg.identities * cfg.per_identity,
        },
        "layout": "ID_k/ID{k}_case1_{r}_Doppler{i}.<ext> (k, r, i from 1)",
        # The worker count does not change the data, so it stays out of this file.
        "config": {k: v for k, v in to_dict(cfg).items() if k != "workers"},
        "identities": identities,
    }


def simulate_dataset(cfg: SimulateConfig, out: Path, progress: bool = True) -> Path:
    """Simulate the whole population into ``out`` (written atomically); returns ``out``."""
    out = Path(out)
    _check(cfg, out)
    counts = windows_per_recording(cfg)
    jobs = [(k, r, counts[r]) for k in range(cfg.identities) for r in range(cfg.recordings_per_identity)]
    total = sum(j[2] for j in jobs)
    workers = _auto_workers(cfg, len(jobs))
    from tqdm.auto import tqdm

    t0 = time.perf_counter()
    with atomic_dir(out) as tmp:
        bar = tqdm(total=total, unit="win", desc="simulate", disable=not progress)
        if workers == 1:
            for k, r, n in jobs:
                bar.update(_run_recording(cfg, k, r, n, tmp))
        else:
            with _single_threaded_children(), ProcessPoolExecutor(
                max_workers=workers, mp_context=get_context("spawn")
            ) as pool:
                futures = [pool.submit(_run_recording, cfg, k, r, n, tmp) for k, r, n in jobs]
                for fut in as_completed(futures):
                    bar.update(fut.result())
        bar.close()
        write_json(tmp / "metadata.json", metadata(cfg))
        seconds = time.perf_counter() - t0
        write_manifest(
            tmp, stage="simulate", seed=cfg.seed,
            identities=[identity_name(k) for k in range(cfg.identities)],
            windows=total, seconds=round(seconds, 3), spectrograms_per_s=round(total / max(seconds, 1e-9), 1),
            workers=workers, config=to_dict(cfg),
        )
    log.debug("simulated %d windows in %.1f s: %.0f spectrograms/s", total, seconds, total / seconds)
    return out
