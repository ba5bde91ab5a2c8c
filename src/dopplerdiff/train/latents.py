"""The latents stage: encode every split of the run once with RUN/autoencoder into RUN/latents/.

The cache's format and its readers are ``data.latents``; writing it needs the trained first stage, which
``data`` may not import (``models`` imports ``data``), so the stage lives here beside the other stages.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from diffusers import VQModel
from tqdm.auto import tqdm

from dopplerdiff.config import Config, saved_config
from dopplerdiff.data.images import SpectrogramSet
from dopplerdiff.data.latents import write_latent_cache
from dopplerdiff.data.run_data import prepare_run_data
from dopplerdiff.errors import DopplerDiffError
from dopplerdiff.models.autoencoder import (
    Autoencoder,
    autoencoder_kind,
    code_indices,
    encode_posterior,
    latent_scale,
    load_autoencoder,
)
from dopplerdiff.train.autoencoder import chunks
from dopplerdiff.utils.rundir import RunDir


@torch.no_grad()
def cache_latents(run: Path, cfg: Config | None = None, *, data_root: Path | None = None,
                  resume: str | None = None, progress: bool = True, overwrite: bool = False,
                  batch_size: int = 64) -> dict[str, Any]:
    """Encode every split once with RUN/autoencoder and write RUN/latents/ (see data.latents).

    The cache follows the config the autoencoder was trained with (RUN/config.yaml), whatever ``cfg`` says;
    ``cfg`` and ``resume`` (one pass, no checkpoints) make the common stage signature."""
    rd = RunDir(run)
    saved = saved_config(rd.root)
    if saved is None:
        raise DopplerDiffError(f"'{run}' has no config.yaml; train the autoencoder first (train-autoencoder)")
    vae = load_autoencoder(rd.autoencoder).eval()
    scale, shift = latent_scale(vae)
    ds, split = prepare_run_data(rd.root, data_root, saved.data, progress=progress)
    c, f = saved.autoencoder.latent_channels, saved.data.size // saved.autoencoder.downsample_factor
    with tqdm(total=sum(len(v) for v in split.values()), desc="cache latents", disable=not progress) as bar:
        tensors = {name: _encode(vae, ds, idx, (c, f), batch_size, bar) for name, idx in split.items()}
    info = {"files": {name: [ds.files[i] for i in idx] for name, idx in split.items()},
            "identities": ds.identities, "conditions": list(ds.condition_names),
            "scaling_factor": scale, "shift_factor": shift,
            "kind": autoencoder_kind(vae), "latent_shape": list(tensors["train"]["mean"].shape[1:])}
    write_latent_cache(rd.latents, tensors, info, overwrite=overwrite)
    return info


def _encode(vae: Autoencoder, ds: SpectrogramSet, idx: np.ndarray, shape: tuple[int, int], batch_size: int,
            bar: Any) -> dict[str, torch.Tensor]:
    """One split's posterior means and stds (and VQ code indices), labels and conditions."""
    means, stds, codes = [], [], []
    imgs = torch.from_numpy(np.ascontiguousarray(ds.images[idx]))
    for x in chunks(imgs, batch_size, vae.device):
        m, s = encode_posterior(vae, x)
        means.append(m.float().cpu())
        stds.append(s.float().cpu())
        if isinstance(vae, VQModel):
            codes.append(code_indices(vae, m).cpu())
        bar.update(len(x))
    c, f = shape  # the shape of an empty split's tensors
    out = {
        "mean": torch.cat(means) if means else torch.zeros(0, c, f, f),
        "std": torch.cat(stds) if stds else torch.zeros(0, c, f, f),
        "labels": torch.from_numpy(ds.labels[idx].astype(np.int64)),
        "conditions": torch.from_numpy(np.asarray(ds.conditions)[idx].astype(np.int64)),
    }
    if isinstance(vae, VQModel):
        out["indices"] = torch.cat(codes) if codes else torch.zeros(0, f, f, dtype=torch.long)
    return out
