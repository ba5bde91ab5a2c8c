"""Latent denoisers: diffusers UNet2DConditionModel (default) or DiTTransformer2DModel, plus one call API.

UNet: CrossAttnDownBlock2D for every level but the deepest (DownBlock2D), UNetMidBlock2DCrossAttn, and the
mirror on the way up (UpBlock2D first, then CrossAttnUpBlock2D). The identity reaches the UNet through
cross-attention on the condition encoder's tokens and, with ``time_conditioning`` (default on), also through
the timestep embedding (``class_embed_type='projection'`` on the mean identity token). Why both: with one
identity token, cross-attention degenerates to a per-layer bias (softmax over one key), while the time
embedding feeds every ResNet block's scale/shift -- the stronger path for a class-conditional model.

DiT: diffusers' ``DiTTransformer2DModel`` conditions each block by adaLN-Zero on timestep + class label.
How diffusers handles the null class: every block builds its own ``LabelEmbedding(num_classes,
dropout_prob=0.1)``; with dropout > 0 the table gets ``num_classes + 1`` rows and, in training mode, each
block independently replaces labels by ``num_classes`` with p=0.1. That per-block, independent dropout
means a sample is almost never "null" in all blocks at once, so the null label used for guidance would not
be trained as a whole. We therefore build with ``num_embeds_ada_norm = K`` (tables of exactly K+1 rows, row K
= the null, the same id the condition encoder uses) and switch the internal dropout off
(``disable_internal_label_dropout``, applied after building and after loading); the training stage drops
ids to K once per sample, consistently for all blocks.
"""

from __future__ import annotations

import torch
from diffusers import DiTTransformer2DModel, UNet2DConditionModel
from diffusers.models.embeddings import LabelEmbedding
from torch import nn

from dopplerdiff.errors import ConfigError, DopplerDiffError
from dopplerdiff.utils.io import loadable_weights, pretrained_config

Denoiser = UNet2DConditionModel | DiTTransformer2DModel


def build_unet(cfg, latent_channels: int, latent_size: int) -> UNet2DConditionModel:
    """UNet2DConditionModel from ``DiffusionConfig`` sizes."""
    levels = len(cfg.block_out_channels)
    if levels < 1:
        raise ConfigError("diffusion.block_out_channels must have at least one level")
    if latent_size % (2 ** (levels - 1)):
        raise ConfigError(
            f"latent size {latent_size} is not divisible by 2^{levels - 1} "
            f"(diffusion.block_out_channels has {levels} levels)"
        )
    # Stable Diffusion's layout (attention on every level but the deepest) unless configured: on small
    # latents the full-resolution self-attention is the costliest part of a step on a CPU.
    attn = cfg.attention_levels if cfg.attention_levels is not None else [True] * (levels - 1) + [False]
    if len(attn) != levels:
        raise ConfigError(
            f"diffusion.attention_levels has {len(attn)} entries but block_out_channels has {levels} levels"
        )
    down = ["CrossAttnDownBlock2D" if a else "DownBlock2D" for a in attn]
    up = ["CrossAttnUpBlock2D" if a else "UpBlock2D" for a in reversed(attn)]
    groups = min(32, *[c for c in cfg.block_out_channels])
    while any(c % groups for c in cfg.block_out_channels):
        groups //= 2
    heads = [max(1, c // cfg.attention_head_dim) for c in cfg.block_out_channels]
    if cfg.num_attention_heads is not None:
        heads = list(cfg.num_attention_heads)
        bad = [(c, h) for c, h in zip(cfg.block_out_channels, heads, strict=False) if h < 1 or c % h]
        if len(heads) != levels or bad:
            raise ConfigError(
                f"diffusion.num_attention_heads {heads} must give one head count per level of "
                f"block_out_channels {cfg.block_out_channels}, each dividing its level's width"
            )
    extra = {}
    if getattr(cfg, "time_conditioning", False):
        extra = {
            "class_embed_type": "projection",
            "projection_class_embeddings_input_dim": cfg.cross_attention_dim,
        }
    return UNet2DConditionModel(
        sample_size=latent_size,
        in_channels=latent_channels,
        out_channels=latent_channels,
        down_block_types=tuple(down),
        up_block_types=tuple(up),
        mid_block_type="UNetMidBlock2DCrossAttn",
        block_out_channels=tuple(cfg.block_out_channels),
        layers_per_block=cfg.layers_per_block,
        cross_attention_dim=cfg.cross_attention_dim,
        attention_head_dim=tuple(heads),  # diffusers' historical naming: this is the number of heads
        norm_num_groups=groups,
        use_linear_projection=cfg.use_linear_projection,
        **extra,
    )


def build_dit(cfg, latent_channels: int, latent_size: int, num_identities: int) -> DiTTransformer2DModel:
    """DiTTransformer2DModel whose label tables have K+1 rows with row K the (our) null identity."""
    if latent_size % cfg.dit_patch_size:
        raise ConfigError(
            f"latent size {latent_size} is not divisible by diffusion.dit_patch_size={cfg.dit_patch_size}"
        )
    model = DiTTransformer2DModel(
        num_attention_heads=cfg.dit_heads,
        attention_head_dim=cfg.dit_head_dim,
        in_channels=latent_channels,
        out_channels=latent_channels,
        num_layers=cfg.dit_layers,
        sample_size=latent_size,
        patch_size=cfg.dit_patch_size,
        num_embeds_ada_norm=num_identities,
    )
    return disable_internal_label_dropout(model)


def disable_internal_label_dropout(model: nn.Module) -> nn.Module:
    """Switch off diffusers' per-block label dropout (the table keeps its K+1 rows)."""
    for module in model.modules():
        if isinstance(module, LabelEmbedding):
            module.dropout_prob = 0.0
    return model


def build_denoiser(cfg, latent_channels: int, latent_size: int, num_identities: int) -> Denoiser:
    """Build the configured backbone for ``latent_channels x latent_size x latent_size`` latents."""
    if cfg.backbone == "unet":
        return build_unet(cfg, latent_channels, latent_size)
    if cfg.backbone == "dit":
        return build_dit(cfg, latent_channels, latent_size, num_identities)
    raise ConfigError(f"diffusion.backbone '{cfg.backbone}' is unknown; valid: unet, dit")


def denoise(model: nn.Module, x: torch.Tensor, t: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
    """One denoiser forward: ``cond`` is (B,T,D) tokens for the UNet or (B,) ids for the DiT.

    ``model`` may be wrapped (DDP): the backbone type is read from the inner module, the call goes
    through the wrapper so gradients are synchronised.
    """
    inner = getattr(model, "module", model)
    if t.ndim == 0:
        t = t.expand(x.shape[0])
    if isinstance(inner, DiTTransformer2DModel):
        out = model(x, timestep=t, class_labels=cond, return_dict=False)[0]
        return out[:, : x.shape[1]]  # learn-sigma DiTs return twice the channels
    class_labels = cond.mean(dim=1) if inner.config.class_embed_type == "projection" else None
    return model(x, t, encoder_hidden_states=cond, class_labels=class_labels, return_dict=False)[0]


def load_denoiser(path) -> Denoiser:
    """Load a saved denoiser of either backbone (class read from its config.json)."""
    name = pretrained_config(path, "denoiser").get("_class_name")
    if name not in ("DiTTransformer2DModel", "UNet2DConditionModel"):
        raise DopplerDiffError(f"denoiser '{path}' has unsupported class {name!r}")
    with loadable_weights(path, "denoiser"):
        if name == "DiTTransformer2DModel":
            return disable_internal_label_dropout(DiTTransformer2DModel.from_pretrained(path))
        return UNet2DConditionModel.from_pretrained(path)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
