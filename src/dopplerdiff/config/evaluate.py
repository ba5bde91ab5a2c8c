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
    seed: int = 0
