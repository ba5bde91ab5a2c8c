"""Experiment tracking (TensorBoard, Weights & Biases) through accelerate's trackers.

``log.jsonl`` stays the record that resume and the tests rely on; trackers only mirror it for dashboards.
Each stage logs to its own run ``RUN/tensorboard/<stage>`` (``RUN/train/<stage>`` is its work dir), so
``tensorboard --logdir RUN`` shows a run's stages side by side.
"""

from __future__ import annotations

import importlib.util
import math
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
from accelerate import Accelerator
from accelerate.tracking import LOGGER_TYPE_TO_CLASS
from PIL import Image

from dopplerdiff.config import Config
from dopplerdiff.config.loop import LoopConfig, report_to_names
from dopplerdiff.errors import ConfigError
from dopplerdiff.utils.rundir import RunDir

# tracker name (config.loop.TRACKERS) -> (module that must be importable, how to install it)
INSTALL = {
    "tensorboard": ("tensorboard", "pip install -e '.[tracking]'"),
    "wandb": ("wandb", "pip install wandb (and `wandb login`)"),
}


def _installed(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def check_trackers(names: Iterable[str], what: str = "--report-to") -> None:
    """One ConfigError naming the missing package and what to install (accelerate would drop it silently)."""
    for name in names:
        module, install = INSTALL[name]
        if not _installed(module):
            raise ConfigError(f"{what} {name}: the '{module}' package is not installed; {install}")


def accelerator_kwargs(cfg: LoopConfig, work_dir: Path) -> dict[str, Any]:
    """``log_with``/``project_dir`` for the stage's Accelerator; the trackers' packages are checked first."""
    names = report_to_names(cfg.report_to, "train.report_to")
    check_trackers(names, "report_to")
    if not names:
        return {}
    return {"log_with": list(names), "project_dir": str(tracking_root(work_dir)[0])}


def tracking_root(work_dir: Path) -> tuple[Path, str]:
    """(folder holding the runs, this stage's run name): ``RUN/tensorboard`` and ``<stage>`` for a work dir
    ``RUN/train/<stage>``, else ``work_dir/tensorboard`` and the work dir's name."""
    work_dir = Path(work_dir)
    if work_dir.parent.name == "train":
        return RunDir(work_dir.parent.parent).tensorboard, work_dir.name
    return work_dir / "tensorboard", work_dir.name


def start_tracking(acc: Accelerator, work_dir: Path, start: int = 0) -> None:
    """``init_trackers`` for the stage whose work dir is ``work_dir`` (no-op without trackers). A stage
    resumed at step ``start`` drops what it had logged after that step (as ``log.jsonl`` does)."""
    if not acc.log_with:
        return
    root, stage = tracking_root(work_dir)
    kwargs: dict[str, dict[str, Any]] = {"wandb": {"name": root.parent.name, "group": root.parent.name}}
    if start > 0:
        kwargs["tensorboard"] = {"purge_step": start + 1}
    acc.init_trackers(stage, init_kwargs=kwargs)


def log_scalars(acc: Accelerator, values: dict[str, Any], step: int, prefix: str = "") -> None:
    """The finite numbers of ``values`` (losses, lr, grad norm, metrics) under ``prefix``."""
    scalars = {f"{prefix}{k}": float(v) for k, v in values.items()
               if isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(float(v))}
    if acc.log_with and scalars:
        acc.log(scalars, step=step)


def log_images(acc: Accelerator, folder: Path, step: int, prefix: str = "val/") -> None:
    """Every PNG in ``folder`` (the validation grids) as an image named ``prefix + stem``."""
    if not acc.log_with:
        return
    pngs = sorted(Path(folder).glob("*.png"))
    images = {f"{prefix}{p.stem}": np.asarray(Image.open(p).convert("RGB")) for p in pngs}
    if not images:
        return
    for tracker in acc.trackers:
        if tracker.name == "tensorboard":
            tracker.log_images(images, step=step, dataformats="HWC")
        elif tracker.name == "wandb":
            tracker.log_images({k: [v] for k, v in images.items()}, step=step)


def end_tracking(acc: Accelerator) -> None:
    if acc.log_with:
        acc.end_training()


def log_once(names: Iterable[str], root: Path, run_name: str, values: dict[str, Any], step: int = 0) -> None:
    """Log ``values`` once to a tracker run of its own (the evaluation's headline metrics), without an
    Accelerator: accelerate's state of the training stages stays as it is."""
    for name in names:
        cls = LOGGER_TYPE_TO_CLASS[name]
        tracker = cls(run_name, str(root)) if cls.requires_logging_directory else cls(run_name)
        if hasattr(tracker, "start"):  # accelerate >= 1.5 starts a tracker explicitly
            tracker.start()
        tracker.log({k: float(v) for k, v in values.items()}, step=step)
        tracker.finish()


def run_trackers(cfg: Config) -> list[str]:
    """The trackers any trained stage of ``cfg`` reports to (where a run's own summaries go)."""
    sections = (cfg.autoencoder, cfg.diffusion, cfg.decoder, cfg.encoder)
    return sorted({n for sec in sections for n in report_to_names(sec.train.report_to)})
