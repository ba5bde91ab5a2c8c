"""Spectrogram maths: STFT axis orientation, clutter filters, resampling, dB mapping and its inverse."""

from __future__ import annotations

import numpy as np
import pytest

from dopplerdiff.data import spectrogram as sp

FS = 1000.0


def _tone(freq: float, n: int = 4000, amp: float = 1.0) -> np.ndarray:
    return (amp * np.exp(2j * np.pi * freq * np.arange(n) / FS)).astype(np.complex64)


@pytest.mark.parametrize("freq", [-300.0, -50.0, 125.0, 400.0])
def test_stft_peak_row_matches_tone_frequency_and_positive_is_up(freq):
    nperseg = 128
    starts = np.arange(0, 4000 - nperseg, 64)
    power = sp.stft_power(_tone(freq), nperseg, starts, sp.taper("hann", nperseg))
    axis = sp.doppler_axis(nperseg, FS)
    assert power.shape == (nperseg, len(starts))
    peak = int(np.argmax(power.mean(axis=1)))
    assert abs(axis[peak] - freq) <= FS / nperseg
    middle = nperseg // 2
    assert (peak < middle) == (freq > 0)  # positive Doppler in the upper half (row 0 = top)
    assert np.all(np.diff(axis) < 0)


def test_stft_rejects_frames_past_the_signal():
    with pytest.raises(ValueError):
        sp.stft_power(_tone(10.0, n=100), 64, np.array([50]), sp.taper("hann", 64))


@pytest.mark.parametrize("kind", ["mean", "highpass"])
def test_clutter_filter_suppresses_zero_doppler(kind):
    x = _tone(200.0) + np.complex64(20.0 + 5.0j)
    y = sp.clutter_filter(x, kind, FS)
    nperseg = 256
    starts = np.arange(256, 4000 - 2 * nperseg, 128)  # away from the edges of the moving average
    w = sp.taper("blackman", nperseg)
    before, after = sp.stft_power(x, nperseg, starts, w), sp.stft_power(y, nperseg, starts, w)
    axis = sp.doppler_axis(nperseg, FS)
    dc, tone = int(np.argmin(np.abs(axis))), int(np.argmin(np.abs(axis - 200.0)))
    assert after[dc].mean() < before[dc].mean() * 1e-3
    assert after[tone].mean() == pytest.approx(before[tone].mean(), rel=0.05)
    assert sp.clutter_filter(x, "none", FS) is x
    with pytest.raises(ValueError):
        sp.clutter_filter(x, "bogus", FS)


def test_resample_matrix_area_average_and_linear_enlarge():
    down = sp.resample_matrix(8, 4)
    np.testing.assert_allclose(down.sum(axis=1), 1.0, rtol=1e-6)
    x = np.arange(8, dtype=np.float32)
    np.testing.assert_allclose(down @ x, [0.5, 2.5, 4.5, 6.5], rtol=1e-6)
    odd = sp.resample_matrix(10, 3)  # fractional bins still average to a constant
    np.testing.assert_allclose(odd @ np.full(10, 7.0, np.float32), 7.0, rtol=1e-6)
    up = sp.resample_matrix(4, 8)
    np.testing.assert_allclose(up.sum(axis=1), 1.0, rtol=1e-6)
    y = up @ np.array([0.0, 1.0, 2.0, 3.0], np.float32)
    assert np.all(np.diff(y) >= 0) and y[0] == 0.0 and y[-1] == 3.0
    np.testing.assert_array_equal(sp.resample_matrix(5, 5), np.eye(5, dtype=np.float32))


def test_db_mapping_round_trip_and_clipping():
    power = np.array([1e-6, 1e-3, 1e-2, 1.0, 10.0], dtype=np.float32)
    db = sp.to_db(power)
    np.testing.assert_allclose(db, [-60, -30, -20, 0, 10], atol=1e-4)
    unit = sp.db_to_unit(db, ref_db=0.0, dynamic_range_db=40.0)
    np.testing.assert_allclose(unit, [0.0, 0.25, 0.5, 1.0, 1.0], atol=1e-6)
    back = sp.unit_to_db(unit[1:4], ref_db=0.0, dynamic_range_db=40.0)
    np.testing.assert_allclose(back, db[1:4], atol=1e-4)
    assert np.isfinite(sp.to_db(np.zeros(3))).all()


def test_reference_db_quantile_is_robust_to_a_single_hot_pixel():
    db = np.zeros((2, 10, 10), np.float32)
    db[0, 0, 0] = 50.0
    ref_max = sp.reference_db(db, 1.0, axes=(1, 2))
    ref_q = sp.reference_db(db, 0.9, axes=(1, 2))
    assert ref_max.shape == (2, 1, 1)
    assert ref_max[0, 0, 0] == 50.0 and ref_q[0, 0, 0] == 0.0


def test_tapers():
    for name in ("hann", "blackman"):
        w = sp.taper(name, 64)
        assert w.dtype == np.float32 and w.shape == (64,)
        assert w.max() == pytest.approx(1.0, abs=1e-3) and w[0] == pytest.approx(0.0, abs=1e-6)
