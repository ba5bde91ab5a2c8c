"""Pieces of the pipeline's sampling loop: identity mixtures, img2img schedules, inpainting masks,
the guidance interval and spherical interpolation of noise.

Identity mixtures: a condition is a (B, K+1) weight matrix over the condition rows (one-hot for a plain
identity, row K = null). For the UNet the mixed condition is the convex mix of the condition encoder's outputs
``sum_k w_k encode(k)``; for the DiT (whose label tables live inside every transformer block) it is the same
mix of every block's label-table rows, applied by ``soft_labels`` for the duration of one forward.
"""

from __future__ import annotations

import contextlib
import functools
import math
import types
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from diffusers import DDIMScheduler, DDPMScheduler
from diffusers.models.embeddings import LabelEmbedding
from diffusers.utils.torch_utils import randn_tensor

from dopplerdiff.data.images import images_to_pil
from dopplerdiff.errors import DopplerDiffError

OUTPUT_TYPES = ("np", "pt", "latent", "pil")
# Schedulers whose ``step`` depends only on (output, t, sample): they can repeat a step (RePaint resampling).
RESAMPLE_SCHEDULERS = (DDIMScheduler, DDPMScheduler)


def parse_identity_mix(text: str) -> dict[str, float]:
    """``"ID_3:0.5,ID_7:0.5"`` -> {"ID_3": 0.5, "ID_7": 0.5}; a bare name has weight 1."""
    out: dict[str, float] = {}
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        name, _, weight = part.rpartition(":") if ":" in part else (part, "", "1")
        try:
            w = float(weight)
        except ValueError:
            raise DopplerDiffError(
                f"identity mix '{text}': weight '{weight}' of '{name}' is not a number"
            ) from None
        if not math.isfinite(w) or w < 0:
            raise DopplerDiffError(f"identity mix '{text}': weight of '{name}' must be >= 0, got {weight}")
        out[name] = out.get(name, 0.0) + w
    if not out:
        raise DopplerDiffError(f"identity mix '{text}' names no identity")
    return out


def normalise_weights(weights: torch.Tensor) -> torch.Tensor:
    """Rows of non-negative weights -> convex weights (rows sum to 1); negative or all-zero rows: error."""
    if weights.ndim != 2:
        raise DopplerDiffError(
            f"identity_weights must be 2-D (batch, identities), got shape {tuple(weights.shape)}"
        )
    if not torch.isfinite(weights).all() or (weights < 0).any():
        raise DopplerDiffError("identity_weights must be finite and >= 0")
    total = weights.sum(dim=1, keepdim=True)
    if (total <= 0).any():
        raise DopplerDiffError("every row of identity_weights needs a positive weight")
    return weights / total


def condition_weights(
    identities: Any, identity_weights: Any, k: int, lookup: Callable[[list], list[int]]
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(ids (B,), weights (B, K+1) or None) from names/indices/mixtures or an explicit (B, K) matrix.

    An entry of ``identities`` may be a mapping {name or index: weight}; ``lookup`` turns names into
    indices. Plain identities give ``weights=None`` and take the exact one-row path.
    """
    if identity_weights is not None:
        w = torch.as_tensor(np.asarray(identity_weights), dtype=torch.float32)
        if w.ndim != 2 or w.shape[1] != k:
            raise DopplerDiffError(f"identity_weights must have shape (batch, {k}), got {tuple(w.shape)}")
    else:
        if isinstance(identities, int | str | dict):
            identities = [identities]
        if not identities:
            raise DopplerDiffError("no identities given")
        if not any(isinstance(i, dict) for i in identities):
            return torch.tensor(lookup(list(identities)), dtype=torch.long), None
        w = torch.zeros(len(identities), k)
        for row, ident in enumerate(identities):
            for name, weight in (ident if isinstance(ident, dict) else {ident: 1.0}).items():
                w[row, lookup([name])[0]] += float(weight)
    w = normalise_weights(w)
    ids = w.argmax(dim=1)  # fixes the batch size; the weights carry the condition
    return ids, torch.cat([w, torch.zeros(w.shape[0], 1)], dim=1)


def check_sample_args(steps: int, guidance: float, strength: float, resample: int, scheduler: Any) -> None:
    """One clear error per bad sampling argument."""
    if steps < 1:
        raise DopplerDiffError(f"num_inference_steps must be >= 1, got {steps}")
    if not (math.isfinite(guidance) and guidance >= 0):  # NaN passes a plain `< 0` test
        raise DopplerDiffError(f"guidance_scale must be a finite number >= 0, got {guidance}")
    check_strength(strength, steps)
    if resample < 0:
        raise DopplerDiffError(f"resample_steps must be >= 0, got {resample}")
    if resample and not isinstance(scheduler, RESAMPLE_SCHEDULERS):
        raise DopplerDiffError(
            f"resample_steps needs the ddim or ddpm sampler (a step that can be repeated), "
            f"not {type(scheduler).__name__}"
        )


def mixed_tokens(condition_encoder: Any, weights: torch.Tensor,
                 conditions: torch.Tensor | None = None) -> torch.Tensor:
    """UNet conditioning of (B, K+1) weights: the convex mix of every row's identity tokens (then the
    walking-condition token of ``conditions``, the null condition if None, when the condition encoder has
    one)."""
    rows = condition_encoder.identity_tokens(torch.arange(weights.shape[1], device=weights.device))
    mixed = torch.einsum("bk,ktd->btd", weights.to(rows.dtype), rows)
    return condition_encoder.add_condition(mixed, conditions)


def compose_guidance(null_null: torch.Tensor, id_null: torch.Tensor, id_cond: torch.Tensor,
                     g_id: float, g_cond: float) -> torch.Tensor:
    """Compositional classifier-free guidance over identity and walking condition:
    ``eps(null,null) + g_id (eps(id,null) - eps(null,null)) + g_cond (eps(id,cond) - eps(id,null))``."""
    return null_null + g_id * (id_null - null_null) + g_cond * (id_cond - id_null)


@contextlib.contextmanager
def soft_labels(model: torch.nn.Module, weights: torch.Tensor) -> Iterator[None]:
    """Make every DiT label table return ``weights @ table`` (a mix of rows) instead of one row per label.

    diffusers' LabelEmbedding only takes integer labels, so its forward is swapped on the instances for one
    call and restored afterwards; the labels passed to the DiT then only fix the batch size.
    """
    tables = [m for m in model.modules() if isinstance(m, LabelEmbedding)]

    def forward(self: LabelEmbedding, labels: torch.Tensor, force_drop_ids: Any = None) -> torch.Tensor:
        return weights.to(self.embedding_table.weight.dtype) @ self.embedding_table.weight

    try:
        for m in tables:
            m.forward = types.MethodType(forward, m)
        yield
    finally:
        for m in tables:
            m.__dict__.pop("forward", None)


def img2img_timesteps(scheduler: Any, num_inference_steps: int, strength: float) -> tuple[torch.Tensor, int]:
    """The truncated schedule of diffusers' img2img pipelines (``get_timesteps``): the last
    ``int(n * strength)`` steps of ``set_timesteps(n)``; returns (timesteps, start index)."""
    n = num_inference_steps
    init = min(int(n * strength), n)
    start = max(n - init, 0)
    timesteps = scheduler.timesteps[start * scheduler.order :]
    if hasattr(scheduler, "set_begin_index"):
        scheduler.set_begin_index(start * scheduler.order)
    return timesteps, start


def check_strength(strength: float, num_inference_steps: int) -> None:
    if not (0.0 < float(strength) <= 1.0):
        raise DopplerDiffError(f"strength must be in (0, 1], got {strength}")
    if int(num_inference_steps * strength) < 1:
        raise DopplerDiffError(
            f"strength {strength} with {num_inference_steps} steps leaves no denoising step "
            f"(needs num_inference_steps * strength >= 1)"
        )


def as_image_tensor(image: Any, batch: int, shape: tuple[int, int, int]) -> torch.Tensor:
    """Source images ((B,C,H,W) or (C,H,W), tensor or array, in [-1, 1]) -> float tensor of ``batch`` rows."""
    x = torch.as_tensor(np.asarray(image) if not torch.is_tensor(image) else image).float()
    if x.ndim == 3:
        x = x[None]
    if x.ndim != 4 or tuple(x.shape[1:]) != tuple(shape):
        raise DopplerDiffError(
            f"image must have shape (B, {', '.join(map(str, shape))}), got {tuple(x.shape)}"
        )
    if x.shape[0] == 1 and batch > 1:
        x = x.expand(batch, *shape)
    if x.shape[0] != batch:
        raise DopplerDiffError(f"got {x.shape[0]} source images for a batch of {batch}")
    if x.min() < -1.001 or x.max() > 1.001:
        raise DopplerDiffError("image values must lie in [-1, 1]")
    return x


def latent_mask(mask: Any, batch: int, image_hw: tuple[int, int], latent_hw: tuple[int, int]) -> torch.Tensor:
    """Pixel mask (1 = regenerate, 0 = keep; (H,W), (B,H,W) or (B,1,H,W)) -> (B,1,h,w) latent mask.

    Max-pooled: a latent cell that touches any masked pixel is regenerated, so nothing inside the mask is
    copied from the source (diffusers resizes by interpolation, which can keep a thin masked border).
    """
    m = torch.as_tensor(np.asarray(mask) if not torch.is_tensor(mask) else mask).float()
    while m.ndim < 4:
        m = m[None]
    if tuple(m.shape[-2:]) != tuple(image_hw) or m.shape[1] != 1:
        raise DopplerDiffError(f"mask must have the image's size {tuple(image_hw)}, got {tuple(m.shape)}")
    if ((m != 0) & (m != 1)).any():
        raise DopplerDiffError("mask values must be 0 (keep) or 1 (regenerate)")
    if m.sum() == 0:
        raise DopplerDiffError("mask is empty (no pixel to regenerate)")
    if m.shape[0] == 1 and batch > 1:
        m = m.expand(batch, -1, -1, -1)
    if m.shape[0] != batch:
        raise DopplerDiffError(f"got {m.shape[0]} masks for a batch of {batch}")
    return F.adaptive_max_pool2d(m, latent_hw)


def guidance_at(
    t: Any, num_train_timesteps: int, scale: float, interval: tuple[float, float] | None
) -> float:
    """Guidance scale at timestep ``t``: ``scale`` while t / num_train_timesteps lies in [lo, hi], else 1
    (plain conditional prediction); Kynkäänniemi et al. 2024, "Applying guidance in a limited interval"."""
    if interval is None:
        return scale
    frac = float(t) / float(num_train_timesteps)
    return scale if interval[0] <= frac <= interval[1] else 1.0


def check_interval(interval: tuple[float, float] | None) -> tuple[float, float] | None:
    if interval is None:
        return None
    lo, hi = (float(v) for v in interval)
    if not (0.0 <= lo <= hi <= 1.0):
        raise DopplerDiffError(f"guidance_interval must be (lo, hi) with 0 <= lo <= hi <= 1, got {interval}")
    return lo, hi


def renoise(scheduler: Any, x: torch.Tensor, t_from: Any, t_to: Any, generator: Any) -> torch.Tensor:
    """Forward diffusion from timestep ``t_from`` to the noisier ``t_to`` (RePaint's jump back):
    ``x_to = sqrt(a_to / a_from) x + sqrt(1 - a_to / a_from) eps`` with cumulative alphas ``a``."""
    ac = scheduler.alphas_cumprod
    a_from = ac[int(t_from)] if int(t_from) >= 0 else torch.tensor(1.0)
    ratio = (ac[int(t_to)] / a_from).to(x.dtype)
    eps = randn_tensor(x.shape, generator=generator, device=x.device, dtype=x.dtype)
    return ratio.sqrt() * x + (1 - ratio).sqrt() * eps


def slerp(a: torch.Tensor, b: torch.Tensor, alpha: float) -> torch.Tensor:
    """Spherical interpolation of two noise tensors (keeps the Gaussian norm that a linear mix shrinks)."""
    af, bf = a.flatten().double(), b.flatten().double()
    cos = torch.clamp(af @ bf / (af.norm() * bf.norm()), -1.0, 1.0)
    theta = torch.arccos(cos)
    if theta.abs() < 1e-6:
        return (1 - alpha) * a + alpha * b
    s = torch.sin(theta)
    wa, wb = torch.sin((1 - alpha) * theta) / s, torch.sin(alpha * theta) / s
    return (wa * a.double() + wb * b.double()).to(a.dtype)


def eval_modes(fn):
    """Run a pipeline's modules in eval mode (decoders can differ between modes) and give them their mode back
    afterwards, so the training stage can sample with its live modules."""

    @functools.wraps(fn)
    def wrapper(self, *args: Any, **kwargs: Any):
        names = ("autoencoder", "denoiser", "condition_encoder", "decoder")
        modules = [m for m in (getattr(self, n, None) for n in names) if m is not None]
        modes = [m.training for m in modules]
        try:
            for m in modules:
                m.eval()
            return fn(self, *args, **kwargs)
        finally:
            for m, mode in zip(modules, modes, strict=True):
                m.train(mode)

    return wrapper


def identity_indices(names: list[str], identities: list[int | str], what: str = "identity") -> list[int]:
    """Names or indices -> indices; unknown names/indices are errors listing the valid ones (``what``
    names the kind of label in the error: identity, condition)."""
    out = []
    for ident in identities:
        if isinstance(ident, str) and ident in names:
            out.append(names.index(ident))
        elif isinstance(ident, int | np.integer) and not isinstance(ident, bool) and 0 <= ident < len(names):
            out.append(int(ident))
        else:
            raise DopplerDiffError(
                f"unknown {what} {ident!r}; valid: {', '.join(names)} (or indices 0..{len(names) - 1})"
            )
    return out


def condition_batch(names: list[str], conditions: Any, batch: int) -> torch.Tensor | None:
    """Walking conditions (one name/index for all, or one per sample) -> (B,) indices; None stays None.

    ``names`` empty means the pipeline was trained without conditions: asking for one is an error."""
    if conditions is None:
        return None
    if not names:
        raise DopplerDiffError(
            f"conditions {conditions!r} were given, but this pipeline was trained without walking conditions"
            " (its data had one condition); generate without a condition"
        )
    if isinstance(conditions, str | int | np.integer):
        conditions = [conditions] * batch
    ids = identity_indices(names, list(conditions), what="condition")
    if len(ids) != batch:
        raise DopplerDiffError(f"got {len(ids)} conditions for a batch of {batch} (one, or one per sample)")
    return torch.tensor(ids, dtype=torch.long)


def pipeline_conditions(names: list[str] | None, count: int) -> list[str] | None:
    """The condition names a pipeline records: None for one condition, else ``count`` names."""
    if count <= 1:
        return None
    names = list(names) if names else [f"condition_{i}" for i in range(count)]
    if len(names) != count:
        raise DopplerDiffError(
            f"pipeline has {len(names)} condition names but the condition encoder has {count}")
    return names


def condition_walk(names: list[str], conditions: Any, batch: int, guidance: float,
                   condition_guidance: float | None) -> tuple[torch.Tensor, float] | None:
    """(conditions (B,), their guidance scale: ``condition_guidance``, default ``guidance``) or None."""
    conds = condition_batch(names, conditions, batch)
    g = guidance if condition_guidance is None else condition_guidance
    if not 0 <= g < float("inf"):  # NaN fails too
        raise DopplerDiffError(f"condition_guidance_scale must be a finite number >= 0, got {g}")
    return None if conds is None else (conds, float(g))


def check_output_type(output_type: str) -> None:
    """One error naming the valid ``output_type`` values (both pipelines take the same four)."""
    if output_type not in OUTPUT_TYPES:
        raise DopplerDiffError(f"output_type '{output_type}' is unknown; valid: {', '.join(OUTPUT_TYPES)}")


def images_as(images01: torch.Tensor, output_type: str, colormap: str) -> Any:
    """Decoded images (B,C,H,W) in [0,1] as ``output_type``: pt as they are, np (B,H,W,C), pil colormapped."""
    if output_type == "np":
        return images01.permute(0, 2, 3, 1).cpu().numpy()
    if output_type == "pil":
        return images_to_pil(images01.cpu().numpy(), colormap)
    return images01
