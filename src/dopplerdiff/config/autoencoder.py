"""First-stage autoencoder config (AutoencoderKL or VQModel) and its losses."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from dopplerdiff.config.loop import LoopConfig


@dataclass
class AutoencoderLossConfig:
    l1: float = 1.0
    mse: float = 0.0
    kl: float = 1e-6
    spectral: float = 0.1  # 2-D FFT magnitude loss
    # Tile size of the spectral loss (Hann-windowed local FFTs); 0 = one FFT of the whole image, whose
    # position-blind magnitude taught decoders a bright corner pixel (see train/losses.spectral_loss).
    spectral_patch: int = 16
    adversarial: float = 0.0  # PatchGAN weight; 0 disables the discriminator
    adversarial_start: int = 2000
    feature: float = 0.0  # perceptual-style loss in the project's encoder feature space
    vq_commitment: float = 0.25
    vq_codebook: float = 1.0  # codebook (embedding) loss weight

    def __post_init__(self) -> None:
        if self.spectral_patch != 0 and self.spectral_patch < 4:
            raise ValueError(f"autoencoder.loss.spectral_patch must be 0 (whole image) or >= 4, "
                             f"got {self.spectral_patch}")


@dataclass
class AutoencoderConfig:
    kind: Literal["kl", "vq"] = "kl"
    block_out_channels: list[int] = field(default_factory=lambda: [32, 64, 128])
    layers_per_block: int = 1
    latent_channels: int = 4
    num_vq_embeddings: int = 256  # VQ codebook size
    norm_num_groups: int = 16
    # How 3x3 convolutions pad the image edge: 'zeros' (diffusers' default) or 'replicate' (continues the
    # dark background; see models/autoencoder.set_padding).
    padding_mode: Literal["zeros", "replicate"] = "replicate"
    # VQ: codes whose running usage falls below 3% of uniform are re-seeded from outputs of encode every this
    # many steps (until 90% of training); 0 disables.
    vq_restart_every: int = 100
    disc_channels: int = 64  # PatchGAN width (used when loss.adversarial > 0)
    val_max: int = 256  # validation images reconstructed at each val step (the final metrics use all)
    loss: AutoencoderLossConfig = field(default_factory=AutoencoderLossConfig)
    train: LoopConfig = field(default_factory=LoopConfig)

    @property
    def downsample_factor(self) -> int:
        return 2 ** (len(self.block_out_channels) - 1)
