"""First-stage losses: reconstruction, spectral (log 2-D FFT magnitude), KL, VQ, hinge GAN."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def reconstruction_loss(
    recon: Tensor, target: Tensor, l1: float, mse: float
) -> tuple[Tensor, dict[str, float]]:
    """``l1 * |x - y| + mse * (x - y)^2`` (means); the terms are logged unweighted."""
    diff = recon.float() - target.float()
    out = recon.new_zeros((), dtype=torch.float32)
    terms: dict[str, float] = {}
    if l1 > 0:
        v = diff.abs().mean()
        out = out + l1 * v
        terms["l1"] = v.item()
    if mse > 0:
        v = diff.pow(2).mean()
        out = out + mse * v
        terms["mse"] = v.item()
    return out, terms


def log_fft_magnitude(x: Tensor, eps: float = 1e-3) -> Tensor:
    """``log(|FFT2(x)| + eps)`` per image/channel (orthonormal, so the scale does not depend on size)."""
    return torch.log(torch.fft.fft2(x.float(), norm="ortho").abs() + eps)


def hann_patches(x: Tensor, patch: int) -> Tensor:
    """Overlapping ``patch`` x ``patch`` tiles of (B, C, H, W) at half-patch stride, each times a 2-D Hann
    window (zero on the tile's first and last row and column) -> (B * C * tiles, patch, patch)."""
    b, c, h, w = x.shape
    p = min(patch, h, w)
    tiles = F.unfold(x.float().reshape(b * c, 1, h, w), p, stride=max(1, p // 2))
    tiles = tiles.transpose(1, 2).reshape(-1, p, p)
    win = torch.hann_window(p, periodic=False, device=x.device, dtype=tiles.dtype)
    return tiles * (win[:, None] * win[None, :])


def spectral_loss(recon: Tensor, target: Tensor, patch: int = 0) -> Tensor:
    """L1 between log 2-D FFT magnitudes: penalises lost fine structure (thin lines, limb spikes)
    that pixel L1 tolerates as blur.

    ``patch`` = 0 compares whole images. The magnitude ignores where energy sits, so a decoder can then
    buy the missing high-frequency energy of a blurry reconstruction with one bright pixel at a position
    the convolutions' padding lets it find -- a corner. ``patch`` > 0 compares Hann-windowed local tiles
    instead: energy must appear where the target has it, and the image's edge pixels carry no weight.
    """
    if patch > 0:
        recon, target = hann_patches(recon, patch), hann_patches(target, patch)
    return (log_fft_magnitude(recon) - log_fft_magnitude(target)).abs().mean()


def kl_loss(mean: Tensor, logvar: Tensor) -> Tensor:
    """KL(N(mean, exp(logvar)) || N(0, 1)), summed over latent elements, batch mean (as in LDM)."""
    kl = 0.5 * (mean.float().pow(2) + logvar.float().exp() - 1.0 - logvar.float())
    return kl.flatten(1).sum(1).mean()


def vq_losses(h: Tensor, codes: Tensor) -> tuple[Tensor, Tensor]:
    """(codebook, commitment) losses of the first stage's encode output ``h`` and its nearest ``codes``."""
    codebook = F.mse_loss(codes.float(), h.detach().float())
    commitment = F.mse_loss(h.float(), codes.detach().float())
    return codebook, commitment


def hinge_d_loss(real_logits: Tensor, fake_logits: Tensor) -> Tensor:
    """Discriminator hinge loss."""
    return 0.5 * (F.relu(1.0 - real_logits.float()).mean() + F.relu(1.0 + fake_logits.float()).mean())


def generator_adv_loss(fake_logits: Tensor) -> Tensor:
    """Generator side of the hinge GAN."""
    return -fake_logits.float().mean()


def adaptive_weight(nll: Tensor, g_loss: Tensor, last_layer: Tensor, max_weight: float = 1e4) -> Tensor:
    """VQGAN's adaptive GAN weight ``|grad nll| / |grad g|`` at the decoder's last layer (detached)."""
    g_nll = torch.autograd.grad(nll, last_layer, retain_graph=True)[0]
    g_adv = torch.autograd.grad(g_loss, last_layer, retain_graph=True)[0]
    w = g_nll.norm() / (g_adv.norm() + 1e-4)
    return w.clamp(0.0, max_weight).detach()


def psnr_ssim(recon01: Tensor, target01: Tensor) -> tuple[float, float]:
    """PSNR and SSIM (torchmetrics, explicit data_range 1.0) of images already in [0, 1]."""
    from torchmetrics.functional.image import peak_signal_noise_ratio, structural_similarity_index_measure

    r, t = recon01.float().clamp(0, 1), target01.float().clamp(0, 1)
    psnr = peak_signal_noise_ratio(r, t, data_range=1.0)
    ssim = structural_similarity_index_measure(r, t, data_range=1.0)
    return float(psnr), float(ssim)  # type: ignore[arg-type]


def histogram_comparison(real01: Tensor, recon01: Tensor, bins: int = 64) -> dict[str, float]:
    """Intensity distributions of real vs reconstructed images in [0, 1].

    ``hist_l1``: L1 between normalised histograms (0 = identical, 2 = disjoint); ``intensity_w1``:
    Wasserstein-1 between the intensity distributions; ``dark_frac_*``: fraction of pixels < 0.25
    (the dark background that blurry autoencoders brighten); ``mean_*``: mean intensity.
    """
    a, b = real01.float().clamp(0, 1).flatten(), recon01.float().clamp(0, 1).flatten()
    ha = torch.histc(a, bins=bins, min=0, max=1) / a.numel()
    hb = torch.histc(b, bins=bins, min=0, max=1) / b.numel()
    w1 = (ha.cumsum(0) - hb.cumsum(0)).abs().sum() / bins
    return {
        "hist_l1": float((ha - hb).abs().sum()),
        "intensity_w1": float(w1),
        "dark_frac_real": float((a < 0.25).float().mean()),
        "dark_frac_recon": float((b < 0.25).float().mean()),
        "mean_real": float(a.mean()),
        "mean_recon": float(b.mean()),
    }
