"""What an evaluation loads from a run: its data settings, encoder, autoencoder and pipeline."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch

from dopplerdiff.classifier import fit_classifier
from dopplerdiff.config import Config
from dopplerdiff.config.base import from_dict
from dopplerdiff.config.data import DataConfig
from dopplerdiff.data.run_data import read_run_data
from dopplerdiff.errors import DopplerDiffError
from dopplerdiff.models.autoencoder import load_autoencoder
from dopplerdiff.models.encoder import load_encoder
from dopplerdiff.pipelines.auto_pipeline import load_run_pipeline
from dopplerdiff.utils.rundir import RunDir

log = logging.getLogger(__name__)
Arrays = tuple[Any, Any]


def eval_device(name: str | None) -> torch.device:
    """``--device``: auto, cpu, cuda or cuda:N; anything torch does not know is one error."""
    if name in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError) as exc:
        raise DopplerDiffError(f"--device must be auto, cpu, cuda or cuda:N, got {name!r}") from exc
    if device.type == "cuda" and not torch.cuda.is_available():
        raise DopplerDiffError(f"--device {name}: no CUDA device is available here")
    return device


def run_data_config(run: Path, cfg: DataConfig) -> DataConfig:
    """The data config recorded with the run wins: the encoder and autoencoder were trained on it."""
    if not RunDir(run).data_record.is_file():
        return cfg
    recorded = read_run_data(run).get("data_config")
    if not recorded:
        return cfg
    rec = from_dict(DataConfig, recorded, prefix="data.json:data_config.")
    if (rec.size, rec.channels, rec.colormap) != (cfg.size, cfg.channels, cfg.colormap):
        log.warning("using the run's recorded data settings (size %d, channels %d, colormap %s)",
                    rec.size, rec.channels, rec.colormap)
    return rec


def load_run_encoder(run: Path, cfg: Config, train: Arrays, val: Arrays,
                  identities: list[str], missing: list[str], progress: bool) -> Any:
    """RUN/encoder (trained on real train only); without one, an in-memory classifier on real train."""
    path = RunDir(run).encoder
    if path.is_dir():
        enc = load_encoder(path)
        names = enc.config.identities
        if names is not None and list(names) != list(identities):
            raise DopplerDiffError(f"encoder '{path}' was trained on {len(names)} identities "
                                   f"({', '.join(names[:5])}...) but the run's data has {len(identities)} "
                                   f"({', '.join(identities[:5])}...); retrain the encoder")
        if enc.config.in_channels != train[0].shape[1]:
            raise DopplerDiffError(f"encoder '{path}' expects {enc.config.in_channels} channel(s), the data "
                                   f"has {train[0].shape[1]}")
        return enc
    steps = cfg.encoder.train.steps
    missing.append(f"no encoder at '{path}': metrics use an in-memory classifier trained on real train "
                      f"for {steps} steps (train one with `dopplerdiff train-encoder`)")
    return fit_classifier(train[0], train[1], len(identities), cfg.encoder, steps=steps, seed=cfg.seed,
                          augment=cfg.data.augment, val=val if len(val[1]) else None, progress=progress,
                          identities=identities, colormap=cfg.data.colormap).eval()


def load_eval_pipeline(run: Path, identities: list[str], missing: list[str],
                       device: torch.device) -> Any | None:
    """RUN/pipeline with the data's label map, or None (noted in ``missing``) when the run has none."""
    path = RunDir(run).pipeline
    if not (path / "model_index.json").is_file():
        missing.append(
            f"no diffusion pipeline at '{path}' (train one with `dopplerdiff train-diffusion`): "
            "no generated samples, so no generated accuracy, Fréchet distance of samples, "
            "physics, memorisation, augmentation experiment or guidance sweep"
        )
        return None
    pipe = load_run_pipeline(run, device)  # either pipeline class (continuous latents or vq-diffusion codes)
    if list(pipe.identities) != list(identities):
        raise DopplerDiffError(
            f"pipeline '{path}' has {len(pipe.identities)} identities but the run's data has "
            f"{len(identities)}; they must be the same label map"
        )
    pipe.set_progress_bar_config(disable=True)
    return pipe


def load_run_autoencoder(run: Path, device: torch.device) -> Any | None:
    path = RunDir(run).autoencoder
    return load_autoencoder(path).to(device).eval() if (path / "config.json").is_file() else None
