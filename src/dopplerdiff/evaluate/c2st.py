"""Classifier two-sample test (C2ST; Lopez-Paz & Oquab, ICLR 2017): can a classifier tell real from synthetic?

Both sets are balanced (subsampled to the smaller one) and split in halves; the judge architecture
(``dopplerdiff.evaluate.judge``) is trained to separate real (label 0) from synthetic (label 1) on the first
halves and scored on the held-out halves. Accuracy 0.5 = indistinguishable, 1.0 = always told apart. The
p-value is the one-sided binomial test of the held-out accuracy against 0.5.

For reconstructions, pass real windows and reconstructions of *other* windows (``disjoint_pair``), so the
classifier cannot learn to match a window with its own reconstruction across halves.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from scipy.stats import binomtest

from dopplerdiff.errors import DopplerDiffError
from dopplerdiff.evaluate.judge import JudgeSettings, fit_judge, judge_logits

MIN_PER_SET = 8
BORDER = 2  # pixels cut from each side for the border-free test


def disjoint_pair(real: np.ndarray, transform_out: np.ndarray | Callable[[np.ndarray], np.ndarray],
                  seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Split index set in two: originals of one half, transformed versions (same order as ``real``) of
    the other — e.g. real test windows vs reconstructions of the other test windows. ``transform_out``: the
    transformed windows, or the transform itself, then applied to the half that is used only."""
    if callable(transform_out):
        perm = np.random.default_rng(seed).permutation(len(real))
        half = len(real) // 2
        return real[perm[:half]], transform_out(real[perm[half : 2 * half]])
    if len(real) != len(transform_out):
        raise DopplerDiffError("disjoint_pair: real and transformed sets must be aligned (same length)")
    perm = np.random.default_rng(seed).permutation(len(real))
    half = len(real) // 2
    return real[perm[:half]], transform_out[perm[half : 2 * half]]


def without_border(images: np.ndarray, width: int = BORDER) -> np.ndarray:
    """Images with ``width`` pixels cut from every side: a C2ST on these ignores edge and corner giveaways."""
    return np.ascontiguousarray(np.asarray(images)[..., width:-width, width:-width])


def saliency(model: torch.nn.Module, images: np.ndarray, batch_size: int = 128) -> np.ndarray:
    """Mean |d(synthetic logit - real logit) / d pixel| over ``images`` -> (H, W), normalised to max 1:
    where in the window the real-vs-synthetic classifier looks."""
    model.eval()
    dev = next(model.parameters()).device
    total = None
    for i in range(0, len(images), batch_size):
        x = torch.as_tensor(images[i : i + batch_size], dtype=torch.float32, device=dev).requires_grad_(True)
        logits = model(x)
        (logits[:, 1] - logits[:, 0]).sum().backward()
        g = x.grad.abs().sum(dim=(0, 1)).cpu().numpy()
        total = g if total is None else total + g
    if total is None:
        return np.zeros(np.asarray(images).shape[-2:], np.float32)
    return (total / max(float(total.max()), 1e-12)).astype(np.float32)


def c2st(real: Any, synthetic: Any, settings: JudgeSettings | None = None, *, seed: int = 0,
         device: str = "cpu", with_saliency: bool = False) -> dict[str, Any]:
    """Held-out accuracy of a real-vs-synthetic classifier, with its binomial p-value and 95% CI
    (and, with ``with_saliency``, its held-out saliency map under ``"saliency"``)."""
    a, b = np.asarray(real, np.float32), np.asarray(synthetic, np.float32)
    n = min(len(a), len(b))
    if n < MIN_PER_SET:
        raise DopplerDiffError(f"C2ST needs at least {MIN_PER_SET} windows in each set, "
                               f"got {len(a)} and {len(b)}")
    if a.shape[1:] != b.shape[1:]:
        raise DopplerDiffError(f"C2ST: real images {a.shape[1:]} and synthetic {b.shape[1:]} differ")
    rng = np.random.default_rng(seed)
    a, b = a[rng.permutation(len(a))[:n]], b[rng.permutation(len(b))[:n]]
    h = n // 2
    x_fit = np.concatenate([a[:h], b[:h]])
    y_fit = np.concatenate([np.zeros(h, np.int64), np.ones(h, np.int64)])
    x_test = np.concatenate([a[h:], b[h:]])
    y_test = np.concatenate([np.zeros(n - h, np.int64), np.ones(n - h, np.int64)])
    # no time-shift augmentation: a shifted real window is still real, but the test is of the raw windows
    model = fit_judge(x_fit, y_fit, 2, settings, seed=seed, device=device, augment=False)
    correct = int((judge_logits(model, x_test).argmax(1) == y_test).sum())
    test = binomtest(correct, len(y_test), 0.5, alternative="greater")
    ci = test.proportion_ci(0.95)
    out = {"accuracy": correct / len(y_test), "ci95": [float(ci.low), float(ci.high)],
           "p_value": float(test.pvalue), "n_fit": int(len(y_fit)), "n_test": int(len(y_test))}
    if with_saliency:
        out["saliency"] = saliency(model, x_test)
    return out
