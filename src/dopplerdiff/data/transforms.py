"""Batched spectrogram augmentations that respect the physics of the axes.

Images are (B, C, H, W) with H the Doppler (velocity) axis and W time. Time is shifted circularly or
cropped and stretched back; bands of time or of Doppler rows are masked in place (SpecAugment); intensity
gets a small gain offset and noise; ``mixup`` blends pairs of windows for a two-label loss. The Doppler
axis is never flipped, shifted or rescaled: that would change the walker's velocities, i.e. their identity.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from dopplerdiff.config.data import AugmentConfig


def _uniform(
    n: int, lo: float, hi: float, like: torch.Tensor, generator: torch.Generator | None
) -> torch.Tensor:
    u = torch.rand(n, generator=generator, device=generator.device if generator else "cpu")
    return (lo + (hi - lo) * u).to(device=like.device, dtype=like.dtype)


def time_shift(x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Roll each sample by its own random number of columns along time (last axis)."""
    b, w = x.shape[0], x.shape[-1]
    dev = generator.device if generator else "cpu"
    shifts = torch.randint(0, w, (b,), generator=generator, device=dev).to(x.device)
    cols = (torch.arange(w, device=x.device)[None, :] - shifts[:, None]) % w
    return torch.gather(x, -1, cols[:, None, None, :].expand_as(x))


def time_crop(x: torch.Tensor, max_frac: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """Keep a random time window of (1 - U(0, max_frac)) of the width and stretch it back (bilinear in time).

    The sampling grid's Doppler coordinates sit exactly on pixel centres, so rows are not mixed.
    """
    if max_frac <= 0:
        return x
    b = x.shape[0]
    keep = 1.0 - _uniform(b, 0.0, max_frac, x, generator)
    start = _uniform(b, 0.0, 1.0, x, generator) * (1.0 - keep)  # fraction of width skipped on the left
    theta = torch.zeros(b, 2, 3, device=x.device, dtype=x.dtype)
    theta[:, 0, 0] = keep
    # Output x in [-1, 1] reads input x in [2 start - 1, 2 (start + keep) - 1].
    theta[:, 0, 2] = 2.0 * start + keep - 1.0
    theta[:, 1, 1] = 1.0
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


def band_mask(x: torch.Tensor, axis: int, max_frac: float, count: int,
              generator: torch.Generator | None = None) -> torch.Tensor:
    """Fill ``count`` bands per sample, each U{0..max_frac * size} wide along ``axis`` (-1 time, -2
    Doppler), with the sample's mean; the rest of the window is untouched and nothing moves."""
    size = x.shape[axis]
    top = int(max_frac * size)
    if top < 1 or count < 1:
        return x
    b, dev = x.shape[0], generator.device if generator else "cpu"
    pos = torch.arange(size, device=x.device)
    hit = torch.zeros(b, size, dtype=torch.bool, device=x.device)
    for _ in range(count):
        width = torch.randint(0, top + 1, (b,), generator=generator, device=dev).to(x.device)
        start = (torch.rand(b, generator=generator, device=dev).to(x.device) * (size - width + 1)).long()
        hit |= (pos[None] >= start[:, None]) & (pos[None] < (start + width)[:, None])
    shape = (b, 1, size, 1) if axis == -2 else (b, 1, 1, size)
    fill = x.mean(dim=(1, 2, 3), keepdim=True)
    return torch.where(hit.view(shape), fill.expand_as(x), x)


def mixup(x: torch.Tensor, y: torch.Tensor, alpha: float,
          generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor, float]:
    """Blend each window with a random partner: (lam x + (1 - lam) x[perm], y[perm], lam), lam ~ Beta(a, a)
    folded to >= 0.5 so ``y`` stays the dominant label. Train with lam CE(y) + (1 - lam) CE(y[perm])."""
    dev = generator.device if generator else "cpu"
    perm = torch.randperm(len(x), generator=generator, device=dev).to(x.device)
    seed = int(torch.randint(0, 2**31 - 1, (1,), generator=generator, device=dev))
    lam = float(np.random.default_rng(seed).beta(alpha, alpha))
    lam = max(lam, 1.0 - lam)
    return lam * x + (1.0 - lam) * x[perm], y[perm.to(y.device)], lam


def augment_batch(
    x: torch.Tensor, cfg: AugmentConfig, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Apply the configured augmentations to a batch in [-1, 1]; the result stays in [-1, 1]."""
    if x.ndim != 4:
        raise ValueError(f"augment_batch expects (B, C, H, W), got shape {tuple(x.shape)}")
    if cfg.time_shift:
        x = time_shift(x, generator)
    if cfg.time_crop > 0:
        x = time_crop(x, cfg.time_crop, generator)
    if cfg.time_mask > 0:
        x = band_mask(x, -1, cfg.time_mask, cfg.time_masks, generator)
    if cfg.doppler_mask > 0:
        x = band_mask(x, -2, cfg.doppler_mask, cfg.doppler_masks, generator)
    changed = False
    if cfg.gain_jitter > 0:
        offset = _uniform(x.shape[0], -cfg.gain_jitter, cfg.gain_jitter, x, generator)
        x = x + offset[:, None, None, None]
        changed = True
    if cfg.noise_std > 0:
        dev = generator.device if generator else "cpu"
        noise = torch.randn(x.shape, generator=generator, device=dev).to(x.device, x.dtype)
        x = x + cfg.noise_std * noise
        changed = True
    return x.clamp(-1.0, 1.0) if changed else x
