"""Spectrogram maths (numpy/scipy): STFT power, clutter filters, dB, dynamic-range clipping and inverse.

Image convention: rows are Doppler with positive frequencies up (row 0 = highest) and zero Doppler in the
middle; columns are time, left to right.
"""

from __future__ import annotations

import numpy as np


def taper(name: str, n: int) -> np.ndarray:
    """Periodic analysis window (``hann`` or ``blackman``), float32."""
    x = 2 * np.pi * np.arange(n) / n
    if name == "hann":
        return (0.5 - 0.5 * np.cos(x)).astype(np.float32)
    if name == "blackman":
        return (0.42 - 0.5 * np.cos(x) + 0.08 * np.cos(2 * x)).astype(np.float32)
    raise ValueError(f"unknown taper {name!r} (hann, blackman)")


def _moving_average(x: np.ndarray, width: int) -> np.ndarray:
    """Centred moving average with edge values repeated (the same length as ``x``)."""
    left = width // 2
    padded = np.concatenate([np.full(left, x[0]), x, np.full(width - 1 - left, x[-1])])
    c = np.concatenate([[0], np.cumsum(padded, dtype=np.complex128)])
    return (c[width:] - c[:-width]) / width


def clutter_filter(x: np.ndarray, kind: str, fs: float, cutoff_hz: float = 8.0) -> np.ndarray:
    """Suppress static clutter: ``mean`` removes the DC of the record, ``highpass`` a moving average."""
    if kind == "none":
        return x
    if kind == "mean":
        return x - x.mean()
    if kind == "highpass":
        width = max(3, int(round(fs / cutoff_hz)))
        return (x - _moving_average(x, width)).astype(x.dtype)
    raise ValueError(f"unknown clutter filter {kind!r} (none, mean, highpass)")


def stft_power(x: np.ndarray, nperseg: int, starts: np.ndarray, window: np.ndarray) -> np.ndarray:
    """|FFT|^2 of tapered frames x[s : s + nperseg] for each start in ``starts``; returns (nperseg, frames).

    Rows run from +fs/2 (top) down to -fs/2 (bottom): positive Doppler up, zero Doppler in the middle.
    """
    idx = starts[:, None] + np.arange(nperseg)[None, :]
    if idx.min() < 0 or idx.max() >= x.shape[0]:
        raise ValueError("STFT frames run past the signal")
    frames = x[idx] * window[None, :]
    spec = np.fft.fft(frames, axis=1)
    power = (spec.real**2 + spec.imag**2).astype(np.float32)
    # fftshift puts -fs/2 first; flipping makes row 0 the most positive frequency.
    return np.ascontiguousarray(np.fft.fftshift(power, axes=1)[:, ::-1].T)


def doppler_axis(n: int, fs: float) -> np.ndarray:
    """Doppler frequency (Hz) of each row of ``stft_power`` output (descending)."""
    return np.fft.fftshift(np.fft.fftfreq(n, 1.0 / fs))[::-1]


def resample_matrix(n_in: int, n_out: int) -> np.ndarray:
    """(n_out, n_in) matrix: area averaging when shrinking, linear interpolation when enlarging."""
    if n_out == n_in:
        return np.eye(n_in, dtype=np.float32)
    m = np.zeros((n_out, n_in), dtype=np.float64)
    if n_out < n_in:
        edges = np.linspace(0.0, n_in, n_out + 1)
        for i in range(n_out):
            lo, hi = edges[i], edges[i + 1]
            for j in range(int(np.floor(lo)), int(np.ceil(hi))):
                m[i, j] = min(hi, j + 1) - max(lo, j)
        m /= m.sum(axis=1, keepdims=True)
    else:
        pos = np.clip((np.arange(n_out) + 0.5) * n_in / n_out - 0.5, 0, n_in - 1)
        j0 = np.floor(pos).astype(int)
        j1 = np.minimum(j0 + 1, n_in - 1)
        frac = pos - j0
        m[np.arange(n_out), j0] += 1 - frac
        m[np.arange(n_out), j1] += frac
    return m.astype(np.float32)


def to_db(power: np.ndarray, floor: float = 1e-20) -> np.ndarray:
    """10 log10(power) with a floor so empty bins stay finite."""
    return (10.0 * np.log10(np.maximum(power, floor))).astype(np.float32)


def db_to_unit(db: np.ndarray, ref_db: float | np.ndarray, dynamic_range_db: float) -> np.ndarray:
    """Map [ref - range, ref] dB to [0, 1], clipping outside (dark background = below the range)."""
    return np.clip((db - ref_db + dynamic_range_db) / dynamic_range_db, 0.0, 1.0).astype(np.float32)


def unit_to_db(img01: np.ndarray, ref_db: float | np.ndarray, dynamic_range_db: float) -> np.ndarray:
    """Inverse of ``db_to_unit`` inside the dynamic range (clipped values cannot be recovered)."""
    db = np.asarray(img01, dtype=np.float32) * dynamic_range_db + ref_db - dynamic_range_db
    return db.astype(np.float32)


def reference_db(db: np.ndarray, quantile: float, axes: tuple[int, ...]) -> np.ndarray:
    """Robust peak (0 dB reference) over ``axes``, kept as broadcastable dims."""
    if quantile >= 1.0:
        return db.max(axis=axes, keepdims=True)
    return np.quantile(db, quantile, axis=axes, keepdims=True).astype(np.float32)


def frame_starts(total_cols: int, dt_col: float, fs: float) -> np.ndarray:
    """First sample of STFT frame j: round((j + 0.5) dt_col fs); a signal whose sample i sits at time
    (i - nperseg / 2) / fs then has frame j centred on the middle of column j."""
    return np.round((np.arange(total_cols) + 0.5) * dt_col * fs).astype(np.int64)


def power_to_windows(
    power: np.ndarray, n_windows: int, hop_cols: int, time_bins: int, size: int, dynamic_range_db: float,
    ref_quantile: float, per_recording: bool = False,
) -> np.ndarray:
    """STFT power (nperseg, total_cols) of a recording -> (n_windows, size, size) unit images in [0, 1].

    Rows are resized to ``size`` first, then each window's ``time_bins`` columns; each window's 0 dB is its
    ``ref_quantile`` (or the whole recording's with ``per_recording``) and ``dynamic_range_db`` below is 0.
    """
    power = resample_matrix(power.shape[0], size) @ power  # (size, total_cols)
    cols = np.arange(n_windows)[:, None] * hop_cols + np.arange(time_bins)[None, :]
    win = power[:, cols].transpose(1, 0, 2)  # (W, size, time_bins)
    win = win @ resample_matrix(time_bins, size).T  # (W, size, size)
    db = to_db(win)
    if per_recording:
        ref = reference_db(to_db(power), ref_quantile, axes=(0, 1))[None]
    else:
        ref = reference_db(db, ref_quantile, axes=(1, 2))
    return db_to_unit(db, ref, dynamic_range_db)
