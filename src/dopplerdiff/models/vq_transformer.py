"""The discrete denoiser of ``diffusion.backbone: vq-diffusion``: a Transformer2DModel over code indices.

Built as VQ-Diffusion's transformer (diffusers' ``VQDiffusionPipeline``): ``num_vector_embeds`` = codebook
size + 1 (the last index is the mask token), ``sample_size`` = the latent side, ``norm_type='ada_norm'`` with
``num_embeds_ada_norm`` = the chain length (a learned embedding per timestep modulates every block's
LayerNorms) and cross-attention to the identity tokens of ``models.condition.IdentityConditionEncoder``
(row K = the trained null identity used for guidance). The output is ``log p(x_0 | x_t)``: (B, codebook
size, h*w) log-probabilities over the codes (never the mask).

Per-sample timesteps: diffusers' ``AdaLayerNorm`` splits its modulation along dim 0 (``chunk_dim=0``), which
only works for ONE timestep shared by the whole batch. With ``chunk_dim=1`` the same layer modulates each
sample with its own timestep (the two halves of the projection swap roles, shift/scale, which is immaterial
for weights trained this way). ``per_sample_timesteps`` switches every such layer; it is applied after
building and after loading (the flag is not part of diffusers' config), like the DiT's label-dropout switch.
"""

from __future__ import annotations

from pathlib import Path

import torch
from diffusers import Transformer2DModel
from diffusers.models.normalization import AdaLayerNorm
from torch import nn

from dopplerdiff.errors import ConfigError, DopplerDiffError
from dopplerdiff.utils.io import loadable_weights, pretrained_config


def build_vq_transformer(cfg, codebook_size: int, latent_size: int) -> Transformer2DModel:
    """Transformer2DModel over ``latent_size`` x ``latent_size`` codes of a ``codebook_size`` codebook."""
    vq = cfg.vq
    if codebook_size < 2:
        raise ConfigError(f"vq-diffusion needs a codebook of >= 2 codes, got {codebook_size}")
    model = Transformer2DModel(
        num_attention_heads=vq.heads,
        attention_head_dim=vq.head_dim,
        num_layers=vq.layers,
        cross_attention_dim=cfg.cross_attention_dim,
        sample_size=latent_size,
        num_vector_embeds=codebook_size + 1,
        num_embeds_ada_norm=vq.num_train_timesteps,
        norm_type="ada_norm",
        activation_fn="geglu-approximate",
        attention_bias=True,
    )
    return per_sample_timesteps(model)


def per_sample_timesteps(model: nn.Module) -> nn.Module:
    """Let every AdaLayerNorm take one timestep per sample (see the module docstring)."""
    for module in model.modules():
        if isinstance(module, AdaLayerNorm):
            module.chunk_dim = 1
    return model


def num_codes(model: Transformer2DModel) -> int:
    """Codebook size of the codes the transformer models (``num_vector_embeds`` - 1 mask token)."""
    return int(model.config.num_vector_embeds) - 1


def log_p_x0(model: nn.Module, codes: torch.Tensor, t: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """(B, h*w) codes at timesteps ``t`` ((B,) or scalar) -> (B, codebook, h*w) log-probabilities of x_0.

    ``model`` may be DDP-wrapped (the call goes through the wrapper so gradients are synchronised).
    """
    t = torch.as_tensor(t, device=codes.device, dtype=torch.long)
    if t.ndim == 0:
        t = t.expand(codes.shape[0])
    return model(codes, encoder_hidden_states=tokens, timestep=t, return_dict=False)[0]


def load_vq_transformer(path: Path) -> Transformer2DModel:
    """A saved discrete transformer (per-sample timesteps switched on again)."""
    path = Path(path)
    cfg = pretrained_config(path, "transformer")
    if cfg.get("_class_name") != "Transformer2DModel" or not cfg.get("num_vector_embeds"):
        raise DopplerDiffError(f"'{path}' is not a discrete (num_vector_embeds) Transformer2DModel")
    with loadable_weights(path, "transformer"):
        return per_sample_timesteps(Transformer2DModel.from_pretrained(path))
