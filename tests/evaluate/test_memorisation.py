"""Memorisation check: copies of training windows are flagged, fresh windows mostly are not."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dopplerdiff.errors import DopplerDiffError
from dopplerdiff.evaluate.memorisation import memorisation, memorisation_report, nearest_neighbours
from dopplerdiff.models.encoder import SpectrogramEncoder


def _sets(seed: int = 0, d: int = 16):
    rng = np.random.default_rng(seed)
    train, test, fresh = rng.normal(size=(200, d)), rng.normal(size=(60, d)), rng.normal(size=(60, d))
    return rng, train, test, fresh


def test_nearest_neighbours_matches_brute_force():
    rng, train, test, _ = _sets()
    d, i = nearest_neighbours(test, train, chunk=7)
    brute = np.linalg.norm(test[:, None] - train[None], axis=-1)
    np.testing.assert_array_equal(i, brute.argmin(1))
    np.testing.assert_allclose(d, brute.min(1), rtol=1e-9)


def test_copies_of_training_windows_are_flagged_fresh_ones_mostly_not():
    rng, train, test, fresh = _sets()
    copies = train[rng.choice(len(train), 20, replace=False)] + rng.normal(scale=1e-3, size=(20, 16))
    res = memorisation(np.concatenate([copies, fresh]), train, test, percentile=5)
    flags = res["flags"]
    assert flags[:20].all()
    assert flags[20:].mean() < 0.25
    assert res["num_flagged"] == int(flags.sum())
    assert res["examples"][0][2] < 0.01  # closest pair is a copy
    assert res["threshold"] == pytest.approx(np.percentile(res["test_nn_distance"], 5))
    strict = memorisation(fresh, train, test, percentile=0)
    assert strict["threshold"] == pytest.approx(res["test_nn_distance"].min())
    assert strict["fraction_flagged"] <= memorisation(fresh, train, test, percentile=5)["fraction_flagged"]


def test_report_in_pixel_and_feature_space_flags_copies():
    gen = torch.Generator().manual_seed(0)
    train = (torch.rand(40, 1, 16, 16, generator=gen) * 2 - 1).numpy()
    test = (torch.rand(15, 1, 16, 16, generator=gen) * 2 - 1).numpy()
    generated = np.concatenate([train[:5], (torch.rand(5, 1, 16, 16, generator=gen) * 2 - 1).numpy()])
    torch.manual_seed(0)
    enc = SpectrogramEncoder(num_classes=2, image_size=16, embed_dim=8, cnn_channels=[4, 8]).eval()
    rep = memorisation_report(generated, train, test, encoder=enc)
    for space in ("pixels", "features"):
        assert rep[space]["flags"][:5] == [True] * 5
        assert rep[space]["gen_nn_index"][:5] == [0, 1, 2, 3, 4]
    assert sum(rep["pixels"]["flags"][5:]) <= 2


def test_bad_inputs():
    _, train, test, fresh = _sets()
    with pytest.raises(DopplerDiffError, match="dimensions differ"):
        memorisation(fresh[:, :8], train, test)
    with pytest.raises(DopplerDiffError, match="percentile"):
        memorisation(fresh, train, test, percentile=100)
    with pytest.raises(DopplerDiffError, match="non-empty"):
        memorisation(fresh[:0], train, test)
