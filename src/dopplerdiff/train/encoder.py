"""Training the spectrogram encoder: cross-entropy + supervised contrastive loss on real TRAIN windows.

* ``train_encoder(data, out, cfg, ...)``: the ``train-encoder`` command. Uses the leak-free split of the
  run (``RUN/data.json`` via ``data.run_data.prepare_run_data`` when ``out`` is ``RUN/encoder``; otherwise
  the split is recorded in ``out/data.json``), the shared accelerate loop (checkpoints, resume) in
  ``RUN/train/encoder`` (``out.parent/train/<out.name>``), selects the weights with the best
  validation accuracy and writes ``out`` (``save_pretrained``) + ``metrics.json`` (val/test accuracy with
  bootstrap CIs, per-identity accuracy, confusion) + ``config.yaml`` + ``manifest.json``, atomically.
* ``train_run_encoder(run, cfg, ...)``: the same as the run's stage, into ``RUN/encoder``.
* ``evaluate_encoder``: identity accuracy of an encoder on a labelled set.

The loss, ``fit_classifier`` and ``predict`` live in ``dopplerdiff.classifier`` (shared with evaluation).
"""

from __future__ import annotations

import logging
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

# fit_classifier / predict / supcon_loss are re-exported: they lived here before moving to the shared module
from dopplerdiff.classifier import (  # noqa: F401
    accuracy_of,
    encoder_loss,
    fit_classifier,
    identity_accuracy,
    predict,
    supcon_loss,
)
from dopplerdiff.config import Config
from dopplerdiff.config.data import AugmentConfig
from dopplerdiff.config.encoder import EncoderConfig
from dopplerdiff.data.dataset import ImageDataset
from dopplerdiff.data.run_data import prepare_run_data
from dopplerdiff.data.transforms import augment_batch
from dopplerdiff.errors import DataError
from dopplerdiff.models.encoder import SpectrogramEncoder, encoder_from_config
from dopplerdiff.train.checkpoints import checkpoint_step
from dopplerdiff.train.loop import TrainStage, train_loop
from dopplerdiff.train.resume import plan_resume, stage_record
from dopplerdiff.utils.io import atomic_dir, check_out_dir, read_json_if_exists, write_json, write_manifest
from dopplerdiff.utils.rundir import RunDir

log = logging.getLogger(__name__)


def evaluate_encoder(
    encoder: SpectrogramEncoder, images: np.ndarray, labels: np.ndarray, num_classes: int,
    bootstrap: int = 1000, seed: int = 0, batch_size: int = 256,
) -> dict[str, Any]:
    """Identity accuracy (bootstrap CI, per identity, confusion) of ``encoder`` on a labelled set."""
    if len(labels) == 0:
        return {"overall": None, "n": 0}
    logits, _ = predict(encoder, images, batch_size)
    return identity_accuracy(logits, labels, num_classes, bootstrap=bootstrap, seed=seed)


class EncoderStage(TrainStage):
    """The encoder's plug-in for the shared loop: CE + SupCon on augmented batches, val accuracy."""

    def __init__(
        self, model: SpectrogramEncoder, cfg: EncoderConfig, augment: AugmentConfig | None,
        val: tuple[np.ndarray, np.ndarray], work_dir: Path,
    ) -> None:
        self.net, self.cfg, self.augment, self.val, self.work_dir = model, cfg, augment, val, work_dir
        self.best_path = work_dir / "best"
        self.best_acc = -1.0

    def restore_best(self, resumed_step: int | None) -> None:
        """Keep the best-so-far weights of the trajectory being resumed; forget those of any other run."""
        best = _read_json(self.best_path / "best.json")
        if best is not None and resumed_step is not None and int(best["step"]) <= resumed_step:
            self.best_acc = float(best["val_accuracy"])
        else:
            shutil.rmtree(self.best_path, ignore_errors=True)
            self.best_acc = -1.0

    def modules(self) -> dict[str, nn.Module]:
        return {"encoder": self.net}

    def loss(self, batch: Any, step: int) -> tuple[Tensor, dict[str, float]]:
        x, y = batch["pixel_values"], batch["labels"]
        if self.augment is not None:
            # global RNG: restored by the loop on resume, so augmentations replay identically
            x = augment_batch(x, self.augment)
        return encoder_loss(self.model("encoder"), x, y, self.cfg)

    def validate(self, step: int, out_dir: Path) -> dict[str, float]:
        model = self.unwrapped("encoder")
        if len(self.val[1]) == 0:
            return {}
        acc = accuracy_of(model, self.val[0], self.val[1], self.cfg.eval_batch_size)
        if acc > self.best_acc:  # model selection on val; kept on disk so a resumed run remembers it
            self.best_acc = acc
            tmp = self.work_dir / ".best.tmp"
            shutil.rmtree(tmp, ignore_errors=True)
            model.save_pretrained(tmp)
            write_json(tmp / "best.json", {"val_accuracy": acc, "step": step})
            shutil.rmtree(self.best_path, ignore_errors=True)
            tmp.rename(self.best_path)
        return {"val_accuracy": acc, "best_val_accuracy": self.best_acc}


def _read_json(path: Path) -> dict[str, Any] | None:
    return read_json_if_exists(path)  # a damaged file is an error naming it, not None


def _load_data(data: Path | None, out: Path, work_dir: Path, cfg: Config, progress: bool) -> tuple[Any, dict]:
    """Data + split from RUN/data.json when ``out`` is RUN/encoder, else recorded in the work dir.

    Either way a resumed run reuses exactly the split it started with.
    """

    run = out.parent
    if out.name == "encoder" or RunDir(run).data_record.is_file():
        return prepare_run_data(run, data, cfg.data, progress=progress)
    return prepare_run_data(work_dir, data, cfg.data, progress=progress)


def _encoder_metrics(
    selected: SpectrogramEncoder, ds: Any, split: dict, cfg: Config, selected_step: int, steps: int
) -> dict[str, Any]:
    """Accuracy of the selected weights on train, val and test (bootstrap CIs), and what was trained."""
    k, bs, boot = len(ds.identities), cfg.encoder.eval_batch_size, cfg.evaluate.bootstrap
    tr, va, te = (split[p] for p in ("train", "val", "test"))
    metrics: dict[str, Any] = {
        "identities": list(ds.identities),
        "selected_step": selected_step,
        "steps": steps,
        "split_sizes": {p: int(len(split[p])) for p in ("train", "val", "test")},
        "train_accuracy": accuracy_of(selected, ds.images[tr], ds.labels[tr], bs),
        "val": evaluate_encoder(selected, ds.images[va], ds.labels[va], k, boot, cfg.seed, bs),
        "test": evaluate_encoder(selected, ds.images[te], ds.labels[te], k, boot, cfg.seed, bs),
        "chance": 1.0 / k,
        "kind": cfg.encoder.kind,
        "num_parameters": int(sum(p.numel() for p in selected.parameters())),
    }
    metrics["val_accuracy"] = metrics["val"].get("overall")
    metrics["test_accuracy"] = metrics["test"].get("overall")
    return metrics


def _save_encoder(
    out: Path, selected: SpectrogramEncoder, metrics: dict, cfg: Config, work_dir: Path, ds: Any,
    data: Path | None,
) -> None:
    """Write the encoder, its metrics, config, split and manifest to ``out`` in one atomic step."""
    with atomic_dir(out) as tmp:
        selected.save_pretrained(tmp)
        write_json(tmp / "metrics.json", metrics)
        cfg.save(tmp / "config.yaml")
        split = RunDir(work_dir).data_record
        if split.is_file():  # the split used, next to the standalone encoder
            shutil.copy2(split, tmp / split.name)
        write_manifest(
            tmp, stage="encoder", data_root=str(ds.meta.get("root", data)), seed=cfg.encoder.train.seed,
            identities=list(ds.identities),
            checkpoints=str(work_dir), selected_step=metrics["selected_step"],
        )


def train_encoder(
    data: Path | None, out: Path, cfg: Config, *, resume: str | None = None, progress: bool = True,
) -> dict[str, Any]:
    """The ``train-encoder`` command (see the module docstring); returns the metrics written."""
    out = check_out_dir(out)
    ecfg = cfg.encoder
    work_dir = RunDir(out.parent).work(out.name)  # RUN/train/encoder for RUN/encoder
    record = stage_record("encoder", encoder=ecfg, data=cfg.data)
    ckpt, _ = plan_resume(resume, work_dir, record, [], ecfg.train.steps)  # out is new (checked above)
    ds, split = _load_data(data, out, work_dir, cfg, progress)
    k = len(ds.identities)
    if k < 2:
        raise DataError(f"identity classification needs at least 2 identities; '{data}' has {k}")
    tr, va = split["train"], split["val"]
    if len(tr) < ecfg.train.batch_size:
        raise DataError(
            f"the training split has {len(tr)} windows, fewer than encoder.train.batch_size="
            f"{ecfg.train.batch_size}; lower it (e.g. encoder.train.batch_size={max(len(tr) // 2, 1)})"
        )
    torch.manual_seed(ecfg.train.seed)
    model = encoder_from_config(
        ecfg, num_classes=k, image_size=cfg.data.size, in_channels=cfg.data.channels,
        identities=list(ds.identities), colormap=cfg.data.colormap,
    )
    augment = cfg.data.augment if ecfg.augment else None
    val = (ds.images[va], ds.labels[va])
    stage = EncoderStage(model, ecfg, augment, val, work_dir)
    stage.restore_best(checkpoint_step(ckpt) if ckpt is not None else None)
    t0 = time.perf_counter()
    result = train_loop(
        stage, ImageDataset(ds, tr), ecfg.train, work_dir, resume=ckpt, progress=progress, desc="encoder",
        record=record,
    )
    train_seconds = time.perf_counter() - t0
    acc = result.accelerator
    if acc is not None and not acc.is_main_process:
        return {}
    final = result.modules["encoder"].eval()
    best = _read_json(stage.best_path / "best.json")
    selected = SpectrogramEncoder.from_pretrained(stage.best_path).eval() if best else final
    metrics = _encoder_metrics(selected, ds, split, cfg, best["step"] if best else result.step, result.step)
    metrics["train_seconds"] = train_seconds
    _save_encoder(out, selected, metrics, cfg, work_dir, ds, data)
    write_json(work_dir / "metrics.json", metrics)
    return metrics


def train_run_encoder(run: Path, cfg: Config, *, data_root: Path | None = None, resume: str | None = None,
                      progress: bool = True) -> dict[str, Any]:
    """The run's encoder stage: ``train_encoder`` into RUN/encoder on the run's split (``data_root``
    default: the one recorded in RUN/data.json)."""
    return train_encoder(data_root, RunDir(run).encoder, cfg, resume=resume, progress=progress)
