"""Memorisation check: are generated samples copies of training windows?

For every generated sample we take its nearest-neighbour (Euclidean) distance to the training set, and
for every real **test** window (never seen in training, leak-free split) the same distance. Test windows
show how close a genuinely new window of the same people naturally is to the training set.

Rule: a generated sample is flagged when its nearest-training distance is below the ``percentile``-th
percentile of the test-to-train distances (default 5: only one in twenty real new windows is that close).
``percentile=0`` gives the stricter "closer than the closest test window" rule. Under no memorisation about
``percentile`` % of generated samples are flagged by chance, so compare ``fraction_flagged`` with
``expected_fraction``; copies of training windows have distance ~0 and are always flagged.

Works in any space: encoder features (``encoder.features``/``embed`` outputs) or pixels (images are
flattened); ``memorisation_report`` runs both when given an encoder.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from dopplerdiff.errors import DopplerDiffError


def _flat(x: Any, name: str) -> np.ndarray:
    arr = x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)
    if arr.ndim < 2 or len(arr) == 0:
        raise DopplerDiffError(f"memorisation: '{name}' must be a non-empty (N, ...) array, got {arr.shape}")
    return arr.reshape(len(arr), -1).astype(np.float64)


def nearest_neighbours(
    query: np.ndarray, ref: np.ndarray, chunk: int = 1024
) -> tuple[np.ndarray, np.ndarray]:
    """Distance to and index of the nearest row of ``ref`` for each row of ``query`` (chunked)."""
    ref_sq = (ref * ref).sum(1)
    dist = np.empty(len(query))
    idx = np.empty(len(query), dtype=np.int64)
    for i in range(0, len(query), chunk):
        q = query[i : i + chunk]
        d2 = (q * q).sum(1)[:, None] + ref_sq[None, :] - 2.0 * q @ ref.T
        j = d2.argmin(axis=1)
        idx[i : i + chunk] = j
        dist[i : i + chunk] = np.sqrt(np.maximum(d2[np.arange(len(q)), j], 0.0))
    return dist, idx


def memorisation(
    generated: Any, train: Any, test: Any, percentile: float = 5.0, num_examples: int = 8
) -> dict[str, Any]:
    """Flag generated samples closer to the training set than real test windows are (see module doc).

    Returns ``threshold``, ``flags`` (bool per generated sample), ``num_flagged``, ``fraction_flagged``,
    ``expected_fraction``, ``gen_nn_distance`` / ``gen_nn_index`` (nearest training sample),
    ``test_nn_distance``, summary medians and ``examples``: the ``num_examples`` closest generated samples
    as (generated index, training index, distance).
    """
    g, tr, te = _flat(generated, "generated"), _flat(train, "train"), _flat(test, "test")
    if not (g.shape[1] == tr.shape[1] == te.shape[1]):
        raise DopplerDiffError(
            f"memorisation: dimensions differ (generated {g.shape[1]}, train {tr.shape[1]}, "
            f"test {te.shape[1]})"
        )
    if not 0.0 <= percentile < 100.0:
        raise DopplerDiffError(f"memorisation: percentile must be in [0, 100), got {percentile}")
    d_gen, i_gen = nearest_neighbours(g, tr)
    d_test, _ = nearest_neighbours(te, tr)
    threshold = float(np.percentile(d_test, percentile)) if percentile > 0 else float(d_test.min())
    flags = d_gen < threshold
    order = np.argsort(d_gen)[:num_examples]
    return {
        "rule": f"nn-distance to train < {percentile:g}th percentile of test-to-train nn-distances",
        "percentile": percentile,
        "threshold": threshold,
        "flags": flags,
        "num_flagged": int(flags.sum()),
        "fraction_flagged": float(flags.mean()),
        "expected_fraction": percentile / 100.0,
        "gen_nn_distance": d_gen,
        "gen_nn_index": i_gen,
        "test_nn_distance": d_test,
        "gen_median_distance": float(np.median(d_gen)),
        "test_median_distance": float(np.median(d_test)),
        "examples": [(int(i), int(i_gen[i]), float(d_gen[i])) for i in order],
    }


def memorisation_report(
    generated: np.ndarray, train: np.ndarray, test: np.ndarray, encoder: Any | None = None,
    percentile: float = 5.0, batch_size: int = 256,
) -> dict[str, dict[str, Any]]:
    """Run the check in pixel space and (with an encoder) in its feature space; JSON-friendly output.

    Images are (N, C, H, W) in [-1, 1]. Per-sample arrays are dropped except ``flags``/indices as lists.
    """
    spaces = {"pixels": (generated, train, test)}
    if encoder is not None:
        spaces["features"] = tuple(_features(encoder, x, batch_size) for x in (generated, train, test))
    out = {}
    for name, (g, tr, te) in spaces.items():
        res = memorisation(g, tr, te, percentile=percentile)
        out[name] = {
            k: (v.tolist() if k in ("flags", "gen_nn_index") else v)
            for k, v in res.items()
            if k not in ("gen_nn_distance", "test_nn_distance")
        }
    return out


@torch.no_grad()
def _features(encoder: Any, images: np.ndarray, batch_size: int) -> np.ndarray:
    encoder.eval()
    t = torch.as_tensor(np.asarray(images), dtype=torch.float32)
    return torch.cat([encoder.features(t[i : i + batch_size]) for i in range(0, len(t), batch_size)]).numpy()
