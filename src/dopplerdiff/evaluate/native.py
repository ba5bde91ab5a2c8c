"""Scoring at the data's native size: what a user's own classifier sees in the written files.

The model works at ``data.size`` (e.g. 64²) while the data and the written samples have their native size
(e.g. 256²: ``generate`` resizes every sample with ``data.images.resize`` before writing). A judge trained at
the model's size cannot see what that upsampling does (blur, missing fine speckle). Here a judge of the same
architecture is trained on the real training windows loaded at the native size and scores the real test
windows, and the test reconstructions and samples resized to the native size exactly as ``generate`` writes
them. metrics.json gets ``judge_native``: size, real-test accuracy and each set's accuracy and ratio.

Images are (N, C, H, W) float32 in [-1, 1].
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from dopplerdiff.config.evaluate import EvaluateConfig
from dopplerdiff.data.images import from_unit, resize, to_unit
from dopplerdiff.data.run_data import prepare_run_data
from dopplerdiff.evaluate.context import EvalContext
from dopplerdiff.evaluate.judge import JudgeSettings, fit_judge, judge_logits
from dopplerdiff.evaluate.metrics import identity_accuracy

log = logging.getLogger(__name__)
NATIVE_SEED_OFFSET = 2003  # its own seed: never the model-size judge's, the encoder's or the generator's


def native_shape(native_size: int | Sequence[int] | None) -> tuple[int, int] | None:
    """(H, W) of the pipeline's ``native_size`` (an int, [H, W] or None)."""
    if native_size is None:
        return None
    if isinstance(native_size, int):
        return native_size, native_size
    h, w = (int(v) for v in native_size)
    return h, w


def to_native(images: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Model-size images -> the native size, with the resize ``generate`` applies before writing a file."""
    out = np.stack([resize(to_unit(x), shape) for x in images]) if len(images) else images
    return from_unit(np.asarray(out, np.float32)).astype(np.float32)


def native_judge(train: tuple[np.ndarray, np.ndarray], val: tuple[np.ndarray, np.ndarray] | None,
                 test: tuple[np.ndarray, np.ndarray], sets: dict[str, tuple[np.ndarray, np.ndarray]], k: int,
                 cfg: EvaluateConfig, device: Any = "cpu") -> dict[str, Any]:
    """``train``/``val``/``test``: real windows at the native size; ``sets``: name -> model-size images and
    labels (e.g. ``reconstruction``, ``generated``), resized here. Returns the ``judge_native`` section."""
    shape = tuple(int(v) for v in test[0].shape[-2:])
    settings = JudgeSettings(channels=tuple(cfg.judge_channels), steps=cfg.judge_steps, arch=cfg.judge_arch)
    log.info("training the native-size judge at %dx%d (%d steps)", *shape, cfg.judge_steps)
    judge = fit_judge(train[0], train[1], k, settings, seed=cfg.seed + NATIVE_SEED_OFFSET,
                      val=val if val is not None and len(val[1]) else None, device=device)

    def score(x: np.ndarray, y: np.ndarray) -> dict[str, Any]:
        return identity_accuracy(judge_logits(judge, x), y, k, cfg.bootstrap, cfg.seed)

    real = score(*test)
    out: dict[str, Any] = {"size": list(shape), "arch": cfg.judge_arch, "steps": cfg.judge_steps,
                           "seed": cfg.seed + NATIVE_SEED_OFFSET, "real_test": real}
    for name, (x, y) in sets.items():
        out[name] = score(to_native(x, shape), y)
        out[f"ratio_{name}"] = out[name]["overall"] / real["overall"] if real["overall"] > 0 else None
        log.info("native-size judge: %s %.3f (real %.3f)", name, out[name]["overall"], real["overall"])
    return out


def native_section(ctx: EvalContext, run: Path, data_root: Path | None, native_size: Any) -> None:
    """metrics.json ``judge_native``: the run's real windows loaded again at the native size (the same split),
    a judge trained on them, and the run's reconstructions and samples scored after resizing."""
    shape, model = native_shape(native_size), tuple(ctx.test.x.shape[-2:])
    if shape is None or shape == model or shape[0] != shape[1]:
        why = "it equals the model's size" if shape == model else f"it is {native_size}"
        ctx.st.missing.append(f"native-size judge skipped: the data's native size is not a larger square "
                              f"({why})")
        return
    ds, split = prepare_run_data(run, data_root, dataclasses.replace(ctx.cfg.data, size=shape[0]))
    tr, va, te = (ds.subset(split[p]) for p in ("train", "val", "test"))
    ctx.st.metrics["judge_native"] = native_judge((tr.images, tr.labels), (va.images, va.labels),
                                                  (te.images, te.labels), ctx.synthetic, ctx.k,
                                                  ctx.cfg.evaluate, ctx.device)
