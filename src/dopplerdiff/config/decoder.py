"""Decoder config: the autoencoder's own decoder (``vae``) or a diffusion decoder trained on its latents."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from dopplerdiff.config.base import require
from dopplerdiff.config.data import MAX_SIZE
from dopplerdiff.config.loop import LoopConfig


def _default_train() -> LoopConfig:
    return LoopConfig(steps=1500, batch_size=16, lr=2e-4, lr_schedule="cosine", warmup_steps=50,
                      checkpoint_every=250, val_every=500, log_every=50, ema_decay=0.995)


@dataclass
class DecoderConfig:
    """How latents become images.

    ``kind: diffusion`` trains a conditional ``UNet2DModel`` that generates the image at ``size`` given the
    first-stage latent (upsampled to ``size`` and concatenated to the noisy image channels; with
    ``vae_image`` also the autoencoder's own decoded image), in the spirit of diffusers'
    ``ConsistencyDecoderVAE`` and ``LDMSuperResolutionPipeline``. ``size`` equal to ``data.size`` gives a
    stochastic decoder; a multiple of it an upsampler (pairs: latent of the window at ``data.size``, the
    window at ``size``). ``size: 0`` means ``data.size``.
    """

    kind: Literal["vae", "diffusion"] = "vae"
    size: int = 0
    channels: list[int] = field(default_factory=lambda: [32, 64, 64])  # UNet widths per level
    layers_per_block: int = 1
    norm_num_groups: int = 8
    attention: bool = False  # self-attention at the deepest level (costly at image resolution on a CPU)
    vae_image: bool = False  # also condition on the autoencoder's decoded image
    upsample: Literal["nearest", "bilinear"] = "nearest"  # how the latent is brought to ``size``
    num_train_timesteps: int = 1000
    beta_schedule: Literal["linear", "scaled_linear", "squaredcos_cap_v2"] = "linear"
    prediction_type: Literal["epsilon", "v_prediction"] = "v_prediction"
    sample_posterior: bool = True  # train on posterior samples, as the latent denoiser produces them
    time_shift: bool = True  # roll latent and image together along time (the data's time-shift augmentation)
    scheduler: str = "dpmpp"  # few-step sampler for decoding (a name of dopplerdiff.schedulers)
    sample_steps: int = 10
    val_images: int = 8  # validation windows decoded into the grid and scored (PSNR) at each validation
    train: LoopConfig = field(default_factory=_default_train)

    def __post_init__(self) -> None:
        require([
            (self.size == 0 or 8 <= self.size <= MAX_SIZE,
             f"size must be 0 (data.size) or in [8, {MAX_SIZE}], got {self.size}"),
            (len(self.channels) >= 1 and all(c >= 1 for c in self.channels),
             f"channels must be a non-empty list of positive widths, got {self.channels}"),
            (self.norm_num_groups >= 1 and all(c % self.norm_num_groups == 0 for c in self.channels),
             f"norm_num_groups={self.norm_num_groups} must divide every width in channels {self.channels}"),
            (self.layers_per_block >= 1, f"layers_per_block must be >= 1, got {self.layers_per_block}"),
            (self.num_train_timesteps >= 2,
             f"num_train_timesteps must be >= 2, got {self.num_train_timesteps}"),
            (1 <= self.sample_steps <= self.num_train_timesteps,
             f"sample_steps must be in [1, num_train_timesteps], got {self.sample_steps}"),
            (self.val_images >= 0, f"val_images must be >= 0, got {self.val_images}"),
        ])

    def target_size(self, data_size: int) -> int:
        """The decoded image size (``size``, or ``data.size`` when 0)."""
        return self.size or data_size
