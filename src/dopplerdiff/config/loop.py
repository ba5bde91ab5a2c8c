"""Shared training-loop config used by every trained stage."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


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
