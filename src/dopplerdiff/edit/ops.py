"""Edit operations on a trained pipeline, each reproducible by seed: transfer, inpaint, interpolate.

Seeds: input ``i`` uses ``torch.Generator`` seeded with ``generate.sample_seed(seed, identity, i)``, so an
output can be regenerated alone, whatever the batch.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from dopplerdiff.config.base import check_seed
from dopplerdiff.data.images import resize, to_unit
from dopplerdiff.errors import DopplerDiffError
from dopplerdiff.generate import sample_seed
from dopplerdiff.pipelines.pipeline_dopplerdiff import DopplerDiffPipeline
from dopplerdiff.pipelines.sampling import slerp

MIX_KEY = 2**31 - 1  # seed key of mixed-identity samples (not an identity index)
BATCH_SIZE = 16  # inputs per sampler call: thousands of windows in one forward exhaust the memory


def _generators(pipe: DopplerDiffPipeline, seed: int, key: int, start: int, n: int) -> list[torch.Generator]:
    """The generators of outputs ``start .. start + n - 1`` (only those: a batch builds its own)."""
    dev = pipe._execution_device
    return [torch.Generator(device=dev).manual_seed(sample_seed(seed, key, i))
            for i in range(start, start + n)]


def _batched(n: int, batch_size: int, run: Callable[[slice], torch.Tensor]) -> np.ndarray:
    """``run(batch)`` -> images, over consecutive batches of at most ``batch_size`` of ``n`` items, joined."""
    if batch_size < 1:
        raise DopplerDiffError(f"--batch-size must be >= 1, got {batch_size}")
    if n < 1:
        raise DopplerDiffError("nothing to edit: no input windows")
    outs = [run(slice(s, min(s + batch_size, n))) for s in range(0, n, batch_size)]
    return np.concatenate([o.float().cpu().numpy() for o in outs])


def _seed_noise(seed: int, shape: tuple[int, ...], what: str) -> torch.Tensor:
    """(1, *shape) initial noise of one seed (strips share it across their images)."""
    return torch.randn((1, *shape), generator=torch.Generator().manual_seed(check_seed(seed, what)))


def transfer(
    pipe: DopplerDiffPipeline,
    images: np.ndarray,
    identity: str,
    *,
    strength: float,
    guidance: float,
    steps: int,
    seed: int = 0,
    batch_size: int = BATCH_SIZE,
    condition: str | None = None,
    condition_guidance: float | None = None,
) -> np.ndarray:
    """Re-render windows (N,C,H,W in [-1,1]) as ``identity`` by img2img at ``strength`` -> [0,1] images;
    with ``condition`` (a pipeline trained on walking conditions) in that condition, guided by
    ``condition_guidance`` (None: ``guidance``). The seeds do not depend on the condition."""
    k = pipe.identity_ids([identity])[0]
    walk = {}
    if condition is not None:
        walk = {"conditions": condition, "condition_guidance_scale": condition_guidance}

    def run(batch: slice) -> torch.Tensor:
        x = torch.from_numpy(images[batch])
        return pipe([k] * len(x), num_inference_steps=steps, guidance_scale=guidance, image=x,
                    generator=_generators(pipe, seed, k, batch.start, len(x)), strength=strength,
                    output_type="pt", **walk).images

    return _batched(len(images), batch_size, run)


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
    batch_size: int = BATCH_SIZE,
    known: np.ndarray | None = None,
) -> np.ndarray:
    """Regenerate the masked part of each window (1 = regenerate); known pixels are pasted back exactly.

    ``identity`` None fills with the null identity (unconditional). The output has the decoder's size (an
    upsampling diffusion decoder samples larger than ``images``): the known pixels come from ``known`` (the
    sources at that size, in [-1, 1]) or else ``images`` resized, the mask is brought to it (nearest)."""
    k = pipe.identity_ids([identity])[0] if identity is not None else 0
    g = guidance if identity is not None else 0.0

    def run(batch: slice) -> torch.Tensor:
        x = torch.from_numpy(images[batch])
        return pipe([k] * len(x), num_inference_steps=steps, guidance_scale=g, image=x,
                    generator=_generators(pipe, seed, k, batch.start, len(x)), mask=torch.from_numpy(mask),
                    resample_steps=resample_steps, output_type="pt").images

    out = _batched(len(images), batch_size, run)
    src01, m = _at_size(to_unit(images if known is None else known), mask, out.shape[-2:])
    keep = 1.0 - m[None, None]
    return keep * src01 + (1 - keep) * out


def _at_size(src01: np.ndarray, mask: np.ndarray, size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Sources (N,C,H,W in [0,1]) resized and the (H, W) mask brought (nearest) to ``size``."""
    h, w = (int(v) for v in size)
    if src01.shape[-2:] != (h, w):
        src01 = np.stack([resize(x, (h, w)) for x in src01])
    if mask.shape != (h, w):
        rows = ((np.arange(h) + 0.5) * mask.shape[0] / h).astype(int)
        cols = ((np.arange(w) + 0.5) * mask.shape[1] / w).astype(int)
        mask = mask[rows][:, cols]
    return src01, mask


def mix_strip(
    pipe: DopplerDiffPipeline, a: str, b: str, num: int, *, guidance: float, steps: int, seed: int = 0,
    batch_size: int = BATCH_SIZE,
) -> tuple[np.ndarray, list[float]]:
    """``num`` samples from identity ``a`` to ``b`` (weights 1-w, w), all from the same initial noise."""
    if num < 2:
        raise DopplerDiffError(f"--num must be >= 2, got {num}")
    if a == b:
        raise DopplerDiffError(f"--from and --to are both '{a}'; an identity strip needs two identities")
    ws = [float(w) for w in np.linspace(0.0, 1.0, num)]
    noise = _seed_noise(seed, pipe.latent_shape, "--seed")
    mixes: list[Any] = [{a: 1.0 - w, b: w} for w in ws]

    def run(batch: slice) -> torch.Tensor:
        n = len(mixes[batch])
        return pipe(mixes[batch], num_inference_steps=steps, guidance_scale=guidance,
                    latents=noise.expand(n, *pipe.latent_shape).clone(), output_type="pt").images

    return _batched(num, batch_size, run), ws


def noise_strip(
    pipe: DopplerDiffPipeline, identity: str, seeds: tuple[int, int], num: int, *, guidance: float,
    steps: int, batch_size: int = BATCH_SIZE,
) -> tuple[np.ndarray, list[float]]:
    """``num`` samples of one identity along the slerp between the initial noise of two seeds."""
    if num < 2:
        raise DopplerDiffError(f"--num must be >= 2, got {num}")
    a, b = (_seed_noise(s, pipe.latent_shape, "--seeds") for s in seeds)
    ws = [float(w) for w in np.linspace(0.0, 1.0, num)]
    noise = torch.cat([slerp(a, b, w) for w in ws])

    def run(batch: slice) -> torch.Tensor:
        x = noise[batch]
        return pipe([identity] * len(x), num_inference_steps=steps, guidance_scale=guidance, latents=x,
                    output_type="pt").images

    return _batched(num, batch_size, run), ws


def mix_samples(
    pipe: DopplerDiffPipeline, mix: dict[str, float], num: int, *, guidance: float, steps: int, seed: int = 0,
    batch_size: int = BATCH_SIZE,
) -> np.ndarray:
    """``num`` samples of a virtual walker mixed from identities (sample i seeded by (seed, MIX_KEY, i))."""
    if num < 1:
        raise DopplerDiffError(f"--num must be >= 1, got {num}")

    def run(batch: slice) -> torch.Tensor:
        n = len(range(num)[batch])
        return pipe([mix] * n, num_inference_steps=steps, guidance_scale=guidance, output_type="pt",
                    generator=_generators(pipe, seed, MIX_KEY, batch.start, n)).images

    return _batched(num, batch_size, run)
