"""Few-shot identity for the generator: learn one new identity row from k windows, denoiser frozen.

Textual-inversion style (Gal et al. 2022): the new person's row is inserted before the null row and
optimised with the training loss of the diffusion stage (same noise schedule, prediction type and min-SNR
weighting) on the person's latents; every other weight stays bit-identical. The grown pipeline replaces
RUN/pipeline atomically, so ``generate --identity NAME`` works afterwards.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from dopplerdiff.config import Config
from dopplerdiff.errors import DopplerDiffError
from dopplerdiff.models.identity_rows import add_identity_row, reset_identity_row, train_only_row
from dopplerdiff.pipeline import DopplerDiffPipeline
from dopplerdiff.pipeline_vq import refuse_edits
from dopplerdiff.schedulers import make_scheduler
from dopplerdiff.train.diffusion import diffusion_loss
from dopplerdiff.train.run_pipeline import save_enrolled

log = logging.getLogger(__name__)
MIN_WINDOWS = 3


def learn_identity(
    pipe: DopplerDiffPipeline,
    images: np.ndarray,
    name: str,
    cfg: Config,
    *,
    replace: bool = False,
    steps: int = 300,
    lr: float = 5e-2,
    batch_size: int = 16,
    seed: int = 0,
    progress: bool = True,
) -> dict[str, Any]:
    """Add (or with ``replace`` relearn) identity ``name`` from ``images`` (N,C,H,W) in [-1, 1], in place."""
    refuse_edits(pipe, "learning a new identity row")
    if len(images) < MIN_WINDOWS:
        raise DopplerDiffError(
            f"need at least {MIN_WINDOWS} windows of '{name}' to learn it, got {len(images)}"
        )
    if steps < 1:
        raise DopplerDiffError(f"--steps must be >= 1, got {steps}")
    enc, den = pipe.condition_encoder, pipe.denoiser
    if name in pipe.identities:
        if not replace:
            raise DopplerDiffError(
                f"identity '{name}' already exists in the generator; pass --replace to relearn it"
            )
        row = pipe.identities.index(name)
        reset_identity_row(enc, den, row)
    else:
        row = add_identity_row(enc, den)
        pipe.register_to_config(identities=[*pipe.identities, name])
    gen = torch.Generator(device=pipe._execution_device).manual_seed(seed)
    with torch.no_grad():
        z = pipe.encode_images(torch.from_numpy(np.ascontiguousarray(images, dtype=np.float32)))
    losses = _optimise_row(pipe, z, row, cfg, steps=steps, lr=lr, batch_size=batch_size, gen=gen,
                           desc=f"learn {name}", progress=progress)
    return {
        "identity": name,
        "row": row,
        "windows": len(images),
        "steps": steps,
        "lr": lr,
        "loss_first": float(np.mean(losses[:10])),
        "loss_last": float(np.mean(losses[-10:])),
    }


def _optimise_row(pipe: DopplerDiffPipeline, z: torch.Tensor, row: int, cfg: Config, *, steps: int, lr: float,
                  batch_size: int, gen: torch.Generator, desc: str, progress: bool) -> list[float]:
    """Adam on identity ``row`` alone with the diffusion stage's loss on latents ``z``; returns the losses."""
    enc, den = pipe.condition_encoder, pipe.denoiser
    params, hooks = train_only_row(enc, den, row)
    opt = torch.optim.Adam(params, lr=lr, weight_decay=0.0)  # no decay: the frozen rows must not move
    noise_sched = make_scheduler("ddpm", pipe.scheduler.config)
    ids = torch.full((min(batch_size, len(z)),), row, dtype=torch.long, device=z.device)
    den.eval()
    losses = []
    try:
        for _ in tqdm(range(steps), desc=desc, disable=not progress):
            pick = torch.randperm(len(z), generator=gen, device=z.device)[: len(ids)]
            loss = diffusion_loss(den, enc, noise_sched, z[pick], ids, cfg.diffusion, generator=gen)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            losses.append(loss.item())
    finally:
        for h in hooks:  # a later relearn of another row must not inherit this row's gradient mask
            h.remove()
        for module in (enc, den):
            module.requires_grad_(False)
    return losses


def save_pipeline(pipe: DopplerDiffPipeline, run: Path, event: dict[str, Any]) -> Path:
    """Add ``pipe``'s new row to RUN/pipeline under the run's lock (nothing another stage or enrolment
    added meanwhile is lost); ``enrolled.json`` lists every few-shot identity."""
    return save_enrolled(pipe, run, event)
