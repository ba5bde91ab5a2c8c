"""Metric library: Fréchet distance and KID equal torchmetrics and a scipy reference; k-NN P/R; accuracy."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg
import torch

from dopplerdiff.errors import DopplerDiffError
from dopplerdiff.evaluate.metrics import (
    MIN_SAMPLES_FD,
    frechet_distance,
    frechet_distance_images,
    identity_accuracy,
    kid,
    kid_images,
    precision_recall,
)
from dopplerdiff.models.encoder import SpectrogramEncoder


def _scipy_fd(a: np.ndarray, b: np.ndarray) -> float:
    mu1, mu2 = a.mean(0), b.mean(0)
    s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    root = scipy.linalg.sqrtm(s1 @ s2).real
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1 + s2 - 2 * root))


@pytest.fixture(scope="module")
def encoder() -> SpectrogramEncoder:
    torch.manual_seed(0)
    return SpectrogramEncoder(num_classes=3, image_size=16, embed_dim=8, cnn_channels=[4, 8]).eval()


def test_frechet_matches_scipy_reference_and_is_zero_for_identical_sets():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(300, 12))
    b = rng.normal(0.5, 1.5, size=(250, 12))
    assert frechet_distance(a, b) == pytest.approx(_scipy_fd(a, b), rel=1e-8)
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-8)
    # a pure mean shift of 2 in every dimension adds exactly 4 per dimension
    assert frechet_distance(a, a + 2.0) == pytest.approx(4.0 * 12, rel=1e-8)


def test_frechet_and_kid_equal_torchmetrics_with_encoder_features(encoder):
    gen = torch.Generator().manual_seed(1)
    ia = torch.rand(40, 1, 16, 16, generator=gen) * 2 - 1
    ib = torch.rand(30, 1, 16, 16, generator=gen) * 0.5
    with torch.no_grad():
        fa, fb = encoder.features(ia).numpy(), encoder.features(ib).numpy()
    fd_tm = frechet_distance_images(encoder, ia, ib, batch_size=16)
    assert fd_tm > 0.01
    assert frechet_distance(fa, fb) == pytest.approx(fd_tm, rel=1e-4)
    torch.manual_seed(3)
    kid_tm = kid_images(encoder, ia, ib, subset_size=20, subsets=10)
    kid_np = kid(fa, fb, subset_size=20, subsets=10, seed=3)
    assert kid_np[0] == pytest.approx(kid_tm[0], rel=1e-4, abs=1e-7)
    assert kid_np[1] == pytest.approx(kid_tm[1], rel=1e-4, abs=1e-7)


def test_kid_near_zero_for_same_distribution_and_positive_for_shift():
    rng = np.random.default_rng(2)
    a, b = rng.normal(size=(200, 8)), rng.normal(size=(200, 8))
    same, _ = kid(a, b, subset_size=100, subsets=20)
    shifted, _ = kid(a, b + 1.0, subset_size=100, subsets=20)
    assert abs(same) < 0.05
    assert shifted > 10 * abs(same) and shifted > 0.1


def test_too_few_samples_errors_state_the_minimum(encoder):
    rng = np.random.default_rng(0)
    with pytest.raises(DopplerDiffError, match=f"at least {MIN_SAMPLES_FD}"):
        frechet_distance(rng.normal(size=(1, 4)), rng.normal(size=(10, 4)))
    with pytest.raises(DopplerDiffError, match="at least 2"):
        kid(rng.normal(size=(10, 4)), rng.normal(size=(1, 4)))
    with pytest.raises(DopplerDiffError, match="at least 4 samples"):
        precision_recall(rng.normal(size=(3, 4)), rng.normal(size=(10, 4)), k=3)
    with pytest.raises(DopplerDiffError, match=f"at least {MIN_SAMPLES_FD} images"):
        frechet_distance_images(encoder, torch.zeros(1, 1, 16, 16), torch.zeros(5, 1, 16, 16))
    with pytest.raises(DopplerDiffError, match="dimensions differ"):
        frechet_distance(rng.normal(size=(5, 4)), rng.normal(size=(5, 3)))


def test_precision_recall_realism_and_diversity():
    rng = np.random.default_rng(0)
    real = rng.normal(size=(300, 4))
    same = rng.normal(size=(300, 4))
    collapsed = rng.normal(scale=0.05, size=(300, 4))  # realistic (inside the real support) but no diversity
    far = rng.normal(size=(300, 4)) + 10.0
    pr_same = precision_recall(real, same)
    assert pr_same["precision"] > 0.8 and pr_same["recall"] > 0.8
    pr_col = precision_recall(real, collapsed)
    assert pr_col["precision"] > 0.95 and pr_col["recall"] < 0.3
    pr_far = precision_recall(real, far)
    assert pr_far["precision"] == 0.0 and pr_far["recall"] == 0.0 and pr_far["coverage"] == 0.0


def test_identity_accuracy_overall_per_identity_confusion_and_ci():
    labels = np.repeat(np.arange(3), 40)
    pred = labels.copy()
    pred[:20] = 1  # identity 0: half wrong
    res = identity_accuracy(pred, labels, num_classes=3, bootstrap=500, seed=0)
    assert res["overall"] == pytest.approx(100 / 120)
    assert res["per_identity"] == [0.5, 1.0, 1.0]
    assert res["confusion"][0] == [20, 20, 0] and res["confusion"][1] == [0, 40, 0]
    lo, hi = res["ci95"]
    assert lo < res["overall"] < hi and hi - lo < 0.2
    assert res["chance"] == pytest.approx(1 / 3)
    logits = np.eye(3)[pred]  # logits are accepted too (argmax)
    assert identity_accuracy(logits, labels, 3, bootstrap=0)["overall"] == res["overall"]
    # identical seeds give identical intervals
    assert identity_accuracy(pred, labels, 3, bootstrap=500, seed=0)["ci95"] == res["ci95"]
    with pytest.raises(DopplerDiffError):
        identity_accuracy([0, 5], [0, 1], num_classes=3)
