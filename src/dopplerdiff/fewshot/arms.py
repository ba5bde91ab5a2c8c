"""Arms of the novel-walkers experiment: which training data identifies people seen in only k windows?

One label map per fold: the base people (the fold run's order), then the novel people. Every arm trains a
fresh classifier over all of them on

- ``real``          the base people's training windows and the novel people's k shots,
- ``classic``       the same with the strongest classic augmentation (``CLASSIC``: time shift and crop, time
                    and Doppler-band masks, gain, noise, mixup),
- ``real+M``        real plus the synthetic windows of method M (e.g. ``row/n16``, ``seeded0.5/n64``),
- ``classic+M``     both;

and is scored on the novel people's test windows (``novel``) and the base people's test split (``base``, the
no-harm check), under the project's classifier (``encoder``) and the independent judge architecture
(``judge``), with the same seeds for every arm. Gains are paired seed by seed and fold by fold, with the 95%
t-interval of ``evaluate.strategies.summary``. Every classifier trains a fixed number of steps without model
selection: novel people have no validation windows, and selecting on base people's would favour them.
Images are (N, C, H, W) float32 in [-1, 1].
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from dopplerdiff.classifier import fit_classifier
from dopplerdiff.classifier import predict as classifier_predict
from dopplerdiff.config import AugmentConfig, Config
from dopplerdiff.data.images import SpectrogramSet
from dopplerdiff.errors import DopplerDiffError
from dopplerdiff.evaluate.judge import JudgeSettings, fit_judge, judge_logits
from dopplerdiff.evaluate.strategies import summary

log = logging.getLogger(__name__)
Arrays = tuple[np.ndarray, np.ndarray]
# the classic baseline synthetic data must beat: every spectrogram-valid transform at once
CLASSIC = AugmentConfig(time_shift=True, time_crop=0.1, gain_jitter=0.05, noise_std=0.02, time_mask=0.15,
                        time_masks=2, doppler_mask=0.1, doppler_masks=1, mixup=0.4)
# (x, y, num_classes, seed, classic) -> a function from images to logits
FitFn = Callable[[np.ndarray, np.ndarray, int, int, bool], Callable[[np.ndarray], np.ndarray]]


@dataclasses.dataclass
class FewshotSet:
    """One fold's real windows; labels index ``names`` (base people first, then novel people)."""

    names: list[str]
    n_base: int
    base_train: Arrays
    base_test: Arrays
    shots: Arrays
    novel_test: Arrays


def fewshot_set(base: SpectrogramSet, split: dict[str, np.ndarray], full: SpectrogramSet,
                novel: dict[str, tuple[np.ndarray, ...]]) -> FewshotSet:
    """The fold's windows: ``base``/``split`` as the fold run recorded them, ``novel`` from ``split_novel``
    (indices into ``full``)."""
    names = [*base.identities, *novel]
    if len(set(names)) != len(names):
        raise DopplerDiffError(f"a novel person is also a base person of the fold: {', '.join(names)}")

    def take(idx_per_person: list[np.ndarray]) -> Arrays:
        idx = np.concatenate(idx_per_person)
        y = np.concatenate([np.full(len(i), base_k + j) for j, i in enumerate(idx_per_person)])
        return full.images[idx], y.astype(np.int64)

    base_k = len(base.identities)
    return FewshotSet(
        names=names, n_base=base_k,
        base_train=(base.images[split["train"]], base.labels[split["train"]]),
        base_test=(base.images[split["test"]], base.labels[split["test"]]),
        shots=take([s for s, _ in novel.values()]), novel_test=take([t for _, t in novel.values()]))


def _cat(*parts: Arrays) -> Arrays:
    return np.concatenate([p[0] for p in parts]).astype(np.float32), np.concatenate([p[1] for p in parts])


def arm_table(fs: FewshotSet | Arrays, synthetic: dict[str, Arrays]) -> dict[str, tuple[Arrays, bool]]:
    """arm name -> (training windows, classic augmentation on?) for the real, classic and every synthetic
    method's arms; the real windows are a ``FewshotSet``'s base training windows and shots, or given."""
    real = _cat(fs.base_train, fs.shots) if isinstance(fs, FewshotSet) else _cat(fs)
    arms = {"real": (real, False), "classic": (real, True)}
    for method, syn in synthetic.items():
        both = _cat(real, syn)
        arms[f"real+{method}"] = (both, False)
        arms[f"classic+{method}"] = (both, True)
    return arms


def fitters(cfg: Config, steps: int, device: Any = "cpu") -> dict[str, FitFn]:
    """The two classifier architectures, each with the recipe it has elsewhere (the encoder's
    ``data.augment``, the judge's time roll) unless the arm asks for ``CLASSIC``."""
    enc_cfg = cfg.encoder
    if cfg.evaluate.augment_channels:  # the augmentation experiment's lighter classifier
        enc_cfg = dataclasses.replace(enc_cfg, channels=list(cfg.evaluate.augment_channels))
    judge = JudgeSettings(channels=tuple(cfg.evaluate.judge_channels), steps=steps,
                          arch=cfg.evaluate.judge_arch)

    def encoder(x: np.ndarray, y: np.ndarray, k: int, seed: int, classic: bool) -> Callable:
        model = fit_classifier(x, y, k, enc_cfg, steps=steps, seed=seed,
                               augment=CLASSIC if classic else cfg.data.augment, device=device)
        return lambda imgs: classifier_predict(model, imgs)[0]

    def judge_arch(x: np.ndarray, y: np.ndarray, k: int, seed: int, classic: bool) -> Callable:
        model = fit_judge(x, y, k, judge, seed=seed, device=device, classic=CLASSIC if classic else None)
        return lambda imgs: judge_logits(model, imgs)

    return {"encoder": encoder, "judge": judge_arch}


def _accuracy(predict: Callable[[np.ndarray], np.ndarray], data: Arrays) -> float:
    return float((np.asarray(predict(data[0])).argmax(1) == data[1]).mean())


def scored_sets(fs: FewshotSet) -> dict[str, Arrays]:
    """The novel-walkers experiment's scored sets: novel people's later windows, base people's test split."""
    return {"novel": fs.novel_test, "base": fs.base_test}


def score_arms(num_classes: int, arms: dict[str, tuple[Arrays, bool]], fits: dict[str, FitFn],
               seeds: Sequence[int], tests: dict[str, Arrays],
               on_arm: Callable[[dict], None] | None = None) -> dict[str, dict[str, dict[str, list]]]:
    """arch -> arm -> {test set name: [accuracy per seed]} (an empty test set scores nothing); ``on_arm``
    gets the results so far after every arm (long runs save them as they go)."""
    if not seeds:
        raise DopplerDiffError("the few-shot experiment needs at least one classifier seed")
    tests = {name: t for name, t in tests.items() if len(t[1])}
    out: dict[str, dict[str, dict[str, list[float]]]] = {}
    for arch, fit in fits.items():
        out[arch] = {}
        for arm, ((x, y), classic) in arms.items():
            cell: dict[str, list[float]] = {name: [] for name in tests}
            for seed in seeds:
                predict = fit(x, y, num_classes, int(seed), classic)
                for name, t in tests.items():
                    cell[name].append(_accuracy(predict, t))
            log.info("few-shot %s %-22s %s", arch, arm,
                     " ".join(f"{n} {np.mean(v):.3f}" for n, v in cell.items()))
            out[arch][arm] = cell
            if on_arm is not None:
                on_arm(out)
    return out


def summarise(cells: Sequence[dict[str, dict[str, dict[str, list[float]]]]]) -> dict[str, Any]:
    """Pool the ``score_arms`` results of several folds (same seeds): per arch, arm and test set the accuracy,
    and the gains over ``real`` and over ``classic`` paired seed by seed and fold by fold."""
    out: dict[str, Any] = {}
    for arch in cells[0]:
        arms = [a for a in cells[0][arch] if all(a in c.get(arch, {}) for c in cells)]
        parts = list(cells[0][arch][arms[0]]) if arms else []
        pooled = {a: {p: [v for c in cells for v in c[arch][a][p]] for p in parts} for a in arms}
        out[arch] = {}
        for arm in arms:
            row: dict[str, Any] = {p: summary(pooled[arm][p]) for p in parts}
            for ref in ("real", "classic"):
                if ref in pooled and arm != ref:
                    for p in parts:
                        gain = np.subtract(pooled[arm][p], pooled[ref][p])
                        row[f"{p}_gain_vs_{ref}"] = summary(gain, ci=True)
            out[arch][arm] = row
    return out
