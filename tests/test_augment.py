"""Augmentations change time and intensity only; the Doppler axis is never moved."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dopplerdiff.config import AugmentConfig
from dopplerdiff.data.augment import augment_batch, time_crop, time_shift
from dopplerdiff.data.dataset import ImageDataset
from dopplerdiff.data.images import SpectrogramSet

OFF = AugmentConfig(time_shift=False, time_crop=0.0, gain_jitter=0.0, noise_std=0.0)


def _batch(b: int = 6, h: int = 16, w: int = 16, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(b, 1, h, w, generator=g) * 1.6 - 0.8


def test_time_shift_is_a_per_sample_circular_roll_preserving_doppler_profile():
    x = _batch()
    y = time_shift(x, torch.Generator().manual_seed(1))
    assert y.shape == x.shape and not torch.equal(x, y)
    # Doppler-row profile (energy per velocity bin) is unchanged.
    assert torch.allclose(y.mean(-1), x.mean(-1), atol=1e-6)
    for i in range(x.shape[0]):
        assert any(torch.equal(y[i], torch.roll(x[i], k, dims=-1)) for k in range(x.shape[-1]))
    shifts = {next(k for k in range(16) if torch.equal(y[i], torch.roll(x[i], k, -1))) for i in range(6)}
    assert len(shifts) > 1  # each sample gets its own shift


def test_time_crop_stretches_time_but_never_mixes_doppler_rows():
    # Constant along time, distinct per Doppler row: any vertical resampling would change it.
    rows = torch.linspace(-0.9, 0.9, 16)
    x = rows[None, None, :, None].expand(4, 1, 16, 16).contiguous()
    y = time_crop(x, 0.5, torch.Generator().manual_seed(0))
    assert torch.allclose(y, x, atol=1e-6)
    # Along time it does crop and stretch: a ramp in time changes.
    ramp = torch.linspace(-1, 1, 16)[None, None, None, :].expand(4, 1, 16, 16).contiguous()
    z = time_crop(ramp, 0.5, torch.Generator().manual_seed(0))
    assert not torch.allclose(z, ramp, atol=1e-3)
    assert torch.all(z[..., 1:] >= z[..., :-1] - 1e-6)  # order in time kept (no flip)
    assert torch.allclose(z[:, :, 0], z[:, :, 5])  # rows identical: nothing happened along Doppler


def test_gain_and_noise_are_bounded_and_reproducible():
    x = _batch() * 0.5
    cfg = AugmentConfig(time_shift=False, time_crop=0.0, gain_jitter=0.1, noise_std=0.0)
    y = augment_batch(x, cfg, torch.Generator().manual_seed(3))
    d = (y - x).flatten(1)
    assert torch.allclose(d, d[:, :1].expand_as(d), atol=1e-6)  # one offset per sample
    assert d.abs().max() <= 0.1 + 1e-6 and d[:, 0].std() > 0
    cfg = AugmentConfig(time_shift=True, time_crop=0.3, gain_jitter=0.1, noise_std=0.05)
    a = augment_batch(x, cfg, torch.Generator().manual_seed(5))
    b = augment_batch(x, cfg, torch.Generator().manual_seed(5))
    assert torch.equal(a, b) and a.min() >= -1 and a.max() <= 1
    big = torch.zeros(64, 1, 16, 16)
    n = augment_batch(big, AugmentConfig(time_shift=False, gain_jitter=0.0, noise_std=0.05),
                      torch.Generator().manual_seed(0))
    assert abs(float(n.std()) - 0.05) < 0.005
    assert torch.equal(augment_batch(x, OFF), x)
    with pytest.raises(ValueError, match="expects"):
        augment_batch(x[0], cfg)


def test_image_dataset_applies_augmentation():
    x = _batch(3).numpy()
    ds = SpectrogramSet(images=x, labels=np.arange(3), identities=["a", "b", "c"], files=["1", "2", "3"],
                        recordings=["a/r", "b/r", "c/r"], windows=np.zeros(3, np.int64))
    plain = ImageDataset(ds, None, augment=None)
    aug = ImageDataset(ds, [2], augment=AugmentConfig(time_shift=True, gain_jitter=0.0))
    assert torch.equal(plain[2]["pixel_values"], torch.from_numpy(x[2]))
    torch.manual_seed(0)
    items = [aug[0]["pixel_values"] for _ in range(4)]
    assert any(not torch.equal(i, torch.from_numpy(x[2])) for i in items)
    assert all(torch.allclose(i.mean(-1), torch.from_numpy(x[2]).mean(-1), atol=1e-6) for i in items)
