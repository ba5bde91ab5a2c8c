"""Diffusion decoder: a conditional pixel-space denoiser that turns first-stage latents into images.

The deterministic VAE decoder predicts the conditional mean of a window given its latent and so averages
away the speckle that real spectrograms have. The diffusion decoder instead *samples* the window: a
``UNet2DModel`` denoises image-space noise at the target size, conditioned on the model-space latent
upsampled to that size (and, with ``vae_image``, the VAE's own decoded image), concatenated to the noisy
channels — as diffusers' ``ConsistencyDecoderVAE`` / ``LDMSuperResolutionPipeline`` condition theirs.
A target size larger than the autoencoder's makes it an upsampler.

Decoding uses a few-step sampler (``sample_steps`` of ``scheduler``, any name of
``dopplerdiff.schedulers``) built from the training noise schedule stored in the decoder's config, so a
saved decoder is self-contained (``save_pretrained`` / ``from_pretrained``).
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from diffusers import UNet2DModel
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from diffusers.utils.torch_utils import randn_tensor

from dopplerdiff.errors import ConfigError, DopplerDiffError
from dopplerdiff.schedulers import check_scheduler_name, make_scheduler, training_scheduler
from dopplerdiff.utils.io import loadable_weights, pretrained_config

CLASS_NAME = "DiffusionDecoder"


class DiffusionDecoder(ModelMixin, ConfigMixin):
    """``UNet2DModel`` over [noisy image, upsampled latent (, VAE image)] -> epsilon or v at ``size``."""

    config_name = "config.json"

    @register_to_config
    def __init__(
        self,
        image_channels: int = 1,
        latent_channels: int = 4,
        size: int = 64,
        latent_size: int = 32,
        channels: tuple[int, ...] = (32, 64, 64),
        layers_per_block: int = 1,
        norm_num_groups: int = 8,
        attention: bool = False,
        vae_image: bool = False,
        upsample: str = "nearest",
        num_train_timesteps: int = 1000,
        beta_schedule: str = "linear",
        prediction_type: str = "v_prediction",
        scheduler: str = "dpmpp",
        sample_steps: int = 10,
    ):
        super().__init__()
        n = len(channels)
        down, up = ["DownBlock2D"] * n, ["UpBlock2D"] * n
        if attention:
            down[-1], up[0] = "AttnDownBlock2D", "AttnUpBlock2D"
        cond = latent_channels + (image_channels if vae_image else 0)
        self.unet = UNet2DModel(
            sample_size=size, in_channels=image_channels + cond, out_channels=image_channels,
            block_out_channels=tuple(channels), layers_per_block=layers_per_block,
            down_block_types=tuple(down), up_block_types=tuple(up), norm_num_groups=norm_num_groups,
        )

    @property
    def image_shape(self) -> tuple[int, int, int]:
        c = self.config
        return int(c.image_channels), int(c.size), int(c.size)

    def condition(self, z_model: torch.Tensor, vae_image: torch.Tensor | None = None) -> torch.Tensor:
        """Conditioning channels at the target size from model-space latents (and the VAE image)."""
        c = self.config
        if z_model.ndim != 4 or z_model.shape[1] != c.latent_channels:
            raise DopplerDiffError(f"the diffusion decoder takes latents (B, {c.latent_channels}, h, w), "
                                   f"got {tuple(z_model.shape)}")
        size = (int(c.size), int(c.size))
        mode: dict[str, Any] = {"mode": "nearest"}
        if c.upsample == "bilinear":
            mode = {"mode": "bilinear", "align_corners": False}
        parts = [F.interpolate(z_model.to(self.dtype), size=size, **mode)]
        if c.vae_image:
            if vae_image is None:
                raise DopplerDiffError("this diffusion decoder is conditioned on the VAE's decoded image; "
                                       "pass vae_image")
            img = vae_image.to(device=z_model.device, dtype=self.dtype)
            if tuple(img.shape[-2:]) != size:
                img = F.interpolate(img, size=size, mode="bilinear", align_corners=False)
            parts.append(img)
        return torch.cat(parts, dim=1)

    def forward(self, noisy: torch.Tensor, t: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        """The denoiser's output (epsilon or v, per ``prediction_type``) for ``noisy`` images at ``t``."""
        return self.unet(torch.cat([noisy, cond.to(noisy.dtype)], dim=1), t).sample

    def noise_scheduler(self) -> Any:
        """The DDPM training schedule this decoder was trained with."""
        c = self.config
        return training_scheduler(int(c.num_train_timesteps), c.beta_schedule, c.prediction_type)

    @torch.no_grad()
    def decode(self, z_model: torch.Tensor, vae_image: torch.Tensor | None = None,
               generator: torch.Generator | list[torch.Generator] | None = None,
               steps: int | None = None, scheduler: str | None = None) -> torch.Tensor:
        """Sample images in [-1, 1] (B, C, size, size) for model-space latents ``z_model``.

        ``generator`` (one, or one per latent) draws the image noise, so a seed fixes the decoded image.
        """
        c = self.config
        sched = make_scheduler(check_scheduler_name(scheduler or c.scheduler), self.noise_scheduler().config)
        sched.set_timesteps(int(steps or c.sample_steps), device=self.device)
        cond = self.condition(z_model.to(self.device), vae_image)
        shape = (int(z_model.shape[0]), *self.image_shape)
        x = randn_tensor(shape, generator=generator, device=self.device, dtype=self.dtype)
        x = x * sched.init_noise_sigma
        extra = {"generator": generator} if "generator" in inspect.signature(sched.step).parameters else {}
        for t in sched.timesteps:
            out = self(sched.scale_model_input(x, t), t, cond)
            x = sched.step(out, t, x, **extra).prev_sample
        return x.clamp(-1, 1)


def check_decoder_sizes(size: int, latent_size: int, levels: int) -> None:
    """Clear errors for sizes the UNet cannot halve or the latent grid cannot be upsampled to."""
    if size % latent_size:
        raise ConfigError(f"decoder.size={size} is not a multiple of the latent size {latent_size}")
    f = 2 ** (levels - 1)
    if size % f:
        raise ConfigError(f"decoder.size={size} is not divisible by 2^(len(decoder.channels) - 1) = {f}; "
                          "use fewer levels or another size")


def build_decoder(cfg: Any, image_channels: int, latent_channels: int, latent_size: int,
                  size: int) -> DiffusionDecoder:
    """A freshly initialised decoder from a ``DecoderConfig`` for latents (C, h, h) -> images at ``size``."""
    check_decoder_sizes(size, latent_size, len(cfg.channels))
    check_scheduler_name(cfg.scheduler)
    return DiffusionDecoder(
        image_channels=image_channels, latent_channels=latent_channels, size=size, latent_size=latent_size,
        channels=tuple(cfg.channels), layers_per_block=cfg.layers_per_block,
        norm_num_groups=cfg.norm_num_groups, attention=cfg.attention, vae_image=cfg.vae_image,
        upsample=cfg.upsample, num_train_timesteps=cfg.num_train_timesteps,
        beta_schedule=cfg.beta_schedule, prediction_type=cfg.prediction_type, scheduler=cfg.scheduler,
        sample_steps=cfg.sample_steps,
    )


def load_decoder(path: Path) -> DiffusionDecoder:
    """A saved diffusion decoder (``save_pretrained`` directory); clear errors for anything else."""
    name = pretrained_config(path, "diffusion decoder").get("_class_name")
    if name != CLASS_NAME:
        raise DopplerDiffError(f"'{path}' holds a {name!r}, not a {CLASS_NAME}")
    with loadable_weights(path, "diffusion decoder"):
        return DiffusionDecoder.from_pretrained(path).eval()
