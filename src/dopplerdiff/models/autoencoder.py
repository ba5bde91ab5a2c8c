"""First-stage autoencoder: build AutoencoderKL / VQModel, measured latent scale, encode/decode.

Latent convention everywhere: ``z_model = (z - shift) * scale`` and ``z = z_model / scale + shift``,
with ``(scale, shift) = latent_scale(vae)`` **measured** on the training split
(``scale = 1 / std``, ``shift = mean`` of posterior samples). An autoencoder whose scale was never
measured (diffusers' default 0.18215 still in its config) is refused.

* AutoencoderKL stores ``scaling_factor``, ``shift_factor`` and per-channel ``latents_mean`` /
  ``latents_std`` in its config.
* VQModel has only ``scaling_factor``; the per-channel latent mean is therefore folded into the weights
  (``quant_conv`` bias, codebook and ``post_quant_conv`` bias shifted together, which leaves every
  reconstruction unchanged), so its shift is exactly 0. VQ latents are the pre-quantisation output of encode;
  ``decode`` quantises them (LDM's "VQ-reg" convention).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from diffusers import AutoencoderKL, VQModel
from diffusers.utils import logging as diffusers_logging

from dopplerdiff.config.autoencoder import AutoencoderConfig
from dopplerdiff.config.data import DataConfig
from dopplerdiff.data.latents import from_model_space, to_model_space
from dopplerdiff.errors import ConfigError, DopplerDiffError
from dopplerdiff.utils.io import loadable_weights, pretrained_config

Autoencoder = AutoencoderKL | VQModel
PADDING_MODES = ("zeros", "replicate")
UNMEASURED_SCALE = 0.18215  # diffusers' default (Stable Diffusion's); never valid for our data


def check_architecture(cfg: AutoencoderConfig, data: DataConfig) -> None:
    """Clear ConfigErrors for sizes the diffusers blocks cannot build or divide."""
    if not cfg.block_out_channels:
        raise ConfigError("autoencoder.block_out_channels must not be empty")
    bad = [c for c in cfg.block_out_channels if c % cfg.norm_num_groups]
    if bad:
        raise ConfigError(
            f"autoencoder.norm_num_groups={cfg.norm_num_groups} does not divide block_out_channels {bad}"
        )
    f = cfg.downsample_factor
    if data.size % f:
        raise ConfigError(
            f"data.size={data.size} is not divisible by the autoencoder downsampling factor {f} "
            f"(= 2^(len(autoencoder.block_out_channels) - 1)); choose a size that is a multiple of {f}"
        )
    if cfg.latent_channels < 1:
        raise ConfigError("autoencoder.latent_channels must be >= 1")
    if cfg.kind == "vq" and cfg.num_vq_embeddings < 2:
        raise ConfigError("autoencoder.num_vq_embeddings must be >= 2")


def build_autoencoder(cfg: AutoencoderConfig, data: DataConfig) -> Autoencoder:
    """A freshly initialised AutoencoderKL (kind 'kl') or VQModel (kind 'vq') for ``data`` images."""
    check_architecture(cfg, data)
    n = len(cfg.block_out_channels)
    common: dict[str, Any] = dict(
        in_channels=data.channels,
        out_channels=data.channels,
        down_block_types=("DownEncoderBlock2D",) * n,
        up_block_types=("UpDecoderBlock2D",) * n,
        block_out_channels=tuple(cfg.block_out_channels),
        layers_per_block=cfg.layers_per_block,
        latent_channels=cfg.latent_channels,
        norm_num_groups=cfg.norm_num_groups,
        sample_size=data.size,
    )
    if cfg.kind == "kl":
        vae: Autoencoder = AutoencoderKL(**common, force_upcast=False)
    else:
        vae = VQModel(**common, num_vq_embeddings=cfg.num_vq_embeddings, vq_embed_dim=cfg.latent_channels)
    return set_padding(vae, cfg.padding_mode)


@contextlib.contextmanager
def quiet_extra_config() -> Iterator[None]:
    """Silence diffusers' notice that the config's extra ``padding_mode`` key is not an init argument."""
    level = diffusers_logging.get_verbosity()
    diffusers_logging.set_verbosity_error()
    try:
        yield
    finally:
        diffusers_logging.set_verbosity(level)


def set_padding(vae: Autoencoder, mode: str) -> Autoencoder:
    """Pad every 3x3 convolution with ``mode`` ('zeros' or 'replicate') and record it in the model's config.

    Zero padding makes the image edge look like a mid-grey wall to a network whose background is -1: the
    decoder then raises edge and corner pixels until it has learned to undo that. Replicating the edge
    continues the background instead. diffusers' config has no such field, so it is registered as an extra
    key that :func:`load_autoencoder` reads back (models saved without it use zeros, as they were trained).
    """
    if mode not in PADDING_MODES:
        raise DopplerDiffError(f"autoencoder.padding_mode must be one of {', '.join(PADDING_MODES)}, "
                               f"got {mode!r}")
    for m in vae.modules():
        if isinstance(m, torch.nn.Conv2d) and m.padding != (0, 0):
            m.padding_mode = mode
    vae.register_to_config(padding_mode=mode)
    return vae


def load_autoencoder(path: Path) -> Autoencoder:
    """AutoencoderKL or VQModel from a ``save_pretrained`` directory (e.g. RUN/autoencoder)."""
    path = Path(path)
    config = pretrained_config(path, "autoencoder", hint="; train one first")
    name = config.get("_class_name")
    classes = {"AutoencoderKL": AutoencoderKL, "VQModel": VQModel}
    if name not in classes:
        raise DopplerDiffError(f"'{path}' holds a {name!r}, not an AutoencoderKL or VQModel")
    with quiet_extra_config(), loadable_weights(path, "autoencoder"):
        vae = classes[name].from_pretrained(path)
    return set_padding(vae, config.get("padding_mode", "zeros"))


def autoencoder_kind(vae: Autoencoder) -> str:
    return "vq" if isinstance(vae, VQModel) else "kl"


def latent_scale(vae: Autoencoder) -> tuple[float, float]:
    """``(scale, shift)`` of the latent convention; DopplerDiffError if the scale was never measured."""
    scale = float(vae.config.scaling_factor)
    if abs(scale - UNMEASURED_SCALE) < 1e-9:
        raise DopplerDiffError(
            "the autoencoder's latent scale was never measured (scaling_factor is diffusers' default "
            "0.18215); train it with `dopplerdiff train-autoencoder` or call measure_latent_scale"
        )
    shift = getattr(vae.config, "shift_factor", None) if isinstance(vae, AutoencoderKL) else 0.0
    return scale, float(shift or 0.0)


def _to(x: torch.Tensor, vae: Autoencoder) -> torch.Tensor:
    return x.to(device=vae.device, dtype=vae.dtype)


def encode_posterior(vae: Autoencoder, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Unscaled posterior ``(mean, std)`` of images ``x`` in [-1, 1]; std is zero for VQ."""
    if isinstance(vae, VQModel):
        h = vae.encode(_to(x, vae)).latents
        return h, torch.zeros_like(h)
    dist = vae.encode(_to(x, vae)).latent_dist
    return dist.mean, dist.std


def encode(vae: Autoencoder, x: torch.Tensor, sample: bool = False,
           generator: torch.Generator | None = None) -> torch.Tensor:
    """Images in [-1, 1] -> model-space latents ``(z - shift) * scale`` (posterior mean unless ``sample``)."""
    scale, shift = latent_scale(vae)
    mean, std = encode_posterior(vae, x)
    z = mean
    if sample:
        eps = torch.randn(mean.shape, generator=generator, device=mean.device, dtype=mean.dtype)
        z = mean + std * eps
    return to_model_space(z, scale, shift)


def decode(vae: Autoencoder, z_model: torch.Tensor) -> torch.Tensor:
    """Model-space latents -> images (roughly [-1, 1], not clamped)."""
    scale, shift = latent_scale(vae)
    z = _to(from_model_space(z_model, scale, shift), vae)
    return vae.decode(z).sample


def code_indices(vae: VQModel, h: torch.Tensor) -> torch.Tensor:
    """Unscaled pre-quantisation latents (B, C, h, w) -> (B, h, w) indices of the codes the VQModel picks."""
    _, _, (_, _, idx) = vae.quantize(_to(h, vae))
    return idx.reshape(h.shape[0], h.shape[2], h.shape[3]).long()


def decode_codes(vae: VQModel, indices: torch.Tensor) -> torch.Tensor:
    """(B, h, w) code indices -> images (roughly [-1, 1], not clamped), through the codebook lookup."""
    b, h, w = indices.shape
    shape = (b, h, w, int(vae.config.vq_embed_dim or vae.config.latent_channels))
    z_q = vae.quantize.get_codebook_entry(indices.reshape(b, -1).to(vae.device), shape=shape)
    return vae.decode(z_q.to(vae.dtype), force_not_quantize=True).sample


def reconstruct(vae: Autoencoder, x: torch.Tensor) -> torch.Tensor:
    """Deterministic reconstruction through the posterior mean (no scale needed)."""
    mean, _ = encode_posterior(vae, x)
    return vae.decode(mean).sample


@torch.no_grad()
def latent_statistics(vae: Autoencoder, batches: Iterable[torch.Tensor]) -> dict[str, Any]:
    """Mean/std of posterior *samples* over all elements and per channel, computed exactly from
    posterior means and stds (Var[sample] = Var[mean] + E[std^2]); float64 accumulation."""
    n, s1, s2, v = 0, None, None, None
    for x in batches:
        mean, std = encode_posterior(vae, x)
        m = mean.double().transpose(0, 1).flatten(1)  # (C, N*h*w)
        sd = std.double().transpose(0, 1).flatten(1)
        s1 = m.sum(1) if s1 is None else s1 + m.sum(1)
        s2 = (m**2).sum(1) if s2 is None else s2 + (m**2).sum(1)
        v = (sd**2).sum(1) if v is None else v + (sd**2).sum(1)
        n += m.shape[1]
    if n == 0 or s1 is None or s2 is None or v is None:
        raise DopplerDiffError("cannot measure the latent scale on an empty training split")
    ch_mean = s1 / n
    ch_var = s2 / n - ch_mean**2 + v / n
    mean = float(ch_mean.mean())
    var = float((ch_var + (ch_mean - mean) ** 2).mean())
    return {
        "mean": mean, "std": float(np.sqrt(max(var, 1e-12))),
        "channel_mean": ch_mean.tolist(), "channel_std": ch_var.clamp_min(1e-12).sqrt().tolist(), "count": n,
    }


@torch.no_grad()
def _fold_vq_centering(vae: VQModel, channel_mean: list[float]) -> None:
    """Shift VQ latents by -m without changing any reconstruction (see module docstring)."""
    m = torch.tensor(channel_mean, dtype=torch.float32, device=vae.device)
    qc, pq = vae.quant_conv, vae.post_quant_conv
    if qc.bias is None or pq.bias is None:
        raise DopplerDiffError("this VQModel has bias-free quant convs; cannot centre its latents")
    qc.bias.sub_(m.to(qc.bias.dtype))
    vae.quantize.embedding.weight.sub_(m.to(vae.quantize.embedding.weight.dtype))
    pq.bias.add_((pq.weight[:, :, 0, 0].float() @ m).to(pq.bias.dtype))


@torch.no_grad()
def measure_latent_scale(vae: Autoencoder, batches: Iterable[torch.Tensor] | Any) -> dict[str, Any]:
    """Measure the training-latent statistics and store them in ``vae.config`` (returns the stats).

    ``batches`` must be re-iterable for VQModel (the latents are measured again after centring).
    """
    stats = latent_statistics(vae, batches)
    if isinstance(vae, VQModel):
        _fold_vq_centering(vae, stats["channel_mean"])
        stats = latent_statistics(vae, batches)
        stats["folded_channel_mean"] = True
        rms = float(np.sqrt(np.mean(np.square(stats["channel_mean"])) + stats["std"] ** 2))
        vae.register_to_config(scaling_factor=1.0 / rms)  # shift is 0 by construction
        stats.update(scaling_factor=1.0 / rms, shift_factor=0.0)
    else:
        vae.register_to_config(
            scaling_factor=1.0 / stats["std"], shift_factor=stats["mean"],
            latents_mean=stats["channel_mean"], latents_std=stats["channel_std"],
        )
        stats.update(scaling_factor=1.0 / stats["std"], shift_factor=stats["mean"])
    return stats
