"""Augmentation experiment: three arms x seeds, same budget, scored on real test."""

from __future__ import annotations

import numpy as np
import pytest

from dopplerdiff.errors import DopplerDiffError
from dopplerdiff.evaluate.synthetic_gain import ARMS, run_synthetic_gain

K = 3


def _blobs(n_per: int, rng: np.random.Generator, shift: float = 0.0, noise: float = 0.1) -> tuple:
    """Images whose mean level encodes the identity (separable by a nearest-centroid rule)."""
    labels = np.repeat(np.arange(K), n_per)
    levels = np.linspace(-0.6, 0.6, K)[labels] + shift
    x = levels[:, None, None, None] + noise * rng.standard_normal((len(labels), 1, 8, 8))
    return x.astype(np.float32), labels.astype(np.int64)


class _Centroid:
    def __init__(self, x, y, seed):
        self.c = np.stack([x[y == k].mean(axis=0).ravel() for k in range(K)])
        self.seed = seed


def _fake_fit(calls):
    def fit(images, labels, num_classes, cfg, *, steps, seed, augment, val, progress, device="cpu"):
        calls.append({"n": len(images), "steps": steps, "seed": seed, "augment": augment, "k": num_classes})
        return _Centroid(images, labels, seed)

    return fit


def _fake_predict(model, images, batch_size=256):
    d = ((images.reshape(len(images), -1)[:, None, :] - model.c[None]) ** 2).sum(-1)
    return -d, np.zeros((len(images), 2))


def test_three_arms_over_seeds_with_same_budget(smoke_config):
    rng = np.random.default_rng(0)
    train, test = _blobs(6, rng), _blobs(4, rng)
    # Synthetic data with identities permuted: training on it alone must fail on real test.
    xs, ys = _blobs(5, rng)
    ys = (ys + 1) % K
    calls: list[dict] = []
    aug = smoke_config.data.augment
    res = run_synthetic_gain(
        train,
        test,
        (xs, ys),
        K,
        smoke_config.encoder,
        steps=7,
        seeds=[3, 4],
        augment=aug,
        fit=_fake_fit(calls),
        predict=_fake_predict,
    )
    assert list(res["arms"]) == list(ARMS)
    assert len(calls) == 3 * 2
    assert {c["steps"] for c in calls} == {7} and {c["seed"] for c in calls} == {3, 4}
    assert all(c["augment"] is aug and c["k"] == K for c in calls)
    assert sorted(c["n"] for c in calls) == sorted([18, 18 + 15, 15] * 2)
    assert res["arms"]["real"]["mean"] == pytest.approx(1.0)
    assert res["arms"]["synthetic"]["mean"] == pytest.approx(0.0)
    assert len(res["arms"]["real"]["runs"]) == 2
    # paired gain is real+synthetic minus real, per seed
    gains = np.subtract(res["arms"]["real+synthetic"]["runs"], res["arms"]["real"]["runs"])
    assert res["gain"]["runs"] == pytest.approx(gains.tolist())
    assert res["synthetic_per_identity"] == 5 and res["n_real_test"] == 12
    assert len(res["per_identity_mean"]["real"]) == K


def test_helpful_synthetic_data_shows_a_gain(smoke_config):
    rng = np.random.default_rng(1)
    # Real train is tiny and noisy; synthetic windows are clean and correctly labelled.
    train, test = _blobs(1, rng, noise=1.5), _blobs(30, rng, noise=0.2)
    syn = _blobs(20, rng, noise=0.2)
    res = run_synthetic_gain(
        train,
        test,
        syn,
        K,
        smoke_config.encoder,
        steps=1,
        seeds=[0, 1, 2],
        fit=_fake_fit([]),
        predict=_fake_predict,
    )
    assert res["arms"]["synthetic"]["mean"] > 0.9
    assert res["gain"]["mean"] > 0


def test_bad_inputs_are_clear_errors(smoke_config):
    rng = np.random.default_rng(0)
    train, test = _blobs(2, rng), _blobs(2, rng)
    kw = dict(steps=1, seeds=[0], fit=_fake_fit([]), predict=_fake_predict)
    with pytest.raises(DopplerDiffError, match="no synthetic"):
        run_synthetic_gain(train, test, (train[0][:0], train[1][:0]), K, smoke_config.encoder, **kw)
    with pytest.raises(DopplerDiffError, match="labels outside"):
        run_synthetic_gain(train, test, (train[0], train[1] + 5), K, smoke_config.encoder, **kw)
    with pytest.raises(DopplerDiffError, match="differ from real"):
        run_synthetic_gain(
            train, test, (train[0][:, :, :4], train[1]), K, smoke_config.encoder, **kw
        )
    with pytest.raises(DopplerDiffError, match="at least one seed"):
        run_synthetic_gain(train, test, train, K, smoke_config.encoder, **{**kw, "seeds": []})


def test_runs_with_the_project_classifier(smoke_config):
    """The default classifier (train.encoder.fit_classifier) plugs in: smoke sizes, a few steps."""
    pytest.importorskip("dopplerdiff.train.encoder")
    rng = np.random.default_rng(0)
    size = smoke_config.data.size
    y = np.repeat(np.arange(K), 4)
    x = np.clip(
        np.linspace(-0.6, 0.6, K)[y][:, None, None, None]
        + 0.1 * rng.standard_normal((len(y), 1, size, size)),
        -1,
        1,
    ).astype(np.float32)
    res = run_synthetic_gain(
        (x, y),
        (x, y),
        (x[::2], y[::2]),
        K,
        smoke_config.encoder,
        steps=smoke_config.evaluate.augment_steps,
        seeds=range(smoke_config.evaluate.augment_seeds),
        augment=smoke_config.data.augment,
    )
    assert set(res["arms"]) == set(ARMS)
    for arm in ARMS:
        assert len(res["arms"][arm]["runs"]) == smoke_config.evaluate.augment_seeds
        assert all(0.0 <= a <= 1.0 for a in res["arms"][arm]["runs"])
