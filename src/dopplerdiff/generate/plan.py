"""What to generate and how: one frozen ``GenerationPlan``, checked once when it is made.

Every caller (the CLI ``generate``/``augment``, the run's generate stage, evaluation, the diffusion
validation grid, the app, the few-window experiments) builds a plan and hands it to ``generate.sample`` or
``generate.write_plan``; a bad field is one ``DopplerDiffError`` naming it, raised before anything is
sampled or written. ``synthetic.strategy.with_strategy`` adds a strategy's sources and filter to a plan.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from typing import Any

from dopplerdiff.config import Config
from dopplerdiff.config.base import check_seed
from dopplerdiff.config.diffusion import DiffusionConfig
from dopplerdiff.config.evaluate import EvaluateConfig
from dopplerdiff.errors import DopplerDiffError
from dopplerdiff.pipelines.sampling import check_interval, check_strength
from dopplerdiff.schedulers import check_scheduler_name

EVAL_BATCH = 32  # images per sampler batch of evaluation and validation (their metrics were measured so)
WRITE_BATCH = 16  # ... of the written outputs (generate, augment, the app)


def _bad(field: str, message: str) -> DopplerDiffError:
    return DopplerDiffError(f"generation plan: {field} {message}")


def _count(field: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise _bad(field, f"must be an integer >= 1, got {value!r}")


def _scale(field: str, value: Any) -> None:
    if not isinstance(value, numbers.Real) or not math.isfinite(value) or value < 0:
        raise _bad(field, f"must be a finite number >= 0, got {value!r}")


def _checked(field: str, check: Any, *args: Any) -> Any:
    """``check(*args)``, its error naming the plan's ``field``."""
    try:
        return check(*args)
    except DopplerDiffError as exc:
        raise _bad(field, f"is invalid: {exc}") from None


@dataclasses.dataclass(frozen=True)
class GenerationPlan:
    """``count`` samples of each of ``identities`` (names or row indices; None: every identity).

    Sample ``i`` of identity ``k`` starts from ``sample_seed(seed, k, i)``. ``scheduler`` None keeps the
    pipeline's current sampler. ``interval``: guidance only inside that fraction of the steps. ``sources``
    (an object with ``image(k, i)`` in [-1, 1], and ``name``/``origin`` when written): img2img from them at
    ``strength``. ``filter`` (``accept(images01, labels)`` -> bool mask): oversample until ``count`` pass, at
    most ``attempts`` x ``count`` per identity; ``allow_short`` keeps fewer instead of failing.
    ``condition``: the walking condition of every sample, guided by ``condition_guidance`` (default
    ``guidance``). ``batch_size``: images per sampler call (seeds do not depend on it). ``mix_identities``:
    a batch may hold several identities (fewer calls; evaluation and validation); False (written outputs)
    keeps one identity per batch, so an identity's files are the same bits whichever others are requested
    (batched kernels round the last float bit differently).
    """

    identities: tuple[int | str, ...] | None = None
    count: int = 1
    steps: int = 20
    guidance: float = 2.0
    scheduler: str | None = None
    seed: int = 0
    interval: tuple[float, float] | None = None
    sources: Any = None
    strength: float = 1.0
    filter: Any = None
    attempts: int = 10
    allow_short: bool = False
    condition: str | None = None
    condition_guidance: float | None = None
    batch_size: int = WRITE_BATCH
    mix_identities: bool = False

    def __post_init__(self) -> None:
        if self.identities is not None:
            object.__setattr__(self, "identities", tuple(self.identities))
            if not self.identities:
                raise _bad("identities", "is empty (None means every identity)")
        for name in ("count", "steps", "attempts", "batch_size"):
            _count(name, getattr(self, name))
        _scale("guidance", self.guidance)
        if self.condition_guidance is not None:
            _scale("condition_guidance", self.condition_guidance)
        if self.scheduler is not None:
            _checked("scheduler", check_scheduler_name, self.scheduler)
        _checked("seed", check_seed, self.seed)
        object.__setattr__(self, "interval", _checked("interval", check_interval, self.interval))
        self._check_strength()

    def _check_strength(self) -> None:
        if self.sources is None and self.strength != 1.0:
            raise _bad("strength", f"{self.strength} needs sources (img2img); without them it is 1")
        _checked("strength", check_strength, self.strength, self.steps)

    def replace(self, **changes: Any) -> GenerationPlan:
        """A copy with ``changes`` (checked again)."""
        return dataclasses.replace(self, **changes)

    @classmethod
    def from_diffusion(cls, d: DiffusionConfig, *, count: int, seed: int, identities: Any = None,
                       **changes: Any) -> GenerationPlan:
        """The diffusion section's sampler settings (the run's generate stage, the validation grid);
        ``changes``: other fields."""
        return cls(identities=identities, count=count, steps=d.num_inference_steps, guidance=d.guidance_scale,
                   scheduler=d.scheduler, seed=seed, **changes)

    @classmethod
    def from_evaluate(cls, e: EvaluateConfig, *, count: int, identities: Any = None,
                      **changes: Any) -> GenerationPlan:
        """The evaluate section's sampler settings (every sample evaluation and its experiments draw);
        ``changes``: other fields, or these settings changed (e.g. the guidance of a sweep)."""
        settings = {"steps": e.steps, "guidance": e.guidance, "scheduler": e.scheduler, "seed": e.seed,
                    "batch_size": EVAL_BATCH, "mix_identities": True}
        return cls(identities=identities, count=count, **{**settings, **changes})

    @classmethod
    def from_options(cls, cfg: Config, *, count: int, seed: int, identities: Any = None,
                     steps: int | None = None, guidance: float | None = None, scheduler: str | None = None,
                     batch_size: int = WRITE_BATCH, condition: str | None = None,
                     condition_guidance: float | None = None) -> GenerationPlan:
        """The CLI's options; an option left None takes the run config's diffusion section."""
        d = cfg.diffusion
        return cls(identities=identities, count=count, seed=seed, batch_size=batch_size,
                   steps=d.num_inference_steps if steps is None else steps,
                   guidance=d.guidance_scale if guidance is None else guidance,
                   scheduler=scheduler or d.scheduler, condition=condition,
                   condition_guidance=condition_guidance)
