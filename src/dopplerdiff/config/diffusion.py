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
    # Per-sample probability of the null walking condition (row C), drawn independently of the identity's;
    # None = the identity's dropout. Used only when the run has more than one condition.
    condition_dropout: float | None = None

    @property
    def walk_dropout(self) -> float:
        return self.dropout if self.condition_dropout is None else float(self.condition_dropout)


@dataclass
class VQDiffusionConfig:
    """Discrete diffusion over a VQModel's code indices (``backbone: vq-diffusion``; see train.vq_diffusion).

    A diffusers ``Transformer2DModel`` over the codes (``num_vector_embeds`` = codebook size + 1 mask token,
    ``ada_norm`` timestep conditioning as VQ-Diffusion), cross-attention to the identity tokens of the
    condition encoder (``diffusion.cross_attention_dim``, ``diffusion.condition``).
    """

    layers: int = 4
    heads: int = 4
    head_dim: int = 32
    num_train_timesteps: int = 100  # length of the mask-and-replace chain (VQDiffusionScheduler)
    # loss = KL(q(x_{t-1}|x_t,x_0) || p(x_{t-1}|x_t)) + aux_weight * cross-entropy of x_0 on corrupted codes
    aux_weight: float = 1.0
    truncation_rate: float = 1.0  # sampling: keep the most likely codes up to this probability mass (1 = off)

    def __post_init__(self) -> None:
        require([
            (min(self.layers, self.heads, self.head_dim) >= 1,
             "vq.layers, vq.heads and vq.head_dim must be >= 1"),
            (self.num_train_timesteps >= 2,
             f"vq.num_train_timesteps must be >= 2, got {self.num_train_timesteps}"),
            (self.aux_weight >= 0, f"vq.aux_weight must be >= 0, got {self.aux_weight}"),
            (0.0 < self.truncation_rate <= 1.0,
             f"vq.truncation_rate must be in (0, 1], got {self.truncation_rate}"),
        ])


@dataclass
class DiffusionConfig:
    # unet / dit: continuous latent diffusion; vq-diffusion: discrete diffusion over VQModel codes
    backbone: Literal["unet", "dit", "vq-diffusion"] = "unet"
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
    vq: VQDiffusionConfig = field(default_factory=VQDiffusionConfig)
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
    scheduler: str = "dpmpp"  # vq-diffusion for backbone vq-diffusion
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
            (0.0 <= self.condition.walk_dropout < 1.0,
             f"condition.condition_dropout must be in [0, 1), got {self.condition.condition_dropout}"),
        ])
