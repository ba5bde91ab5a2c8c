"""Border and corner statistics, and per-pixel difference maps of real vs generated windows.

A decoder that learned a fixed artefact at an image position (a bright corner pixel, a raised edge) gives
itself away to any classifier, yet hides in image-wide averages. These statistics look where convolutions
see the image's edge: the four corner pixels and the four one-pixel edge lines, per window; a set of
windows passes when the mean of each statistic lies inside the real windows' 5-95% range of it.
"""

from __future__ import annotations

from typing import Any

import numpy as np

CORNERS = {"top_left": (0, 0), "top_right": (0, -1), "bottom_left": (-1, 0), "bottom_right": (-1, -1)}
RANGE = (5.0, 95.0)  # percentiles of the real windows' per-window statistic that a set must fall within
# Measured windows often have one constant background value in a corner (range of width 0): the range is
# widened by this much (in [-1, 1] units, 2.5% of the scale) so a faithful set can pass.
TOLERANCE = 0.05


def _gray(images: Any) -> np.ndarray:
    """(N, H, W) float64 from (N, C, H, W) or (N, H, W) arrays (channels averaged)."""
    x = np.asarray(images, dtype=np.float64)
    if x.ndim == 4:
        x = x.mean(axis=1)
    if x.ndim != 3 or min(x.shape[1:]) < 2:
        raise ValueError(f"border statistics need (N, C, H, W) or (N, H, W) images, got shape {x.shape}")
    return x


def border_values(images: Any) -> dict[str, np.ndarray]:
    """Per-window values: each corner pixel and the mean of each one-pixel edge line (corners included)."""
    x = _gray(images)
    out = {f"corner_{name}": x[:, r, c] for name, (r, c) in CORNERS.items()}
    out.update({"edge_top": x[:, 0, :].mean(1), "edge_bottom": x[:, -1, :].mean(1),
                "edge_left": x[:, :, 0].mean(1), "edge_right": x[:, :, -1].mean(1)})
    return out


def compare_borders(real: Any, other: Any, tolerance: float = TOLERANCE) -> dict[str, Any]:
    """Each border statistic's mean over ``other`` against the real windows' 5-95% range of it, widened by
    ``tolerance`` on each side.

    ``ok`` is False when any mean falls outside its range; ``outside`` names those statistics.
    """
    rv, ov = border_values(real), border_values(other)
    stats: dict[str, Any] = {}
    outside = []
    for key, values in rv.items():
        lo, hi = np.percentile(values, RANGE)
        mean = float(ov[key].mean())
        stats[key] = {"mean": mean, "real_mean": float(values.mean()),
                      "real_lo": float(lo), "real_hi": float(hi)}
        if not lo - tolerance <= mean <= hi + tolerance:
            outside.append(key)
    return {"stats": stats, "outside": outside, "ok": not outside, "tolerance": tolerance}


def difference_maps(real: Any, other: Any) -> dict[str, np.ndarray]:
    """Per-pixel (H, W) maps of ``mean(other) - mean(real)`` and ``std(other) - std(real)`` over windows."""
    r, o = _gray(real), _gray(other)
    if r.shape[1:] != o.shape[1:]:
        raise ValueError(f"difference maps need one image size, got {r.shape[1:]} and {o.shape[1:]}")
    return {"mean": o.mean(0) - r.mean(0), "std": o.std(0) - r.std(0)}
