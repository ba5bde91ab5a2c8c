"""First stage: train AutoencoderKL / VQModel with the shared loop, measure the latent scale (the cache of
latents is ``train.latents``)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from accelerate.utils import set_seed
from diffusers import VQModel
from torch import Tensor, nn

from dopplerdiff.config import Config, saved_config
from dopplerdiff.config.autoencoder import AutoencoderConfig
from dopplerdiff.data.contact import save_grid
from dopplerdiff.data.dataset import ImageDataset
from dopplerdiff.data.images import to_unit
from dopplerdiff.data.run_data import prepare_run_data
from dopplerdiff.errors import DopplerDiffError
from dopplerdiff.models.autoencoder import (
    Autoencoder,
    build_autoencoder,
    check_architecture,
    measure_latent_scale,
    reconstruct,
)
from dopplerdiff.models.discriminator import PatchDiscriminator
from dopplerdiff.models.encoder import frozen_features
from dopplerdiff.train import losses as L
from dopplerdiff.train.loop import TrainStage, find_checkpoints, frozen, make_accelerator, train_loop
from dopplerdiff.train.resume import plan_resume, stage_record
from dopplerdiff.utils.io import atomic_dir, check_run_output, read_json_if_exists, write_json, write_manifest
from dopplerdiff.utils.rundir import RunDir

log = logging.getLogger(__name__)
ARCH_KEYS = ("kind", "block_out_channels", "layers_per_block", "latent_channels", "num_vq_embeddings",
             "norm_num_groups")
DATA_KEYS = ("size", "channels", "colormap")
FeatureFn = Callable[[Tensor], Tensor]


class AutoencoderTrainModule(nn.Module):
    """Wraps the autoencoder so one ``forward`` does encode + decode (what DDP needs to sync gradients).

    VQ: quantisation is done here (nearest code, straight-through) to get the codebook/commitment terms
    and code indices; ``code_usage`` is a running distribution over codes (a buffer, so it is checkpointed).
    """

    def __init__(self, vae: Autoencoder):
        super().__init__()
        self.vae = vae
        if isinstance(vae, VQModel):
            k = vae.config.num_vq_embeddings
            self.register_buffer("code_usage", torch.full((k,), 1.0 / k))

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        if not isinstance(self.vae, VQModel):
            post = self.vae.encode(x).latent_dist
            recon = self.vae.decode(post.sample()).sample
            return {"recon": recon, "kl": L.kl_loss(post.mean, post.logvar)}
        h = self.vae.encode(x).latents
        flat = h.permute(0, 2, 3, 1).reshape(-1, h.shape[1])
        emb = self.vae.quantize.embedding
        with torch.no_grad():
            idx = torch.cdist(flat.float(), emb.weight.float()).argmin(1)
        codes = emb(idx).view(h.shape[0], h.shape[2], h.shape[3], h.shape[1]).permute(0, 3, 1, 2)
        codebook, commitment = L.vq_losses(h, codes)
        zq = h + (codes - h).detach()
        recon = self.vae.decode(zq, force_not_quantize=True).sample
        return {"recon": recon, "codebook": codebook, "commitment": commitment, "indices": idx}


def code_usage_stats(counts: Tensor) -> dict[str, float]:
    """Perplexity and fraction of codes used, from a code histogram."""
    p = counts.float() / counts.sum().clamp_min(1)
    ent = -(p[p > 0] * p[p > 0].log()).sum()
    return {"perplexity": float(ent.exp()), "used_frac": float((counts > 0).float().mean())}


class AutoencoderStage(TrainStage):
    """Losses: L1/MSE + spectral + KL (or VQ codebook/commitment) [+ feature] [+ adaptive hinge GAN]."""

    def __init__(self, vae: Autoencoder, cfg: AutoencoderConfig, val_images: Tensor, colormap: str,
                 feature_fn: FeatureFn | None = None, seed: int = 0):
        self.cfg, self.loss_cfg = cfg, cfg.loss
        self.net = AutoencoderTrainModule(vae)
        self.vq = isinstance(vae, VQModel)
        self.val_images, self.colormap, self.feature_fn, self.seed = val_images, colormap, feature_fn, seed
        if self.loss_cfg.feature > 0 and feature_fn is None:
            raise DopplerDiffError("autoencoder.loss.feature > 0 needs a feature extractor (feature_fn)")
        self.disc = None
        if self.loss_cfg.adversarial > 0:
            self.disc = PatchDiscriminator(
                vae.config.in_channels, cfg.disc_channels, size=vae.config.sample_size
            )
        self._restarted_at = -1

    def modules(self) -> dict[str, nn.Module]:
        return {"autoencoder": self.net}

    def aux_modules(self) -> dict[str, nn.Module]:
        return {"discriminator": self.disc} if self.disc is not None else {}

    def build_aux_optimizer(self, params, cfg):
        return torch.optim.AdamW(params, lr=cfg.lr, betas=(0.5, 0.9), weight_decay=cfg.weight_decay)

    def _gan_on(self, step: int) -> bool:
        return self.disc is not None and step >= self.loss_cfg.adversarial_start

    def loss(self, batch: dict[str, Tensor], step: int) -> tuple[Tensor, dict[str, float]]:
        x, lc = batch["pixel_values"], self.loss_cfg
        if self.vq:
            self._maybe_restart_codes(x, step)
        out = self.model("autoencoder")(x)
        recon = out["recon"].float()
        nll, terms = L.reconstruction_loss(recon, x, lc.l1, lc.mse)
        if lc.spectral > 0:
            spec = L.spectral_loss(recon, x, lc.spectral_patch)
            nll = nll + lc.spectral * spec
            terms["spectral"] = spec.item()
        if self.feature_fn is not None and lc.feature > 0:
            with torch.no_grad():
                target_feat = self.feature_fn(x)
            feat = F.mse_loss(self.feature_fn(recon), target_feat)
            nll = nll + lc.feature * feat
            terms["feature"] = feat.item()
        total = nll
        if self.vq:
            total = total + lc.vq_codebook * out["codebook"] + lc.vq_commitment * out["commitment"]
            terms.update(codebook=out["codebook"].item(), commitment=out["commitment"].item())
            terms.update(self._update_usage(out["indices"]))
        else:
            total = total + lc.kl * out["kl"]
            terms["kl"] = out["kl"].item()
        if self._gan_on(step):
            with frozen(self.unwrapped("discriminator")) as disc:
                g = L.generator_adv_loss(disc(recon))
            last = self.unwrapped("autoencoder").vae.decoder.conv_out.weight
            w = L.adaptive_weight(nll, g, last)
            total = total + lc.adversarial * w * g
            terms.update(g_adv=g.item(), adaptive_w=float(w))
        self._pair = (x.detach(), recon.detach())
        return total, terms

    def aux_loss(self, batch: dict[str, Tensor], step: int) -> tuple[Tensor | None, dict[str, float]]:
        if not self._gan_on(step):
            return None, {}
        real, fake = self._pair
        logits = self.model("discriminator")(torch.cat([real, fake.to(real.dtype)]))  # one pass for DDP
        d = L.hinge_d_loss(*logits.chunk(2))
        return d, {"d_loss": d.item()}

    # -- VQ codebook bookkeeping --
    def _update_usage(self, idx: Tensor) -> dict[str, float]:
        net = self.unwrapped("autoencoder")
        counts = torch.bincount(idx, minlength=net.code_usage.numel()).float()
        counts = self.accelerator.reduce(counts, "sum")  # same usage on every process
        with torch.no_grad():
            net.code_usage.mul_(0.99).add_(0.01 * counts / counts.sum().clamp_min(1))
        return code_usage_stats(counts)

    @torch.no_grad()
    def _maybe_restart_codes(self, x: Tensor, step: int) -> None:
        every = self.cfg.vq_restart_every
        if every <= 0 or step == 0 or step % every or step == self._restarted_at:
            return
        if step >= 0.9 * self.cfg.train.steps:
            return
        self._restarted_at = step  # once per optimiser step (not per micro-batch)
        net = self.unwrapped("autoencoder")
        k = net.code_usage.numel()
        dead = (net.code_usage < 0.03 / k).nonzero().flatten()
        if dead.numel() == 0:
            return
        h = net.vae.encode(x).latents
        pool = self.accelerator.gather(h.permute(0, 2, 3, 1).reshape(-1, h.shape[1]).float().contiguous())
        gen = torch.Generator().manual_seed(self.seed * 7919 + step)  # same choice on every process
        pick = torch.randint(0, pool.shape[0], (dead.numel(),), generator=gen).to(pool.device)
        noise = torch.randn(dead.numel(), pool.shape[1], generator=gen).to(pool.device) * 0.01 * pool.std()
        emb = net.vae.quantize.embedding.weight
        emb[dead] = (pool[pick] + noise).to(emb.dtype)
        net.code_usage[dead] = 1.0 / k
        log.info("step %d: re-seeded %d unused VQ codes", step, dead.numel())

    def validate(self, step: int, out_dir: Path) -> dict[str, float]:
        vae = self.unwrapped("autoencoder").vae
        metrics = evaluate_reconstruction(vae, self.val_images[: self.cfg.val_max], self.cfg.train.batch_size)
        if len(self.val_images):  # a tiny data set can have an empty validation split
            save_recon_grid(out_dir / "reconstructions.png", self.val_images[:8], vae, self.colormap)
        return {k: v for k, v in metrics.items() if isinstance(v, int | float)}


def chunks(x: Tensor, bs: int, device: torch.device) -> Iterator[Tensor]:
    """``x`` in batches of ``bs`` on ``device``."""
    for i in range(0, len(x), bs):
        yield x[i : i + bs].to(device)


class _Reiterable:
    def __init__(self, x: Tensor, bs: int, device: torch.device):
        self.x, self.bs, self.device = x, bs, device

    def __iter__(self) -> Iterator[Tensor]:
        return chunks(self.x, self.bs, self.device)


@torch.no_grad()
def evaluate_reconstruction(vae: Autoencoder, images: Tensor, batch_size: int = 32) -> dict[str, Any]:
    """PSNR/SSIM (on [0, 1]), intensity histogram comparison and (VQ) code usage on ``images`` in [-1, 1]."""
    if len(images) == 0:
        return {"count": 0}
    recons, counts = [], None
    for x in chunks(images, batch_size, vae.device):
        recons.append(reconstruct(vae, x).float().cpu())
        if isinstance(vae, VQModel):
            h = vae.encode(x).latents
            flat = h.permute(0, 2, 3, 1).reshape(-1, h.shape[1]).float()
            idx = torch.cdist(flat, vae.quantize.embedding.weight.float()).argmin(1)
            c = torch.bincount(idx.cpu(), minlength=vae.config.num_vq_embeddings)
            counts = c if counts is None else counts + c
    rec01, real01 = to_unit(torch.cat(recons)).clamp(0, 1), to_unit(images.float()).clamp(0, 1)
    psnr, ssim = L.psnr_ssim(rec01, real01)
    out: dict[str, Any] = {"count": len(images), "psnr": psnr, "ssim": ssim,
                           "l1": float((rec01 - real01).abs().mean())}
    out.update(L.histogram_comparison(real01, rec01))
    if counts is not None:
        out.update({f"vq_{k}": v for k, v in code_usage_stats(counts).items()})
    return out


@torch.no_grad()
def save_recon_grid(path: Path, images: Tensor, vae: Autoencoder, colormap: str) -> None:

    rec = reconstruct(vae, images.to(vae.device)).float().cpu()
    rows = [to_unit(images.float()).clamp(0, 1).numpy(), to_unit(rec).clamp(0, 1).numpy()]
    save_grid(path, rows, colormap, labels=["real", "reconstruction"])


def check_autoencoder_run(run: Path, cfg: Config, resume: str | None, data_root: Path | None = None) -> None:
    """Refuse output dirs that are not runs, runs of another architecture, and silent overwrites."""
    if not check_run_output(run, data_root):
        return
    old, rd = saved_config(run), RunDir(run)
    has_ae = rd.autoencoder.exists() or bool(find_checkpoints(rd.work("autoencoder")))
    if old is not None:
        pairs = [(f"data.{k}", getattr(old.data, k), getattr(cfg.data, k)) for k in DATA_KEYS]
        if has_ae:
            pairs += [(f"autoencoder.{k}", getattr(old.autoencoder, k), getattr(cfg.autoencoder, k))
                      for k in ARCH_KEYS]
        for key, was, now in pairs:
            if was != now:
                raise DopplerDiffError(
                    f"run '{run}' was made with {key}={was!r} but this command uses {now!r}; "
                    "use the same settings or a new --out"
                )
    if has_ae and resume is None:
        what = "a trained autoencoder" if rd.autoencoder.exists() else "autoencoder checkpoints"
        raise DopplerDiffError(
            f"run '{run}' already has {what}; pass --resume latest to continue it or choose a new --out"
        )


def _feature_fn(run: Path, ae: AutoencoderConfig, feature_encoder: Path | None, device: Any) -> FeatureFn:
    """The frozen encoder whose features the feature loss compares (RUN/encoder unless given)."""
    path = Path(feature_encoder) if feature_encoder is not None else RunDir(run).encoder
    if not (path / "config.json").is_file():
        raise DopplerDiffError(
            f"autoencoder.loss.feature={ae.loss.feature} needs a trained encoder, but '{path}' has none: "
            f"train it first (`dopplerdiff train-encoder --out {RunDir(run).encoder}`; `dopplerdiff run` "
            "does this itself) or pass --feature-encoder PATH"
        )
    return frozen_features(path, device)


def train_autoencoder(run: Path, cfg: Config, *, data_root: Path | None = None, resume: str | None = None,
                      progress: bool = True, feature_fn: FeatureFn | None = None,
                      feature_encoder: Path | None = None) -> dict[str, Any]:
    """Train the first stage into RUN; returns the final metrics (also RUN/train/autoencoder/metrics.json).

    With ``autoencoder.loss.feature > 0`` the reconstruction is also compared in the feature space of a
    frozen, already trained encoder (``feature_encoder``, default RUN/encoder) unless ``feature_fn`` is given.
    """
    run, ae = Path(run), cfg.autoencoder
    t0 = time.time()
    check_architecture(ae, cfg.data)
    check_autoencoder_run(run, cfg, resume, data_root)
    rd = RunDir(run)
    work = rd.work("autoencoder")
    record = stage_record("autoencoder", autoencoder=ae, data=cfg.data)
    ckpt, finished = plan_resume(resume, work, record, [rd.autoencoder], ae.train.steps)
    if finished:
        return read_json_if_exists(work / "metrics.json") or {}
    acc = make_accelerator(ae.train, work)
    if ae.loss.feature > 0 and feature_fn is None:
        feature_fn = _feature_fn(run, ae, feature_encoder, acc.device)
    if acc.is_main_process:  # writes RUN/data.json first; the others then reuse the recorded split
        ds, split = prepare_run_data(run, data_root, cfg.data, progress=progress)
    acc.wait_for_everyone()
    if not acc.is_main_process:
        ds, split = prepare_run_data(run, data_root, cfg.data)
    if len(split["train"]) == 0:
        raise DopplerDiffError(f"the training split of '{run}' is empty")
    set_seed(cfg.seed)
    vae = build_autoencoder(ae, cfg.data)
    val_images = torch.from_numpy(np.ascontiguousarray(ds.images[split["val"]]))
    stage = AutoencoderStage(vae, ae, val_images, cfg.data.colormap, feature_fn, seed=ae.train.seed)
    train_set = ImageDataset(ds, split["train"], augment=cfg.data.augment)
    res = train_loop(stage, train_set, ae.train, work, resume=ckpt, accelerator=acc, progress=progress,
                     desc=f"autoencoder ({ae.kind})", record=record)
    metrics: dict[str, Any] = {}
    if acc.is_main_process:
        vae = res.modules["autoencoder"].vae.eval()  # EMA weights when enabled
        train_images = torch.from_numpy(np.ascontiguousarray(ds.images[split["train"]]))
        stats = measure_latent_scale(vae, _Reiterable(train_images, ae.train.batch_size, vae.device))
        metrics = {"kind": ae.kind, "steps": res.step, "val": evaluate_reconstruction(vae, val_images),
                   "latent": stats, "train_wall_s": time.time() - t0,
                   "latent_shape": [ae.latent_channels] + [cfg.data.size // ae.downsample_factor] * 2}
        if len(val_images):
            save_recon_grid(work / "reconstructions.png", val_images[:8], vae, cfg.data.colormap)
        write_json(work / "metrics.json", metrics)
        with atomic_dir(rd.autoencoder, overwrite=resume is not None) as tmp:
            vae.save_pretrained(tmp)
            write_manifest(tmp, stage="autoencoder", kind=ae.kind, steps=res.step, seed=cfg.seed,
                           data_root=str(data_root or ""), identities=ds.identities,
                           scaling_factor=stats["scaling_factor"], shift_factor=stats["shift_factor"])
        if rd.latents.exists():
            log.warning("'%s' was built from the previous autoencoder; rebuild it with "
                        "cache-latents --overwrite", rd.latents)
        cfg.save(rd.config)
        write_manifest(run, stage="autoencoder", seed=cfg.seed, identities=ds.identities,
                       data_root=str(data_root or ""), profile=cfg.profile)
    acc.wait_for_everyone()
    return metrics
