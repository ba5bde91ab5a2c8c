"""Physics statistics on synthetic spectrograms whose answers are known."""

from __future__ import annotations

import numpy as np
import pytest

from dopplerdiff.data.physics import STATS, compare_physics, physics_stats
from dopplerdiff.errors import DopplerDiffError


def synth(h=64, w=96, period=16.0, torso_row=40, amp=12, base=4, seed=0, noise=0.05):
    """Dark noisy background, a bright torso row and a limb band whose half-width oscillates sinusoidally."""
    rng = np.random.default_rng(seed)
    img = rng.uniform(0, noise, (h, w))
    t = np.arange(w)
    half = base + amp * (0.5 + 0.5 * np.sin(2 * np.pi * t / period + seed))
    for j in range(w):
        lo, hi = int(max(0, torso_row - half[j])), int(min(h, torso_row + half[j] + 1))
        img[lo:hi, j] = 0.5
    img[torso_row, :] = 1.0
    return img


@pytest.mark.parametrize("period", [8.0, 12.0, 19.2, 32.0])
def test_cadence_recovers_known_period(period):
    s = physics_stats(synth(period=period))
    assert s["cadence"][0] == pytest.approx(96 / period, rel=0.05)
    assert s["periodicity"][0] > 0.5


def test_torso_row_and_envelopes_in_normalised_doppler():
    h, row = 64, 40
    s = physics_stats(synth(h=h, torso_row=row, amp=0, base=6))  # constant band: row-6 .. row+6
    centre = (h - 1) / 2
    assert s["torso_doppler"][0] == pytest.approx((centre - row) / centre, abs=1e-9)
    assert s["torso_spread"][0] == pytest.approx(0.0, abs=1e-9)
    assert s["upper_envelope"][0] == pytest.approx((centre - (row - 6)) / centre, abs=1e-9)
    assert s["lower_envelope"][0] == pytest.approx((centre - (row + 6)) / centre, abs=1e-9)
    assert s["extent"][0] == pytest.approx(12 / centre, abs=1e-9)
    # positive Doppler is up: a torso above the middle row has positive Doppler
    assert physics_stats(synth(torso_row=10))["torso_doppler"][0] > 0


def test_background_and_occupancy_separate_dark_from_bright_fields():
    dark = physics_stats(synth())
    bright = physics_stats(np.random.default_rng(0).uniform(0.3, 1.0, (64, 96)))
    assert dark["background"][0] < 0.1 < bright["background"][0]
    assert bright["mean_intensity"][0] > dark["mean_intensity"][0]


def test_shapes_and_channel_inputs():
    batch = np.stack([synth(seed=i) for i in range(3)])
    a = physics_stats(batch)
    b = physics_stats(batch[:, None])  # (N, 1, H, W)
    assert set(a) == set(STATS)
    for k in STATS:
        assert a[k].shape == (3,)
        np.testing.assert_allclose(a[k], b[k])
    with pytest.raises(DopplerDiffError, match=r"\[0, 1\]"):
        physics_stats(batch * 2 - 1)


def test_compare_physics_zero_for_same_and_detects_cadence_and_torso_shift():
    real = np.stack([synth(period=16, seed=i) for i in range(8)])
    same = compare_physics(real, real)
    assert all(v["wasserstein"] == pytest.approx(0.0, abs=1e-12) for v in same.values())
    gen = np.stack([synth(period=8, torso_row=30, seed=i) for i in range(8)])
    diff = compare_physics(real, gen)
    assert diff["cadence"]["wasserstein"] == pytest.approx(96 / 8 - 96 / 16, rel=0.1)
    assert diff["torso_doppler"]["wasserstein"] == pytest.approx(10 / 31.5, rel=0.05)
    assert diff["cadence"]["n_real"] == 8 and diff["cadence"]["gen_mean"] > diff["cadence"]["real_mean"]
