"""Sampling strategies of `generate` and `augment`, checked and resolved against a run.

A ``Strategy`` names what to do (guidance interval, real-seeded variations, filtering); ``with_strategy``
adds what it needs (sources, filter, ...) to a ``generate.GenerationPlan``.
Every bad setting is one ``DopplerDiffError`` raised before anything is generated or written.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np

from dopplerdiff.config.data import DataConfig
from dopplerdiff.errors import DopplerDiffError
from dopplerdiff.generate.plan import GenerationPlan
from dopplerdiff.models.encoder import load_encoder
from dopplerdiff.pipelines.sampling import check_interval, check_strength
from dopplerdiff.synthetic.filtering import (
    DEFAULT_QUANTILES,
    DEFAULT_STATS,
    DEFAULT_TOLERANCE,
    build_filter,
    check_quantiles,
    check_stats,
    check_tolerance,
)
from dopplerdiff.synthetic.sources import real_sources, train_sources
from dopplerdiff.utils.rundir import RunDir

DEFAULT_STRENGTH = 0.6


@dataclasses.dataclass
class Strategy:
    """How synthetic samples are made (defaults: plain sampling from noise, no filter)."""

    guidance_interval: tuple[float, float] | None = None
    from_real: str | None = None  # "split" or a folder of <identity>/ windows
    strength: float | None = None  # img2img noise strength, only with from_real (default 0.6)
    filter: bool = False
    min_confidence: float = 0.5  # 0 disables the confidence test
    physics_stats: tuple[str, ...] = DEFAULT_STATS  # empty disables the physics test
    physics_quantiles: tuple[float, float] = DEFAULT_QUANTILES
    physics_tolerance: float = DEFAULT_TOLERANCE  # widen each range by this x the all-identity range
    max_attempts: int = 10  # per accepted sample

    def check(self, steps: int) -> None:
        check_interval(self.guidance_interval)
        if self.strength is not None and self.from_real is None:
            raise DopplerDiffError("--strength needs --from-real (split or a folder)")
        if self.from_real is not None:
            check_strength(self.strength if self.strength is not None else DEFAULT_STRENGTH, steps)
        if self.max_attempts < 1:
            raise DopplerDiffError(f"--max-attempts must be >= 1, got {self.max_attempts}")
        if self.filter:
            check_quantiles(self.physics_quantiles)
            check_tolerance(self.physics_tolerance)
            check_stats(self.physics_stats)
            if not 0.0 <= self.min_confidence <= 1.0:
                raise DopplerDiffError(f"--min-confidence must be in [0, 1], got {self.min_confidence}")

    def describe(self) -> str:
        parts = ["from-real" if self.from_real else "noise"]
        if self.guidance_interval:
            parts.append("guidance-interval")
        if self.filter:
            parts.append("filtered")
        return "+".join(parts)


def _encoder(run: Path, label_map: list[str]) -> Any:
    path = RunDir(run).encoder
    if not path.is_dir():
        raise DopplerDiffError(f"run '{run}' has no encoder ('{path}' missing) for the confidence filter; "
                               "run `dopplerdiff train-encoder` or pass --min-confidence 0")
    enc = load_encoder(path)
    if enc.config.identities is not None and list(enc.config.identities) != list(label_map):
        raise DopplerDiffError(f"encoder '{path}' was trained on other identities than the generator's")
    return enc


def with_strategy(
    plan: GenerationPlan, strategy: Strategy, run: Path, pipe: Any, cfg: DataConfig,
    budget: int | None = None,
) -> GenerationPlan:
    """``plan`` with the strategy's guidance interval, sources (+ strength), filter and attempts.

    ``pipe``: the run's pipeline (its identities and colormap read the sources); ``budget``: only the first
    ``budget`` training windows per identity seed samples and set physics ranges.
    """
    strategy.check(plan.steps)
    s, label_map = strategy, list(pipe.identities)
    cfg = dataclasses.replace(cfg, colormap=pipe.config.colormap)
    sources = real_sources(s.from_real, run, label_map, cfg) if s.from_real else None
    if sources is not None and budget is not None and s.from_real == "split":
        sources = sources.limit(budget)
    sample_filter = None
    if s.filter:
        enc = _encoder(run, label_map) if s.min_confidence > 0 else None
        real01 = labels = None
        if s.physics_stats:
            train = sources if s.from_real == "split" else train_sources(run, label_map, cfg)
            train = train.limit(budget) if budget is not None else train
            real01 = np.concatenate([(train.images[k] + 1) / 2 for k in sorted(train.images)])
            labels = np.concatenate([np.full(train.count(k), k) for k in sorted(train.images)])
        sample_filter = build_filter(enc, real01, labels, min_confidence=s.min_confidence,
                                     stats=tuple(s.physics_stats), quantiles=s.physics_quantiles,
                                     tolerance=s.physics_tolerance)
    return plan.replace(interval=tuple(s.guidance_interval) if s.guidance_interval else None, sources=sources,
                        strength=(s.strength or DEFAULT_STRENGTH) if sources is not None else 1.0,
                        filter=sample_filter, attempts=s.max_attempts)
