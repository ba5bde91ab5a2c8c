"""Accept or reject generated samples: classifier confidence and physical plausibility.

* confidence: softmax probability of the intended identity under the run's encoder (``RUN/encoder``);
  a sample passes when it is at least ``min_confidence``.
* physics: every chosen statistic of ``data.physics.physics_stats`` lies inside the identity's real
  training range ``[q_lo, q_hi]`` (quantiles over its training windows), widened on both sides by
  ``tolerance`` x the same range over all identities' windows (a short recording's own range can be nearly a
  point); a statistic that cannot be measured on a sample (NaN) fails it, one never measurable on the real
  windows is skipped.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import torch

from dopplerdiff.classifier import predict
from dopplerdiff.config.evaluate import MAX_PHYSICS_TOLERANCE, PHYSICS_TOLERANCE
from dopplerdiff.data.physics import STATS, physics_stats
from dopplerdiff.errors import DopplerDiffError

DEFAULT_STATS = ("extent", "peak_extent", "background", "mean_intensity", "occupancy")
DEFAULT_QUANTILES = (0.025, 0.975)
DEFAULT_TOLERANCE = PHYSICS_TOLERANCE


def check_quantiles(q: tuple[float, float]) -> tuple[float, float]:
    lo, hi = (float(v) for v in q)
    if not (0.0 <= lo < hi <= 1.0):
        raise DopplerDiffError(f"physics quantiles must satisfy 0 <= lo < hi <= 1, got {lo}:{hi}")
    return lo, hi


def check_stats(stats: list[str] | tuple[str, ...]) -> tuple[str, ...]:
    bad = [s for s in stats if s not in STATS]
    if bad:
        raise DopplerDiffError(f"unknown physics statistic(s) {', '.join(bad)}; valid: {', '.join(STATS)}")
    return tuple(stats)


def check_tolerance(tolerance: float) -> float:
    if not (np.isfinite(tolerance) and 0.0 <= tolerance <= MAX_PHYSICS_TOLERANCE):
        raise DopplerDiffError(f"the physics tolerance must be in [0, {MAX_PHYSICS_TOLERANCE:g}], "
                               f"got {tolerance}")
    return float(tolerance)


def physics_ranges(images01: np.ndarray, labels: np.ndarray, stats: tuple[str, ...],
                   quantiles: tuple[float, float], tolerance: float = DEFAULT_TOLERANCE,
                   ) -> dict[int, dict[str, tuple[float, float]]]:
    """{identity: {stat: (lo, hi)}}: quantiles over each identity's real windows (N,C,H,W in [0,1]) widened
    by ``tolerance`` x the width of the same quantiles over all windows."""
    values = physics_stats(images01)
    out: dict[int, dict[str, tuple[float, float]]] = {}
    for k in np.unique(labels).tolist():
        sel = labels == k
        out[k] = {}
        for s in stats:
            v = values[s][sel]
            if np.isfinite(v).any():
                lo, hi = np.nanquantile(v, quantiles)
                all_lo, all_hi = np.nanquantile(values[s], quantiles)
                pad = tolerance * float(all_hi - all_lo)
                out[k][s] = (float(lo) - pad, float(hi) + pad)
    return out


def confidence(encoder: Any, images01: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Softmax probability of ``labels`` for images in [0, 1]."""
    logits, _ = predict(encoder, images01 * 2.0 - 1.0)
    prob = torch.softmax(torch.as_tensor(logits).double(), dim=1).numpy()
    return prob[np.arange(len(labels)), np.asarray(labels)]


@dataclasses.dataclass
class SampleFilter:
    """``accept(images01, labels)`` -> bool mask; either test may be off (encoder None / ranges None)."""

    encoder: Any = None
    min_confidence: float = 0.5
    ranges: dict[int, dict[str, tuple[float, float]]] | None = None
    quantiles: tuple[float, float] = DEFAULT_QUANTILES
    stats: tuple[str, ...] = DEFAULT_STATS
    tolerance: float = DEFAULT_TOLERANCE

    def accept(self, images01: np.ndarray, labels: np.ndarray) -> np.ndarray:
        ok = np.ones(len(labels), dtype=bool)
        if self.encoder is not None:
            ok &= confidence(self.encoder, images01, labels) >= self.min_confidence
        if self.ranges is not None:
            ok &= self.plausible(images01, labels)
        return ok

    def plausible(self, images01: np.ndarray, labels: np.ndarray) -> np.ndarray:
        values = physics_stats(images01)
        ok = np.ones(len(labels), dtype=bool)
        for j, k in enumerate(np.asarray(labels).tolist()):
            for s, (lo, hi) in self.ranges.get(k, {}).items():
                v = values[s][j]
                ok[j] &= bool(np.isfinite(v) and lo <= v <= hi)
        return ok

    def describe(self) -> dict[str, Any]:
        return {
            "min_confidence": self.min_confidence if self.encoder is not None else None,
            "physics_stats": list(self.stats) if self.ranges is not None else None,
            "physics_quantiles": list(self.quantiles) if self.ranges is not None else None,
            "physics_tolerance": self.tolerance if self.ranges is not None else None,
        }


def build_filter(
    encoder: Any, real01: np.ndarray | None, real_labels: np.ndarray | None, *, min_confidence: float,
    stats: tuple[str, ...], quantiles: tuple[float, float], tolerance: float = DEFAULT_TOLERANCE,
) -> SampleFilter:
    """A filter from the run's encoder (None: no confidence test) and real training windows in [0, 1]
    (None or no ``stats``: no physics test)."""
    if not 0.0 <= min_confidence <= 1.0:
        raise DopplerDiffError(f"--min-confidence must be in [0, 1], got {min_confidence}")
    stats, quantiles, tolerance = check_stats(stats), check_quantiles(quantiles), check_tolerance(tolerance)
    if encoder is None and (real01 is None or not stats):
        raise DopplerDiffError("the filter has nothing to test: give the run's encoder or physics statistics")
    ranges = (physics_ranges(real01, real_labels, stats, quantiles, tolerance)
              if real01 is not None and stats else None)
    return SampleFilter(encoder, min_confidence, ranges, quantiles, stats, tolerance)
