"""Identity-conditional latent diffusion config: denoiser, condition encoder, noise schedule."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from dopplerdiff.config.base import require
from dopplerdiff.config.loop import LoopConfig


@dataclass
class ConditionConfig:
    kind: Literal["embedding", "onehot_mlp", "tokens"] = "embedding"
    num_tokens: int = 1  # identity tokens fed to cross-attention
    dropout: float = 0.1  # per-sample probability of the null identity (row K) during training


@dataclass
class DiffusionConfig:
    backbone: Literal["unet", "dit"] = "unet"
    block_out_channels: list[int] = field(default_factory=lambda: [64, 128, 128])
    layers_per_block: int = 1
    cross_attention_dim: int = 128
    attention_head_dim: int = 8  # channels per attention head
    # heads per level of block_out_channels (overrides attention_head_dim; Stable Diffusion 2's layout is
    # [5, 10, 20, 20] at [320, 640, 1280, 1280]: 64-wide heads) and linear instead of 1x1-conv projections
    num_attention_heads: list[int] | None = None
    use_linear_projection: bool = False
    # Also feed the mean identity token into the timestep embedding (every ResNet block sees the identity).
    # per level of block_out_channels: cross/self-attention blocks there (None: all but the deepest)
    attention_levels: list[bool] | None = None
    time_conditioning: bool = True
    # DiT sizes (backbone: dit)
    dit_layers: int = 6
    dit_heads: int = 4
    dit_head_dim: int = 32
    dit_patch_size: int = 2
    condition: ConditionConfig = field(default_factory=ConditionConfig)
    num_train_timesteps: int = 1000
    beta_schedule: Literal["linear", "scaled_linear", "squaredcos_cap_v2"] = "scaled_linear"
    prediction_type: Literal["epsilon", "v_prediction"] = "epsilon"
    snr_gamma: float = 0.0  # min-SNR loss weighting; 0 disables
    sample_posterior: bool = True  # train on z ~ N(mean, std) of the cached posterior (False: the mean)
    latent_time_shift: bool = False  # roll training latents by a random number of columns along time
    # model selection: keep the (EMA) weights with the lowest validation denoising loss (fixed noise, real
    # validation latents) among the validations (every train.val_every steps and the last), not the last
    select_best: bool = False
    val_identities: int = 8  # identities shown in the validation grid (a fixed subset)
    val_samples: int = 6  # generated (and real) images per identity row in the validation grid
    train: LoopConfig = field(default_factory=LoopConfig)
    # Sampling defaults (validation grids, generate, evaluate)
    scheduler: str = "dpmpp"
    num_inference_steps: int = 20
    guidance_scale: float = 2.0
    samples_per_identity: int = 16  # images per identity written by `run` into RUN/samples

    def __post_init__(self) -> None:
        require([
            (self.num_train_timesteps >= 1,
             f"num_train_timesteps must be >= 1, got {self.num_train_timesteps}"),
            (self.snr_gamma >= 0, f"snr_gamma must be >= 0 (0 disables), got {self.snr_gamma}"),
            (self.num_inference_steps >= 1,
             f"num_inference_steps must be >= 1, got {self.num_inference_steps}"),
            (self.guidance_scale >= 0, f"guidance_scale must be >= 0, got {self.guidance_scale}"),
            (self.samples_per_identity >= 1,
             f"samples_per_identity must be >= 1, got {self.samples_per_identity}"),
            (0.0 <= self.condition.dropout < 1.0,
             f"condition.dropout must be in [0, 1), got {self.condition.dropout}"),
        ])
