"""Edit operations on a trained pipeline, each reproducible by seed: transfer, inpaint, interpolate.

Seeds: input ``i`` uses ``torch.Generator`` seeded with ``generate.sample_seed(seed, identity, i)``, so an
output can be regenerated alone, whatever the batch.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from dopplerdiff.errors import DopplerDiffError
from dopplerdiff.generate import sample_seed
from dopplerdiff.pipeline import DopplerDiffPipeline
from dopplerdiff.sampling import slerp

MIX_KEY = 2**31 - 1  # seed key of mixed-identity samples (not an identity index)


def _generators(pipe: DopplerDiffPipeline, seed: int, key: int, n: int) -> list[torch.Generator]:
    dev = pipe._execution_device
    return [torch.Generator(device=dev).manual_seed(sample_seed(seed, key, i)) for i in range(n)]


def transfer(
    pipe: DopplerDiffPipeline,
    images: np.ndarray,
    identity: str,
    *,
    strength: float,
    guidance: float,
    steps: int,
    seed: int = 0,
    batch_size: int = 16,
) -> np.ndarray:
    """Re-render windows (N,C,H,W in [-1,1]) as ``identity`` by img2img at ``strength`` -> [0,1] images."""
    k = pipe.identity_ids([identity])[0]
    out = []
    for s in range(0, len(images), batch_size):
        x = torch.from_numpy(images[s : s + batch_size])
        gens = _generators(pipe, seed, k, len(images))[s : s + len(x)]
        res = pipe([k] * len(x), num_inference_steps=steps, guidance_scale=guidance, generator=gens, image=x,
                   strength=strength, output_type="pt")
        out.append(res.images.float().cpu().numpy())
    return np.concatenate(out)


def span_mask(
    shape: tuple[int, int], time: tuple[float, float] | None, doppler: tuple[float, float] | None
) -> np.ndarray:
    """(H, W) mask, 1 inside the time span (columns) and/or Doppler band (rows) given as fractions in [0,1]
    of the window; both given = their intersection (a band in a span)."""
    h, w = shape
    if time is None and doppler is None:
        raise DopplerDiffError("give --mask-time and/or --mask-doppler")
    m = np.ones((h, w), dtype=np.float32)
    for span, axis, n, arg in ((time, 1, w, "--mask-time"), (doppler, 0, h, "--mask-doppler")):
        if span is None:
            continue
        lo, hi = span
        if not (0.0 <= lo < hi <= 1.0):
            raise DopplerDiffError(
                f"{arg} {lo}:{hi} must satisfy 0 <= start < end <= 1 (fractions of the window)"
            )
        a, b = int(np.floor(lo * n)), int(np.ceil(hi * n))
        keep = np.zeros(n, dtype=np.float32)
        keep[a:b] = 1.0
        m *= keep[None, :] if axis == 1 else keep[:, None]
    if m.sum() == 0:
        raise DopplerDiffError("the mask covers no pixel of the window")
    return m


def inpaint(
    pipe: DopplerDiffPipeline,
    images: np.ndarray,
    mask: np.ndarray,
    identity: str | None,
    *,
    guidance: float,
    steps: int,
    seed: int = 0,
    resample_steps: int = 0,
) -> np.ndarray:
    """Regenerate the masked part of each window (1 = regenerate); known pixels are pasted back exactly.

    ``identity`` None fills with the null identity (unconditional)."""
    k = pipe.identity_ids([identity])[0] if identity is not None else 0
    g = guidance if identity is not None else 0.0
    x = torch.from_numpy(images)
    out = (
        pipe(
            [k] * len(x),
            num_inference_steps=steps,
            guidance_scale=g,
            generator=_generators(pipe, seed, k, len(x)),
            image=x,
            mask=torch.from_numpy(mask),
            resample_steps=resample_steps,
            output_type="pt",
        )
        .images.float()
        .cpu()
        .numpy()
    )
    keep = 1.0 - mask[None, None]
    return keep * (images + 1) / 2 + (1 - keep) * out


def mix_strip(
    pipe: DopplerDiffPipeline, a: str, b: str, num: int, *, guidance: float, steps: int, seed: int = 0
) -> tuple[np.ndarray, list[float]]:
    """``num`` samples from identity ``a`` to ``b`` (weights 1-w, w), all from the same initial noise."""
    if num < 2:
        raise DopplerDiffError(f"--num must be >= 2, got {num}")
    ws = [float(w) for w in np.linspace(0.0, 1.0, num)]
    noise = torch.randn((1, *pipe.latent_shape), generator=torch.Generator().manual_seed(seed))
    mixes: list[Any] = [{a: 1.0 - w, b: w} for w in ws]
    out = pipe(
        mixes,
        num_inference_steps=steps,
        guidance_scale=guidance,
        latents=noise.expand(num, *pipe.latent_shape).clone(),
        output_type="pt",
    ).images
    return out.float().cpu().numpy(), ws


def noise_strip(
    pipe: DopplerDiffPipeline, identity: str, seeds: tuple[int, int], num: int, *, guidance: float, steps: int
) -> tuple[np.ndarray, list[float]]:
    """``num`` samples of one identity along the slerp between the initial noise of two seeds."""
    if num < 2:
        raise DopplerDiffError(f"--num must be >= 2, got {num}")
    a, b = (torch.randn((1, *pipe.latent_shape), generator=torch.Generator().manual_seed(s)) for s in seeds)
    ws = [float(w) for w in np.linspace(0.0, 1.0, num)]
    noise = torch.cat([slerp(a, b, w) for w in ws])
    out = pipe(
        [identity] * num, num_inference_steps=steps, guidance_scale=guidance, latents=noise, output_type="pt"
    ).images
    return out.float().cpu().numpy(), ws


def mix_samples(
    pipe: DopplerDiffPipeline, mix: dict[str, float], num: int, *, guidance: float, steps: int, seed: int = 0
) -> np.ndarray:
    """``num`` samples of a virtual walker mixed from identities (sample i seeded by (seed, MIX_KEY, i))."""
    if num < 1:
        raise DopplerDiffError(f"--num must be >= 1, got {num}")
    return (
        pipe(
            [mix] * num,
            num_inference_steps=steps,
            guidance_scale=guidance,
            generator=_generators(pipe, seed, MIX_KEY, num),
            output_type="pt",
        )
        .images.float()
        .cpu()
        .numpy()
    )
