"""Evaluation config: sample counts, metrics, augmentation experiment."""

from __future__ import annotations

from dataclasses import dataclass, field

STRATEGY_PARTS = ("prior, interval, real:S (S in (0, 1]), filtered, simpre, w:W (synthetic loss weight W in "
                  "(0, 1]), n:N (N synthetic windows per identity)")
# names of data.physics statistics (checked at config load; the statistics themselves live in data.physics)
PHYSICS_STATS = (
    "torso_doppler", "torso_spread", "upper_envelope", "lower_envelope", "extent", "peak_extent",
    "cadence", "periodicity", "background", "mean_intensity", "occupancy",
)
# the physics filter widens each identity's range by tolerance x the all-identity range (synthetic.filtering)
PHYSICS_TOLERANCE = 0.25
MAX_PHYSICS_TOLERANCE = 10.0
LEVERS = ("w:", "n:")  # parts that change how an arm's windows enter training, not how they are drawn


JUDGE_ARCHS = ("plain", "residual")  # evaluate/judge.py: conv-BN-ReLU stages or two-layer residual stages

@dataclass(frozen=True)
class ArmSpec:
    """One strategy arm of the augmentation experiment, parsed from a name like ``real:0.5+filtered``.

    ``prior``: samples from noise at the evaluation guidance; ``interval``: guidance only inside
    ``evaluate.augment_guidance_interval``; ``real:S``: img2img from the run's training windows at strength S;
    ``filtered``: the synthetic filter (encoder confidence + physics range); ``simpre``: the classifier is
    pre-trained on simulated walkers, then trained on the arm's data. ``simpre`` alone adds no synthetic
    images. How the synthetic windows enter training: ``w:W`` weighs their loss terms by W (real: 1);
    ``n:N`` adds N per identity instead of ``evaluate.augment_synthetic_per_identity``."""

    name: str
    interval: bool = False
    strength: float | None = None
    filtered: bool = False
    simpre: bool = False
    weight: float = 1.0
    per_identity: int | None = None

    @property
    def synthetic(self) -> bool:
        """Whether the arm adds synthetic images to the real windows (any part but simpre, w:, n:)."""
        return any(p != "simpre" and not p.startswith(LEVERS) for p in self.name.split("+"))

    @property
    def sampling(self) -> ArmSpec:
        """The same arm with the training levers (w:, n:) removed: what decides how its windows are drawn."""
        name = "+".join(p for p in self.name.split("+") if not p.startswith(LEVERS))
        return ArmSpec(name, self.interval, self.strength, self.filtered, self.simpre)


def parse_strategy(name: str) -> ArmSpec:
    """``'real:0.5+filtered'`` -> ArmSpec; ValueError naming the bad part otherwise."""
    parts = [p.strip() for p in str(name).split("+")]
    where = f"evaluate.augment_strategies: strategy '{name}'"
    if any(not p for p in parts) or len(set(parts)) != len(parts):
        raise ValueError(f"{where} has an empty or repeated part (parts: {STRATEGY_PARTS}, joined by '+')")
    spec: dict = {"name": "+".join(parts)}
    for part in parts:
        if part.startswith(LEVERS):
            _lever(part, spec, where)
        elif part.startswith("real:"):
            try:
                strength = float(part[5:])
            except ValueError:
                strength = float("nan")
            if "strength" in spec or not 0.0 < strength <= 1.0:
                raise ValueError(f"{where}: '{part}' needs one strength S in (0, 1]")
            spec["strength"] = strength
        elif part in ("interval", "filtered", "simpre"):
            spec[part] = True
        elif part != "prior":
            raise ValueError(f"{where}: unknown part '{part}' (valid: {STRATEGY_PARTS}, joined by '+')")
    if "prior" in parts and "strength" in spec:
        raise ValueError(f"{where}: 'prior' samples from noise, 'real:S' from real windows; give one")
    arm = ArmSpec(**spec)
    if not arm.synthetic and ("weight" in spec or "per_identity" in spec):
        raise ValueError(f"{where}: w:/n: need synthetic windows; add 'prior' (or another sampling part)")
    if not arm.synthetic and not arm.simpre:
        raise ValueError(f"{where}: needs a sampling part (prior, interval, real:S, filtered) or simpre")
    return arm


def _lever(part: str, spec: dict, where: str) -> None:
    """Parse 'w:W' (loss weight in (0, 1]) or 'n:N' (windows per identity >= 1) into ``spec``."""
    key, text = ("weight" if part.startswith("w:") else "per_identity"), part[2:]
    if key in spec:
        raise ValueError(f"{where}: '{part[:2]}' given twice")
    if key == "weight":
        try:
            value: float = float(text)
        except ValueError:
            value = float("nan")
        if not 0.0 < value <= 1.0:
            raise ValueError(f"{where}: '{part}' needs one loss weight W in (0, 1]")
    else:
        if not text.isdigit() or int(text) < 1:
            raise ValueError(f"{where}: '{part}' needs a whole number N >= 1 of windows per identity")
        value = int(text)
    spec[key] = value


@dataclass
class EvaluateConfig:
    num_per_identity: int = 100
    steps: int = 20
    scheduler: str = "dpmpp"
    guidance: float = 2.0
    guidance_sweep: list[float] = field(default_factory=lambda: [0.0, 1.0, 2.0, 4.0])
    sweep_num_per_identity: int = 20
    bootstrap: int = 1000
    knn_k: int = 3
    augment_seeds: int = 3
    augment_synthetic_per_identity: int = 50
    augment_steps: int = 300  # classifier training steps per augmentation run
    # CNN widths of the augmentation experiment's classifiers (None: encoder.channels); a lighter one keeps
    # the nine trainings affordable on a CPU, and every arm uses the same
    augment_channels: list[int] | None = None
    # The independent judge (a plain CNN sharing nothing with the encoder or the generator): its widths and
    # training steps; C2ST classifiers use the same widths. 0 steps disables each.
    judge_channels: list[int] = field(default_factory=lambda: [16, 32, 64])
    judge_steps: int = 300
    judge_arch: str = "plain"  # 'plain' (conv-BN-ReLU stages) or 'residual' (two-layer residual stages)
    c2st_steps: int = 200
    judge_augmentation: bool = True  # the augmentation experiment scored by judge-architecture classifiers
    # how many of an experiment's classifiers (arms x seeds, one architecture) train at once as one grouped
    # network; each is the model its own training gives (docs/evaluation-cost.md). 1 (one after another):
    # on one CPU thread a group of 4-12 ran 0.5-0.9x as fast; on two threads of a busy 2-core machine 1.6-2.8x
    # (bench/results/eval_cost_threads{1,2}.json): bench/eval_cost.py --run decides on a quiet one
    augment_together: int = 1
    # Strategy arms of the augmentation experiment (ArmSpec): each trains the same classifiers with the same
    # steps and seeds on real + that strategy's synthetic windows; gains are paired with the real-only arm.
    augment_strategies: list[str] = field(default_factory=lambda: ["prior"])
    # 'interval' arms: Kynkaenniemi et al. 2024 guide only at middle noise levels, sigma in (0.28, 5.42] for
    # EDM2-S; on this project's scaled-linear schedule those sigmas are t/T = 0.07 and 0.81
    augment_guidance_interval: list[float] = field(default_factory=lambda: [0.07, 0.81])
    simpre_per_identity: int = 40  # simulated windows per simulated walker for 'simpre' pre-training
    # 'filtered' arms: the encoder-confidence threshold and the physics statistics tested against each
    # identity's training range (None: the filter's defaults, as `generate --filter`)
    augment_filter_confidence: float = 0.5
    augment_filter_stats: list[str] | None = None
    # each identity's physics range is widened by this fraction of the range over all identities: a short
    # recording's own range can be nearly a point (e.g. its background level)
    augment_filter_tolerance: float = PHYSICS_TOLERANCE
    # a second judge trained at the data's native size scores reconstructions and samples resized as
    # generate writes them (cost: the judge's, times (native / data.size)^2 pixels; off by default)
    native_judge: bool = False
    # runs trained on walking conditions: per condition, this many samples per person in that condition
    condition_samples_per_identity: int = 16
    seed: int = 0

    def __post_init__(self) -> None:
        counts = {"num_per_identity": self.num_per_identity, "steps": self.steps,
                  "sweep_num_per_identity": self.sweep_num_per_identity, "knn_k": self.knn_k,
                  "condition_samples_per_identity": self.condition_samples_per_identity}
        for name, value in counts.items():
            if value < 1:
                raise ValueError(f"evaluate.{name} must be >= 1, got {value}")
        if self.guidance < 0 or any(g < 0 for g in self.guidance_sweep):
            raise ValueError("evaluate.guidance and evaluate.guidance_sweep must be >= 0")
        if self.augment_channels is not None and (
            not self.augment_channels or any(c < 1 for c in self.augment_channels)
        ):
            raise ValueError(f"evaluate.augment_channels must be positive CNN widths or null, "
                             f"got {self.augment_channels}")
        if not self.judge_channels or any(c < 1 for c in self.judge_channels):
            raise ValueError(f"evaluate.judge_channels must be positive CNN widths, "
                             f"got {self.judge_channels}")
        if self.judge_arch not in JUDGE_ARCHS:
            raise ValueError(f"evaluate.judge_arch must be one of {', '.join(JUDGE_ARCHS)}, "
                             f"got {self.judge_arch!r}")
        if self.augment_together < 1:
            raise ValueError(f"evaluate.augment_together must be >= 1, got {self.augment_together}")
        if self.judge_steps < 0 or self.c2st_steps < 0:
            raise ValueError("evaluate.judge_steps and evaluate.c2st_steps must be >= 0")
        self._check_strategies()

    def _check_strategies(self) -> None:
        names = [parse_strategy(n).name for n in self.augment_strategies]
        if len(set(names)) != len(names):
            raise ValueError(f"evaluate.augment_strategies lists a strategy twice: {self.augment_strategies}")
        gi = self.augment_guidance_interval
        if len(gi) != 2 or not 0.0 <= gi[0] <= gi[1] <= 1.0:
            raise ValueError(f"evaluate.augment_guidance_interval must be [lo, hi] with 0 <= lo <= hi <= 1, "
                             f"got {gi}")
        if not 0.0 <= self.augment_filter_confidence <= 1.0:
            raise ValueError(f"evaluate.augment_filter_confidence must be in [0, 1], "
                             f"got {self.augment_filter_confidence}")
        bad = [s for s in (self.augment_filter_stats or []) if s not in PHYSICS_STATS]
        if bad:
            raise ValueError(f"evaluate.augment_filter_stats: unknown statistic(s) {', '.join(bad)}; "
                             f"valid: {', '.join(PHYSICS_STATS)}")
        if not 0.0 <= self.augment_filter_tolerance <= MAX_PHYSICS_TOLERANCE:
            raise ValueError(f"evaluate.augment_filter_tolerance must be in [0, {MAX_PHYSICS_TOLERANCE:g}], "
                             f"got {self.augment_filter_tolerance}")
        if self.simpre_per_identity < 1:
            raise ValueError(f"evaluate.simpre_per_identity must be >= 1, got {self.simpre_per_identity}")

    def arms(self) -> list[ArmSpec]:
        """The parsed strategy arms, in the configured order."""
        return [parse_strategy(n) for n in self.augment_strategies]
