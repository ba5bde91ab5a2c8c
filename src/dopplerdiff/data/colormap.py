"""Colormaps as lookup tables: render intensity to RGB and invert colormapped RGB back to intensity.

Inversion is a nearest-colour lookup on the colormap's 256-entry LUT, precomputed over a quantised RGB cube
so that a whole image is one table read.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from dopplerdiff.errors import DataError

_BITS = 6  # quantisation of the RGB -> LUT-index table: 64^3 cells, 4 levels each (below JPEG noise)


@lru_cache(maxsize=16)
def colormap_lut(name: str) -> np.ndarray:
    """The colormap's 256-entry LUT as uint8 (256, 3); unknown names are a DataError."""
    import matplotlib

    try:
        cmap = matplotlib.colormaps[name]
    except KeyError:
        raise DataError(
            f"unknown colormap '{name}'; set data.colormap to a matplotlib colormap name "
            "(e.g. data.colormap=jet, viridis, turbo, gray) matching how the images were rendered"
        ) from None
    rgb = cmap(np.linspace(0.0, 1.0, 256))[:, :3]
    return np.round(rgb * 255.0).astype(np.uint8)


@lru_cache(maxsize=16)
def inverse_table(name: str) -> tuple[np.ndarray, np.ndarray]:
    """Quantised RGB cube -> (LUT index as float32 in [0,1], distance to the colormap in RGB units)."""
    from scipy.spatial import cKDTree

    lut = colormap_lut(name).astype(np.float64)
    # Colours repeated in the LUT (jet's flat blue top) map to the mean of their indices.
    uniq, inverse = np.unique(lut, axis=0, return_inverse=True)
    mean_idx = np.bincount(inverse.ravel(), weights=np.arange(256)) / np.bincount(inverse.ravel())
    n = 1 << _BITS
    centres = (np.arange(n) + 0.5) * (256 / n)
    grid = np.stack(np.meshgrid(centres, centres, centres, indexing="ij"), -1).reshape(-1, 3)
    dist, nearest = cKDTree(uniq).query(grid, workers=1)
    value = (mean_idx[nearest] / 255.0).astype(np.float32).reshape(n, n, n)
    return value, np.minimum(dist, 255).astype(np.uint8).reshape(n, n, n)


def invert_colormap(rgb: np.ndarray, name: str) -> tuple[np.ndarray, float]:
    """uint8 (H, W, 3) colour image -> (float32 (H, W) intensity in [0, 1], mean RGB distance to the LUT)."""
    value, dist = inverse_table(name)
    q = (rgb >> (8 - _BITS)).astype(np.int32)
    flat = (q[..., 0] << (2 * _BITS)) | (q[..., 1] << _BITS) | q[..., 2]
    # The residual is a diagnostic: a strided subsample estimates it at a fraction of the cost.
    return value.ravel()[flat], float(dist.ravel()[flat[::4, ::4]].mean())


def apply_colormap(img01: np.ndarray, name: str) -> np.ndarray:
    """float (H, W) in [0, 1] -> uint8 (H, W, 3) via the colormap LUT."""
    idx = np.clip(np.round(np.asarray(img01, dtype=np.float64) * 255.0), 0, 255).astype(np.int64)
    return colormap_lut(name)[idx]
