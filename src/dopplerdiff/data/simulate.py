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
import logging
import os
import time
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from multiprocessing import get_context
from pathlib import Path

import numpy as np
from scipy.signal import lfilter

from dopplerdiff.config import Config
from dopplerdiff.config.base import to_dict
from dopplerdiff.config.simulate import SimulateConfig, WalkCondition
from dopplerdiff.data import radar, spectrogram
from dopplerdiff.data.images import write_image
from dopplerdiff.data.kinematics import ArmCarriage, body_points, cycle_duration, trajectory_tables
from dopplerdiff.data.population import (
    RADAR_HEIGHT_M,
    Person,
    Recording,
    arm_carriage,
    cases,
    condition_recording,
    draw_person,
    draw_recording,
    identity_name,
    metadata,
    seed_key,
    window_filename,
    windows_per_recording,
)
from dopplerdiff.data.population import VERSION as VERSION  # the dataset format version, read here too
from dopplerdiff.errors import DopplerDiffError
from dopplerdiff.utils.io import atomic_dir, write_json, write_manifest
from dopplerdiff.utils.rundir import RunDir

log = logging.getLogger(__name__)


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


def _body_motion(
    cfg: SimulateConfig, person: Person, rec: Recording, t: np.ndarray, walk_rng: np.random.Generator,
    arms: ArmCarriage | None = None,
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
    points = body_points(walker, trajectory_tables(rv), phase, arm_mod=arm_mod, leg_mod=leg_mod, arms=arms)

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


def point_radial_velocities(
    cfg: SimulateConfig, person: Person, rec: Recording, t: np.ndarray, cond: WalkCondition | None = None,
    seed_key: tuple[int, ...] = (0,),
) -> dict[str, np.ndarray]:
    """Radial velocity (m/s, positive towards the radar) of every body point at times ``t`` when ``rec`` is
    walked under ``cond``: the micro-Doppler line each body part draws, before scattering and noise."""
    walk_rng = np.random.default_rng(np.random.SeedSequence([cfg.seed, 3, *seed_key]))
    world = _body_motion(cfg, person, condition_recording(rec, cond), t, walk_rng, arm_carriage(cond))
    at = np.array([0.0, 0.0, RADAR_HEIGHT_M])
    return {name: -np.gradient(np.linalg.norm(p - at, axis=1), t) for name, p in world.items()}


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
    cfg: SimulateConfig, person: Person, rec: Recording, n_windows: int, seed_key: tuple[int, ...] = (0,),
    arms: ArmCarriage | None = None,
) -> np.ndarray:
    """Simulate one continuous recording; returns (n_windows, size, size) float32 images in [0, 1].

    ``arms``: how the arms are carried (a walking condition); None is the free swing."""
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
    world = _body_motion(cfg, person, rec, t, walk_rng, arms)
    noise_rng = np.random.default_rng(np.random.SeedSequence([cfg.seed, 2, *seed_key]))
    sig = _received(cfg, person, rec, world, length, nperseg, walk_rng, noise_rng)
    return _windows(cfg, sig, nperseg, n_windows, hop_cols)


def save_window(path: Path, img01: np.ndarray, colormap: str) -> None:
    """Write one (H, W) [0, 1] window; the suffix picks .npy float32 or a colormapped / grayscale PNG."""
    write_image(path, img01, colormap)


def _run_recording(cfg: SimulateConfig, k: int, r: int, n_windows: int, out: Path, case: int = 0) -> int:
    """Simulate recording r of identity k (in walking condition ``case``, 0 = none) and write its windows
    under ``out`` (``out/<condition>`` for a condition); returns windows written."""
    person = draw_person(cfg, k)  # the same person in every condition
    cond = dict(cases(cfg))[case]
    rec = condition_recording(draw_recording(cfg, person, k, r, case), cond)
    key = tuple(seed_key(k, r, case))
    images = simulate_recording(cfg, person, rec, n_windows, seed_key=key, arms=arm_carriage(cond))
    folder = (out if cond is None else out / cond.name) / identity_name(k)
    folder.mkdir(parents=True, exist_ok=True)
    for i, img in enumerate(images):
        save_window(folder / window_filename(k, r, i, cfg.format, max(case, 1)), img, cfg.colormap)
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
    if cfg.identities * cfg.per_identity * len(cases(cfg)) < 400:
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



def simulate_dataset(cfg: SimulateConfig, out: Path, progress: bool = True) -> Path:
    """Simulate the whole population into ``out`` (written atomically); returns ``out``."""
    out = Path(out)
    _check(cfg, out)
    counts = windows_per_recording(cfg)
    jobs = [(k, r, counts[r], case) for case, _ in cases(cfg) for k in range(cfg.identities)
            for r in range(cfg.recordings_per_identity)]
    total = sum(j[2] for j in jobs)
    workers = _auto_workers(cfg, len(jobs))
    from tqdm.auto import tqdm

    t0 = time.perf_counter()
    with atomic_dir(out) as tmp:
        bar = tqdm(total=total, unit="win", desc="simulate", disable=not progress)
        if workers == 1:
            for k, r, n, case in jobs:
                bar.update(_run_recording(cfg, k, r, n, tmp, case))
        else:
            with _single_threaded_children(), ProcessPoolExecutor(
                max_workers=workers, mp_context=get_context("spawn")
            ) as pool:
                futures = [pool.submit(_run_recording, cfg, k, r, n, tmp, case) for k, r, n, case in jobs]
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
            **({"conditions": list(cfg.conditions)} if cfg.conditions else {}),
        )
    log.debug("simulated %d windows in %.1f s: %.0f spectrograms/s", total, seconds, total / seconds)
    return out


def simulate_run(run: Path, cfg: Config, *, resume: str | None = None, progress: bool = True) -> Path:
    """The run's simulate stage: ``cfg.simulate`` into RUN/data (a run started without a data folder);
    ``resume`` makes the common stage signature (one atomic pass, no checkpoints)."""
    return simulate_dataset(cfg.simulate, RunDir(run).data, progress=progress)
