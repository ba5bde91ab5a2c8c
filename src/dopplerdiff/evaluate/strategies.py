"""Which synthetic data helps? Strategy arms of the augmentation experiment.

Each arm of ``evaluate.augment_strategies`` (``config.evaluate.ArmSpec``: prior, interval, real:S, filtered,
simpre and their combinations joined by '+') trains the SAME classifier with the same steps, augmentation,
validation windows and seeds as the real-only baseline, on the real training windows plus that strategy's
synthetic windows (``simpre``: after pre-training the classifier on simulated walkers; alone it adds no
synthetic windows). Scored on real test; the gain of an arm is paired with the baseline seed by seed, with a
95% t-interval over seeds.

Synthetic windows are made with the single implementations of the ``synthetic`` package and
``generate.sample`` (img2img from the run's TRAIN windows only, guidance intervals, the filter), never from a
validation or test window. Images are (N, C, H, W) float32 in [-1, 1].
"""

from __future__ import annotations

import dataclasses
import logging
import math
import tempfile
import time
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from dopplerdiff.classifier import FitJob
from dopplerdiff.classifier import predict as classifier_predict
from dopplerdiff.config import Config
from dopplerdiff.config.evaluate import ArmSpec
from dopplerdiff.data.images import load_spectrograms
from dopplerdiff.data.simulate import simulate_dataset
from dopplerdiff.errors import DopplerDiffError
from dopplerdiff.evaluate.metrics import precision_recall
from dopplerdiff.evaluate.together import Trainer, trainer_for
from dopplerdiff.evaluate.windows import WindowSet, first_per_identity
from dopplerdiff.generate import GenerationPlan, sample, strategy_record
from dopplerdiff.generate.plan import WRITE_BATCH
from dopplerdiff.synthetic.strategy import Strategy, with_strategy

log = logging.getLogger(__name__)
Arrays = tuple[np.ndarray, np.ndarray]


@dataclasses.dataclass
class ArmData:
    """One arm's training additions: synthetic windows (None for ``simpre`` alone) and how they were made;
    ``encoded``: their encoder (features, logits) where already computed (the evaluation pool's)."""

    spec: ArmSpec
    synthetic: Arrays | None
    recipe: dict[str, Any] = dataclasses.field(default_factory=dict)
    encoded: Arrays | None = None


def t_interval(values: Sequence[float]) -> list[float] | None:
    """95% t-interval of the mean over seeds (None with fewer than two values)."""
    from scipy import stats

    arr = np.asarray(values, np.float64)
    if len(arr) < 2:
        return None
    half = float(stats.t.ppf(0.975, len(arr) - 1) * arr.std(ddof=1) / math.sqrt(len(arr)))
    return [float(arr.mean() - half), float(arr.mean() + half)]


def summary(runs: Sequence[float], ci: bool = False) -> dict[str, Any]:
    """Mean, sample std and per-seed values (with ``ci``: the 95% t-interval of the mean)."""
    arr = np.asarray(runs, np.float64)
    out: dict[str, Any] = {"mean": float(arr.mean()), "std": float(arr.std(ddof=1)) if len(arr) > 1 else 0.0,
                           "runs": [float(v) for v in arr]}
    if ci:
        out["ci95"] = t_interval(arr)
    return out


# ----------------------------------------------------------------------------------- making the data


def make_arm_data(spec: ArmSpec, pipe: Any, run: Path, cfg: Config, n: int,
                  progress: bool = False) -> ArmData:
    """Synthetic windows of one arm: ``n`` per identity drawn with the evaluation's steps, guidance, sampler
    and seed: ``generate.sample`` of the evaluation's plan with the strategy's sources and filter
    (``synthetic.strategy.with_strategy``; sources: the run's training windows). ``simpre`` alone: no
    synthetic windows."""
    if not spec.synthetic:
        return ArmData(spec, None, {"synthetic": None})

    ecfg, t0 = cfg.evaluate, time.time()
    strategy = Strategy(
        guidance_interval=tuple(ecfg.augment_guidance_interval) if spec.interval else None,
        from_real="split" if spec.strength is not None else None, strength=spec.strength,
        filter=spec.filtered, min_confidence=ecfg.augment_filter_confidence,
        physics_tolerance=ecfg.augment_filter_tolerance)
    if ecfg.augment_filter_stats is not None:
        strategy.physics_stats = tuple(ecfg.augment_filter_stats)
    # a person whose samples rarely pass gets fewer synthetic windows (recorded), not a lost arm; batches
    # as the written outputs' (one identity each), as the arms were measured
    plan = GenerationPlan.from_evaluate(ecfg, count=n, batch_size=WRITE_BATCH, mix_identities=False,
                                        allow_short=True)
    plan = with_strategy(plan, strategy, Path(run), pipe, cfg.data)
    got = sample(pipe, plan, progress=progress)
    src = plan.sources
    names = [src.name(k, i) for k, i in zip(got.labels.tolist(), got.indices.tolist(), strict=True)] if src \
        else []
    recipe = {
        "guidance": ecfg.guidance, **strategy_record(plan), "strength": spec.strength,
        "acceptance": {pipe.identities[k]: v["rate"] for k, v in got.acceptance.items()},
        "kept_per_identity": {pipe.identities[k]: v["kept"] for k, v in got.acceptance.items()},
        "source_windows": sorted(set(names)), "seconds": round(time.time() - t0, 1),
    }
    x = (np.asarray(got.images, np.float32) * 2.0 - 1.0).astype(np.float32)
    return ArmData(spec, (x, got.labels), recipe)


SIMPRE_SEED_OFFSET = 1_000_003  # other walkers than any run simulated with a nearby seed


def simulated_set(cfg: Config, progress: bool = False) -> tuple[np.ndarray, np.ndarray, int]:
    """Simulated walkers for ``simpre`` pre-training, read like the run's data: (images, labels, K).

    The run's simulator settings with ``evaluate.simpre_per_identity`` windows per walker, in the data's
    colormap, resized to ``data.size``; written to a temporary folder and removed after reading. The seed is
    moved by SIMPRE_SEED_OFFSET: with the run's own seed the walkers of the simulated default would be the
    evaluated people themselves, with some of their test windows."""

    per = max(cfg.evaluate.simpre_per_identity, cfg.simulate.recordings_per_identity)
    sim = dataclasses.replace(cfg.simulate, per_identity=per, format="png", colormap=cfg.data.colormap,
                              seed=cfg.simulate.seed + SIMPRE_SEED_OFFSET)
    data_cfg = dataclasses.replace(cfg.data, train_per_identity=None)
    with tempfile.TemporaryDirectory(prefix="dd-simpre-") as tmp:
        simulate_dataset(sim, Path(tmp) / "sim", progress=progress)
        ds = load_spectrograms(Path(tmp) / "sim", data_cfg)
    return ds.images, ds.labels, len(ds.identities)


# ------------------------------------------------------------------------------------ the experiment


def _check_arms(arms: Sequence[ArmData], shape: tuple[int, ...], num_classes: int,
                pretrain: tuple[np.ndarray, np.ndarray, int] | None) -> None:
    for arm in arms:
        if arm.synthetic is not None:
            x, y = arm.synthetic
            if len(x) == 0 or x.shape[1:] != shape or len(x) != len(y):
                raise DopplerDiffError(f"strategy '{arm.spec.name}': synthetic images {x.shape} do not match "
                                       f"the real images (*, {', '.join(map(str, shape))})")
            if y.min() < 0 or y.max() >= num_classes:
                raise DopplerDiffError(f"strategy '{arm.spec.name}': labels outside 0..{num_classes - 1}")
        if arm.spec.simpre and (pretrain is None or pretrain[0].shape[1:] != shape):
            raise DopplerDiffError(f"strategy '{arm.spec.name}' needs simulated pre-training images of the "
                                   f"real images' shape {shape}")


def _arm_set(arm: ArmData, xr: np.ndarray,
             yr: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """An arm's training set: the real windows plus its synthetic ones, with its loss weights (or None)."""
    if arm.synthetic is None:
        return xr, yr, None
    x, y = np.concatenate([xr, arm.synthetic[0]]), np.concatenate([yr, arm.synthetic[1]])
    w = None
    if arm.spec.weight != 1.0:
        w = np.concatenate([np.ones(len(yr)), np.full(len(arm.synthetic[1]), arm.spec.weight)])
    return x, y, w


def run_strategy_arms(
    real_train: Arrays, real_test: Arrays, arms: Sequence[ArmData], num_classes: int, encoder_cfg: Any, *,
    steps: int, seeds: Sequence[int], augment: Any = None, val: Arrays | None = None,
    pretrain: tuple[np.ndarray, np.ndarray, int] | None = None, baseline: Sequence[float] | None = None,
    reuse: dict[str, Sequence[float]] | None = None, fit: Callable[..., Any] | None = None,
    predict: Callable[..., Any] | None = None, device: Any = "cpu", fit_many: Trainer | None = None,
    together: int = 1,
) -> dict[str, Any]:
    """Accuracy on real test of every arm per seed, and its paired gain over the real-only baseline.

    ``baseline``: real-only accuracies already measured with these seeds (else fitted here); ``reuse``: arm
    name -> accuracies already measured (the 'prior' arm is the main experiment's real+synthetic arm);
    ``pretrain``: simulated (images, labels, K) for ``simpre`` arms, one pre-trained classifier per seed.
    Classifiers are fitted as in ``run_synthetic_gain`` (``fit_many``/``fit``, ``together``)."""
    predict = predict or classifier_predict
    xr, yr = np.asarray(real_train[0], np.float32), np.asarray(real_train[1], np.int64)
    xt, yt = np.asarray(real_test[0], np.float32), np.asarray(real_test[1], np.int64)
    _check_arms(arms, xr.shape[1:], num_classes, pretrain)
    fit_all = partial(trainer_for(fit, fit_many), steps=steps, augment=augment, progress=False, device=device,
                      together=together)
    todo = [a for a in arms if not (reuse and a.spec.name in reuse)]
    pre: dict[int, Any] = {}
    if pretrain is not None and any(a.spec.simpre for a in todo):  # one pre-training per seed, shared
        px, py, pk = pretrain
        pre = dict(zip(seeds, fit_all([FitJob(px, py, int(s)) for s in seeds], pk, encoder_cfg, val=None),
                       strict=True))
    jobs = [] if baseline is not None else [FitJob(xr, yr, int(s)) for s in seeds]
    for arm in todo:
        x, y, w = _arm_set(arm, xr, yr)
        jobs += [FitJob(x, y, int(s), w, pre[s] if arm.spec.simpre else None) for s in seeds]
    accs = [float((np.asarray(predict(m, xt)[0]).argmax(1) == yt).mean())
            for m in fit_all(jobs, num_classes, encoder_cfg, val=val)]
    base = list(baseline) if baseline is not None else accs[: len(seeds)]
    measured = iter(accs[len(accs) - len(todo) * len(seeds):])
    runs = {a.spec.name: [float(v) for v in reuse[a.spec.name]] if reuse and a.spec.name in reuse
            else [next(measured) for _ in seeds] for a in arms}
    out: dict[str, Any] = {"baseline": summary(base), "seeds": [int(s) for s in seeds], "steps": int(steps),
                           "arms": {}}
    for arm in arms:
        name = arm.spec.name
        log.info("strategy %-20s accuracy %s (baseline %s)", name, runs[name], base)
        out["arms"][name] = _arm_result(arm, runs[name], base, num_classes, len(yr), pretrain)
    return out


def _arm_result(arm: ArmData, runs: list[float], base: Sequence[float], num_classes: int, n_real: int,
                pretrain: tuple[np.ndarray, np.ndarray, int] | None) -> dict[str, Any]:
    n_syn = 0 if arm.synthetic is None else len(arm.synthetic[1])
    return {
        "accuracy": summary(runs), "gain": summary(np.subtract(runs, base), ci=True),
        "n_synthetic": n_syn, "synthetic_per_identity": round(n_syn / num_classes),
        "synthetic_to_real": round(n_syn / n_real, 4), "synthetic_weight": arm.spec.weight,
        "pretrained_on_simulation": arm.spec.simpre,
        "pretrain_classes": pretrain[2] if arm.spec.simpre and pretrain else None,
    }


def build_arms(specs: Sequence[ArmSpec], pipe: Any, run: Path, cfg: Config, n: int, pool: WindowSet,
               missing: list[str], progress: bool = False) -> list[ArmData]:
    """ArmData for every spec (``n`` synthetic windows per identity unless the spec has ``n:N``): 'prior' is
    the evaluation pool's first windows per identity (the same seeds would make the same images); arms that
    differ only in training levers (w:) share their windows; an arm that cannot be made (e.g. the filter's
    cap) is recorded in ``missing`` and left out."""
    made: dict[tuple[str, int], ArmData | DopplerDiffError] = {}
    arms = []
    for spec in specs:
        n_arm = spec.per_identity or n
        key = (spec.sampling.name, n_arm)
        if key not in made:
            try:
                made[key] = _draw_arm(spec.sampling, pipe, run, cfg, n_arm, pool, progress)
            except DopplerDiffError as exc:
                made[key] = exc
        base = made[key]
        if isinstance(base, DopplerDiffError):
            missing.append(f"strategy arm '{spec.name}' left out: {base}")
            log.warning("strategy arm '%s' left out: %s", spec.name, base)
            continue
        arms.append(ArmData(spec, base.synthetic, {**base.recipe, "synthetic_weight": spec.weight},
                            base.encoded))
    return arms


def _draw_arm(spec: ArmSpec, pipe: Any, run: Path, cfg: Config, n: int, pool: WindowSet,
              progress: bool) -> ArmData:
    """The windows of one sampling spec (`prior` from the pool while it has enough); DopplerDiffError if
    they cannot be made."""
    k = len(pipe.identities)
    if spec.name == "prior" and n <= np.bincount(pool.y, minlength=k).min():
        first = first_per_identity(pool, n, k)
        return ArmData(spec, (first.x, first.y), {
            "guidance": cfg.evaluate.guidance, "guidance_interval": None, "from_real": None, "strength": None,
            "filter": None}, (first.f, first.logits))
    return make_arm_data(spec, pipe, run, cfg, n, progress)


# classifier architecture -> the metrics.json section holding its augmentation experiment
ARCH_KEYS = (("encoder", "augmentation"), ("judge", "augmentation_judge"))
RECOMMEND_RULE = ("the arm whose smaller mean gain over the classifier architectures is largest; recommended "
                  "only if the 95% CI of its gain lies above 0 under every architecture, else real data only")


def recommend(per_arch: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """A recipe from the strategy arms: ``per_arch`` maps an architecture ('encoder', 'judge') to its
    ``run_strategy_arms`` result. ``strategy`` is None (use the real windows only) when no arm's gain is
    significantly above 0 under every architecture; ``best`` is the best candidate either way."""
    archs = {a: r["arms"] for a, r in per_arch.items() if r and r.get("arms")}
    names = [n for n in next(iter(archs.values()), {}) if all(n in arms for arms in archs.values())]
    if not names:
        return {"strategy": None, "best": None, "rule": RECOMMEND_RULE, "gain": {}, "ci95": {}}
    best = max(names, key=lambda n: min(arms[n]["gain"]["mean"] for arms in archs.values()))
    cis = {a: arms[best]["gain"].get("ci95") for a, arms in archs.items()}
    significant = all(ci is not None and ci[0] > 0 for ci in cis.values())
    return {"strategy": best if significant else None, "best": best, "rule": RECOMMEND_RULE,
            "gain": {a: arms[best]["gain"]["mean"] for a, arms in archs.items()}, "ci95": cis}


def sample_quality(arm: ArmData, encode: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]],
                   test_features: np.ndarray, knn_k: int) -> dict[str, Any]:
    """Encoder identity accuracy and k-NN precision/recall (vs real test) of an arm's synthetic windows
    (``encode`` is called only for windows not encoded yet)."""

    if arm.synthetic is None:
        return {}
    x, y = arm.synthetic
    feats, logits = arm.encoded if arm.encoded is not None else encode(x)
    out: dict[str, Any] = {"encoder_accuracy": float((logits.argmax(1) == y).mean())}
    k = min(knn_k, len(feats) - 1, len(test_features) - 1)
    if k >= 1:
        pr = precision_recall(test_features, feats, k=k)
        out.update(precision=pr["precision"], recall=pr["recall"], knn_k=k)
    return out
