"""Physical statistics of micro-Doppler spectrograms, to compare real and generated windows.

Layout (the simulator's and the measured data's): intensity images in [0, 1], Doppler on the vertical axis
with zero Doppler in the middle row and positive Doppler at the top (row 0), time on the horizontal axis.
Doppler values below are normalised: +1 = top row, 0 = middle, -1 = bottom row; to get Hz multiply by the
half bandwidth (PRF/2) of the data.

Per image (``physics_stats``):

* ``torso_doppler``: median over time of the torso Doppler (strongest row per column after a Gaussian
  smoothing of ``smooth`` rows along Doppler);
  ``torso_spread``: its standard deviation over time (the bobbing of the torso line).
* ``upper_envelope`` / ``lower_envelope``: mean over time of the highest / lowest Doppler whose intensity
  exceeds ``floor + threshold * (colmax - floor)`` in that column (``floor`` = the image's median, i.e. the
  noise floor of a mostly dark spectrogram); ``extent`` = mean(upper - lower); ``peak_extent`` = its 95th
  percentile over time (the limb spikes).
* ``cadence``: cycles per image width of the envelope's periodicity: the lag of the first autocorrelation
  peak (at least half as high as the strongest) after the first zero crossing of the (detrended) extent
  signal, refined by a parabola
  (NaN if no period is found); ``periodicity`` = the autocorrelation value at that peak (0..1).
* ``background`` (median intensity), ``mean_intensity`` and ``occupancy`` (fraction of pixels above the
  threshold level): the dark background vs "bright blotchy field" check.

``compare_physics(real, gen)`` -> {stat: {"wasserstein", "wasserstein_rel", "real_mean", "gen_mean",
"real_std", "gen_std", "n_real", "n_gen"}} with ``scipy.stats.wasserstein_distance`` between the per-image
distributions (NaNs dropped); ``wasserstein_rel`` divides by the real standard deviation.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy.ndimage import gaussian_filter1d
from scipy.stats import wasserstein_distance

from dopplerdiff.config.evaluate import PHYSICS_STATS
from dopplerdiff.errors import DopplerDiffError

STATS = PHYSICS_STATS


def _as_stack(images: Any) -> np.ndarray:
    """(H, W), (N, H, W) or (N, 1, H, W) -> (N, H, W) float64; multi-channel images are averaged."""
    arr = np.asarray(images, dtype=np.float64)
    if arr.ndim == 2:
        arr = arr[None]
    elif arr.ndim == 4:
        arr = arr.mean(axis=1)
    if arr.ndim != 3 or arr.shape[1] < 4 or arr.shape[2] < 4:
        raise DopplerDiffError(
            "physics statistics need images (N, H, W) or (N, C, H, W) of at least 4x4, "
            f"got {np.shape(images)}"
        )
    if np.nanmin(arr) < -0.01 or np.nanmax(arr) > 1.01:
        raise DopplerDiffError("physics statistics expect intensities in [0, 1] (use data.images.to_unit)")
    return arr


def _row_to_doppler(rows: np.ndarray, height: int) -> np.ndarray:
    """Row index (0 = top) -> normalised Doppler (+1 top, 0 middle, -1 bottom)."""
    centre = (height - 1) / 2.0
    return (centre - rows) / max(centre, 1e-9)


def _period(signal: np.ndarray, min_lag: int = 2) -> tuple[float, float]:
    """Period (columns) and strength of the dominant periodicity of a 1-D signal; (nan, 0) if none."""
    x = signal - signal.mean()
    # remove a linear trend so a slow drift is not read as a long period
    t = np.arange(len(x))
    x = x - np.polyval(np.polyfit(t, x, 1), t)
    n = len(x)
    if n < 2 * min_lag + 2 or np.allclose(x, 0):
        return float("nan"), 0.0
    spec = np.fft.rfft(x, 2 * n)
    ac = np.fft.irfft(spec * np.conj(spec))[:n]
    ac = ac / ac[0]
    # unbiased normalisation: fewer overlapping samples at long lags
    ac = ac * n / (n - np.arange(n))
    limit = int(n * 0.75)  # need a reasonable overlap to trust a peak
    below = np.nonzero(ac[:limit] < 0)[0]
    if len(below) == 0:
        return float("nan"), 0.0
    start = max(int(below[0]), min_lag)
    seg = ac[start:limit]
    if len(seg) < 3:
        return float("nan"), 0.0
    peaks = np.nonzero((seg[1:-1] >= seg[:-2]) & (seg[1:-1] >= seg[2:]) & (seg[1:-1] > 0))[0] + 1
    if len(peaks) == 0:
        return float("nan"), 0.0
    # the first clear peak (>= half the strongest): small noise bumps before it are not the period
    best = peaks[np.nonzero(seg[peaks] >= 0.5 * seg[peaks].max())[0][0]]
    lag = start + best
    y0, y1, y2 = ac[lag - 1], ac[lag], ac[lag + 1]
    denom = y0 - 2 * y1 + y2
    offset = 0.5 * (y0 - y2) / denom if abs(denom) > 1e-12 else 0.0
    return float(lag + np.clip(offset, -0.5, 0.5)), float(np.clip(y1, 0.0, 1.0))


def physics_stats(images: Any, threshold: float = 0.25, smooth: float = 1.0) -> dict[str, np.ndarray]:
    """Per-image physical statistics of [0, 1] spectrograms (see the module docstring); each (N,)."""
    stack = _as_stack(images)
    n, h, w = stack.shape
    out = {k: np.full(n, np.nan) for k in STATS}
    rows = np.arange(h)[:, None]
    for i, img in enumerate(stack):
        # smoothing along Doppler only: keeps the time structure (cadence) intact
        sm = gaussian_filter1d(img, sigma=smooth, axis=0, mode="nearest") if smooth > 0 else img
        torso = _row_to_doppler(sm.argmax(axis=0).astype(np.float64), h)
        floor = float(np.median(img))
        colmax = img.max(axis=0)
        level = floor + threshold * (colmax - floor)
        above = (img > level[None, :]) & (colmax[None, :] > floor + 1e-6)
        has = above.any(axis=0)
        top = np.where(above, rows, h).min(axis=0).astype(np.float64)
        bottom = np.where(above, rows, -1).max(axis=0).astype(np.float64)
        upper = np.where(has, _row_to_doppler(top, h), np.nan)
        lower = np.where(has, _row_to_doppler(bottom, h), np.nan)
        extent = upper - lower
        out["torso_doppler"][i] = np.median(torso)
        out["torso_spread"][i] = np.std(torso)
        if has.any():
            out["upper_envelope"][i] = np.nanmean(upper)
            out["lower_envelope"][i] = np.nanmean(lower)
            out["extent"][i] = np.nanmean(extent)
            out["peak_extent"][i] = np.nanpercentile(extent, 95)
            period, strength = _period(np.nan_to_num(extent, nan=0.0))
            out["cadence"][i] = w / period if np.isfinite(period) else np.nan
            out["periodicity"][i] = strength
        out["background"][i] = floor
        out["mean_intensity"][i] = img.mean()
        out["occupancy"][i] = float((img > floor + threshold * (img.max() - floor)).mean())
    return out


def summarise(stats: dict[str, np.ndarray]) -> dict[str, dict[str, float]]:
    """Mean / std / count (NaNs dropped) of each statistic."""
    res = {}
    for k, v in stats.items():
        ok = v[np.isfinite(v)]
        res[k] = {
            "mean": float(ok.mean()) if len(ok) else float("nan"),
            "std": float(ok.std()) if len(ok) else float("nan"),
            "n": int(len(ok)),
        }
    return res


def compare_physics(real_imgs: Any, gen_imgs: Any, threshold: float = 0.25) -> dict[str, dict[str, float]]:
    """Wasserstein distance per statistic between real and generated [0, 1] spectrograms."""
    real = physics_stats(real_imgs, threshold=threshold)
    gen = physics_stats(gen_imgs, threshold=threshold)
    out: dict[str, dict[str, float]] = {}
    for k in STATS:
        r, g = real[k][np.isfinite(real[k])], gen[k][np.isfinite(gen[k])]
        w = float(wasserstein_distance(r, g)) if len(r) and len(g) else float("nan")
        rstd = float(r.std()) if len(r) else float("nan")
        out[k] = {
            "wasserstein": w,
            "wasserstein_rel": w / rstd if len(r) and rstd > 1e-12 else float("nan"),
            "real_mean": float(r.mean()) if len(r) else float("nan"),
            "gen_mean": float(g.mean()) if len(g) else float("nan"),
            "real_std": rstd,
            "gen_std": float(g.std()) if len(g) else float("nan"),
            "n_real": int(len(r)),
            "n_gen": int(len(g)),
        }
    return out
