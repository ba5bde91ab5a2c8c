"""Train the identity-conditional latent denoiser on a run's cached latents (the shared loop).

Loss of one batch: latents ``z`` (already in model space: ``(z - shift) * scale``), ids dropped to the null
identity K with probability ``condition.dropout`` per sample (and, when the run has several walking
conditions, the windows' conditions dropped to the null condition C independently, with probability
``condition.condition_dropout``), uniform timesteps of the DDPM training
schedule, MSE to the epsilon or v target, optionally weighted by min-SNR-gamma (Hang et al. 2023):
``min(snr, gamma) / snr`` for epsilon, ``min(snr, gamma) / (snr + 1)`` for v-prediction.

Validation (EMA weights, every ``val_every``): a fixed-noise denoising loss on up to 256 validation latents
(comparable across steps and runs), and ``grid.png`` with, per identity (a fixed subset of up to
``val_identities``), a row of real validation windows (decoded cached latents) above a row of generated
samples with fixed seeds.

``diffusion.backbone: vq-diffusion`` is trained by ``train.vq_diffusion`` (discrete codes), dispatched from
``train_diffusion``.

At the end the EMA modules go to RUN/diffusion/{denoiser,condition_encoder} and the full pipeline to
RUN/pipeline, each with config.yaml and manifest.json.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import torch
from diffusers.training_utils import compute_snr
from torch import Tensor, nn

from dopplerdiff.config import Config
from dopplerdiff.config.diffusion import DiffusionConfig
from dopplerdiff.data.contact import save_grid
from dopplerdiff.data.images import to_unit
from dopplerdiff.data.latents import LatentDataset, read_latent_info
from dopplerdiff.data.layout import DEFAULT_CONDITION
from dopplerdiff.data.run_data import read_run_data
from dopplerdiff.errors import DopplerDiffError
from dopplerdiff.generate import GenerationPlan, sample
from dopplerdiff.generate.plan import EVAL_BATCH
from dopplerdiff.models.autoencoder import load_autoencoder
from dopplerdiff.models.condition import IdentityConditionEncoder, build_condition_encoder
from dopplerdiff.models.decoder import load_decoder
from dopplerdiff.models.denoiser import build_denoiser, count_parameters, denoise
from dopplerdiff.pipelines.components import load_parts
from dopplerdiff.pipelines.pipeline_dopplerdiff import DopplerDiffPipeline
from dopplerdiff.schedulers import check_scheduler_name, make_scheduler, training_scheduler
from dopplerdiff.train.best import BestWeights
from dopplerdiff.train.checkpoints import checkpoint_step, resolve_resume
from dopplerdiff.train.loop import TrainStage, find_checkpoints, train_loop
from dopplerdiff.train.resume import plan_resume, stage_record
from dopplerdiff.train.run_pipeline import graft_identities, resave_pipeline
from dopplerdiff.train.validation import val_identities
from dopplerdiff.train.vq_diffusion import train_vq_diffusion
from dopplerdiff.utils.io import atomic_dir, write_json, write_manifest
from dopplerdiff.utils.rundir import RunDir

log = logging.getLogger(__name__)
VAL_LOSS_MAX = 256


def diffusion_loss(
    denoiser: nn.Module,
    condition_encoder: nn.Module,
    noise_scheduler: Any,
    z: Tensor,
    ids: Tensor,
    cfg: DiffusionConfig,
    generator: torch.Generator | None = None,
    conditions: Tensor | None = None,
) -> Tensor:
    """Per-batch training loss (``ids``/``conditions`` already dropped); ``generator`` makes noise/timesteps
    fixed."""
    noise = torch.randn(z.shape, generator=generator, device=z.device, dtype=z.dtype)
    t = torch.randint(0, cfg.num_train_timesteps, (z.shape[0],), generator=generator, device=z.device)
    noisy = noise_scheduler.add_noise(z, noise, t)
    target = noise if cfg.prediction_type == "epsilon" else noise_scheduler.get_velocity(z, noise, t)
    tokens = condition_encoder(ids) if conditions is None else condition_encoder(ids, conditions)
    pred = denoise(denoiser, noisy, t, tokens)
    per_sample = (pred.float() - target.float()).pow(2).mean(dim=(1, 2, 3))
    if cfg.snr_gamma > 0:
        snr = compute_snr(noise_scheduler, t)
        clipped = torch.clamp(snr, max=cfg.snr_gamma)
        weight = clipped / snr if cfg.prediction_type == "epsilon" else clipped / (snr + 1)
        per_sample = per_sample * weight
    return per_sample.mean()


class DiffusionStage(TrainStage):
    """The shared loop's view of latent diffusion training."""

    def __init__(
        self,
        cfg: DiffusionConfig,
        denoiser: nn.Module,
        condition_encoder: IdentityConditionEncoder,
        vae: nn.Module,
        val_latents: Tensor,
        val_labels: Tensor,
        identities: list[str],
        colormap: str,
        best: BestWeights | None = None,
        val_conditions: Tensor | None = None,
        condition_names: list[str] | None = None,
    ):
        self.cfg, self.best = cfg, best
        self.denoiser, self.condition_encoder = denoiser, condition_encoder
        self.vae = vae.eval().requires_grad_(False)
        self.noise_scheduler = training_scheduler(
            cfg.num_train_timesteps, cfg.beta_schedule, cfg.prediction_type
        )
        self.val_latents, self.val_labels = val_latents, val_labels
        self.identities, self.colormap = identities, colormap
        self.val_conditions = val_conditions
        self.condition_names = list(condition_names or [DEFAULT_CONDITION])

    def modules(self) -> dict[str, nn.Module]:
        mods: dict[str, nn.Module] = {"denoiser": self.denoiser}
        # the DiT's condition encoder has no weights
        if any(True for _ in self.condition_encoder.parameters()):
            mods["condition_encoder"] = self.condition_encoder
        return mods

    def selectable(self) -> dict[str, nn.Module]:
        """The weights model selection keeps (unwrapped; EMA weights while validating)."""
        return {k: self.unwrapped(k) for k in self.modules()}

    def _condition_encoder(self, prepared: bool) -> nn.Module:
        if "condition_encoder" in self._prepared:
            return self.model("condition_encoder") if prepared else self.unwrapped("condition_encoder")
        return self.condition_encoder

    def loss(self, batch: Any, step: int) -> tuple[Tensor, dict[str, float]]:
        z, labels = batch["latents"], batch["labels"].long()
        cond_enc = self.condition_encoder
        ids = cond_enc.drop(labels, self.cfg.condition.dropout)
        logs = {"null_frac": float((ids == cond_enc.null_id).float().mean())}
        conds = None
        if cond_enc.has_conditions:  # flat runs draw no extra random numbers
            conds = cond_enc.drop_conditions(batch["conditions"].long(), self.cfg.condition.walk_dropout)
            logs["null_condition_frac"] = float((conds == cond_enc.null_condition).float().mean())
        loss = diffusion_loss(
            self.model("denoiser"), self._condition_encoder(True), self.noise_scheduler, z, ids, self.cfg,
            conditions=conds,
        )
        return loss, logs

    def pipeline(self) -> DopplerDiffPipeline:
        """A pipeline over the live (unwrapped) modules, for validation."""
        pipe = DopplerDiffPipeline(
            self.vae,
            self.unwrapped("denoiser"),
            self._condition_encoder(False),
            make_scheduler(self.cfg.scheduler, self.noise_scheduler.config),
            identities=self.identities,
            colormap=self.colormap,
            conditions=self.condition_names,
        )
        pipe.set_progress_bar_config(disable=True)
        return pipe

    def validate(self, step: int, out_dir: Path) -> dict[str, float]:
        device = self.device
        self.vae.to(device)
        z = self.val_latents[:VAL_LOSS_MAX].to(device)
        ids = self.val_labels[:VAL_LOSS_MAX].to(device)
        conds = None
        if self.condition_encoder.has_conditions and self.val_conditions is not None:
            conds = self.val_conditions[:VAL_LOSS_MAX].to(device)
        gen = torch.Generator(device=device).manual_seed(1234)
        metrics = {
            "val_loss": float(
                diffusion_loss(
                    self.unwrapped("denoiser"),
                    self._condition_encoder(False),
                    self.noise_scheduler,
                    z,
                    ids,
                    self.cfg,
                    generator=gen,
                    conditions=conds,
                )
            )
        }
        if self.best is not None and self.best.offer(metrics["val_loss"], step, self.selectable()):
            metrics["best_step"] = float(step)
        pipe = self.pipeline()
        shown = val_identities(self.val_labels, len(self.identities), self.cfg.val_identities)
        n = self.cfg.val_samples
        plan = GenerationPlan.from_diffusion(self.cfg, identities=shown, count=n, seed=0,
                                             batch_size=EVAL_BATCH, mix_identities=True)
        got = sample(pipe, plan, progress=False)
        images, labels = got.images, got.labels
        rows, names = [], []
        for k in shown:
            real_z = self.val_latents[self.val_labels == k][:n].to(device)
            if len(real_z):
                rows.append(to_unit(pipe.decode_latents(real_z).float()).cpu().numpy())
                names.append(f"{self.identities[k]} real")
            rows.append(images[labels == k])
            names.append(f"{self.identities[k]} generated")
        save_grid(out_dir / "grid.png", rows, self.colormap, names)
        return metrics


def _load_latents(run: Path, split: str, sample: bool, time_shift: bool = False) -> LatentDataset:
    return LatentDataset(run, split, sample=sample, time_shift=time_shift)


def _stack(ds: Any) -> tuple[Tensor, Tensor]:
    if len(ds) == 0:
        return torch.zeros(0), torch.zeros(0, dtype=torch.long)
    items = [ds[i] for i in range(len(ds))]
    return torch.stack([it["latents"] for it in items]), torch.stack(
        [torch.as_tensor(it["labels"]) for it in items]
    )


def _check_inputs(run: Path, cfg: DiffusionConfig, resume: str | None) -> dict[str, Any]:
    """RUN/latents/info.json of a run ready for diffusion training (clear errors otherwise)."""
    check_scheduler_name(cfg.scheduler)
    rd = RunDir(run)
    if not rd.marker("latents").is_file():
        raise DopplerDiffError(
            f"'{rd.marker('latents')}' does not exist; run `dopplerdiff cache-latents --run {run}` first"
        )
    if not rd.autoencoder.is_dir():
        raise DopplerDiffError(f"run '{run}' has no autoencoder ('{rd.autoencoder}' missing)")
    if resume is None and (find_checkpoints(rd.work("diffusion")) or rd.pipeline.exists()):
        raise DopplerDiffError(
            f"run '{run}' already has diffusion training output; pass --resume latest to continue "
            "or use a new run directory"
        )
    info = read_latent_info(run)
    c, h, w = (int(v) for v in info["latent_shape"][-3:])
    if h != w:
        raise DopplerDiffError(f"latents of '{run}' are {h}x{w}; the denoisers need square latents")
    return info


def _best_weights(cfg: DiffusionConfig, work: Path, resume: str | None) -> BestWeights | None:
    if not cfg.select_best:
        return None
    best = BestWeights(work / "best")
    ckpt = resolve_resume(resume, work)
    best.restore(checkpoint_step(ckpt) if ckpt is not None else None)
    return best


def _build_stage(run: Path, config: Config, info: dict[str, Any], meta: dict[str, Any],
                 best: BestWeights | None) -> DiffusionStage:
    """Fresh denoiser and condition encoder (seeded), the run's autoencoder and validation latents."""
    cfg, identities = config.diffusion, list(info["identities"])
    c, h, _ = (int(v) for v in info["latent_shape"][-3:])
    val_ds = _load_latents(run, "val", False)
    val_z, val_y = _stack(val_ds)
    conditions = list(info["conditions"])
    if cfg.backbone == "dit" and len(conditions) > 1:
        log.warning("diffusion: the dit backbone has identity labels only; the walking conditions %s are "
                    "not learned (use diffusion.backbone=unet)", ", ".join(conditions))
        conditions = [DEFAULT_CONDITION]
    torch.manual_seed(cfg.train.seed if cfg.train.seed else config.seed)
    denoiser = build_denoiser(cfg, c, h, len(identities))
    condition_encoder = build_condition_encoder(cfg, len(identities), cfg.backbone,
                                                num_conditions=len(conditions))
    vae = load_autoencoder(RunDir(run).autoencoder)
    colormap = str(meta.get("colormap", config.data.colormap))
    return DiffusionStage(cfg, denoiser, condition_encoder, vae, val_z, val_y, identities, colormap, best,
                          val_conditions=val_ds.conditions, condition_names=conditions)


def _save_outputs(run: Path, config: Config, stage: DiffusionStage, modules: dict[str, nn.Module],
                  meta: dict[str, Any], manifest: dict[str, Any], overwrite: bool) -> None:
    """RUN/diffusion (denoiser, condition encoder) and RUN/pipeline, each atomically with its manifest."""
    cfg = config.diffusion
    den, cond_enc = modules["denoiser"], modules.get("condition_encoder", stage.condition_encoder)
    with atomic_dir(RunDir(run).diffusion, overwrite=overwrite) as tmp:
        den.save_pretrained(tmp / "denoiser")
        cond_enc.save_pretrained(tmp / "condition_encoder")
        config.save(tmp / "config.yaml")
        write_manifest(tmp, kind="diffusion", **manifest)
    stage.vae.to(den.device)

    def build(current: Path | None) -> tuple[DopplerDiffPipeline, Any]:
        old = load_parts(current) if current is not None else None
        pipe = DopplerDiffPipeline(
            stage.vae, den, cond_enc, make_scheduler(cfg.scheduler, stage.noise_scheduler.config),
            identities=stage.identities, colormap=stage.colormap, conditions=stage.condition_names,
            channels=int(meta.get("channels", config.data.channels)), native_size=meta.get("native_size"),
            decoder=_decoder(run, config, old),
        )
        if old is not None:
            _keep_enrolled(pipe, DopplerDiffPipeline(**old))
        return pipe, lambda tmp: _write_records(tmp, config, manifest)

    resave_pipeline(run, build)


def _decoder(run: Path, config: Config, old: dict[str, Any] | None) -> nn.Module | None:
    """The diffusion decoder of the new pipeline: RUN/decoder when the config or the old pipeline has one
    (a decoder trained before the denoiser joins it), else the old pipeline's own."""
    kept = old.get("decoder") if old is not None else None
    wanted = config.decoder.kind == "diffusion" or kept is not None
    decoder = RunDir(run).decoder
    if wanted and (decoder / "config.json").is_file():
        return load_decoder(decoder)
    return kept


def _keep_enrolled(pipe: DopplerDiffPipeline, old: DopplerDiffPipeline) -> None:
    """Carry the few-shot identities of the replaced pipeline (enroll-generator) into ``pipe``."""
    names = [n for n in old.identities if n not in pipe.identities]
    if not names:
        return
    parts = {"condition_encoder": pipe.condition_encoder, "denoiser": pipe.denoiser,
             "identities": pipe.identities}
    graft_identities(parts, old, names)
    pipe.register_to_config(identities=parts["identities"])
    log.warning("diffusion: kept the enrolled identities %s of the previous pipeline; their rows were "
                "learned on the previous denoiser (relearn with `enroll-generator --replace`)",
                ", ".join(names))


def _write_records(tmp: Path, config: Config, manifest: dict[str, Any]) -> None:
    cfg = config.diffusion
    config.save(tmp / "config.yaml")
    write_manifest(tmp, kind="pipeline", scheduler=cfg.scheduler, weights="ema" if cfg.train.ema else "raw",
                   **manifest)


def train_diffusion(run: Path, config: Config, *, resume: str | None = None, progress: bool = True) -> Path:
    """Train on RUN/latents; write RUN/diffusion, RUN/pipeline, RUN/train/diffusion; return RUN/pipeline.

    ``diffusion.backbone: vq-diffusion`` trains the discrete model on the cached code indices instead
    (``train.vq_diffusion``)."""
    run, cfg = Path(run), config.diffusion
    if cfg.backbone == "vq-diffusion":
        return train_vq_diffusion(run, config, resume=resume, progress=progress)
    info = _check_inputs(run, cfg, resume)
    rd = RunDir(run)
    work = rd.work("diffusion")
    record = stage_record("diffusion", diffusion=cfg)
    resume, finished = plan_resume(resume, work, record, [rd.diffusion, rd.pipeline], cfg.train.steps)
    if finished:
        return rd.pipeline
    meta = read_run_data(run).get("meta", {})
    train_ds = _load_latents(run, "train", cfg.sample_posterior, cfg.latent_time_shift)
    best = _best_weights(cfg, work, resume)
    stage = _build_stage(run, config, info, meta, best)
    params = {"denoiser": count_parameters(stage.denoiser),
              "condition_encoder": count_parameters(stage.condition_encoder)}
    log.info("diffusion: %s %.2fM params, %d train latents %s", cfg.backbone, params["denoiser"] / 1e6,
             len(train_ds), tuple(info["latent_shape"]))
    start = time.time()
    result = train_loop(stage, train_ds, cfg.train, work, resume=resume, progress=progress, desc="diffusion",
                        record=record)
    acc = result.accelerator
    if acc is not None and not acc.is_main_process:
        return rd.pipeline
    selected = best.load_into({k: result.modules[k] for k in stage.modules()}) if best is not None else None
    if selected is not None:
        log.info("diffusion: keeping the weights of step %d (lowest validation loss %.4f)", selected["step"],
                 selected["value"])
    manifest = {"run": str(run), "step": result.step, "label_map": stage.identities, "params": params,
                "latent_shape": list(info["latent_shape"]),
                "selected_step": selected["step"] if selected else result.step}
    _save_outputs(run, config, stage, result.modules, meta, manifest, overwrite=resume is not None)
    write_json(work / "metrics.json", {
        "step": result.step, "wall_s": round(time.time() - start, 1), "params": params, "val": result.val,
        "selected": selected, "final_loss": result.history[-1].get("loss") if result.history else None,
    })
    return rd.pipeline
