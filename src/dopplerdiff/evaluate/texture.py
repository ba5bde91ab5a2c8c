"""Texture statistics: does a set of spectrograms keep the speckle and sparsity of real windows?

Measured micro-Doppler windows are sparse (a dark noise floor with a thin torso line and scattered limb
returns) and speckled (pixel-to-pixel fluctuation). A first stage that averages the speckle away makes
smooth, filled blobs that an encoder trained for blur-robust features may still call faithful; these
statistics see the difference directly. All take intensity images in [0, 1], (N, H, W) or (N, C, H, W).

* ``radial_power_spectrum``: radially averaged power spectrum (mean over images) of the mean-removed
  image, in bins of spatial frequency (cycles/pixel, 0 .. 0.5 along an axis).
* ``high_frequency_ratio``: fraction of the (non-DC) power above ``HF_CUTOFF`` cycles/pixel — white noise
  gives the area fraction of that band (1 - pi 0.125^2 = 0.951), a smooth blob almost 0.
* ``sparsity``: fraction of pixels below ``FLOOR_LEVEL`` (near the noise floor).
* ``local_variance``: mean variance in 3x3 neighbourhoods (speckle energy).
* ``histogram_distance``: Wasserstein-1 distance between the pixel-intensity distributions of two sets.

``texture_stats(x)`` returns the per-set scalars; ``compare_texture(real, other)`` adds the ratios to a
real reference (1.0 = same as real) and the histogram distance.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy.ndimage import uniform_filter
from scipy.stats import wasserstein_distance

from dopplerdiff.errors import DopplerDiffError

HF_CUTOFF = 0.125  # cycles/pixel: above a quarter of the Nyquist frequency = structure finer than 8 px
FLOOR_LEVEL = 0.25  # intensity below which a pixel counts as noise floor (bottom quarter of the range)
RADIAL_BINS = 32
MAX_HIST_PIXELS = 200_000  # pixel subsample for the histogram distance (exact enough, bounded cost)


def _stack(images: Any) -> np.ndarray:
    arr = np.asarray(images, dtype=np.float64)
    if arr.ndim == 4:
        arr = arr.mean(axis=1)
    if arr.ndim != 3 or arr.shape[0] == 0 or min(arr.shape[1:]) < 4:
        raise DopplerDiffError(f"texture statistics need images (N, H, W) or (N, C, H, W), got {arr.shape}")
    if np.nanmin(arr) < -0.01 or np.nanmax(arr) > 1.01:
        raise DopplerDiffError("texture statistics expect intensities in [0, 1] (use data.images.to_unit)")
    return arr


def _radius(h: int, w: int) -> np.ndarray:
    """Spatial frequency magnitude (cycles/pixel) of each FFT bin."""
    fy, fx = np.fft.fftfreq(h)[:, None], np.fft.fftfreq(w)[None, :]
    return np.sqrt(fy**2 + fx**2)


def power_spectrum(images: Any) -> np.ndarray:
    """Mean 2-D power spectrum |FFT|^2 / (H W) of the mean-removed images (H, W), DC at [0, 0]."""
    x = _stack(images)
    x = x - x.mean(axis=(1, 2), keepdims=True)
    return (np.abs(np.fft.fft2(x)) ** 2).mean(axis=0) / (x.shape[1] * x.shape[2])


def radial_power_spectrum(images: Any, bins: int = RADIAL_BINS) -> tuple[np.ndarray, np.ndarray]:
    """(bin centres in cycles/pixel, mean power per bin) up to 0.5 cycles/pixel."""
    p = power_spectrum(images)
    r = _radius(*p.shape)
    edges = np.linspace(0.0, 0.5, bins + 1)
    idx = np.clip(np.digitize(r.ravel(), edges) - 1, 0, bins - 1)
    keep = (r.ravel() > 0) & (r.ravel() <= 0.5)
    total = np.bincount(idx[keep], weights=p.ravel()[keep], minlength=bins)
    count = np.bincount(idx[keep], minlength=bins)
    return (edges[:-1] + edges[1:]) / 2, np.divide(total, count, out=np.zeros(bins), where=count > 0)


def high_frequency_ratio(images: Any, cutoff: float = HF_CUTOFF) -> float:
    """Fraction of the non-DC power at spatial frequencies above ``cutoff`` cycles/pixel."""
    p = power_spectrum(images)
    r = _radius(*p.shape)
    total = p[r > 0].sum()
    return float(p[r > cutoff].sum() / total) if total > 0 else float("nan")


def local_variance(images: Any, size: int = 3) -> float:
    """Mean variance of intensity in size x size neighbourhoods (per image, then averaged)."""
    x = _stack(images)
    m = uniform_filter(x, size=(1, size, size), mode="reflect")
    m2 = uniform_filter(x * x, size=(1, size, size), mode="reflect")
    return float(np.clip(m2 - m * m, 0, None).mean())


def sparsity(images: Any, level: float = FLOOR_LEVEL) -> float:
    """Fraction of pixels below ``level`` (the dark noise floor of a real spectrogram)."""
    return float((_stack(images) < level).mean())


def _pixels(images: Any, seed: int) -> np.ndarray:
    flat = _stack(images).ravel()
    if len(flat) > MAX_HIST_PIXELS:
        flat = np.random.default_rng(seed).choice(flat, MAX_HIST_PIXELS, replace=False)
    return flat


def histogram_distance(a: Any, b: Any, seed: int = 0) -> float:
    """Wasserstein-1 distance between the pixel-intensity distributions of two image sets."""
    return float(wasserstein_distance(_pixels(a, seed), _pixels(b, seed + 1)))


def texture_stats(images: Any) -> dict[str, float]:
    """Scalar texture statistics of one image set."""
    return {"high_frequency_ratio": high_frequency_ratio(images), "sparsity": sparsity(images),
            "local_variance": local_variance(images), "mean_intensity": float(_stack(images).mean())}


def compare_texture(real: Any, other: Any, seed: int = 0) -> dict[str, Any]:
    """Statistics of ``other`` beside ``real``: each stat, its ratio to real, and the histogram distance."""
    r, o = texture_stats(real), texture_stats(other)
    ratio = {k: (o[k] / r[k] if r[k] else float("nan")) for k in r}
    return {"real": r, "other": o, "ratio_to_real": ratio,
            "histogram_w1": histogram_distance(real, other, seed)}
