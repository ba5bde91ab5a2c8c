"""PatchGAN discriminator (pix2pix / VQGAN style) for the optional adversarial autoencoder loss."""

from __future__ import annotations

import math

from torch import Tensor, nn


class PatchDiscriminator(nn.Module):
    """Conv(4x4, stride 2) stack -> one logit per patch.

    GroupNorm instead of BatchNorm: batch statistics would differ between processes and micro-batches,
    and the batches on a CPU are small. ``n_layers`` defaults to what the image size allows (>= 4x4 output).
    """

    def __init__(self, in_channels: int = 1, base: int = 64, n_layers: int | None = None, size: int = 256):
        super().__init__()
        if n_layers is None:
            n_layers = max(1, min(3, int(math.log2(max(size, 8))) - 3))
        layers: list[nn.Module] = [nn.Conv2d(in_channels, base, 4, 2, 1), nn.LeakyReLU(0.2, inplace=True)]
        ch = base
        for i in range(1, n_layers + 1):
            out = base * min(2**i, 8)
            stride = 2 if i < n_layers else 1
            layers += [
                nn.Conv2d(ch, out, 4, stride, 1, bias=False),
                nn.GroupNorm(min(32, out // 4), out),
                nn.LeakyReLU(0.2, inplace=True),
            ]
            ch = out
        layers.append(nn.Conv2d(ch, 1, 4, 1, 1))
        self.net = nn.Sequential(*layers)
        self.apply(_init)

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


def _init(m: nn.Module) -> None:
    if isinstance(m, nn.Conv2d):
        nn.init.normal_(m.weight, 0.0, 0.02)
        if m.bias is not None:
            nn.init.zeros_(m.bias)
    elif isinstance(m, nn.GroupNorm):
        nn.init.normal_(m.weight, 1.0, 0.02)
        nn.init.zeros_(m.bias)
