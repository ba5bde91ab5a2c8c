"""Spectrogram encoder: identity classifier, embedding model and the feature space of every metric.

``SpectrogramEncoder`` is a diffusers ``ModelMixin``/``ConfigMixin`` (``save_pretrained`` /
``from_pretrained`` with safetensors). Two backbones:

* ``cnn`` (default for CPU profiles): strided conv blocks, then mean+max pooling over **time** (so a
  circular time shift of the walk barely changes the features) while the **Doppler** axis is kept as a
  coarse profile of ``doppler_bins`` rows (torso velocity and limb extent carry identity), flattened and
  projected to ``embed_dim``.
* ``vit``: patch embedding (square patches, or ``vit_patches="time"``: strips spanning all Doppler bins, one
  per time step group), pre-norm transformer blocks, CLS pooling, projection to ``embed_dim``.

Outputs, all from an input ``x`` (B, C, H, W) in [-1, 1]:
``features(x)`` (B, D) un-normalised pooled features (the Fréchet/KID/k-NN feature space);
``embed(x)`` (B, D) L2-normalised; ``classify(x)`` (B, K) logits; ``forward(x) -> (embedding, logits)``.
The config also records how images must be read (``identities``, ``data_size``, ``channels``,
``colormap``) so a loaded encoder can read new folders on its own.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from diffusers import ConfigMixin, ModelMixin
from diffusers.configuration_utils import register_to_config
from torch import Tensor, nn

from dopplerdiff.config.encoder import EncoderConfig
from dopplerdiff.errors import DopplerDiffError
from dopplerdiff.models.stacked import Grouped, Rule
from dopplerdiff.utils.io import loadable_weights, pretrained_config

ENCODER_CLASS = "SpectrogramEncoder"
# Bumped whenever a change alters what saved weights mean without changing their shapes (e.g. strides):
# such weights would load silently and score worse, so loading refuses other versions.
ARCH_VERSION = 2


class _ConvBlock(nn.Module):
    """Two 3x3 convs with BatchNorm + GELU; the first one strided (downsampling by 2)."""

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False),
            nn.BatchNorm2d(cout),
            nn.GELU(),
            nn.Conv2d(cout, cout, 3, padding=1, bias=False),
            nn.BatchNorm2d(cout),
        )
        self.skip = (
            nn.Sequential(nn.Conv2d(cin, cout, 1, stride=stride, bias=False), nn.BatchNorm2d(cout))
            if (cin != cout or stride != 1)
            else nn.Identity()
        )

    def forward(self, x: Tensor) -> Tensor:
        return F.gelu(self.net(x) + self.skip(x))


class _CNNBackbone(nn.Module):
    def __init__(self, in_channels: int, widths: list[int], doppler_bins: int, out_dim: int) -> None:
        super().__init__()
        blocks: list[nn.Module] = []
        cin = in_channels
        for w in widths:
            blocks.append(_ConvBlock(cin, w, stride=2))  # every block halves H and W: CPU-cheap
            cin = w
        self.blocks = nn.Sequential(*blocks)
        self.doppler_bins = doppler_bins
        # mean and max over time, for each of `doppler_bins` Doppler rows
        self.proj = nn.Sequential(nn.Linear(2 * cin * doppler_bins, out_dim), nn.LayerNorm(out_dim))

    def forward(self, x: Tensor) -> Tensor:
        h = self.blocks(x)
        h = F.adaptive_avg_pool2d(h, (self.doppler_bins, h.shape[-1]))  # coarse Doppler, full time
        pooled = torch.cat([h.mean(dim=-1), h.amax(dim=-1)], dim=1)  # (B, 2C, bins): time-shift invariant
        return self.proj(pooled.flatten(1))


class _Block(nn.Module):
    def __init__(self, dim: int, heads: int, mlp_ratio: float, dropout: float) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = nn.MultiheadAttention(dim, heads, dropout=dropout, batch_first=True)
        self.norm2 = nn.LayerNorm(dim)
        hidden = int(dim * mlp_ratio)
        self.mlp = nn.Sequential(
            nn.Linear(dim, hidden), nn.GELU(), nn.Dropout(dropout),
            nn.Linear(hidden, dim), nn.Dropout(dropout),
        )

    def forward(self, x: Tensor) -> Tensor:
        h = self.norm1(x)
        x = x + self.attn(h, h, h, need_weights=False)[0]
        return x + self.mlp(self.norm2(x))


class _ViTBackbone(nn.Module):
    def __init__(
        self, in_channels: int, image_size: int, patch_size: int, patches: str, width: int, depth: int,
        heads: int, mlp_ratio: float, dropout: float, out_dim: int,
    ) -> None:
        super().__init__()
        ph = image_size if patches == "time" else patch_size  # "time": each token spans all Doppler bins
        if image_size % patch_size or image_size % ph:
            raise DopplerDiffError(
                f"encoder: image_size {image_size} is not divisible by patch_size {patch_size}"
            )
        self.patch = nn.Conv2d(in_channels, width, kernel_size=(ph, patch_size), stride=(ph, patch_size))
        n_tokens = (image_size // ph) * (image_size // patch_size)
        self.cls = nn.Parameter(torch.zeros(1, 1, width))
        self.pos = nn.Parameter(torch.randn(1, n_tokens + 1, width) * 0.02)
        self.blocks = nn.ModuleList([_Block(width, heads, mlp_ratio, dropout) for _ in range(depth)])
        self.norm = nn.LayerNorm(width)
        self.proj = nn.Linear(width, out_dim)

    def forward(self, x: Tensor) -> Tensor:
        tokens = self.patch(x).flatten(2).transpose(1, 2)
        tokens = torch.cat([self.cls.expand(len(x), -1, -1), tokens], dim=1) + self.pos
        for blk in self.blocks:
            tokens = blk(tokens)
        return self.proj(self.norm(tokens[:, 0]))


class SpectrogramEncoder(ModelMixin, ConfigMixin):
    """Identity encoder for (B, C, H, W) spectrograms in [-1, 1]; see the module docstring."""

    config_name = "config.json"

    @register_to_config
    def __init__(
        self,
        kind: str = "cnn",
        in_channels: int = 1,
        image_size: int = 64,
        num_classes: int = 2,
        embed_dim: int = 128,
        cnn_channels: tuple[int, ...] | list[int] = (32, 64, 128),
        doppler_bins: int = 8,
        patch_size: int = 8,
        vit_patches: str = "square",
        vit_width: int | None = None,
        depth: int = 4,
        heads: int = 4,
        mlp_ratio: float = 2.0,
        dropout: float = 0.0,
        identities: list[str] | None = None,
        data_size: int | None = None,
        channels: int | None = None,
        colormap: str = "jet",
        arch_version: int = ARCH_VERSION,
    ) -> None:
        super().__init__()
        if kind not in ("cnn", "vit"):
            raise DopplerDiffError(f"encoder kind must be 'cnn' or 'vit', got {kind!r}")
        if num_classes < 1:
            raise DopplerDiffError(f"encoder needs at least one identity, got num_classes={num_classes}")
        if identities is not None and len(identities) != num_classes:
            raise DopplerDiffError(
                f"encoder: {len(identities)} identities given but num_classes={num_classes}"
            )
        if kind == "cnn":
            self.backbone: nn.Module = _CNNBackbone(in_channels, list(cnn_channels), doppler_bins, embed_dim)
        else:
            width = vit_width or embed_dim
            if width % heads:
                raise DopplerDiffError(f"encoder: ViT width {width} is not divisible by heads {heads}")
            self.backbone = _ViTBackbone(
                in_channels, image_size, patch_size, vit_patches, width, depth, heads, mlp_ratio, dropout,
                embed_dim,
            )
        self.head = nn.Linear(embed_dim, num_classes)

    @property
    def num_features(self) -> int:
        """Feature dimension (torchmetrics reads this attribute of a custom ``feature=`` module)."""
        return int(self.config.embed_dim)

    def _check(self, x: Tensor) -> Tensor:
        c, s = self.config.in_channels, self.config.image_size
        if x.ndim != 4 or x.shape[1] != c or (self.config.kind == "vit" and tuple(x.shape[-2:]) != (s, s)):
            raise DopplerDiffError(
                f"encoder expects images of shape (B, {c}, {s}, {s}) in [-1, 1], got {tuple(x.shape)}"
            )
        return x.to(self.dtype)

    def features(self, x: Tensor) -> Tensor:
        """Un-normalised pooled features (B, D): the space for Fréchet distance, KID and k-NN metrics."""
        return self.backbone(self._check(x))

    def embed(self, x: Tensor) -> Tensor:
        """L2-normalised embedding (B, D) for search and identification."""
        return F.normalize(self.features(x), dim=-1)

    def classify(self, x: Tensor) -> Tensor:
        """Identity logits (B, K)."""
        return self.head(self.features(x))

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        f = self.features(x)
        return F.normalize(f, dim=-1), self.head(f)


def _grouped_encoder(g: Grouped, mod: SpectrogramEncoder, pre: str, x: Tensor) -> tuple[Tensor, Tensor]:
    f = g(mod.backbone, pre + "backbone.", x)
    return F.normalize(f, dim=-1), g(mod.head, pre + "head.", f)


def _grouped_cnn(g: Grouped, mod: _CNNBackbone, pre: str, x: Tensor) -> Tensor:
    h = g(mod.blocks, pre + "blocks.", x)
    h = F.adaptive_avg_pool2d(h, (mod.doppler_bins, h.shape[-1]))
    h = h.reshape(h.shape[0], g.m, -1, *h.shape[2:])  # (B, M, C, bins, T)
    pooled = torch.cat([h.mean(dim=-1), h.amax(dim=-1)], dim=2)  # each model's (B, 2C, bins)
    return g(mod.proj, pre + "proj.", pooled.flatten(2).transpose(0, 1))


# The CNN encoder's forward for M models at once (``models.stacked``): keep in step with the forwards above.
ENCODER_GROUP_RULES: dict[type, Rule] = {
    SpectrogramEncoder: _grouped_encoder,
    _CNNBackbone: _grouped_cnn,
    _ConvBlock: lambda g, mod, pre, x: F.gelu(g(mod.net, pre + "net.", x) + g(mod.skip, pre + "skip.", x)),
}


def encoder_from_config(
    cfg: EncoderConfig, *, num_classes: int, image_size: int, in_channels: int,
    identities: list[str] | None = None, colormap: str = "jet",
) -> SpectrogramEncoder:
    """Build an encoder from an ``EncoderConfig`` plus the data description (sizes, label map)."""
    return SpectrogramEncoder(
        kind=cfg.kind,
        in_channels=in_channels,
        image_size=image_size,
        num_classes=num_classes,
        embed_dim=cfg.embed_dim,
        cnn_channels=list(cfg.channels),
        doppler_bins=cfg.doppler_bins,
        patch_size=cfg.patch_size,
        vit_patches=cfg.vit_patches,
        depth=cfg.depth,
        heads=cfg.heads,
        mlp_ratio=cfg.mlp_ratio,
        dropout=cfg.dropout,
        identities=identities,
        data_size=image_size,
        channels=in_channels,
        colormap=colormap,
    )


def load_encoder(path: Path | str, device: str | torch.device = "cpu") -> SpectrogramEncoder:
    """Load a saved encoder directory (eval mode) with a clear error for missing/foreign directories."""
    path = Path(path)
    if not path.is_dir():
        raise DopplerDiffError(f"encoder directory '{path}' does not exist (train one with `train-encoder`)")
    meta = pretrained_config(path, "encoder")
    if meta.get("_class_name") != ENCODER_CLASS:
        raise DopplerDiffError(
            f"'{path}' holds a {meta.get('_class_name', 'unknown')} model, not a {ENCODER_CLASS}"
        )
    if not any(path.glob("*.safetensors")):
        raise DopplerDiffError(f"encoder directory '{path}' has no weights (*.safetensors)")
    if meta.get("arch_version", 1) != ARCH_VERSION:
        raise DopplerDiffError(
            f"encoder '{path}' was saved with architecture version {meta.get('arch_version', 1)}; this "
            f"dopplerdiff uses version {ARCH_VERSION}: retrain it with `train-encoder`"
        )
    with loadable_weights(path, "encoder"):
        model = SpectrogramEncoder.from_pretrained(path)
    return model.to(device).eval()


def frozen_features(path: Path | str, device: str | torch.device = "cpu") -> Callable[[Tensor], Tensor]:
    """The saved encoder's ``features`` as a frozen function of images in [-1, 1] (gradients flow to the
    input only): the first stage's feature loss."""
    enc = load_encoder(path, device).requires_grad_(False)
    return enc.features
