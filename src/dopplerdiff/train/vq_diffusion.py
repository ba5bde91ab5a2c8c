"""Train ``diffusion.backbone: vq-diffusion``: discrete diffusion over a VQ run's cached code indices.

Data: RUN/latents/{train,val}.safetensors ``indices`` (written by ``cache-latents`` for a VQModel), the
code the VQModel picks at every latent position, row-major as (h*w,) sequences.

Loss of one batch (VQ-Diffusion, Gu et al. 2022, without their importance sampling of t): ids dropped to the
null identity K with probability ``condition.dropout`` per sample; a timestep t per sample, uniform over the
chain ``0..T-1`` (``diffusion.vq.num_train_timesteps``); ``x_t ~ q(x_t | x_0)`` of ``VQDiffusionScheduler``'s
mask-and-replace chain (a code is masked with probability ``ctt_t``, replaced by a uniform code with
``K_c * btt_t``, kept otherwise); the transformer predicts ``log p(x_0 | x_t)``. Then

* variational term: for t > 0, ``KL(q(x_{t-1} | x_t, x_0) || p(x_{t-1} | x_t))`` per position, both
  posteriors from the scheduler's ``q_posterior`` (with the one-hot x_0, and with the predicted x_0); for
  t = 0 the decoder term ``-log p(x_0 | x_1)``; averaged over positions;
* auxiliary term (weight ``diffusion.vq.aux_weight``): the cross-entropy ``-log p(x_0 | x_t)`` on the
  corrupted positions (masked or replaced by the forward draw).

Validation (EMA weights): the same loss with fixed corruption and timesteps on up to 256 validation windows,
and ``grid.png``: per shown identity, real validation windows (decoded cached codes) above generated ones.
At the end: RUN/diffusion/{denoiser,condition_encoder} and RUN/pipeline (a DopplerVQDiffusionPipeline).
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from diffusers import VQModel
from diffusers.schedulers.scheduling_vq_diffusion import VQDiffusionScheduler, index_to_log_onehot
from torch import Tensor, nn

from dopplerdiff.config import Config
from dopplerdiff.config.diffusion import DiffusionConfig
from dopplerdiff.data.contact import save_grid
from dopplerdiff.data.images import to_unit
from dopplerdiff.data.latents import CodeDataset, load_codes, read_latent_info
from dopplerdiff.data.run_data import read_run_data
from dopplerdiff.errors import DopplerDiffError
from dopplerdiff.models.autoencoder import load_autoencoder
from dopplerdiff.models.condition import IdentityConditionEncoder, build_condition_encoder
from dopplerdiff.models.denoiser import count_parameters
from dopplerdiff.models.vq_transformer import build_vq_transformer, log_p_x0
from dopplerdiff.pipelines.pipeline_vq_diffusion import DopplerVQDiffusionPipeline, vq_scheduler
from dopplerdiff.train.loop import TrainStage, find_checkpoints, train_loop
from dopplerdiff.train.resume import plan_resume, stage_record
from dopplerdiff.train.run_pipeline import resave_pipeline
from dopplerdiff.train.validation import val_identities
from dopplerdiff.utils.io import atomic_dir, write_json, write_manifest
from dopplerdiff.utils.rundir import RunDir

log = logging.getLogger(__name__)
VAL_LOSS_MAX = 256


def corrupt(x0: Tensor, t: Tensor, sched: VQDiffusionScheduler, generator: torch.Generator | None = None
            ) -> tuple[Tensor, Tensor]:
    """Draw ``x_t ~ q(x_t | x_0)`` per sample -> (x_t (B, N), corrupted (B, N) bool: masked or replaced)."""
    k = sched.num_embed - 1
    dev = x0.device
    ctt = sched.log_cumprod_ct.to(dev)[t].exp()[:, None]
    ktt = (sched.log_cumprod_bt.to(dev)[t].exp() * k)[:, None]
    u = torch.rand(x0.shape, generator=generator, device=dev)
    masked = u < ctt
    replaced = ~masked & (u < ctt + ktt)
    random_codes = torch.randint(0, k, x0.shape, generator=generator, device=dev)
    xt = torch.where(masked, torch.full_like(x0, k), torch.where(replaced, random_codes, x0))
    return xt, masked | replaced


def vb_terms(log_p0: Tensor, x0: Tensor, xt: Tensor, t: Tensor, sched: VQDiffusionScheduler) -> Tensor:
    """(B, N) variational terms: KL of the posteriors for t > 0, ``-log p(x_0)`` for t = 0."""
    k = sched.num_embed - 1
    out = -log_p0.gather(1, x0[:, None]).squeeze(1)  # the t = 0 decoder term (kept where t == 0)
    log_x0 = index_to_log_onehot(x0, k)
    for step in t.unique().tolist():
        if step == 0:
            continue
        rows = (t == step).nonzero().squeeze(1)
        log_q = F.log_softmax(sched.q_posterior(log_x0[rows], xt[rows], step), dim=1)
        log_p = F.log_softmax(sched.q_posterior(log_p0[rows], xt[rows], step), dim=1)
        out[rows] = (log_q.exp() * (log_q - log_p)).sum(dim=1)
    return out


def vq_diffusion_loss(model: nn.Module, condition_encoder: nn.Module, sched: VQDiffusionScheduler, x0: Tensor,
                      ids: Tensor, aux_weight: float, generator: torch.Generator | None = None
                      ) -> tuple[Tensor, dict[str, float]]:
    """The batch loss (``ids`` already dropped) and its terms; ``generator`` fixes t and the corruption."""
    big_t = int(sched.config.num_train_timesteps)
    t = torch.randint(0, big_t, (x0.shape[0],), generator=generator, device=x0.device)
    xt, corrupted = corrupt(x0, t, sched, generator)
    log_p0 = log_p_x0(model, xt, t, condition_encoder(ids)).float().clamp(min=-70)
    vb = vb_terms(log_p0, x0, xt, t, sched).mean()
    nll = -log_p0.gather(1, x0[:, None]).squeeze(1)
    aux = (nll * corrupted).sum() / corrupted.sum().clamp(min=1)
    return vb + aux_weight * aux, {"vb": float(vb.detach()), "aux": float(aux.detach())}


class VQDiffusionStage(TrainStage):
    """The shared loop's view of discrete diffusion training."""

    def __init__(self, cfg: DiffusionConfig, transformer: nn.Module,
                 condition_encoder: IdentityConditionEncoder, vae: VQModel, val_codes: Tensor,
                 val_labels: Tensor, identities: list[str], colormap: str):
        self.cfg = cfg
        self.transformer, self.condition_encoder = transformer, condition_encoder
        self.vae = vae.eval().requires_grad_(False)
        self.sched = vq_scheduler(int(vae.config.num_vq_embeddings), cfg.vq.num_train_timesteps)
        self.val_codes, self.val_labels = val_codes, val_labels
        self.identities, self.colormap = identities, colormap

    def modules(self) -> dict[str, nn.Module]:
        return {"denoiser": self.transformer, "condition_encoder": self.condition_encoder}

    def loss(self, batch: Any, step: int) -> tuple[Tensor, dict[str, float]]:
        x0, labels = batch["codes"].long(), batch["labels"].long()
        ids = self.condition_encoder.drop(labels, self.cfg.condition.dropout)
        loss, terms = vq_diffusion_loss(self.model("denoiser"), self.model("condition_encoder"), self.sched,
                                        x0, ids, self.cfg.vq.aux_weight)
        return loss, {**terms, "null_frac": float((ids == self.condition_encoder.null_id).float().mean())}

    def pipeline(self, den: nn.Module | None = None, cond_enc: nn.Module | None = None,
                 meta: dict[str, Any] | None = None) -> DopplerVQDiffusionPipeline:
        """A pipeline over the given (default: the live, unwrapped) modules."""
        meta = meta or {}
        pipe = DopplerVQDiffusionPipeline(
            self.vae, den if den is not None else self.unwrapped("denoiser"),
            cond_enc if cond_enc is not None else self.unwrapped("condition_encoder"), self.sched,
            identities=self.identities, colormap=self.colormap, channels=int(meta.get("channels", 1)),
            native_size=meta.get("native_size"), truncation_rate=self.cfg.vq.truncation_rate,
        )
        pipe.set_progress_bar_config(disable=True)
        return pipe

    def validate(self, step: int, out_dir: Path) -> dict[str, float]:
        device = self.device
        self.vae.to(device)
        x0 = self.val_codes[:VAL_LOSS_MAX].to(device)
        ids = self.val_labels[:VAL_LOSS_MAX].to(device)
        gen = torch.Generator(device=device).manual_seed(1234)
        loss, _ = vq_diffusion_loss(self.unwrapped("denoiser"), self.unwrapped("condition_encoder"),
                                    self.sched, x0, ids, self.cfg.vq.aux_weight, generator=gen)
        pipe = self.pipeline()
        shown = val_identities(self.val_labels, len(self.identities), self.cfg.val_identities)
        n, side = self.cfg.val_samples, pipe.latent_shape[0]
        rows, names = [], []
        for k in shown:
            real = self.val_codes[self.val_labels == k][:n].to(device)
            if len(real):
                rows.append(to_unit(pipe.decode_codes(real.view(-1, side, side)).float()).cpu().numpy())
                names.append(f"{self.identities[k]} real")
            gens = [torch.Generator(device=device).manual_seed(i) for i in range(n)]
            codes = pipe.sample_codes(torch.full((n,), k, device=device), self.cfg.num_inference_steps,
                                      self.cfg.guidance_scale, gens)
            rows.append(to_unit(pipe.decode_codes(codes).float()).cpu().numpy())
            names.append(f"{self.identities[k]} generated")
        save_grid(out_dir / "grid.png", rows, self.colormap, names)
        return {"val_loss": float(loss)}


def _check_inputs(run: Path, cfg: DiffusionConfig, resume: str | None) -> dict[str, Any]:
    info = read_latent_info(run)
    if info.get("kind") != "vq":
        raise DopplerDiffError(
            f"diffusion.backbone: vq-diffusion needs the code indices of a VQModel, but the latents of "
            f"'{run}' come from a '{info.get('kind')}' autoencoder (autoencoder.kind: vq)"
        )
    load_codes(run, "train")  # a clear error for a cache without indices
    rd = RunDir(run)
    if resume is None and (find_checkpoints(rd.work("diffusion")) or rd.pipeline.exists()):
        raise DopplerDiffError(f"run '{run}' already has diffusion training output; pass --resume latest to "
                               "continue or use a new run directory")
    return info


def _build_stage(run: Path, config: Config, info: dict[str, Any], colormap: str) -> VQDiffusionStage:
    cfg, identities = config.diffusion, list(info["identities"])
    vae = load_autoencoder(RunDir(run).autoencoder)
    if not isinstance(vae, VQModel):
        raise DopplerDiffError(
            f"'{RunDir(run).autoencoder}' is not a VQModel; vq-diffusion needs autoencoder.kind: vq"
        )
    val = CodeDataset(run, "val")
    torch.manual_seed(cfg.train.seed if cfg.train.seed else config.seed)
    transformer = build_vq_transformer(cfg, int(vae.config.num_vq_embeddings), int(info["latent_shape"][-1]))
    condition_encoder = build_condition_encoder(cfg, len(identities), cfg.backbone)
    return VQDiffusionStage(cfg, transformer, condition_encoder, vae, val.codes, val.labels, identities,
                            colormap)


def _save_outputs(run: Path, config: Config, stage: VQDiffusionStage, modules: dict[str, nn.Module],
                  meta: dict[str, Any], manifest: dict[str, Any], overwrite: bool) -> None:
    den, cond_enc = modules["denoiser"], modules["condition_encoder"]
    with atomic_dir(RunDir(run).diffusion, overwrite=overwrite) as tmp:
        den.save_pretrained(tmp / "denoiser")
        cond_enc.save_pretrained(tmp / "condition_encoder")
        config.save(tmp / "config.yaml")
        write_manifest(tmp, kind="diffusion", **manifest)
    stage.vae.to(den.device)
    pipe = stage.pipeline(den, cond_enc, {"channels": meta.get("channels", config.data.channels),
                                     "native_size": meta.get("native_size")})

    def records(tmp: Path) -> None:
        config.save(tmp / "config.yaml")
        write_manifest(tmp, kind="pipeline", scheduler="vq-diffusion",
                       weights="ema" if config.diffusion.train.ema else "raw", **manifest)

    resave_pipeline(run, lambda current: (pipe, records))  # under the run's lock, other records kept


def train_vq_diffusion(run: Path, config: Config, *, resume: str | None = None,
                       progress: bool = True) -> Path:
    """Train on RUN/latents code indices; write RUN/diffusion, RUN/pipeline, RUN/train/diffusion."""
    run, cfg = Path(run), config.diffusion
    info = _check_inputs(run, cfg, resume)
    rd = RunDir(run)
    work = rd.work("diffusion")
    record = stage_record("vq-diffusion", diffusion=cfg)
    resume, finished = plan_resume(resume, work, record, [rd.diffusion, rd.pipeline], cfg.train.steps)
    if finished:
        return rd.pipeline
    meta = read_run_data(run).get("meta", {})
    train_ds = CodeDataset(run, "train")
    stage = _build_stage(run, config, info, str(meta.get("colormap", config.data.colormap)))
    params = {"denoiser": count_parameters(stage.transformer),
              "condition_encoder": count_parameters(stage.condition_encoder)}
    log.info("diffusion: vq-diffusion transformer %.2fM params, %d train windows of %s codes (codebook %d)",
             params["denoiser"] / 1e6, len(train_ds), "x".join(map(str, train_ds.shape)),
             stage.vae.config.num_vq_embeddings)
    start = time.time()
    result = train_loop(stage, train_ds, cfg.train, work, resume=resume, progress=progress,
                        desc="vq-diffusion", record=record)
    acc = result.accelerator
    if acc is not None and not acc.is_main_process:
        return rd.pipeline
    manifest = {"run": str(run), "step": result.step, "label_map": stage.identities, "params": params,
                "latent_shape": list(info["latent_shape"]), "backbone": "vq-diffusion",
                "selected_step": result.step}
    _save_outputs(run, config, stage, result.modules, meta, manifest, overwrite=resume is not None)
    write_json(work / "metrics.json", {
        "step": result.step, "wall_s": round(time.time() - start, 1), "params": params, "val": result.val,
        "selected": None, "final_loss": result.history[-1].get("loss") if result.history else None,
    })
    return rd.pipeline
