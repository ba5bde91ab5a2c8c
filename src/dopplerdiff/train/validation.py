"""Validation inside the loop: EMA weights swapped in, eval mode, RNG isolated, one log line."""

from __future__ import annotations

import contextlib
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from diffusers.training_utils import EMAModel

from dopplerdiff.train.checkpoints import append_jsonl
from dopplerdiff.train.tracking import log_images, log_scalars


@contextlib.contextmanager
def isolated_rng() -> Iterator[None]:
    """Restore python/numpy/torch RNG states afterwards, so validation cannot shift training randomness."""
    py, npy = random.getstate(), np.random.get_state()
    devices = [torch.cuda.current_device()] if torch.cuda.is_available() else []
    with torch.random.fork_rng(devices=devices):
        try:
            yield
        finally:
            random.setstate(py)
            np.random.set_state(npy)


def run_validation(
    stage: Any, names: list[str], emas: dict[str, EMAModel], step: int, work_dir: Path, log_path: Path
) -> dict[str, float]:
    acc = stage.accelerator
    metrics: dict[str, float] = {}
    if acc.is_main_process:
        mods = {k: stage.unwrapped(k) for k in names}
        for k, ema in emas.items():
            ema.store(mods[k].parameters())
            ema.copy_to(mods[k].parameters())
        out_dir = work_dir / "val" / f"step-{step:06d}"
        out_dir.mkdir(parents=True, exist_ok=True)
        try:
            for m in mods.values():
                m.eval()
            with isolated_rng(), torch.no_grad():
                metrics = {k: float(v) for k, v in (stage.validate(step, out_dir) or {}).items()}
        finally:
            for k, ema in emas.items():
                ema.restore(mods[k].parameters())
            for m in mods.values():
                m.train()
        append_jsonl(log_path, {"kind": "val", "step": step, **metrics})
        log_scalars(acc, metrics, step, "val/")
        log_images(acc, out_dir, step, "val/")
    acc.wait_for_everyone()
    return metrics


def val_identities(labels: torch.Tensor, k: int, limit: int) -> list[int]:
    """A fixed subset of up to ``limit`` identities spread over the label range (with val data first)."""
    present = sorted(set(labels.tolist())) or list(range(k))
    pick = np.unique(np.linspace(0, len(present) - 1, min(limit, len(present))).round().astype(int))
    return [int(present[i]) for i in pick]
