"""Raw FMCW cube -> micro-Doppler windows: range FFT, clutter removal, range gate, STFT, dB windows.

Steps (all vectorised over chirps, bins and receivers):

1. range FFT of each chirp after a fast-time taper (``range_window``); complex IQ keeps all ``adc_samples``
   bins, real-only samples the positive half. Bin k is at range k fs / N * c / (2 slope).
2. clutter removal along slow time in each range bin and receiver: ``mean`` subtracts the bin's mean over
   the recording (static reflectors), ``mti`` is the two-pulse canceller x[m] - x[m-1] (also removes slowly
   drifting clutter, but weights Doppler by |2 sin(pi f / PRF)|).
3. range gate: ``fixed`` keeps every bin inside ``range_m``; ``track`` keeps ``track_bins`` bins centred on
   each frame's strongest bin inside ``range_m`` (energy over the frame's chirps and all receivers, the
   centre median-filtered over 5 frames so a single strong frame does not make the gate jump).
4. STFT over slow time of every gated bin and receiver, with the simulator's framing: a periodic
   ``stft_taper`` (Hann by default) of ``stft_window_s``, frame j starting at chirp round((j + 0.5) dt PRF)
   with dt = window_s / time_bins; the powers are summed over bins and receivers (incoherent combining:
   the receivers' phases differ with the angle of arrival).
5. windows of ``window_s`` every ``hop_s``, resized to ``size`` x ``size``, in dB against each window's
   ``ref_quantile`` peak and clipped to ``dynamic_range_db`` (:func:`spectrogram.power_to_windows`).

Rows run from +PRF/2 (top) to -PRF/2 (bottom), i.e. radial velocity +v_max .. -v_max with
v = f_D lambda / 2 and positive = approaching: the IF phase 4 pi R / lambda of an approaching target falls,
so the slow-time signal is conjugated before the STFT (``flip_doppler`` undoes that for sensors with the
opposite IF convention).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
from scipy.ndimage import median_filter

from dopplerdiff.config.base import to_dict
from dopplerdiff.config.radar import RADAR_FIELDS, RadarConfig
from dopplerdiff.data import spectrogram
from dopplerdiff.data.colormap import colormap_lut
from dopplerdiff.data.layout import IDENTITY_LIKE
from dopplerdiff.data.raw import read_recording
from dopplerdiff.data.simulate import save_window, window_filename
from dopplerdiff.errors import DataError, DopplerDiffError
from dopplerdiff.utils.io import atomic_dir, write_json


def range_profiles(cube: np.ndarray, radar: RadarConfig) -> np.ndarray:
    """(chirps, adc_samples, rx) -> range FFT (chirps, bins, rx), complex64."""
    n = radar.adc_samples
    name = radar.processing.range_window
    w = np.ones(n, np.float32) if name == "none" else spectrogram.taper(name, n)
    spec = np.fft.fft(cube * w[None, :, None], axis=1).astype(np.complex64)
    return spec if radar.complex else spec[:, : n // 2]


def remove_clutter(x: np.ndarray, kind: str) -> np.ndarray:
    """Static-clutter removal along slow time (axis 0)."""
    if kind == "mean":
        return x - x.mean(axis=0, keepdims=True)
    if kind == "mti":
        return np.concatenate([np.zeros_like(x[:1]), x[1:] - x[:-1]], axis=0)
    return x


def gate_bins(radar: RadarConfig, n_bins: int) -> np.ndarray:
    """Bins whose range lies inside ``processing.range_m``; none is a DataError."""
    lo, hi = radar.processing.range_m
    ranges = radar.range_of_bin(np.arange(n_bins))
    bins = np.flatnonzero((ranges >= lo) & (ranges <= hi))
    if bins.size == 0:
        raise DataError(f"processing.range_m {list(radar.processing.range_m)} m holds no range bin: the "
                        f"radar config's bins run from 0 to {ranges[-1]:.2f} m")
    return bins


def gate_indices(profiles: np.ndarray, radar: RadarConfig) -> np.ndarray:
    """(chirps, G) range-bin indices of the gate for every chirp."""
    proc = radar.processing
    allowed = gate_bins(radar, profiles.shape[1])
    chirps = profiles.shape[0]
    if proc.gate == "fixed":
        return np.broadcast_to(allowed[None, :], (chirps, allowed.size))
    cpf = radar.chirps_per_frame
    frames = -(-chirps // cpf)
    energy = np.zeros((frames, profiles.shape[1]), np.float64)
    np.add.at(energy, np.arange(chirps) // cpf, np.sum(np.abs(profiles) ** 2, axis=2))
    centre = allowed[np.argmax(energy[:, allowed], axis=1)]
    centre = median_filter(centre, size=5, mode="nearest")
    half = proc.track_bins // 2
    centre = np.clip(centre, allowed[0] + half, max(allowed[0] + half, allowed[-1] - half))
    offsets = np.arange(proc.track_bins) - half
    idx = centre[np.arange(chirps) // cpf][:, None] + offsets[None, :]
    return np.clip(idx, 0, profiles.shape[1] - 1)


def window_count(chirps: int, radar: RadarConfig) -> tuple[int, int, int, int]:
    """(n_windows, hop_cols, nperseg, total_cols) that fit into ``chirps`` chirps (n_windows may be 0)."""
    proc, prf = radar.processing, radar.prf_hz
    dt_col = proc.window_s / proc.time_bins
    hop_cols = int(round(proc.hop_s / dt_col))
    nperseg = max(8, int(round(proc.stft_window_s * prf)))
    # Column j is usable while its frame round((j + 0.5) dt_col prf) + nperseg stays inside the recording.
    cols = int(np.floor((chirps - nperseg + 0.5) / (dt_col * prf) - 0.5)) + 1
    while cols > 0 and spectrogram.frame_starts(cols, dt_col, prf)[-1] + nperseg > chirps:
        cols -= 1
    n_windows = max(0, (cols - proc.time_bins) // hop_cols + 1) if cols >= proc.time_bins else 0
    return n_windows, hop_cols, nperseg, (n_windows - 1) * hop_cols + proc.time_bins


def stft_power_sum(slow: np.ndarray, nperseg: int, starts: np.ndarray, window: np.ndarray) -> np.ndarray:
    """Sum over channels of |STFT|^2 of ``slow`` (samples, channels); rows as ``spectrogram.stft_power``."""
    idx = starts[:, None] + np.arange(nperseg)[None, :]
    frames = slow[idx] * window[None, :, None]  # (frames, nperseg, channels)
    spec = np.fft.fft(frames, axis=1)
    power = np.sum(spec.real**2 + spec.imag**2, axis=2, dtype=np.float64).astype(np.float32)
    return np.ascontiguousarray(np.fft.fftshift(power, axes=1)[:, ::-1].T)


def cube_to_windows(cube: np.ndarray, radar: RadarConfig, source: str) -> np.ndarray:
    """(chirps, adc_samples, rx) cube -> (n_windows, size, size) unit images; too short is a DataError."""
    proc = radar.processing
    n_windows, hop_cols, nperseg, total_cols = window_count(cube.shape[0], radar)
    if n_windows == 0:
        raise DataError(f"raw file '{source}' holds {cube.shape[0] / radar.prf_hz:.2f} s of chirps, shorter "
                        f"than one {proc.window_s:g} s window plus the {proc.stft_window_s:g} s STFT frame")
    prof = remove_clutter(range_profiles(cube, radar), proc.clutter)
    idx = gate_indices(prof, radar)  # (chirps, G)
    gated = np.take_along_axis(prof, idx[:, :, None], axis=1)  # (chirps, G, rx)
    slow = gated.reshape(gated.shape[0], -1)
    if not proc.flip_doppler:
        slow = np.conj(slow)
    starts = spectrogram.frame_starts(total_cols, proc.window_s / proc.time_bins, radar.prf_hz)
    power = stft_power_sum(slow, nperseg, starts, spectrogram.taper(proc.stft_taper, nperseg))
    return spectrogram.power_to_windows(power, n_windows, hop_cols, proc.time_bins, proc.size,
                                        proc.dynamic_range_db, proc.ref_quantile)


def axes(radar: RadarConfig) -> dict[str, Any]:
    """Image axes: Doppler (Hz) and radial velocity (m/s, + = approaching) of the top / bottom rows."""
    proc = radar.processing
    prf, lam = radar.prf_hz, radar.wavelength_m
    n_bins = radar.adc_samples if radar.complex else radar.adc_samples // 2
    return {
        "rows": "Doppler, +PRF/2 at the top row, zero in the middle, -PRF/2 at the bottom",
        "columns": "time, left to right",
        "doppler_hz_top": prf / 2,
        "velocity_mps_top": prf / 2 * lam / 2,
        "velocity_mps_per_row": prf * lam / 2 / proc.size,
        "seconds_per_column": proc.window_s / proc.size,
        "range_resolution_m": float(radar.range_of_bin(1)),
        "max_range_m": float(radar.range_of_bin(n_bins)),
        "prf_hz": prf,
        "wavelength_m": lam,
    }


def identity_number(out: Path) -> int:
    """0-based k of an output folder named like ID_3 / person3 / subject_07 (-> files ID{k+1}_...)."""
    if not IDENTITY_LIKE.match(out.name):
        raise DopplerDiffError(f"--out '{out}' must be an identity folder named like ID_1 (DATA/ID_k), so "
                               "the windows get the project's file names")
    number = int(re.findall(r"\d+", out.name)[-1])
    if number < 1:
        raise DopplerDiffError(f"--out '{out}': identity numbers start at 1")
    return number - 1


def raw_to_dataset(files: list[Path], radar: RadarConfig, out: Path, config_path: Path) -> dict[str, Any]:
    """Read and process every raw file, then write OUT/ID{k}_case1_{r}_Doppler{i}.<fmt> + metadata.json.

    Everything is read and checked before anything is written; the folder appears only when complete.
    """
    out = Path(out)
    k = identity_number(out)
    if not files:
        raise DopplerDiffError("no raw files given (--raw FILE ...)")
    if out.exists() and (not out.is_dir() or any(out.iterdir())):  # atomic_dir replaces an empty folder
        raise DopplerDiffError(f"output '{out}' already exists; choose another path or remove it")
    if radar.processing.colormap != "gray":
        colormap_lut(radar.processing.colormap)  # an unknown name fails before any work
    windows = [cube_to_windows(read_recording(f, radar), radar, str(f)) for f in files]
    proc = radar.processing
    with atomic_dir(out) as tmp:
        for r, images in enumerate(windows):
            for i, img in enumerate(images):
                save_window(tmp / window_filename(k, r, i, proc.format), img, proc.colormap)
        meta = {
            "generator": "dopplerdiff.data.rangedoppler",
            "radar_config": str(config_path),
            "radar": {**{n: getattr(radar, n) for n in RADAR_FIELDS},
                      "slope_mhz_per_us": radar.slope_hz_per_s * 1e-12, "prf_hz": radar.prf_hz,
                      "wavelength_m": radar.wavelength_m},
            "processing": to_dict(proc),
            "image": {"size": proc.size, "format": proc.format, "colormap": proc.colormap, **axes(radar)},
            "windows": {"window_s": proc.window_s, "hop_s": proc.hop_s,
                        "overlap_s": max(0.0, proc.window_s - proc.hop_s)},
            "recordings": [{"name": f"case1_{r + 1}", "file": str(f), "windows": len(w)}
                           for r, (f, w) in enumerate(zip(files, windows, strict=True))],
            "layout": "ID_k/ID{k}_case1_{r}_Doppler{i}.<ext> (k, r, i from 1; r = order of the raw files)",
        }
        write_json(tmp / "metadata.json", meta)
    return meta
