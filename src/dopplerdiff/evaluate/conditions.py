"""Walking conditions in the evaluation: per condition, are the samples of each person in that condition
recognised as the person and as the condition?

For a run trained on several conditions (``pipe.conditions``): per condition c, the people with real test
windows in c get ``n`` samples each in c (``generate.sample`` with the condition; same seeds as the main
pool, so only the condition differs); scored are

- identity accuracy of the samples and of the real test windows of c (the run's encoder),
- Fréchet distance of the samples vs the real test windows of c (encoder features; None below the minimum),
- condition accuracy: a judge-architecture classifier of the condition, trained on the real training windows
  (condition labels) and never on samples, applied to the real test windows of c and to the samples.

Images are (N, C, H, W) float32 in [-1, 1]; metrics.json gets ``conditions`` (one row per condition).
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from dopplerdiff.config.evaluate import EvaluateConfig
from dopplerdiff.data.images import SpectrogramSet
from dopplerdiff.evaluate.context import EvalContext
from dopplerdiff.evaluate.judge import JudgeSettings, fit_judge, judge_logits
from dopplerdiff.evaluate.metrics import MIN_SAMPLES_FD, frechet_distance
from dopplerdiff.evaluate.windows import encoder_outputs
from dopplerdiff.generate import GenerationPlan, sample

log = logging.getLogger(__name__)


def _accuracy(logits: np.ndarray, y: np.ndarray) -> float | None:
    return float((logits.argmax(1) == y).mean()) if len(y) else None


def condition_judge(train: SpectrogramSet, ecfg: EvaluateConfig, device: Any) -> Any:
    """A classifier of the walking condition on real training windows (the judge's architecture)."""
    s = JudgeSettings(channels=tuple(ecfg.judge_channels), steps=ecfg.judge_steps, arch=ecfg.judge_arch)
    return fit_judge(train.images, train.conditions, len(train.condition_names), s, seed=ecfg.seed,
                     device=device)


def _samples(pipe: Any, rows: list[int], n: int, condition: str, ecfg: EvaluateConfig) -> np.ndarray:
    plan = GenerationPlan.from_evaluate(ecfg, identities=rows, count=n, condition=condition)
    return (sample(pipe, plan, progress=False).images * 2.0 - 1.0).astype(np.float32)


def condition_metrics(pipe: Any, encoder: Any, train: SpectrogramSet, test: SpectrogramSet, n: int,
                      ecfg: EvaluateConfig, device: Any = "cpu") -> list[dict[str, Any]] | None:
    """One row per condition of the data (see the module doc); None for a run without conditions."""
    names = list(test.condition_names)
    if len(names) < 2 or list(pipe.conditions) != names:
        return None
    judge = condition_judge(train, ecfg, device)
    rows = []
    for c, name in enumerate(names):
        mask = test.conditions == c
        people = sorted(set(test.labels[mask].tolist()))
        real_x, real_y = test.images[mask], test.labels[mask]
        gen = _samples(pipe, [pipe.identities.index(test.identities[p]) for p in people], n, name, ecfg)
        gen_y = np.repeat(np.asarray(people, np.int64), n)
        (rf, rl), (gf, gl) = encoder_outputs(encoder, real_x), encoder_outputs(encoder, gen)
        enough = min(len(rf), len(gf)) >= MIN_SAMPLES_FD
        as_c = {name: _accuracy(judge_logits(judge, x), np.full(len(x), c))
                for name, x in (("real_test", real_x), ("generated", gen))}
        rows.append({
            "condition": name, "people": len(people), "real_test": int(mask.sum()), "samples": len(gen_y),
            "identity_accuracy": {"real_test": _accuracy(rl, real_y), "generated": _accuracy(gl, gen_y)},
            "condition_accuracy": as_c,
            "fd_gen_vs_test": frechet_distance(gf, rf) if enough else None})
        log.info("condition %s: identity accuracy %.3f (real %.3f), recognised as %s %.3f", name,
                 rows[-1]["identity_accuracy"]["generated"], rows[-1]["identity_accuracy"]["real_test"], name,
                 rows[-1]["condition_accuracy"]["generated"])
    return rows


def condition_section(ctx: EvalContext, pipe: Any) -> None:
    """metrics.json ``conditions`` for a run trained on walking conditions (nothing for a flat run)."""
    ecfg = ctx.cfg.evaluate
    if not getattr(pipe, "conditions", None):
        return
    rows = condition_metrics(pipe, ctx.encoder, ctx.sets["train"], ctx.sets["test"],
                             ecfg.condition_samples_per_identity, ecfg, ctx.device)
    if rows:
        ctx.st.metrics["conditions"] = rows
