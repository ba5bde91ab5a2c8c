"""The evaluation that shares nothing with the models: independent judge, C2ST and texture statistics.

``IndependentEval`` is fed the image sets as ``evaluate_run`` produces them (real train/val/test, test and
train reconstructions, generated samples) and fills three sections of ``metrics.json``:

- ``judge``: identity accuracy of real test, reconstructions and samples by the judge
  (``dopplerdiff.evaluate.judge``), with ratios to its real-test accuracy;
- ``c2st``: real-vs-synthetic classifier two-sample tests (0.5 = indistinguishable) for reconstructions and
  samples, beside the real-vs-real floor (train windows vs later test windows of the same recordings);
- ``borders``: corner pixels and edge lines of each set against the real test windows' 5-95% range;
  per-pixel mean/std difference maps and the C2ST's saliency go to the report's figures; a second C2ST
  without the outer pixels says whether anything but the border gives samples away;
- ``texture``: high-frequency energy, sparsity, local variance and intensity-histogram distance of each set
  against real test, plus radial power spectra and histograms for the report's plots.

Images are (N, C, H, W) in [-1, 1].
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from functools import partial
from typing import Any

import numpy as np

from dopplerdiff.config.evaluate import EvaluateConfig
from dopplerdiff.data.images import to_unit
from dopplerdiff.evaluate import plots
from dopplerdiff.evaluate.borders import compare_borders, difference_maps
from dopplerdiff.evaluate.c2st import MIN_PER_SET, c2st, without_border
from dopplerdiff.evaluate.judge import (
    JudgeSettings,
    fit_judge,
    judge_logits,
    predict_for_experiment,
)
from dopplerdiff.evaluate.metrics import identity_accuracy
from dopplerdiff.evaluate.texture import compare_texture, radial_power_spectrum
from dopplerdiff.evaluate.together import fit_judges

log = logging.getLogger(__name__)
JUDGE_SEED_OFFSET = 1009  # the judge's own seed: never the encoder's or the generator's
JUDGE_PART = "judge, C2ST, texture"  # its part of metrics.json "seconds_by_part"
SET_NAMES = {"reconstruction": "test reconstructions", "generated": "generated samples"}


class IndependentEval:
    """Judge, C2ST and texture statistics, accumulated set by set into ``metrics``."""

    def __init__(self, cfg: EvaluateConfig, train: tuple[np.ndarray, np.ndarray],
                 val: tuple[np.ndarray, np.ndarray], test: tuple[np.ndarray, np.ndarray], k: int,
                 device: Any = "cpu", on_seconds: Callable[[float], None] | None = None):
        t0 = time.perf_counter()
        self.on_seconds = on_seconds  # gets the wall seconds of the judge's training and of each scored set
        self.cfg, self.k, self.device = cfg, k, device
        self.train, self.test = train, test
        self.settings = JudgeSettings(channels=tuple(cfg.judge_channels), steps=cfg.judge_steps,
                                      arch=cfg.judge_arch)
        self.c2st_settings = JudgeSettings(channels=tuple(cfg.judge_channels), steps=cfg.c2st_steps,
                                           arch=cfg.judge_arch)
        log.info("training the independent judge (%d steps)", cfg.judge_steps)
        self.judge = fit_judge(train[0], train[1], k, self.settings, seed=cfg.seed + JUDGE_SEED_OFFSET,
                               val=val if len(val[1]) else None, device=device)
        self.test01 = to_unit(test[0])
        real = self._accuracy(test[0], test[1])
        self.judge_m: dict[str, Any] = {"channels": list(cfg.judge_channels), "steps": cfg.judge_steps,
                                        "arch": cfg.judge_arch,
                                        "seed": cfg.seed + JUDGE_SEED_OFFSET, "real_test": real}
        self.c2st_m: dict[str, Any] = {"steps": cfg.c2st_steps}
        self.texture_m: dict[str, Any] = {"real_test": None}
        self.spectra = {"real test": radial_power_spectrum(self.test01)}
        self.pixels = {"real test": self.test01}
        self.borders_m: dict[str, Any] = {}
        self.maps: dict[str, dict[str, np.ndarray]] = {}
        self.saliency: dict[str, np.ndarray] = {}
        if self.cfg.c2st_steps > 0:  # the floor: real train windows vs later real windows (test)
            self.c2st_m["real_train_vs_test"] = self._c2st(train[0], test[0], with_saliency=False)
        self._spent(t0)

    def _spent(self, t0: float) -> None:
        if self.on_seconds is not None:
            self.on_seconds(time.perf_counter() - t0)

    def _accuracy(self, x: np.ndarray, y: np.ndarray) -> dict[str, Any]:
        return identity_accuracy(judge_logits(self.judge, x), y, self.k, self.cfg.bootstrap, self.cfg.seed)

    def _c2st(self, real: np.ndarray, other: np.ndarray, with_saliency: bool = True) -> dict[str, Any]:
        if min(len(real), len(other)) < MIN_PER_SET:  # tiny runs: say so instead of failing the evaluation
            return {"skipped": f"fewer than {MIN_PER_SET} windows ({len(real)} real, {len(other)} other)"}
        return c2st(real, other, self.c2st_settings, seed=self.cfg.seed, device=self.device,
                    with_saliency=with_saliency)

    def add_set(self, key: str, x: np.ndarray, y: np.ndarray, c2st_real_other: tuple | None) -> None:
        """Score one synthetic set (``reconstruction`` or ``generated``) under judge, C2ST and texture."""
        t0 = time.perf_counter()
        a = self._accuracy(x, y)
        real = self.judge_m["real_test"]["overall"]
        self.judge_m[key] = a
        self.judge_m[f"ratio_{key}"] = a["overall"] / real if real > 0 else None
        x01 = to_unit(x)
        tex = compare_texture(self.test01, x01, seed=self.cfg.seed)
        self.texture_m["real_test"] = tex["real"]
        self.texture_m[key] = {**tex["other"], "ratio_to_real": tex["ratio_to_real"],
                               "histogram_w1": tex["histogram_w1"]}
        self.spectra[SET_NAMES[key]] = radial_power_spectrum(x01)
        self.pixels[SET_NAMES[key]] = x01
        self.borders_m[key] = compare_borders(self.test[0], x)
        self.maps[SET_NAMES[key]] = difference_maps(self.test[0], x)
        if c2st_real_other is not None and self.cfg.c2st_steps > 0:
            self.c2st_m[key] = self._c2st(*c2st_real_other)
            if "saliency" in self.c2st_m[key]:
                self.saliency[SET_NAMES[key]] = self.c2st_m[key].pop("saliency")
            real_other = [without_border(v) for v in c2st_real_other]
            if min(real_other[0].shape[-2:]) >= 8:  # a border-free test: does anything else give it away?
                self.c2st_m[f"{key}_no_border"] = self._c2st(*real_other, with_saliency=False)
        log.info("%s: judge accuracy %.3f (real %.3f), C2ST %s", key, a["overall"], real,
                 self.c2st_m.get(key, {}).get("accuracy"))
        self._spent(t0)

    def experiment_fns(self) -> tuple[Any, Any]:
        """(trainer, predict) of judge-architecture classifiers for the augmentation experiments (the
        trainer fits many at once: ``dopplerdiff.evaluate.together``)."""
        return partial(fit_judges, channels=tuple(self.cfg.judge_channels)), predict_for_experiment

    def synthetic_gain(self, run_experiment: Any, synthetic: tuple[np.ndarray, np.ndarray],
                       **kw: Any) -> dict:
        """The augmentation experiment with judge-architecture classifiers (its own recipe and widths; the
        same step budget as the encoder-architecture arms, evaluate.augment_steps)."""
        fit_many, predict = self.experiment_fns()
        res = run_experiment(self.train, self.test, synthetic, self.k, None, steps=self.cfg.augment_steps,
                             fit_many=fit_many, predict=predict, device=self.device,
                             together=self.cfg.augment_together, **kw)
        res["classifier"] = f"judge CNN {list(self.cfg.judge_channels)}"
        return res

    def write(self, metrics: dict[str, Any], figures: dict[str, bytes]) -> None:
        metrics["judge"], metrics["c2st"], metrics["texture"] = self.judge_m, self.c2st_m, self.texture_m
        metrics["borders"] = self.borders_m
        figures["texture"] = plots.texture_plot(self.spectra, self.pixels)
        if self.maps:
            figures["difference_maps"] = plots.difference_map_plot(self.maps, self.saliency)
