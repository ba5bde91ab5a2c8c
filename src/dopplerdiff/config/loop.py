"""Shared training-loop config used by every trained stage."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from dopplerdiff.config.base import require
from dopplerdiff.errors import ConfigError

TRACKERS = ("tensorboard", "wandb")  # experiment trackers a stage can report to (accelerate's names)


def report_to_names(value: str | None, what: str = "report_to") -> tuple[str, ...]:
    """``"none"``, a tracker or a comma-separated list of them -> the tracker names (unknown ones refused)."""
    names = tuple(dict.fromkeys(n.strip() for n in (value or "none").split(",") if n.strip()))
    if names in ((), ("none",)):
        return ()
    bad = [n for n in names if n not in TRACKERS]
    if bad:
        raise ConfigError(f"{what}: unknown tracker '{', '.join(bad)}'; choose none or {', '.join(TRACKERS)}")
    return names


@dataclass
class LoopConfig:
    """Optimisation, precision, EMA, checkpointing and logging of one training stage."""

    steps: int = 1000  # optimiser steps (after gradient accumulation)
    batch_size: int = 32  # global micro-batch, split evenly over processes
    grad_accum: int = 1
    lr: float = 1e-4
    weight_decay: float = 0.0
    warmup_steps: int = 0
    lr_schedule: Literal["constant", "cosine", "linear"] = "constant"
    grad_clip: float = 1.0
    mixed_precision: Literal["no", "bf16", "fp16"] = "no"
    ema: bool = True
    ema_decay: float = 0.999
    checkpoint_every: int = 500
    checkpoints_total_limit: int = 2
    val_every: int = 500
    log_every: int = 50
    num_workers: int = 0
    seed: int = 0  # data order (per-epoch permutations) and the per-process RNG of a fresh start
    # Dashboards besides log.jsonl: none, tensorboard, wandb or a comma-separated list (--report-to).
    report_to: str = "none"

    def __post_init__(self) -> None:
        report_to_names(self.report_to, "train.report_to")
        # Out-of-range values used to train nothing (steps <= 0, grad_accum 0) and still exit 0.
        require([
            (self.steps >= 1, f"steps must be >= 1, got {self.steps}"),
            (self.batch_size >= 1, f"batch_size must be >= 1, got {self.batch_size}"),
            (self.grad_accum >= 1, f"grad_accum must be >= 1, got {self.grad_accum}"),
            (self.lr > 0, f"lr must be > 0, got {self.lr}"),
            (self.weight_decay >= 0, f"weight_decay must be >= 0, got {self.weight_decay}"),
            (self.warmup_steps >= 0, f"warmup_steps must be >= 0, got {self.warmup_steps}"),
            (self.grad_clip >= 0, f"grad_clip must be >= 0 (0 disables), got {self.grad_clip}"),
            (0.0 <= self.ema_decay <= 1.0, f"ema_decay must be in [0, 1], got {self.ema_decay}"),
            (min(self.checkpoint_every, self.val_every, self.log_every) >= 0,
             "checkpoint_every, val_every and log_every must be >= 0 (0 disables)"),
            (self.num_workers >= 0, f"num_workers must be >= 0, got {self.num_workers}"),
        ])
