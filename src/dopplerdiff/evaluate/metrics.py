"""Distribution and identity metrics in the spectrogram encoder's feature space.

* ``frechet_distance(feats_a, feats_b)``: Fréchet distance between Gaussians fitted to two feature sets
  (the FID formula, with our encoder instead of Inception). Same math as torchmetrics
  ``FrechetInceptionDistance`` (unbiased covariance, trace of the matrix square root via the eigenvalues of
  ``S_a @ S_b``), in float64. ``frechet_distance_images(encoder, a, b)`` runs torchmetrics itself with the
  encoder as its ``feature=`` module (``EncoderFeatures``).
* ``kid(feats_a, feats_b, subset_size)``: kernel inception distance (unbiased polynomial-kernel MMD²
  averaged over random subsets) -> (mean, std), same as torchmetrics ``KernelInceptionDistance``;
  ``kid_images`` is the torchmetrics version on images.
* ``precision_recall(real, fake, k)``: k-NN precision/recall (Kynkäänniemi et al., 2019), plus density and
  coverage (Naeem et al., 2020).
* ``identity_accuracy(pred, labels, num_classes)`` (defined in ``dopplerdiff.classifier``): overall and
  per-identity accuracy with a percentile bootstrap 95 % CI and the confusion matrix.

Too few samples raise ``DopplerDiffError`` stating the minimum (``MIN_SAMPLES_FD`` = 2 per set for a
covariance; a KID subset needs 2 samples and at most as many as the smaller set). The Fréchet distance is
biased upwards when a set has fewer samples than feature dimensions; compare values at equal sample sizes.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from dopplerdiff.classifier import identity_accuracy  # noqa: F401 - kept importable from here
from dopplerdiff.errors import DopplerDiffError

MIN_SAMPLES_FD = 2
MIN_SAMPLES_KID = 2


def _as_features(x: Any, name: str) -> np.ndarray:
    arr = x.detach().cpu().numpy() if isinstance(x, Tensor) else np.asarray(x)
    if arr.ndim != 2:
        raise DopplerDiffError(f"{name}: expected a (N, D) feature array, got shape {arr.shape}")
    if not np.isfinite(arr).all():
        raise DopplerDiffError(f"{name}: features contain NaN or inf")
    return arr.astype(np.float64)


def _check_pair(a: np.ndarray, b: np.ndarray, minimum: int, what: str) -> None:
    if a.shape[1] != b.shape[1]:
        raise DopplerDiffError(f"{what}: feature dimensions differ ({a.shape[1]} vs {b.shape[1]})")
    for name, arr in (("first", a), ("second", b)):
        if len(arr) < minimum:
            raise DopplerDiffError(
                f"{what} needs at least {minimum} samples per set; the {name} set has {len(arr)}"
            )


def gaussian_stats(feats: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and unbiased covariance (N-1), as torchmetrics accumulates them."""
    f = _as_features(feats, "gaussian_stats")
    mu = f.mean(axis=0)
    cov = (f.T @ f - len(f) * np.outer(mu, mu)) / (len(f) - 1)
    return mu, cov


def frechet_from_stats(mu1: np.ndarray, s1: np.ndarray, mu2: np.ndarray, s2: np.ndarray) -> float:
    """||mu1 - mu2||² + Tr(S1 + S2 - 2 (S1 S2)^½); the trace of the root from eigenvalues of S1 S2."""
    diff = float(np.sum((mu1 - mu2) ** 2))
    eig = np.linalg.eigvals(s1 @ s2)
    # S1 S2 is similar to a PSD matrix: its eigenvalues are real >= 0 up to round-off
    root_trace = float(np.sqrt(eig.astype(np.complex128)).real.sum())
    return max(diff + float(np.trace(s1) + np.trace(s2)) - 2.0 * root_trace, 0.0)


def frechet_distance(feats_a: Any, feats_b: Any) -> float:
    """Fréchet distance between two (N, D) feature sets (>= ``MIN_SAMPLES_FD`` samples each)."""
    a, b = _as_features(feats_a, "frechet_distance"), _as_features(feats_b, "frechet_distance")
    _check_pair(a, b, MIN_SAMPLES_FD, "Fréchet distance")
    return frechet_from_stats(*gaussian_stats(a), *gaussian_stats(b))


def _poly_mmd(x: Tensor, y: Tensor, degree: int, gamma: float | None, coef: float) -> Tensor:
    """Unbiased MMD² with the polynomial kernel (x·y/D + coef)^degree."""
    g = 1.0 / x.shape[1] if gamma is None else gamma
    kxx = (x @ x.T * g + coef) ** degree
    kyy = (y @ y.T * g + coef) ** degree
    kxy = (x @ y.T * g + coef) ** degree
    m = x.shape[0]
    sxx = kxx.sum() - kxx.diagonal().sum()
    syy = kyy.sum() - kyy.diagonal().sum()
    return (sxx + syy) / (m * (m - 1)) - 2 * kxy.sum() / m**2


def kid(
    feats_a: Any, feats_b: Any, subset_size: int = 1000, subsets: int = 100, *, degree: int = 3,
    gamma: float | None = None, coef: float = 1.0, seed: int = 0,
) -> tuple[float, float]:
    """Kernel inception distance (mean, std over ``subsets`` random subsets of ``subset_size``).

    ``subset_size`` is clipped to the smaller set; both sets need >= ``MIN_SAMPLES_KID`` samples. Subsets
    are drawn with a torch generator seeded by ``seed`` (identical to torchmetrics after
    ``torch.manual_seed(seed)``).
    """
    a, b = _as_features(feats_a, "kid"), _as_features(feats_b, "kid")
    _check_pair(a, b, MIN_SAMPLES_KID, "KID")
    m = min(subset_size, len(a), len(b))
    if m < MIN_SAMPLES_KID:
        raise DopplerDiffError(f"KID subset_size must be >= {MIN_SAMPLES_KID}, got {subset_size}")
    ta, tb = torch.from_numpy(a), torch.from_numpy(b)
    gen = torch.Generator().manual_seed(seed)
    scores = []
    for _ in range(subsets):
        ia = torch.randperm(len(ta), generator=gen)[:m]
        ib = torch.randperm(len(tb), generator=gen)[:m]
        scores.append(_poly_mmd(ta[ia], tb[ib], degree, gamma, coef))
    s = torch.stack(scores)
    return float(s.mean()), float(s.std(unbiased=False))


class EncoderFeatures(nn.Module):
    """Thin wrapper so torchmetrics FID/KID use our encoder's pooled features (inputs in [-1, 1])."""

    def __init__(self, encoder: nn.Module) -> None:
        super().__init__()
        self.encoder = encoder.eval()
        self.num_features = int(encoder.num_features)

    @torch.no_grad()
    def forward(self, x: Tensor) -> Tensor:
        return self.encoder.features(x.float())


def _batches(x: np.ndarray | Tensor, batch_size: int):
    t = torch.as_tensor(x, dtype=torch.float32)
    for i in range(0, len(t), batch_size):
        yield t[i : i + batch_size]


def frechet_distance_images(
    encoder: nn.Module, images_a: np.ndarray | Tensor, images_b: np.ndarray | Tensor, batch_size: int = 256
) -> float:
    """Fréchet distance of two image sets (N, C, H, W) in [-1, 1], computed by torchmetrics."""
    from torchmetrics.image.fid import FrechetInceptionDistance

    for name, imgs in (("first", images_a), ("second", images_b)):
        if len(imgs) < MIN_SAMPLES_FD:
            raise DopplerDiffError(
                f"Fréchet distance needs at least {MIN_SAMPLES_FD} images per set; the {name} set has "
                f"{len(imgs)}"
            )
    fid = FrechetInceptionDistance(feature=EncoderFeatures(encoder), reset_real_features=False)
    for batch in _batches(images_a, batch_size):
        fid.update(batch, real=True)
    for batch in _batches(images_b, batch_size):
        fid.update(batch, real=False)
    return max(float(fid.compute()), 0.0)


def kid_images(
    encoder: nn.Module, images_a: np.ndarray | Tensor, images_b: np.ndarray | Tensor,
    subset_size: int = 1000, subsets: int = 100, batch_size: int = 256,
) -> tuple[float, float]:
    """KID (mean, std) of two image sets in [-1, 1], computed by torchmetrics (uses the global torch RNG)."""
    from torchmetrics.image.kid import KernelInceptionDistance

    m = min(subset_size, len(images_a), len(images_b))
    if m < MIN_SAMPLES_KID:
        raise DopplerDiffError(f"KID needs at least {MIN_SAMPLES_KID} images per set")
    with warnings.catch_warnings():  # the "features are kept in a buffer" notice: we know, sets are small
        warnings.simplefilter("ignore", UserWarning)
        metric = KernelInceptionDistance(feature=EncoderFeatures(encoder), subsets=subsets, subset_size=m)
    for batch in _batches(images_a, batch_size):
        metric.update(batch, real=True)
    for batch in _batches(images_b, batch_size):
        metric.update(batch, real=False)
    mean, std = metric.compute()
    return float(mean), float(std)


def _pairwise(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Euclidean distance matrix (float64, clipped at 0 before the root)."""
    d2 = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2.0 * a @ b.T
    return np.sqrt(np.maximum(d2, 0.0))


def _knn_radius(x: np.ndarray, k: int) -> np.ndarray:
    d = _pairwise(x, x)
    return np.sort(d, axis=1)[:, k]  # column 0 is the point itself


def precision_recall(real: Any, fake: Any, k: int = 3) -> dict[str, float]:
    """k-NN precision/recall (Kynkäänniemi 2019) and density/coverage (Naeem 2020) on features.

    precision: fraction of fake samples inside some real sample's k-NN ball (realism);
    recall: fraction of real samples inside some fake sample's k-NN ball (diversity);
    density: mean number of real balls containing a fake sample, / k; coverage: fraction of real
    samples whose ball contains at least one fake sample. Both sets need more than ``k`` samples.
    """
    r, f = _as_features(real, "precision_recall"), _as_features(fake, "precision_recall")
    _check_pair(r, f, k + 1, f"k-NN precision/recall (k={k})")
    r_rad, f_rad = _knn_radius(r, k), _knn_radius(f, k)
    d_rf = _pairwise(r, f)  # (Nr, Nf)
    in_real = d_rf <= r_rad[:, None]
    in_fake = d_rf <= f_rad[None, :]
    return {
        "precision": float(in_real.any(axis=0).mean()),
        "recall": float(in_fake.any(axis=1).mean()),
        "density": float(in_real.sum(axis=0).mean() / k),
        "coverage": float(in_real.any(axis=1).mean()),
        "k": k,
    }
