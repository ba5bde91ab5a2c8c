"""Window sets as the evaluation sees them (``WindowSet``): images with the spectrogram encoder's features
and logits, and the distribution metrics between two such sets."""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np
import torch

from dopplerdiff.evaluate.metrics import frechet_distance, kid, precision_recall
from dopplerdiff.models.autoencoder import reconstruct as ae_reconstruct


class WindowSet(NamedTuple):
    """Windows and their spectrogram encoder outputs: images (N,C,H,W) in [-1,1], features, logits, labels."""

    x: np.ndarray
    f: np.ndarray
    logits: np.ndarray
    y: np.ndarray
    files: list[str]


def encode_windows(encoder: Any, x: np.ndarray, y: np.ndarray, files: list[str] | None = None) -> WindowSet:
    f, logits = encoder_outputs(encoder, x)
    return WindowSet(x, f, logits, np.asarray(y, np.int64), list(files or []))


@torch.no_grad()
def encoder_outputs(encoder: Any, images: np.ndarray, batch_size: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """(features, logits) of images (N, C, H, W) in [-1, 1]; one backbone pass per batch."""
    dev = next(encoder.parameters()).device
    feats, logits = [], []
    for i in range(0, len(images), batch_size):
        x = torch.as_tensor(images[i : i + batch_size], dtype=torch.float32, device=dev)
        f = encoder.features(x)
        feats.append(f.float().cpu().numpy())
        logits.append(encoder.head(f).float().cpu().numpy())
    d, k = int(encoder.num_features), int(encoder.config.num_classes)
    return (np.concatenate(feats) if feats else np.zeros((0, d), np.float32),
            np.concatenate(logits) if logits else np.zeros((0, k), np.float32))


@torch.no_grad()
def reconstruct(vae: Any, images: np.ndarray, batch_size: int = 64) -> np.ndarray:
    """Test images through the first stage (posterior mean / quantised latents) -> [-1, 1]."""

    out = [ae_reconstruct(vae, torch.as_tensor(images[i : i + batch_size], dtype=torch.float32))
           .clamp(-1, 1).float().cpu().numpy() for i in range(0, len(images), batch_size)]
    return np.concatenate(out) if out else images[:0]


def distribution(a: np.ndarray, b: np.ndarray, k: int, seed: int) -> dict[str, Any]:
    """FD, KID and k-NN precision/recall of feature sets a (samples) vs b (reference, real test)."""
    res: dict[str, Any] = {"fd": frechet_distance(a, b), "n_a": len(a), "n_b": len(b)}
    res["kid_mean"], res["kid_std"] = kid(a, b, subset_size=min(len(a), len(b), 1000), subsets=100, seed=seed)
    k_eff = min(k, len(a) - 1, len(b) - 1)
    if k_eff >= 1:  # tiny sets: shrink k rather than fail (the k used is recorded)
        res.update(precision_recall(b, a, k=k_eff))
    return res


def first_per_identity(ws: WindowSet, n: int, k: int) -> WindowSet:
    """The first n samples of each identity (seed-indexed generation: the same as generating n)."""
    sel = np.concatenate([np.flatnonzero(ws.y == i)[:n] for i in range(k)])
    return WindowSet(ws.x[sel], ws.f[sel], ws.logits[sel], ws.y[sel], [])
