"""Does synthetic data help? The synthetic-gain experiment (saved as ``augmentation``).

Three arms, each a fresh identity classifier with the SAME architecture, step budget, augmentations and
seeds, all scored on the real TEST split:

- ``real``            real train windows only (the baseline),
- ``real+synthetic``  real train windows plus N synthetic windows per identity,
- ``synthetic``       synthetic windows only (TSTR: train on synthetic, test on real).

Every arm is repeated for each seed; the result gives mean ± std over seeds and the paired gain
(``real+synthetic`` minus ``real`` with the same seed), which cancels most of the seed-to-seed variance.
The synthetic images may be the scored evaluation samples (``dopplerdiff.evaluate.evaluate`` reuses its
pool): generation after training sees no real test window, so nothing leaks into the test score.

All images are (N, C, H, W) float32 in [-1, 1]. ``read_synthetic(folder, identities, cfg)`` reads the
synthetic windows of a `generate` or `augment` output (any sampling strategy) into such a set. The classifiers
default to ``dopplerdiff.classifier.fit_classifier``'s recipe, trained together by
``dopplerdiff.evaluate.together.fit_classifiers``, and ``predict``; both can be injected (tests, other
models).
"""

from __future__ import annotations

import json
import logging
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from dopplerdiff.classifier import FitJob
from dopplerdiff.classifier import predict as classifier_predict
from dopplerdiff.config import AugmentConfig, EncoderConfig
from dopplerdiff.config.data import DataConfig
from dopplerdiff.data.images import from_unit, read_file, resize
from dopplerdiff.errors import DopplerDiffError
from dopplerdiff.evaluate.together import Trainer, trainer_for
from dopplerdiff.utils.paths import path_inside

log = logging.getLogger(__name__)

ARMS = ("real", "real+synthetic", "synthetic")
FitFn = Callable[..., Any]
PredictFn = Callable[..., tuple[np.ndarray, np.ndarray]]


def _check(name: str, images: np.ndarray, labels: np.ndarray, num_classes: int) -> None:
    if images.ndim != 4:
        raise DopplerDiffError(
            f"augmentation experiment: {name} images must be (N, C, H, W), got {images.shape}"
        )
    if len(images) != len(labels):
        raise DopplerDiffError(
            f"augmentation experiment: {name} has {len(images)} images but {len(labels)} labels"
        )
    if len(labels) and (labels.min() < 0 or labels.max() >= num_classes):
        raise DopplerDiffError(f"augmentation experiment: {name} labels outside 0..{num_classes - 1}")


def _accuracy(logits: np.ndarray, labels: np.ndarray) -> float:
    return float((np.asarray(logits).argmax(axis=1) == labels).mean()) if len(labels) else float("nan")


def _summary(runs: list[float]) -> dict[str, Any]:
    arr = np.asarray(runs, dtype=np.float64)
    # Sample std (ddof=1) across seeds: the spread a reader should expect from another seed.
    std = float(arr.std(ddof=1)) if len(arr) > 1 else 0.0
    return {"mean": float(arr.mean()), "std": std, "runs": [float(x) for x in arr]}


def read_synthetic(folder: Path, identities: list[str], cfg: DataConfig) -> tuple[np.ndarray, np.ndarray]:
    """Synthetic windows of a `generate` or `augment` output -> (images in [-1, 1] at ``cfg.size``, labels
    in the order of ``identities``); real windows of an augment output are left out."""
    man = json.loads((Path(folder) / "manifest.json").read_text())
    if man.get("kind") == "augment":
        rels = [(f["identity"], f["file"]) for f in man["files"] if f["synthetic"]]
    elif man.get("kind") == "generate":
        rels = [(name, rel) for name, files in man["files"].items() for rel in files]
    else:
        kind = man.get("kind")
        raise DopplerDiffError(f"'{folder}' is not a generate or augment output (manifest kind {kind})")
    unknown = sorted({n for n, _ in rels} - set(identities))
    if unknown:
        raise DopplerDiffError(f"synthetic set '{folder}' has identities unknown here: {', '.join(unknown)}")
    if not rels:
        raise DopplerDiffError(f"synthetic set '{folder}' holds no synthetic windows")
    source = f"'{Path(folder) / 'manifest.json'}'"
    images = [resize(read_file(path_inside(folder, rel, source), cfg).array, cfg.size, cfg.resample)
              for _, rel in rels]
    labels = np.array([identities.index(n) for n, _ in rels], dtype=np.int64)
    return from_unit(np.stack(images)).astype(np.float32), labels


def _checked_sets(real_train: Any, real_test: Any, synthetic: Any, num_classes: int,
                  steps: int, seeds: Sequence[int]) -> tuple[tuple[np.ndarray, np.ndarray], ...]:
    """(real train, real test, synthetic) as float32 images and int64 labels; DopplerDiffError if unusable."""
    if steps < 1:
        raise DopplerDiffError(f"augmentation experiment: steps must be >= 1, got {steps}")
    if len(seeds) < 1:
        raise DopplerDiffError("augmentation experiment: needs at least one seed (evaluate.augment_seeds)")
    sets = tuple((np.asarray(s[0], np.float32), np.asarray(s[1], np.int64))
                 for s in (real_train, real_test, synthetic))
    for name, (x, y) in zip(("real train", "real test", "synthetic"), sets, strict=True):
        _check(name, x, y, num_classes)
    (xr, _), (xt, _), (xs, _) = sets
    if len(xr) == 0 or len(xt) == 0:
        raise DopplerDiffError(
            "augmentation experiment: the real train and real test splits must not be empty"
        )
    if len(xs) == 0:
        raise DopplerDiffError("augmentation experiment: no synthetic images were given")
    if xs.shape[1:] != xr.shape[1:]:
        raise DopplerDiffError(
            f"augmentation experiment: synthetic images {xs.shape[1:]} differ from real images {xr.shape[1:]}"
        )
    return sets


def arm_jobs(data: dict[str, tuple[np.ndarray, np.ndarray]], seeds: Sequence[int]) -> list[FitJob]:
    """One classifier per (seed, arm), seed-major (the order the arms were once trained one by one)."""
    return [FitJob(data[arm][0], data[arm][1], int(seed)) for seed in seeds for arm in ARMS]


def _per_identity(pred: np.ndarray, yt: np.ndarray, num_classes: int) -> np.ndarray:
    return np.array([(pred[yt == k] == k).mean() if (yt == k).any() else np.nan for k in range(num_classes)])


def run_synthetic_gain(
    real_train: tuple[np.ndarray, np.ndarray],
    real_test: tuple[np.ndarray, np.ndarray],
    synthetic: tuple[np.ndarray, np.ndarray],
    num_classes: int,
    encoder_cfg: EncoderConfig,
    *,
    steps: int,
    seeds: Sequence[int],
    augment: AugmentConfig | None = None,
    val: tuple[np.ndarray, np.ndarray] | None = None,
    fit: FitFn | None = None,
    predict: PredictFn | None = None,
    progress: bool = False,
    device: str | Any = "cpu",
    fit_many: Trainer | None = None,
    together: int = 1,
) -> dict[str, Any]:
    """Train the three arms for every seed and score them on real test; return a JSON-ready dict.

    ``val`` (real validation windows) is passed to every arm alike for model selection; test is never used.
    The arms' classifiers are fitted by ``fit_many`` (a ``together`` trainer), else by ``fit`` one at a
    time, else by ``fit_classifiers``; ``together`` of them at once (1: one after another).
    """
    predict = predict or classifier_predict
    (xr, yr), (xt, yt), (xs, ys) = _checked_sets(real_train, real_test, synthetic, num_classes, steps, seeds)
    data = {"real": (xr, yr), "real+synthetic": (np.concatenate([xr, xs]), np.concatenate([yr, ys])),
            "synthetic": (xs, ys)}
    jobs = arm_jobs(data, seeds)
    log.info("augmentation experiment: %d classifiers, %d at a time", len(jobs), max(together, 1))
    models = trainer_for(fit, fit_many)(jobs, num_classes, encoder_cfg, steps=steps, augment=augment, val=val,
                                    progress=False, device=device, together=together)
    runs: dict[str, list[float]] = {arm: [] for arm in ARMS}
    per_identity: dict[str, list[np.ndarray]] = {arm: [] for arm in ARMS}
    for i, (job, model) in enumerate(zip(jobs, models, strict=True)):
        arm = ARMS[i % len(ARMS)]  # arm_jobs: seed-major, the arms in ARMS order
        logits, _ = predict(model, xt)
        runs[arm].append(_accuracy(logits, yt))
        per_identity[arm].append(_per_identity(np.asarray(logits).argmax(axis=1), yt, num_classes))
        log.info("augmentation: seed %d arm %-15s accuracy %.3f", job.seed, arm, runs[arm][-1])
    return _result(runs, per_identity, seeds, steps, (xr, xs, ys, xt))


def _result(runs: dict[str, list[float]], per_identity: dict[str, list[np.ndarray]], seeds: Sequence[int],
            steps: int, sets: tuple[np.ndarray, ...]) -> dict[str, Any]:
    xr, xs, ys, xt = sets
    with warnings.catch_warnings():  # an identity absent from real test gives an all-NaN column
        warnings.simplefilter("ignore", RuntimeWarning)
        per_id_mean = {arm: np.nanmean(np.stack(per_identity[arm]), axis=0) for arm in ARMS}
    gain = [a - b for a, b in zip(runs["real+synthetic"], runs["real"], strict=True)]
    return {
        "arms": {arm: _summary(runs[arm]) for arm in ARMS},
        "per_identity_mean": {
            arm: [None if np.isnan(v) else float(v) for v in per_id_mean[arm]] for arm in ARMS
        },
        "gain": _summary(gain),
        "seeds": [int(s) for s in seeds],
        "steps": int(steps),
        "synthetic_per_identity": int(round(len(xs) / max(len(np.unique(ys)), 1))),
        "n_real_train": int(len(xr)),
        "n_synthetic": int(len(xs)),
        "n_real_test": int(len(xt)),
    }
