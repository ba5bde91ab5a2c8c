"""Augmentations change time and intensity only; the Doppler axis is never moved."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from dopplerdiff.config import AugmentConfig
from dopplerdiff.data.dataset import ImageDataset
from dopplerdiff.data.images import SpectrogramSet
from dopplerdiff.data.transforms import augment_batch, time_crop, time_shift

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


def _rows(b: int = 8, h: int = 16, w: int = 16) -> torch.Tensor:
    """Constant along time, a distinct value per Doppler row: any move along Doppler would show."""
    return torch.linspace(-0.9, 0.9, h)[None, None, :, None].expand(b, 1, h, w).contiguous()


def _masked(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return ~torch.isclose(x, y, atol=1e-6)


def test_time_mask_fills_whole_columns_with_the_window_mean_and_nothing_else():
    from dopplerdiff.data.transforms import band_mask

    x = _batch(b=16)
    y = band_mask(x, -1, 0.5, 1, torch.Generator().manual_seed(0))
    assert y.shape == x.shape and y.min() >= -1 and y.max() <= 1
    changed = _masked(x, y)
    cols = changed.any(dim=2)[:, 0]  # (B, W): masked columns
    assert cols.any(), "no column was masked"
    for i in range(16):
        band = cols[i].nonzero().flatten()
        if len(band):
            assert len(band) <= 8 and torch.equal(band, torch.arange(band[0], band[-1] + 1))  # one band
            mean = x[i].mean()
            assert torch.allclose(y[i, ..., band], mean.expand_as(y[i, ..., band]), atol=1e-6)
        keep = ~cols[i]
        assert torch.equal(y[i, ..., keep], x[i, ..., keep])


def test_doppler_band_mask_masks_rows_in_place_and_never_shifts_doppler():
    from dopplerdiff.data.transforms import band_mask

    x = _batch(b=16)
    y = band_mask(x, -2, 0.4, 2, torch.Generator().manual_seed(1))
    rows = _masked(x, y).any(dim=3)[:, 0]  # (B, H)
    assert rows.any() and rows.sum(1).max() <= 2 * int(0.4 * 16)
    for i in range(16):
        assert torch.equal(y[i, :, ~rows[i]], x[i, :, ~rows[i]])
        assert torch.allclose(y[i, :, rows[i]], x[i].mean().expand_as(y[i, :, rows[i]]), atol=1e-6)


def test_full_recipe_never_moves_a_doppler_row():
    # time shift, crop, time and Doppler masks together: every unmasked pixel keeps its row's value
    x = _rows()
    cfg = AugmentConfig(time_shift=True, time_crop=0.3, gain_jitter=0.0, noise_std=0.0, time_mask=0.3,
                        doppler_mask=0.3, doppler_masks=2)
    y = augment_batch(x, cfg, torch.Generator().manual_seed(2))
    assert y.shape == x.shape and y.min() >= -1 and y.max() <= 1
    fill = x.mean(dim=(1, 2, 3), keepdim=True).expand_as(x)
    ok = torch.isclose(y, x, atol=1e-5) | torch.isclose(y, fill, atol=1e-5)
    assert ok.all()
    assert not torch.isclose(y, x, atol=1e-5).all()  # something was masked


def test_masks_off_by_default_and_bad_fractions_refused():
    x = _batch()
    assert torch.equal(augment_batch(x, OFF, torch.Generator().manual_seed(0)), x)
    for bad in ({"time_mask": 1.0}, {"doppler_mask": -0.1}, {"mixup": -1.0}, {"time_masks": -1}):
        with pytest.raises(ValueError, match=next(iter(bad))):
            AugmentConfig(**bad)


def test_mixup_blends_pairs_and_returns_the_partner_labels():
    from dopplerdiff.data.transforms import mixup

    x, y = _batch(b=10), torch.arange(10)
    m, y_b, lam = mixup(x, y, 0.4, torch.Generator().manual_seed(0))
    assert m.shape == x.shape and 0.5 <= lam <= 1.0 and m.min() >= -1 and m.max() <= 1
    perm = y_b  # labels are the indices, so the partner labels are the permutation
    assert sorted(perm.tolist()) == list(range(10))
    assert torch.allclose(m, lam * x + (1 - lam) * x[perm], atol=1e-6)
    m2, y2, lam2 = mixup(x, y, 0.4, torch.Generator().manual_seed(0))
    assert torch.equal(m, m2) and torch.equal(y_b, y2) and lam == lam2


def test_classifiers_train_with_mixup_and_masks():
    from dopplerdiff.classifier import fit_classifier
    from dopplerdiff.config import load_config
    from dopplerdiff.evaluate.judge import JudgeSettings, fit_judge

    cfg = load_config("smoke")
    x, y = _batch(b=12), torch.arange(12) % 3
    aug = AugmentConfig(time_mask=0.2, doppler_mask=0.2, mixup=0.4)
    enc = fit_classifier(x.numpy(), y.numpy(), 3, cfg.encoder, steps=3, seed=0, augment=aug)
    no_mix = dataclasses.replace(aug, mixup=0.0)  # mixup alone must change the training
    plain = fit_classifier(x.numpy(), y.numpy(), 3, cfg.encoder, steps=3, seed=0, augment=no_mix)
    differ = any(not torch.equal(a, b) for a, b in zip(enc.state_dict().values(),
                                                       plain.state_dict().values(), strict=True))
    assert differ
    j = fit_judge(x.numpy(), y.numpy(), 3, JudgeSettings(channels=(4, 8), steps=3), classic=aug)
    j0 = fit_judge(x.numpy(), y.numpy(), 3, JudgeSettings(channels=(4, 8), steps=3), classic=no_mix)
    assert any(not torch.equal(a, b) for a, b in zip(j.state_dict().values(), j0.state_dict().values(),
                                                     strict=True))
