"""Few-shot identity for the generator: learn one new identity row from k windows, denoiser frozen.

Textual-inversion style (Gal et al. 2022): the new person's row is inserted before the null row and
optimised with the training loss of the diffusion stage (same noise schedule, prediction type and min-SNR
weighting) on the person's latents; every other weight stays bit-identical. The grown pipeline replaces
RUN/pipeline atomically, so ``generate --identity NAME`` works afterwards.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dopplerdiff.classifier import fit_steps
from dopplerdiff.config import Config
from dopplerdiff.config.base import check_seed
from dopplerdiff.errors import DopplerDiffError
from dopplerdiff.models.identity_rows import (
    add_identity_row,
    identity_tables,
    reset_identity_row,
    train_only_row,
)
from dopplerdiff.pipelines.pipeline_dopplerdiff import DopplerDiffPipeline
from dopplerdiff.pipelines.pipeline_vq_diffusion import refuse_edits
from dopplerdiff.schedulers import make_scheduler
from dopplerdiff.train.diffusion import diffusion_loss
from dopplerdiff.train.run_pipeline import save_enrolled
from dopplerdiff.utils.names import check_new_identity_name

log = logging.getLogger(__name__)
MIN_WINDOWS = 3
# A row whose loss on the fixed draws rose by more than this fraction is refused; a few steps on a barely
# trained model can leave the loss flat to within noise of the float arithmetic, which is not divergence.
LOSS_RISE_TOLERANCE = 0.01
FIXED_DRAWS = 64  # (window, noise, timestep) draws of the before/after loss: the same draws both times


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
    """Add (or with ``replace`` relearn) identity ``name`` from ``images`` (N,C,H,W) in [-1, 1], in place.

    Refused before any work: too few distinct windows, a bad ``steps``/``lr``/``seed``, a name the loader
    would refuse. Refused after it (the caller saves nothing): a non-finite row, or a loss on fixed draws
    that did not fall (a diverged row would replace a working pipeline)."""
    refuse_edits(pipe, "learning a new identity row")
    _check_request(pipe, images, name, replace, steps, lr, seed)
    cond_enc, den = pipe.condition_encoder, pipe.denoiser
    if name in pipe.identities:
        row = pipe.identities.index(name)
        reset_identity_row(cond_enc, den, row)
    else:
        row = add_identity_row(cond_enc, den)
        pipe.register_to_config(identities=[*pipe.identities, name])
    z = _encode(pipe, images, batch_size)
    before = _fixed_loss(pipe, z, row, cfg, seed, batch_size)
    gen = torch.Generator(device=pipe._execution_device).manual_seed(seed)
    losses = _optimise_row(pipe, z, row, cfg, steps=steps, lr=lr, batch_size=batch_size, gen=gen,
                           desc=f"learn {name}", progress=progress)
    after = _fixed_loss(pipe, z, row, cfg, seed, batch_size)
    _check_learned(pipe, name, before, after)
    return {
        "identity": name,
        "row": row,
        "windows": len(images),
        "steps": steps,
        "lr": lr,
        "loss_first": float(np.mean(losses[:10])),
        "loss_last": float(np.mean(losses[-10:])),
        "loss_before": before,
        "loss_after": after,
    }


def _check_request(pipe: DopplerDiffPipeline, images: np.ndarray, name: str, replace: bool, steps: int,
                   lr: float, seed: int) -> None:
    """One clear error for a request that cannot give a usable row (before any work)."""
    if name in pipe.identities and not replace:
        raise DopplerDiffError(
            f"identity '{name}' already exists in the generator; pass --replace to relearn it"
        )
    if name not in pipe.identities:
        check_new_identity_name(name, "--identity")
    distinct = len({np.ascontiguousarray(x).tobytes() for x in images})  # a file given 3 times is 1 window
    if distinct < MIN_WINDOWS:
        repeated = f" distinct of {len(images)} given" if distinct < len(images) else ""
        raise DopplerDiffError(
            f"need at least {MIN_WINDOWS} windows of '{name}' to learn it, got {distinct}{repeated}"
        )
    if steps < 1:
        raise DopplerDiffError(f"--steps must be >= 1, got {steps}")
    if not (math.isfinite(lr) and lr > 0):
        raise DopplerDiffError(f"--lr must be a finite number > 0, got {lr}")
    check_seed(seed, "--seed")


def _check_learned(pipe: DopplerDiffPipeline, name: str, before: float, after: float) -> None:
    """Refuse a non-finite identity table or a loss on the fixed draws that rose."""
    tables = identity_tables(pipe.condition_encoder, pipe.denoiser)
    finite_rows = all(bool(torch.isfinite(getattr(m, p)).all()) for m, p, _ in tables)
    if finite_rows and math.isfinite(after) and after <= before * (1.0 + LOSS_RISE_TOLERANCE):
        return
    what = "its row has non-finite values" if not finite_rows else f"loss {before:.4g} -> {after:.4g}"
    raise DopplerDiffError(
        f"learning '{name}' diverged ({what}); the pipeline was not changed. Lower --lr or raise --steps"
    )


def _encode(pipe: DopplerDiffPipeline, images: np.ndarray, batch_size: int) -> torch.Tensor:
    """Model-space latents of ``images``, a batch at a time (many windows in one forward exhaust memory)."""
    x = np.ascontiguousarray(images, dtype=np.float32)
    with torch.no_grad():
        return torch.cat([pipe.encode_images(torch.from_numpy(x[s : s + batch_size]))
                          for s in range(0, len(x), batch_size)])


def _fixed_loss(pipe: DopplerDiffPipeline, z: torch.Tensor, row: int, cfg: Config, seed: int,
                batch_size: int) -> float:
    """The training loss of identity ``row`` on ``FIXED_DRAWS`` draws fixed by ``seed``: the same noise and
    timesteps before and after learning, so the two values compare the row alone."""
    cond_enc, den = pipe.condition_encoder, pipe.denoiser
    sched = make_scheduler("ddpm", pipe.scheduler.config)
    gen = torch.Generator(device=z.device).manual_seed(seed)
    zs = z.repeat(-(-FIXED_DRAWS // len(z)), 1, 1, 1)
    den.eval()
    total = 0.0
    with torch.no_grad():
        for s in range(0, len(zs), batch_size):
            chunk = zs[s : s + batch_size]
            ids = torch.full((len(chunk),), row, dtype=torch.long, device=z.device)
            loss = diffusion_loss(den, cond_enc, sched, chunk, ids, cfg.diffusion, generator=gen)
            total += float(loss) * len(chunk)
    return total / len(zs)


def _optimise_row(pipe: DopplerDiffPipeline, z: torch.Tensor, row: int, cfg: Config, *, steps: int, lr: float,
                  batch_size: int, gen: torch.Generator, desc: str, progress: bool) -> list[float]:
    """Adam on identity ``row`` alone with the diffusion stage's loss on latents ``z``; returns the losses."""
    cond_enc, den = pipe.condition_encoder, pipe.denoiser
    params, hooks = train_only_row(cond_enc, den, row)
    opt = torch.optim.Adam(params, lr=lr, weight_decay=0.0)  # no decay: the frozen rows must not move
    noise_sched = make_scheduler("ddpm", pipe.scheduler.config)
    ids = torch.full((min(batch_size, len(z)),), row, dtype=torch.long, device=z.device)
    den.eval()

    def loss_at(step: int) -> torch.Tensor:
        pick = torch.randperm(len(z), generator=gen, device=z.device)[: len(ids)]
        return diffusion_loss(den, cond_enc, noise_sched, z[pick], ids, cfg.diffusion, generator=gen)

    try:
        return fit_steps(steps, loss_at, opt, desc=desc, progress=progress)
    finally:
        for h in hooks:  # a later relearn of another row must not inherit this row's gradient mask
            h.remove()
        for module in (cond_enc, den):
            module.requires_grad_(False)


def save_pipeline(pipe: DopplerDiffPipeline, run: Path, event: dict[str, Any]) -> Path:
    """Add ``pipe``'s new row to RUN/pipeline under the run's lock (nothing another stage or enrolment
    added meanwhile is lost); ``enrolled.json`` lists every few-shot identity."""
    return save_enrolled(pipe, run, event)
