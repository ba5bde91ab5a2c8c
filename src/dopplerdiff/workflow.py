"""The end-to-end job behind ``dopplerdiff run``: every stage in order, skipped once its output is complete.

Stages write their outputs atomically, so "complete" is simply "the final file exists"; an interrupted stage
leaves only checkpoints under RUN/train/<stage>, which the next invocation resumes from.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dopplerdiff.config import Config, load_config, saved_config
from dopplerdiff.config.base import to_dict
from dopplerdiff.data.images import scan_tree
from dopplerdiff.data.run_data import prepare_run
from dopplerdiff.data.simulate import simulate_run
from dopplerdiff.errors import ConfigError, DataError, DopplerDiffError
from dopplerdiff.evaluate.evaluate import evaluate_run
from dopplerdiff.evaluate.summary import headline_scalars
from dopplerdiff.generate import generate_run
from dopplerdiff.train.autoencoder import train_autoencoder
from dopplerdiff.train.decoder import train_decoder
from dopplerdiff.train.diffusion import train_diffusion
from dopplerdiff.train.encoder import train_run_encoder
from dopplerdiff.train.latents import cache_latents
from dopplerdiff.train.tracking import log_once, run_trackers
from dopplerdiff.utils.io import (
    check_run_output,
    read_json,
    read_json_if_exists,
    recover_parts,
    run_lock,
    write_json,
)
from dopplerdiff.utils.rundir import MARKERS, RunDir

log = logging.getLogger(__name__)


StageFn = Callable[..., Any]  # stage(run, cfg, *, resume=None, progress=True, [data_root=...], **options)


@dataclass(frozen=True)
class Stage:
    """One step of the job: its name, its key in ``RunDir`` (marker file, ``train/<key>`` work dir) and the
    stage function, called as ``run(RUN, cfg, resume=..., progress=...)``."""

    name: str
    key: str
    run: StageFn
    summary: Callable[[RunDir], str] = lambda run: ""
    check: Callable[[RunDir, Path], None] = lambda run, data_root: None  # after the stage (run or skipped)
    data: bool = False  # the stage reads the data folder: called with data_root=
    options: dict[str, Any] = field(default_factory=dict)  # fixed keywords of the call
    after: Callable[[RunDir, Config, Any], None] | None = None  # with the stage's result, once it ran

    @property
    def marker(self) -> str:
        """The stage's marker file, relative to RUN."""
        return MARKERS[self.key]


def run_stage(stage: Stage, run: RunDir, cfg: Config, data_root: Path, progress: bool) -> None:
    """Run ``stage`` once, resuming from the latest checkpoint an interrupted run left in RUN/train/<key>."""
    resume = "latest" if run.has_checkpoints(stage.key) else None
    data = {"data_root": data_root} if stage.data else {}
    result = stage.run(run.root, cfg, resume=resume, progress=progress, **data, **stage.options)
    if stage.after is not None:
        stage.after(run, cfg, result)


def _data_summary(run: RunDir) -> str:
    data = read_json_if_exists(run.data_record) or {}
    split = data.get("split", {})
    sizes = ", ".join(f"{k} {len(v)}" for k, v in split.items())
    return f"{len(data.get('identities', []))} identities; split {sizes}"


def _check_data(run: RunDir, data_root: Path) -> None:
    """Refuse data that cannot make a run before any training: < 2 identities or an empty split."""
    data = read_json(run.data_record)
    names, split = data.get("identities", []), data.get("split", {})
    if len(names) < 2:
        raise DataError(
            f"'{data_root}' has {len(names)} identity folder(s); identity-conditional training and "
            "identity evaluation need at least 2"
        )
    empty = [name for name in ("train", "test") if not split.get(name)]
    if empty:
        raise DataError(
            f"the leak-free split of '{data_root}' leaves the {' and '.join(empty)} split(s) empty; "
            "add windows per recording or lower data.split.gap_windows"
        )


def _autoencoder_summary(run: RunDir) -> str:
    m = read_json_if_exists(run.work("autoencoder") / "metrics.json") or {}
    val, lat = m.get("val", {}), m.get("latent", {})
    if not val.get("count"):
        return ""
    return (f"val PSNR {val['psnr']:.2f} dB, SSIM {val['ssim']:.3f}; "
            f"latent scale {lat.get('scaling_factor', float('nan')):.3f}")


def _decoder_summary(run: RunDir) -> str:
    val = (read_json_if_exists(run.work("decoder") / "metrics.json") or {}).get("val", {})
    if "val_psnr" not in val:
        return ""
    return f"val PSNR {val['val_psnr']:.2f} dB (VAE decoder {val['val_psnr_vae']:.2f} dB)"


def _encoder_summary(run: RunDir) -> str:
    m = read_json_if_exists(run.encoder / "metrics.json") or {}
    acc = m.get("test_accuracy")
    return f"real-test identity accuracy {acc:.3f}" if isinstance(acc, float) else ""


def _log_headline(run: RunDir, cfg: Config, metrics: dict[str, Any]) -> None:
    """The headline numbers go to every dashboard a stage of the run reported to."""
    trackers = run_trackers(cfg)
    if trackers:
        log_once(trackers, run.tensorboard, "evaluate", headline_scalars(metrics))


def stages(simulated: bool, encoder_first: bool = False, decoder: bool = False) -> list[Stage]:
    """The job's stages in order (simulation only when no data folder was given; the encoder before the
    autoencoder when the first stage's feature loss needs it; the diffusion decoder when configured)."""
    encoder = Stage("train encoder", "encoder", train_run_encoder, _encoder_summary, data=True)
    return [
        *([Stage("simulate", "simulate", simulate_run)] if simulated else []),
        Stage("prepare data", "data", prepare_run, _data_summary, _check_data, data=True),
        *([encoder] if encoder_first else []),
        Stage("train autoencoder", "autoencoder", train_autoencoder, _autoencoder_summary, data=True),
        Stage("cache latents", "latents", cache_latents, data=True, options={"overwrite": True}),
        Stage("train diffusion", "diffusion", train_diffusion),
        # after the denoiser: it adds itself to RUN/pipeline, which then exists
        *([Stage("train decoder", "decoder", train_decoder, _decoder_summary)] if decoder else []),
        *([] if encoder_first else [encoder]),
        Stage("generate", "generate", generate_run),
        Stage("evaluate", "evaluate", evaluate_run, lambda run: f"report {run.eval / 'report.html'}",
              data=True, options={"overwrite": True}, after=_log_headline),
    ]


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
    cfg = load_config(RunDir(run).config, overrides)
    _report_overrides(run, stored, cfg)
    return check_precision(cfg)


def _report_overrides(run: Path, stored: Config, cfg: Config) -> None:
    """Say which overrides of a resumed run can take effect: stages already complete are not rerun."""
    changed = _changed_keys(to_dict(stored), to_dict(cfg))
    if not changed:
        return
    done = [s.name for s in stages(simulated=True) if RunDir(run).is_complete(s.key)]
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
    if data_root is not None and not RunDir(run).config.is_file():
        scan_tree(data_root)  # unreadable data (a nested layout, no images) fails before RUN is created
    with run_lock(run):
        recover_parts(run)  # parts an interrupted replacement left missing count as complete again
        return _run_stages(run, cfg, data_root, progress, on_stage, set(skip))


def _run_stages(run: Path, cfg: Config, data_root: Path | None, progress: bool,
                on_stage: Callable[[int, int, Stage, str], None] | None,
                skip: set[str]) -> list[dict[str, Any]]:
    rd = RunDir(run)
    root = data_root if data_root is not None else rd.data  # no data folder: the stages simulate one
    if not rd.config.is_file():
        cfg.save(rd.config)
    todo = [s for s in stages(simulated=data_root is None, encoder_first=cfg.autoencoder.loss.feature > 0,
                              decoder=cfg.decoder.kind == "diffusion") if s.name not in skip]
    previous = (read_json_if_exists(rd.timings) or {}).get("invocations", [])
    started, rows = time.strftime("%Y-%m-%dT%H:%M:%S%z"), []
    for i, stage in enumerate(todo, 1):
        done = rd.is_complete(stage.key)
        if on_stage:
            on_stage(i, len(todo), stage, "skip" if done else "start")
        t0 = time.time()
        if not done:
            run_stage(stage, rd, cfg, root, progress)
        stage.check(rd, root)
        rows.append({"stage": stage.name, "status": "done before" if done else "ran",
                     "seconds": 0.0 if done else time.time() - t0, "summary": stage.summary(rd)})
        _write_timings(rd, previous, started, rows)
    return rows


def _write_timings(run: RunDir, previous: list[dict[str, Any]], started: str,
                   rows: list[dict[str, Any]]) -> None:
    """RUN/timings.json: wall seconds per stage for every invocation (a resumed run adds an entry)."""
    entry = {"started": started, "stages": rows, "total_seconds": round(sum(r["seconds"] for r in rows), 1)}
    write_json(run.timings, {"invocations": [*previous, entry]})
