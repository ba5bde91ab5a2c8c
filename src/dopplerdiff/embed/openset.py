"""Open-set decision statistics: threshold at a target false-accept rate, FAR/FRR, equal error rate.

Conventions: a query is *accepted* when its score is ``>= threshold``. Genuine scores come from people who
are enrolled (their mate score), impostor scores from people who are not (their best score over everyone
enrolled). FAR = fraction of impostor scores accepted, FRR = fraction of genuine scores rejected.
"""

from __future__ import annotations

import numpy as np

from dopplerdiff.errors import DopplerDiffError


def threshold_at_far(impostor: np.ndarray, target_far: float) -> float:
    """Smallest threshold whose FAR on ``impostor`` is <= ``target_far``.

    With impostor scores sorted in descending order s_0 >= s_1 >= ..., at most m = floor(target * n) of them
    may be accepted, so the threshold sits just above s_m (ties at s_m are rejected, keeping FAR <= target).
    """
    imp = np.sort(np.asarray(impostor, dtype=np.float64).ravel())[::-1]
    if len(imp) == 0:
        raise DopplerDiffError("cannot calibrate a threshold: no impostor scores")
    if not 0.0 <= target_far < 1.0:
        raise DopplerDiffError(f"target false-accept rate must be in [0, 1), got {target_far}")
    m = int(np.floor(target_far * len(imp) + 1e-9))
    # The next float32 above s_m: scores are float32, and numpy compares float32 arrays with a Python
    # float in float32, where a float64 "just above" would round back down to s_m.
    t = np.nextafter(np.float32(imp[m]), np.float32(np.inf))
    if float(t) <= imp[m]:
        t = np.nextafter(t, np.float32(np.inf))
    return float(t)


def far_frr(genuine: np.ndarray, impostor: np.ndarray, threshold: float) -> tuple[float, float]:
    """(false-accept rate, false-reject rate) at ``threshold``; NaN for an empty side."""
    g = np.asarray(genuine, dtype=np.float64)
    i = np.asarray(impostor, dtype=np.float64)
    far = float(np.mean(i >= threshold)) if len(i) else float("nan")
    frr = float(np.mean(g < threshold)) if len(g) else float("nan")
    return far, frr


def equal_error_rate(genuine: np.ndarray, impostor: np.ndarray) -> tuple[float, float]:
    """(EER, threshold): the point where FAR and FRR cross, scanning every observed score as a threshold."""
    g = np.asarray(genuine, dtype=np.float64)
    i = np.asarray(impostor, dtype=np.float64)
    if len(g) == 0 or len(i) == 0:
        return float("nan"), float("nan")
    cand = np.unique(np.concatenate([g, i, [np.inf]]))
    # Vectorised FAR/FRR for every candidate threshold via sorted searches.
    gs, is_ = np.sort(g), np.sort(i)
    frr = np.searchsorted(gs, cand, side="left") / len(g)
    far = 1.0 - np.searchsorted(is_, cand, side="left") / len(i)
    j = int(np.argmin(np.abs(far - frr)))
    return float((far[j] + frr[j]) / 2), float(cand[j])


def summarize(genuine: np.ndarray, impostor: np.ndarray, threshold: float) -> dict[str, float]:
    """FAR, FRR at ``threshold`` plus EER and counts, as plain floats for JSON."""
    far, frr = far_frr(genuine, impostor, threshold)
    eer, eer_t = equal_error_rate(genuine, impostor)
    return {
        "threshold": float(threshold), "far": far, "frr": frr, "eer": eer, "eer_threshold": eer_t,
        "n_genuine": int(len(genuine)), "n_impostor": int(len(impostor)),
    }
