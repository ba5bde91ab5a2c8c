"""Evaluation config: sample counts, metrics, augmentation experiment."""

from __future__ import annotations

from dataclasses import dataclass, field


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
    c2st_steps: int = 200
    judge_augmentation: bool = True  # the augmentation experiment scored by judge-architecture classifiers
    seed: int = 0

    def __post_init__(self) -> None:
        counts = {"num_per_identity": self.num_per_identity, "steps": self.steps,
                  "sweep_num_per_identity": self.sweep_num_per_identity, "knn_k": self.knn_k}
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
        if self.judge_steps < 0 or self.c2st_steps < 0:
            raise ValueError("evaluate.judge_steps and evaluate.c2st_steps must be >= 0")
