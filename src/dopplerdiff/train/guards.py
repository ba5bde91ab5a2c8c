"""Stopping training on a non-finite loss or gradient norm, agreed by every process."""

from __future__ import annotations

import math
from pathlib import Path

import torch
from accelerate import Accelerator
from torch import Tensor, nn

from dopplerdiff.errors import DopplerDiffError


def checked(acc: Accelerator, value: Tensor, step: int, what: str, last: Path | None) -> float:
    """All-reduce (value, non-finite flag) so every process agrees to stop; return the process mean."""
    local = value.detach().float().reshape(())
    bad = (~torch.isfinite(local)).float()
    both = acc.reduce(torch.stack([torch.nan_to_num(local, nan=0.0, posinf=0.0, neginf=0.0), bad]), "sum")
    if float(both[1]) > 0:
        fail(step, f"{what} is {local.item()}", last)
    return float(both[0]) / acc.num_processes


def clip_grads(acc: Accelerator, params: list[nn.Parameter], clip: float, step: int, what: str,
          last: Path | None) -> float:
    if clip > 0:
        norm = acc.clip_grad_norm_(params, clip)
    else:
        grads = [p.grad.detach().float().norm() for p in params if p.grad is not None]
        norm = torch.stack(grads).norm() if grads else torch.zeros(())
    norm_f = float(norm)
    if not math.isfinite(norm_f):  # gradients are all-reduced already, so every process sees the same norm
        fail(step, f"{what}gradient norm is {norm_f}", last)
    return norm_f


def fail(step: int, what: str, last: Path | None) -> None:
    keep = f"last good checkpoint: {last}" if last else "no checkpoint was written yet"
    raise DopplerDiffError(
        f"training diverged at step {step + 1}: {what}; nothing was saved for this step ({keep}). "
        "Lower the learning rate or use --resume with a smaller lr."
    )
