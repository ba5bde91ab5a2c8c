"""Train the diffusion decoder (``decoder.kind: diffusion``) on a run's cached latents with the shared loop.

Pairs come from the TRAIN split only: the cached posterior of each window (at ``data.size``; a posterior
sample per draw with ``decoder.sample_posterior``, in model space ``(z - shift) * scale``) and the same
window loaded at the decoder's target size (``decoder.size``; larger than ``data.size`` makes an upsampler).
With ``decoder.time_shift`` latent and image are rolled together along time.

Loss: MSE to the epsilon or v target of the decoder's DDPM schedule at uniform timesteps. Validation (EMA
weights): a fixed-noise loss on validation pairs, PSNR of the decoded validation windows against the real
ones (beside the VAE decoder's), and ``grid.png`` (real / VAE decoder / diffusion decoder).

Outputs: RUN/decoder (the ``DiffusionDecoder``, config.yaml, manifest.json), RUN/train/decoder (checkpoints,
log.jsonl, metrics.json), the decoder section of RUN/config.yaml and, when RUN/pipeline exists, the pipeline
re-saved with the decoder as its ``decoder`` subfolder (``train_diffusion`` attaches RUN/decoder itself when
it runs later: the run's config now says decoder.kind: diffusion).
"""

from __future__ import annotations

import dataclasses
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import Dataset

from dopplerdiff.config import Config, saved_config
from dopplerdiff.data.contact import save_grid
from dopplerdiff.data.images import to_unit
from dopplerdiff.data.latents import load_latents, read_latent_info, to_model_space
from dopplerdiff.data.run_data import prepare_run_data
from dopplerdiff.errors import ConfigError, DopplerDiffError
from dopplerdiff.models.autoencoder import decode as vae_decode
from dopplerdiff.models.autoencoder import load_autoencoder
from dopplerdiff.models.decoder import DiffusionDecoder, build_decoder, load_decoder
from dopplerdiff.models.denoiser import count_parameters
from dopplerdiff.pipelines.components import load_parts
from dopplerdiff.pipelines.pipeline_dopplerdiff import DopplerDiffPipeline
from dopplerdiff.train.loop import TrainStage, find_checkpoints, train_loop
from dopplerdiff.train.losses import psnr_ssim
from dopplerdiff.train.resume import plan_resume, stage_record
from dopplerdiff.train.run_pipeline import LOCK_WAIT_S, resave_pipeline
from dopplerdiff.utils.io import atomic_dir, run_lock, write_json, write_manifest
from dopplerdiff.utils.rundir import RunDir

log = logging.getLogger(__name__)
VAL_LOSS_MAX = 64


class DecoderPairs(Dataset):
    """Items ``{"latents": (C, h, w) model space, "pixel_values": (C_img, S, S) in [-1, 1]}``."""

    def __init__(self, mean: Tensor, std: Tensor, images: Tensor, scale: float, shift: float,
                 sample: bool = True, time_shift: bool = False):
        if not len(mean) == len(std) == len(images):
            raise DopplerDiffError(f"{len(mean)} latents but {len(images)} images for the decoder pairs")
        self.mean, self.std, self.images = mean, std, images
        self.scale, self.shift, self.sample, self.time_shift = scale, shift, sample, time_shift

    def __len__(self) -> int:
        return int(self.mean.shape[0])

    def __getitem__(self, i: int) -> dict[str, Tensor]:
        z, x = self.mean[i], self.images[i]
        if self.sample:
            z = z + self.std[i] * torch.randn_like(z)
        if self.time_shift:  # one shift in latent columns = (image width / latent width) image columns
            k = int(torch.randint(0, z.shape[-1], ()))
            z = torch.roll(z, k, dims=-1)
            x = torch.roll(x, k * (x.shape[-1] // z.shape[-1]), dims=-1)
        return {"latents": to_model_space(z, self.scale, self.shift), "pixel_values": x}


def decoder_loss(decoder: nn.Module, cond: Tensor, x: Tensor, noise_scheduler: Any, num_train_timesteps: int,
                 generator: torch.Generator | None = None) -> Tensor:
    """MSE of the decoder's epsilon / v prediction on images ``x`` noised at uniform timesteps."""
    noise = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
    t = torch.randint(0, num_train_timesteps, (x.shape[0],), generator=generator, device=x.device)
    noisy = noise_scheduler.add_noise(x, noise, t)
    eps = noise_scheduler.config.prediction_type == "epsilon"
    target = noise if eps else noise_scheduler.get_velocity(x, noise, t)
    return F.mse_loss(decoder(noisy, t, cond).float(), target.float())


class DecoderStage(TrainStage):
    """The shared loop's view of diffusion-decoder training."""

    def __init__(self, decoder: DiffusionDecoder, vae: nn.Module, val: DecoderPairs, n_show: int,
                 colormap: str):
        self.decoder, self.vae = decoder, vae.eval().requires_grad_(False)
        self.noise_scheduler = decoder.noise_scheduler()
        self.val, self.n_show, self.colormap = val, n_show, colormap

    def modules(self) -> dict[str, nn.Module]:
        return {"decoder": self.decoder}

    def _cond(self, z: Tensor) -> Tensor:
        """Conditioning channels (the VAE image only when the decoder is configured for it)."""
        dec = self.unwrapped("decoder")
        vae_image = None
        if dec.config.vae_image:
            with torch.no_grad():
                vae_image = vae_decode(self.vae.to(z.device), z).clamp(-1, 1)
        return dec.condition(z, vae_image)

    def loss(self, batch: dict[str, Tensor], step: int) -> tuple[Tensor, dict[str, float]]:
        cond = self._cond(batch["latents"])
        n = int(self.noise_scheduler.config.num_train_timesteps)
        return decoder_loss(self.model("decoder"), cond, batch["pixel_values"], self.noise_scheduler, n), {}

    def validate(self, step: int, out_dir: Path) -> dict[str, float]:
        if len(self.val) == 0:
            return {}
        dev, dec = self.device, self.unwrapped("decoder")
        z, x = self.val.mean[:VAL_LOSS_MAX], self.val.images[:VAL_LOSS_MAX]
        z = to_model_space(z, self.val.scale, self.val.shift).to(dev)
        gen = torch.Generator(device=dev).manual_seed(1234)
        n = int(self.noise_scheduler.config.num_train_timesteps)
        loss = decoder_loss(dec, self._cond(z), x.to(dev), self.noise_scheduler, n, gen)
        metrics = {"val_loss": float(loss)}
        if self.n_show:
            metrics.update(self._show(dec, z[: self.n_show], x[: self.n_show], out_dir))
        return metrics

    def _show(self, dec: DiffusionDecoder, z: Tensor, x: Tensor, out_dir: Path) -> dict[str, float]:
        """PSNR of both decoders on a few validation windows, and the grid real / VAE / diffusion."""
        vae_out = vae_decode(self.vae, z).clamp(-1, 1)
        vae_img = F.interpolate(vae_out.float().cpu(), size=x.shape[-2:], mode="bicubic",
                                align_corners=False).clamp(-1, 1)  # the upsampler's baseline
        gen = torch.Generator(device=self.device).manual_seed(0)
        diff = dec.decode(z, vae_out if dec.config.vae_image else None, generator=gen).float().cpu()
        real01 = to_unit(x.float())
        rows = [real01, to_unit(vae_img), to_unit(diff)]
        save_grid(out_dir / "grid.png", [r.numpy() for r in rows], self.colormap,
                  ["real", "VAE decoder", "diffusion decoder"])
        return {"val_psnr": psnr_ssim(rows[2], real01)[0], "val_psnr_vae": psnr_ssim(rows[1], real01)[0]}


def check_decoder_run(run: Path, config: Config, resume: str | None) -> dict[str, Any]:
    """RUN/latents/info.json of a run ready for decoder training; one clear error otherwise."""
    if config.decoder.kind != "diffusion":
        raise ConfigError(f"decoder.kind is '{config.decoder.kind}': only a diffusion decoder is trained "
                          "(set decoder.kind=diffusion)")
    rd = RunDir(run)
    if not rd.marker("autoencoder").is_file():
        raise DopplerDiffError(f"a diffusion decoder needs a trained autoencoder, and run '{run}' has none "
                               f"('{rd.autoencoder}'); run `dopplerdiff train-autoencoder` first")
    info = read_latent_info(run)  # names `dopplerdiff cache-latents` when missing
    if resume is None and (find_checkpoints(rd.work("decoder")) or rd.decoder.exists()):
        raise DopplerDiffError(f"run '{run}' already has decoder training output; pass --resume latest to "
                               "continue or use a new run directory")
    return info


def _images(run: Path, config: Config, files: list[str], size: int, progress: bool) -> Tensor:
    """The windows ``files`` of the run's data at ``size`` (the decoder's target), in [-1, 1]."""
    ds, _ = prepare_run_data(run, None, dataclasses.replace(config.data, size=size), progress=progress)
    pos = {f: i for i, f in enumerate(ds.files)}
    missing = [f for f in files if f not in pos]
    if missing:
        raise DopplerDiffError(f"{len(missing)} cached window(s) are not in the run's data (e.g. "
                               f"{missing[0]}); rebuild the cache: `dopplerdiff cache-latents --overwrite`")
    return torch.from_numpy(np.ascontiguousarray(ds.images[[pos[f] for f in files]]))


def _pairs(run: Path, config: Config, info: dict[str, Any], split: str, size: int, progress: bool,
           augment: bool) -> DecoderPairs:
    t = load_latents(run, split)
    images = _images(run, config, list(info["files"][split]), size, progress)
    d = config.decoder
    scale, shift = float(info["scaling_factor"]), float(info["shift_factor"])
    return DecoderPairs(t["mean"], t["std"], images, scale, shift, sample=augment and d.sample_posterior,
                        time_shift=augment and d.time_shift)


def attach_decoder(run: Path, decoder: DiffusionDecoder | None = None) -> Path | None:
    """Re-save RUN/pipeline with RUN/decoder (or ``decoder``) as its ``decoder`` subfolder, keeping every
    other part (enrolled identities, enrolled.json, config.yaml, ...); None when the run has no pipeline."""
    run = Path(run)

    def build(current: Path | None) -> tuple[Any, Any] | None:
        if current is None:
            return None
        parts = load_parts(current)
        parts["decoder"] = decoder if decoder is not None else load_decoder(RunDir(run).decoder)
        return DopplerDiffPipeline(**parts), lambda tmp: None

    return resave_pipeline(run, build)


def record_decoder(run: Path, config: Config) -> None:
    """Record the trained decoder's settings in RUN/config.yaml, so that later stages read from the run
    that it has a diffusion decoder (``train-decoder`` sets decoder.kind only as an override)."""
    with run_lock(run, timeout=LOCK_WAIT_S):
        stored = saved_config(run)
        if stored is None or stored.decoder != config.decoder:
            dataclasses.replace(stored or config, decoder=config.decoder).save(RunDir(run).config)


def train_decoder(run: Path, config: Config, *, resume: str | None = None, progress: bool = True) -> Path:
    """Train the diffusion decoder of RUN; write RUN/decoder (+ RUN/pipeline/decoder); return RUN/decoder."""
    run, d = Path(run), config.decoder
    info = check_decoder_run(run, config, resume)
    record = stage_record("decoder", decoder=d, data=config.data)
    rd = RunDir(run)
    outputs = [rd.decoder] + ([rd.pipeline / "decoder"] if rd.pipeline.is_dir() else [])
    resume, finished = plan_resume(resume, rd.work("decoder"), record, outputs, d.train.steps)
    if finished:
        return rd.decoder
    size = d.target_size(config.data.size)
    c, h, _ = (int(v) for v in info["latent_shape"][-3:])
    torch.manual_seed(d.train.seed if d.train.seed else config.seed)
    decoder = build_decoder(d, config.data.channels, c, h, size)
    train_set = _pairs(run, config, info, "train", size, progress, augment=True)
    val_set = _pairs(run, config, info, "val", size, False, augment=False)
    vae = load_autoencoder(rd.autoencoder)
    stage = DecoderStage(decoder, vae, val_set, min(d.val_images, len(val_set)), config.data.colormap)
    params = count_parameters(decoder)
    log.info("decoder: %.2fM params, %d train pairs, latents %s -> images %dx%d", params / 1e6,
             len(train_set), tuple(info["latent_shape"]), size, size)
    start = time.time()
    result = train_loop(stage, train_set, d.train, rd.work("decoder"), resume=resume,
                        progress=progress, desc="decoder", record=record)
    if result.accelerator is not None and not result.accelerator.is_main_process:
        return rd.decoder
    trained = result.modules["decoder"].eval()
    manifest = {"run": str(run), "step": result.step, "params": params, "size": size,
                "latent_shape": list(info["latent_shape"]), "split": "train"}
    with atomic_dir(rd.decoder, overwrite=resume is not None) as tmp:
        trained.save_pretrained(tmp)
        config.save(tmp / "config.yaml")
        write_manifest(tmp, kind="decoder", **manifest)
    record_decoder(run, config)
    attach_decoder(run, trained)
    write_json(rd.work("decoder") / "metrics.json", {
        "step": result.step, "wall_s": round(time.time() - start, 1), "params": params, "val": result.val,
        "final_loss": result.history[-1].get("loss") if result.history else None,
    })
    return rd.decoder
