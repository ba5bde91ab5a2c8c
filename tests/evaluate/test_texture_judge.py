"""Texture statistics, the independent judge and the classifier two-sample test."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.ndimage import gaussian_filter, generic_filter

from dopplerdiff.errors import DopplerDiffError
from dopplerdiff.evaluate import texture as T
from dopplerdiff.evaluate.c2st import c2st, disjoint_pair
from dopplerdiff.evaluate.judge import JudgeSettings, fit_judge, judge_logits


def _noise(n=16, size=32, seed=0):
    return np.random.default_rng(seed).random((n, size, size))


def test_power_spectrum_obeys_parseval():
    x = _noise()
    p = T.power_spectrum(x)
    # Parseval: sum |FFT|^2 / (H W) over bins = sum of squares of the mean-removed image = H W var
    assert p.sum() == pytest.approx(np.var(x, axis=(1, 2)).mean() * 32 * 32, rel=1e-9)


def test_high_frequency_ratio_white_noise_and_blur():
    # white noise has a flat spectrum: the ratio is the share of FFT bins above the cutoff, ~1 - pi c^2
    assert T.high_frequency_ratio(_noise(64, 64)) == pytest.approx(1 - np.pi * T.HF_CUTOFF**2, abs=0.01)
    blurred = np.stack([gaussian_filter(im, 4) for im in _noise(8, 64)])
    assert T.high_frequency_ratio(blurred) < 0.05


def test_radial_spectrum_flat_for_white_noise():
    f, p = T.radial_power_spectrum(_noise(64, 64))
    assert f[0] > 0 and f[-1] < 0.5
    inner = p[2:-2]
    assert inner.std() / inner.mean() < 0.1


def test_local_variance_matches_scipy_generic_filter():
    x = _noise(2, 16)
    ref = np.mean([generic_filter(im, np.var, size=3, mode="reflect") for im in x])
    assert T.local_variance(x) == pytest.approx(ref, rel=1e-9)


def test_histogram_distance_is_the_shift():
    x = _noise(8, 32) * 0.8
    assert T.histogram_distance(x, x) == pytest.approx(0.0, abs=1e-3)  # different pixel subsamples
    assert T.histogram_distance(x, x + 0.1) == pytest.approx(0.1, abs=5e-3)


def test_sparsity_and_compare():
    x = np.zeros((2, 8, 8))
    x[:, :2] = 1.0
    assert T.sparsity(x) == pytest.approx(0.75)
    cmp_ = T.compare_texture(_noise(), _noise(seed=1))
    assert cmp_["ratio_to_real"]["high_frequency_ratio"] == pytest.approx(1.0, abs=0.02)
    with pytest.raises(DopplerDiffError, match="in \\[0, 1\\]"):
        T.texture_stats(x * 3 - 1)


def _bright_rows(n_per, k, size=16, seed=0):
    """Class c: a bright horizontal line at row 2 + 3c over noise (in [-1, 1])."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(-1, -0.5, (n_per * k, 1, size, size)).astype(np.float32)
    y = np.repeat(np.arange(k), n_per)
    for i, c in enumerate(y):
        x[i, 0, 2 + 3 * c] = 1.0
    return x, y


@pytest.mark.parametrize("arch", ["plain", "residual"])
def test_judge_learns_and_is_deterministic(arch):
    x, y = _bright_rows(20, 4)
    xv, yv = _bright_rows(5, 4, seed=1)
    s = JudgeSettings(channels=(8, 16), steps=60, batch_size=32, arch=arch)
    m1 = fit_judge(x, y, 4, s, seed=3, val=(xv, yv))
    assert (judge_logits(m1, xv).argmax(1) == yv).mean() > 0.9
    m2 = fit_judge(x, y, 4, s, seed=3, val=(xv, yv))
    np.testing.assert_array_equal(judge_logits(m1, xv), judge_logits(m2, xv))


def test_c2st_tells_speckle_from_blur_but_not_same_distribution():
    rng = np.random.default_rng(0)
    speckle = rng.uniform(-1, 1, (160, 1, 16, 16)).astype(np.float32)
    blur = np.stack([gaussian_filter(s, (0, 2, 2)) for s in rng.uniform(-1, 1, (160, 1, 16, 16))])
    s = JudgeSettings(channels=(8, 16), steps=80, batch_size=32)
    diff = c2st(speckle, blur.astype(np.float32), s, seed=0)
    assert diff["accuracy"] > 0.9 and diff["p_value"] < 1e-6
    same = c2st(speckle[:80], speckle[80:], s, seed=0)
    assert same["accuracy"] < 0.7 and same["p_value"] > 0.001
    assert same["ci95"][0] < 0.5 < same["ci95"][1] or same["accuracy"] <= 0.6


def test_disjoint_pair_uses_other_windows():
    real = np.arange(10)[:, None].astype(np.float32)
    a, b = disjoint_pair(real, real + 100, seed=0)
    assert len(a) == len(b) == 5 and not set(a.ravel()) & set((b - 100).ravel())
    with pytest.raises(DopplerDiffError, match="C2ST needs"):
        c2st(real[:3, None, None], real[:3, None, None])


def test_disjoint_pair_transforms_only_the_half_it_uses():
    """The evaluation passes the reconstruction itself: half of the training windows are decoded, not all,
    and the pair is the one the reconstructed array gives."""
    real = np.arange(11)[:, None].astype(np.float32)
    seen: list[int] = []

    def transform(x):
        seen.append(len(x))
        return x + 100

    a, b = disjoint_pair(real, transform, seed=3)
    a2, b2 = disjoint_pair(real, real + 100, seed=3)
    assert seen == [5] and np.array_equal(a, a2) and np.array_equal(b, b2)


def test_residual_judge_has_skip_connections_and_unknown_arch_is_refused():
    import torch

    from dopplerdiff.evaluate.judge import JudgeCNN, ResidualStage

    model = JudgeCNN(1, 3, (8, 16), "residual")
    assert sum(isinstance(m, ResidualStage) for m in model.modules()) == 2
    assert model(torch.zeros(2, 1, 16, 16)).shape == (2, 3)
    with pytest.raises(DopplerDiffError, match="judge architecture"):
        JudgeCNN(1, 3, (8,), "vit")
