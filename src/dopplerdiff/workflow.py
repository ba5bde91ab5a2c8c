"""The end-to-end job behind ``dopplerdiff run``: every stage in order, skipped once its output is complete.

Stages write their outputs atomically, so "complete" is simply "the final file exists"; an interrupted stage
leaves only checkpoints under RUN/train/<stage>, which the next invocation resumes from.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dopplerdiff.config import Config, load_config, saved_config
from dopplerdiff.config.base import to_dict
from dopplerdiff.data.images import scan_tree
from dopplerdiff.errors import ConfigError, DataError, DopplerDiffError
from dopplerdiff.evaluate.summary import headline_scalars
from dopplerdiff.train.tracking import log_once, run_trackers
from dopplerdiff.utils.io import (
    check_run_output,
    read_json,
    read_json_if_exists,
    recover_parts,
    run_lock,
    write_json,
)

log = logging.getLogger(__name__)


@dataclass
class Stage:
    """One step of the job: its name, the file that proves it finished, and what runs it."""

    name: str
    marker: str  # path relative to RUN that exists only once the stage completed
    run: Callable[[RunContext], Any]
    summary: Callable[[RunContext], str] = lambda ctx: ""
    check: Callable[[RunContext], None] = lambda ctx: None  # after the stage (run or skipped): fail early


@dataclass
class RunContext:
    run: Path
    cfg: Config
    data_root: Path | None
    progress: bool


def _has_checkpoint(work: Path) -> bool:
    return any(work.glob("checkpoint-*"))


def _resume_arg(ctx: RunContext, stage: str) -> str | None:
    return "latest" if _has_checkpoint(ctx.run / "train" / stage) else None


def _data_root(ctx: RunContext) -> Path:
    return ctx.data_root if ctx.data_root is not None else ctx.run / "data"


def _simulate(ctx: RunContext) -> None:
    from dopplerdiff.data.simulate import simulate_dataset

    simulate_dataset(ctx.cfg.simulate, ctx.run / "data", progress=ctx.progress)


def _prepare(ctx: RunContext) -> None:
    from dopplerdiff.data.run_data import prepare_run_data

    prepare_run_data(ctx.run, _data_root(ctx), ctx.cfg.data, progress=ctx.progress)


def _data_summary(ctx: RunContext) -> str:
    data = read_json_if_exists(ctx.run / "data.json") or {}
    split = data.get("split", {})
    sizes = ", ".join(f"{k} {len(v)}" for k, v in split.items())
    return f"{len(data.get('identities', []))} identities; split {sizes}"


def _check_data(ctx: RunContext) -> None:
    """Refuse data that cannot make a run before any training: < 2 identities or an empty split part."""
    data = read_json(ctx.run / "data.json")
    names, split = data.get("identities", []), data.get("split", {})
    if len(names) < 2:
        raise DataError(
            f"'{_data_root(ctx)}' has {len(names)} identity folder(s); identity-conditional training and "
            "identity evaluation need at least 2"
        )
    empty = [part for part in ("train", "test") if not split.get(part)]
    if empty:
        raise DataError(
            f"the leak-free split of '{_data_root(ctx)}' leaves the {' and '.join(empty)} part(s) empty; "
            "add windows per recording or lower data.split.gap_windows"
        )


def _autoencoder(ctx: RunContext) -> None:
    from dopplerdiff.train.autoencoder import train_autoencoder

    train_autoencoder(ctx.cfg, ctx.run, _data_root(ctx), resume=_resume_arg(ctx, "autoencoder"),
                      progress=ctx.progress)


def _autoencoder_summary(ctx: RunContext) -> str:
    m = read_json_if_exists(ctx.run / "train" / "autoencoder" / "metrics.json") or {}
    val, lat = m.get("val", {}), m.get("latent", {})
    if not val.get("count"):
        return ""
    return (f"val PSNR {val['psnr']:.2f} dB, SSIM {val['ssim']:.3f}; "
            f"latent scale {lat.get('scaling_factor', float('nan')):.3f}")


def _latents(ctx: RunContext) -> None:
    from dopplerdiff.train.autoencoder import cache_latents

    cache_latents(ctx.run, _data_root(ctx), overwrite=True, progress=ctx.progress)


def _diffusion(ctx: RunContext) -> None:
    from dopplerdiff.train.diffusion import train_diffusion

    train_diffusion(ctx.run, ctx.cfg, resume=_resume_arg(ctx, "diffusion"), progress=ctx.progress)


def _decoder(ctx: RunContext) -> None:
    from dopplerdiff.train.decoder import train_decoder

    train_decoder(ctx.run, ctx.cfg, resume=_resume_arg(ctx, "decoder"), progress=ctx.progress)


def _decoder_summary(ctx: RunContext) -> str:
    val = (read_json_if_exists(ctx.run / "train" / "decoder" / "metrics.json") or {}).get("val", {})
    if "val_psnr" not in val:
        return ""
    return f"val PSNR {val['val_psnr']:.2f} dB (VAE decoder {val['val_psnr_vae']:.2f} dB)"


def _encoder(ctx: RunContext) -> None:
    from dopplerdiff.train.encoder import train_encoder

    resume = _resume_arg(ctx, "encoder")
    train_encoder(_data_root(ctx), ctx.run / "encoder", ctx.cfg, resume=resume, progress=ctx.progress)


def _encoder_summary(ctx: RunContext) -> str:
    m = read_json_if_exists(ctx.run / "encoder" / "metrics.json") or {}
    acc = m.get("test_accuracy")
    return f"real-test identity accuracy {acc:.3f}" if isinstance(acc, float) else ""


def _generate(ctx: RunContext) -> None:
    from dopplerdiff.generate import write_generated
    from dopplerdiff.pipelines.auto_pipeline import load_run_pipeline

    d = ctx.cfg.diffusion
    pipe = load_run_pipeline(ctx.run)
    write_generated(pipe, ctx.run / "samples", None, d.samples_per_identity, steps=d.num_inference_steps,
                    guidance=d.guidance_scale, scheduler=d.scheduler, seed=ctx.cfg.seed,
                    progress=ctx.progress, config=ctx.cfg)


def _evaluate(ctx: RunContext) -> None:
    from dopplerdiff.evaluate.evaluate import evaluate_run

    metrics = evaluate_run(ctx.run, ctx.cfg, data_root=ctx.data_root, overwrite=True, progress=ctx.progress)
    # the headline numbers go to every dashboard a stage of the run reported to
    trackers = run_trackers(ctx.cfg)
    if trackers:
        log_once(trackers, ctx.run / "tensorboard", "evaluate", headline_scalars(metrics))


def _evaluate_summary(ctx: RunContext) -> str:
    return f"report {ctx.run / 'eval' / 'report.html'}"


def stages(simulated: bool, encoder_first: bool = False, decoder: bool = False) -> list[Stage]:
    """The job's stages in order (simulation only when no data folder was given; the encoder before the
    autoencoder when the first stage's feature loss needs it; the diffusion decoder when configured)."""
    out = [Stage("simulate", "data/metadata.json", _simulate)] if simulated else []
    encoder = Stage("train encoder", "encoder/config.json", _encoder, _encoder_summary)
    out += [
        Stage("prepare data", "data.json", _prepare, _data_summary, _check_data),
        *([encoder] if encoder_first else []),
        Stage("train autoencoder", "autoencoder/config.json", _autoencoder, _autoencoder_summary),
        Stage("cache latents", "latents/info.json", _latents),
        Stage("train diffusion", "pipeline/model_index.json", _diffusion),
        # after the denoiser: it adds itself to RUN/pipeline, which then exists
        *([Stage("train decoder", "pipeline/decoder/config.json", _decoder, _decoder_summary)]
          if decoder else []),
        *([] if encoder_first else [encoder]),
        Stage("generate", "samples/manifest.json", _generate),
        Stage("evaluate", "eval/metrics.json", _evaluate, _evaluate_summary),
    ]
    return out


def resolve_run_config(run: Path, config: str | None, overrides: list[str], resume: bool) -> Config:
    """New run: profile/file + overrides. Resumed run: its stored config + overrides (changes logged)."""
    stored = saved_config(run) if resume else None
    if stored is None:
        return check_precision(load_config(config, overrides))
    if config is not None and load_config(config).profile != stored.profile:
        raise DopplerDiffError(
            f"run '{run}' was made with profile '{stored.profile}', not '{config}'; "
            "resume it without --profile/--config or choose a new --out"
        )
    cfg = load_config(run / "config.yaml", overrides)
    _report_overrides(run, stored, cfg)
    return check_precision(cfg)


def _report_overrides(run: Path, stored: Config, cfg: Config) -> None:
    """Say which overrides of a resumed run can take effect: stages already complete are not rerun."""
    changed = _changed_keys(to_dict(stored), to_dict(cfg))
    if not changed:
        return
    done = [s.name for s in stages(simulated=True) if (run / s.marker).exists()]
    log.warning(
        "overrides change %s of run '%s'; stages already complete (%s) keep their results and the run's "
        "config.yaml is not changed: to apply them everywhere, use a new --out",
        ", ".join(changed), run, ", ".join(done) or "none",
    )


def _changed_keys(old: Any, new: Any, prefix: str = "") -> list[str]:
    if isinstance(old, dict) and isinstance(new, dict):
        return [k for key in old for k in _changed_keys(old[key], new.get(key), f"{prefix}{key}.")]
    return [prefix.rstrip(".")] if old != new else []


def check_precision(cfg: Config) -> Config:
    """One process trains every stage, and accelerate fixes the precision for the process."""
    found = {cfg.autoencoder.train.mixed_precision, cfg.diffusion.train.mixed_precision,
             cfg.encoder.train.mixed_precision}
    if cfg.decoder.kind == "diffusion":
        found.add(cfg.decoder.train.mixed_precision)
    if len(found) > 1:
        raise ConfigError(
            f"`run` trains every stage in one process, so the stages' train.mixed_precision must agree "
            f"(got {', '.join(sorted(found))})"
        )
    return cfg


def check_run_dir(run: Path, resume: bool, data_root: Path | None = None) -> None:
    """Refuse a file, the data folder, a non-run folder, and continuing a run without ``--resume``."""
    if check_run_output(run, data_root) and not resume:
        raise DopplerDiffError(f"run directory '{run}' already exists; pass --resume to continue it "
                               "(completed stages are skipped) or choose a new --out")


def run_all(run: Path, cfg: Config, data_root: Path | None, *, progress: bool = True,
            on_stage: Callable[[int, int, Stage, str], None] | None = None,
            skip: Collection[str] = ()) -> list[dict[str, Any]]:
    """Run every stage not yet complete, except those named in ``skip`` (a caller that runs them itself,
    e.g. bench/convergence.py trains the diffusion stage to several budgets); one row per stage run or
    found complete (name, status, seconds, summary)."""
    unknown = sorted(set(skip) - {s.name for s in stages(True, False, True)})
    if unknown:
        raise DopplerDiffError(f"run_all: unknown stage(s) to skip: {', '.join(unknown)}")
    if data_root is not None and not (run / "config.yaml").is_file():
        scan_tree(data_root)  # unreadable data (a nested layout, no images) fails before RUN is created
    with run_lock(run):
        recover_parts(run)  # parts an interrupted replacement left missing count as complete again
        return _run_stages(run, cfg, data_root, progress, on_stage, set(skip))


def _run_stages(run: Path, cfg: Config, data_root: Path | None, progress: bool,
                on_stage: Callable[[int, int, Stage, str], None] | None,
                skip: set[str]) -> list[dict[str, Any]]:
    ctx = RunContext(run=run, cfg=cfg, data_root=data_root, progress=progress)
    if not (run / "config.yaml").is_file():
        cfg.save(run / "config.yaml")
    todo = [s for s in stages(simulated=data_root is None, encoder_first=cfg.autoencoder.loss.feature > 0,
                              decoder=cfg.decoder.kind == "diffusion") if s.name not in skip]
    previous = (read_json_if_exists(run / "timings.json") or {}).get("invocations", [])
    started, rows = time.strftime("%Y-%m-%dT%H:%M:%S%z"), []
    for i, stage in enumerate(todo, 1):
        done = (run / stage.marker).exists()
        if on_stage:
            on_stage(i, len(todo), stage, "skip" if done else "start")
        t0 = time.time()
        if not done:
            stage.run(ctx)
        stage.check(ctx)
        rows.append({"stage": stage.name, "status": "done before" if done else "ran",
                     "seconds": 0.0 if done else time.time() - t0, "summary": stage.summary(ctx)})
        _write_timings(run, previous, started, rows)
    return rows


def _write_timings(run: Path, previous: list[dict[str, Any]], started: str,
                   rows: list[dict[str, Any]]) -> None:
    """RUN/timings.json: wall seconds per stage for every invocation (a resumed run adds an entry)."""
    entry = {"started": started, "stages": rows, "total_seconds": round(sum(r["seconds"] for r in rows), 1)}
    write_json(run / "timings.json", {"invocations": [*previous, entry]})
