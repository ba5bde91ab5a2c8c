"""Method (b) of the novel-walkers experiment: the novel people's identity rows and the denoiser's
cross-attention key/value projections, fine-tuned together on the shots with prior preservation.

Custom Diffusion (Kumari et al., CVPR 2023) adapts a text-to-image model to a new concept from a few images by
updating only the cross-attention K/V projections (the only weights that read the condition tokens) with the
concept's token; DreamBooth's prior-preservation loss (Ruiz et al., CVPR 2023) keeps the model's other
concepts: every step adds the loss on a batch of base people's windows with their own rows. Here the rows of
the novel people have first been learned alone (``protocol.adapt``, method a); this continues from them. A
low-rank adapter (LoRA via ``peft``) is the other common choice; ``peft`` needs ``transformers``, which this
project does not install, and K/V fine-tuning touches a similar share of the weights.

Changes ``pipe`` in place (a fold's in-memory pipeline; nothing is written). Images are (N, C, H, W) float32
in [-1, 1].
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from torch import nn

from dopplerdiff.config import Config
from dopplerdiff.errors import DopplerDiffError
from dopplerdiff.models.identity_rows import train_only_row
from dopplerdiff.schedulers import make_scheduler
from dopplerdiff.train.diffusion import diffusion_loss

KV_NAMES = ("attn2.to_k", "attn2.to_v")  # diffusers' cross-attention (attn1 is self-attention)


def cross_attention_kv(denoiser: nn.Module) -> list[nn.Parameter]:
    """The weights of every cross-attention key/value projection of a diffusers UNet."""
    params = [p for name, m in denoiser.named_modules() if name.endswith(KV_NAMES) for p in m.parameters()]
    if not params:
        raise DopplerDiffError("the denoiser has no cross-attention key/value projections to fine-tune "
                               "(method b needs the UNet backbone)")
    return params


def _encode(pipe: Any, x: np.ndarray, batch: int = 16) -> torch.Tensor:
    with torch.no_grad():
        return torch.cat([pipe.encode_images(torch.from_numpy(np.ascontiguousarray(x[s : s + batch])))
                          for s in range(0, len(x), batch)])


def finetune_attention(pipe: Any, shots: dict[str, np.ndarray], prior: tuple[np.ndarray, np.ndarray],
                       cfg: Config, *, steps: int = 200, lr: float = 2e-5, row_lr: float = 1e-2,
                       prior_weight: float = 1.0, batch_size: int = 16, seed: int = 0) -> dict[str, Any]:
    """Fine-tune (in place) the rows of the people in ``shots`` (already in ``pipe.identities``) and the
    cross-attention K/V on their shots, plus ``prior_weight`` x the loss on ``prior`` (base people's images
    and their row indices). Returns the first/last losses and the number of tuned weights."""
    if steps < 1 or not (math.isfinite(lr) and lr > 0) or prior_weight < 0:
        raise DopplerDiffError(f"fine-tuning needs steps >= 1, lr > 0 and prior_weight >= 0; got {steps}, "
                               f"{lr}, {prior_weight}")
    unknown = [n for n in shots if n not in pipe.identities]
    if unknown:
        raise DopplerDiffError(f"people {', '.join(unknown)} have no identity row yet: learn their rows "
                               "first")
    cond_enc, den = pipe.condition_encoder, pipe.denoiser
    rows = [pipe.identities.index(n) for n in shots]
    z = _encode(pipe, np.concatenate(list(shots.values())))
    z_ids = torch.as_tensor(np.repeat(rows, [len(x) for x in shots.values()]), device=z.device)
    zp, zp_ids = _encode(pipe, prior[0]), torch.as_tensor(prior[1], device=z.device)
    row_params, hooks = train_only_row(cond_enc, den, rows)
    kv = cross_attention_kv(den)
    for p in kv:
        p.requires_grad_(True)
    opt = torch.optim.Adam([{"params": kv, "lr": lr}, {"params": row_params, "lr": row_lr}], weight_decay=0.0)
    sched = make_scheduler("ddpm", pipe.scheduler.config)
    gen = torch.Generator(device=z.device).manual_seed(seed)
    den.eval()  # no dropout: the frozen weights' behaviour is what the prior loss preserves
    losses = []
    try:
        for _ in range(steps):
            i = torch.randint(len(z), (batch_size,), generator=gen, device=z.device)
            loss = diffusion_loss(den, cond_enc, sched, z[i], z_ids[i], cfg.diffusion, generator=gen)
            if prior_weight > 0 and len(zp):
                j = torch.randint(len(zp), (batch_size,), generator=gen, device=z.device)
                # dropped to the null as in training, so the guidance's unconditional prediction is kept too
                ids = cond_enc.drop(zp_ids[j], cfg.diffusion.condition.dropout, generator=gen)
                loss = loss + prior_weight * diffusion_loss(den, cond_enc, sched, zp[j], ids, cfg.diffusion,
                                                            generator=gen)
            if not torch.isfinite(loss):
                raise DopplerDiffError(f"fine-tuning diverged at step {len(losses)} (loss {float(loss)}); "
                                       "lower the learning rate")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            losses.append(loss.item())
    finally:
        for h in hooks:
            h.remove()
        for module in (cond_enc, den):
            module.requires_grad_(False)
    return {"steps": steps, "lr": lr, "row_lr": row_lr, "prior_weight": prior_weight,
            "tuned_weights": int(sum(p.numel() for p in kv)), "loss_first": float(np.mean(losses[:10])),
            "loss_last": float(np.mean(losses[-10:]))}
