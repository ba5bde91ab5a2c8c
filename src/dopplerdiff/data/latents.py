"""Cached first-stage latents: RUN/latents/{train,val,test}.safetensors + info.json, and LatentDataset.

Each split file holds ``mean`` (N, C, h, w) float32 posterior means, ``std`` (N, C, h, w) float32 posterior
stds (zeros for VQ), ``labels`` (N,) int64 and ``conditions`` (N,) int64 (the walking condition of each
window, an index into ``info["conditions"]``; caches written before conditions have none and read as all
zeros, the one condition "default"). VQ caches also hold ``indices`` (N, h, w) int64: the code
index of every latent position (the nearest codebook vector, as the VQModel quantises), the data of
``diffusion.backbone: vq-diffusion`` (``CodeDataset``).
``info.json``: ``{"files": {split: [...]}, "identities", "conditions",
"scaling_factor", "shift_factor", "kind", "latent_shape"}``. The cache is unscaled; the scale/shift are
applied when items are drawn: ``latents = (mean + std * eps - shift) * scale``.
(Encoding needs the model, so the cache is *written* by the latents stage, ``train.latents.cache_latents``.)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch.utils.data import Dataset

from dopplerdiff.data.layout import DEFAULT_CONDITION
from dopplerdiff.errors import DataError
from dopplerdiff.utils.io import atomic_dir, read_json, write_json
from dopplerdiff.utils.names import check_identity_names
from dopplerdiff.utils.rundir import RunDir

SPLITS = ("train", "val", "test")
INFO = "info.json"


def to_model_space(z: torch.Tensor, scale: float, shift: float) -> torch.Tensor:
    """The project's one latent convention: ``z_model = (z - shift) * scale`` (scale/shift measured)."""
    return (z - shift) * scale


def from_model_space(z_model: torch.Tensor, scale: float, shift: float) -> torch.Tensor:
    """Inverse of ``to_model_space``: ``z = z_model / scale + shift``."""
    return z_model / scale + shift


def write_latent_cache(out: Path, tensors: dict[str, dict[str, torch.Tensor]], info: dict[str, Any],
                       overwrite: bool = False) -> Path:
    """Write the cache directory ``out`` atomically (an existing cache only with ``overwrite``)."""
    for name, t in tensors.items():
        missing = {"mean", "std", "labels"} - set(t)
        if missing:
            raise ValueError(f"latent split '{name}' lacks {sorted(missing)}")
        if not (len(t["mean"]) == len(t["std"]) == len(t["labels"])):
            raise ValueError(f"latent split '{name}': mean/std/labels lengths differ")
    with atomic_dir(Path(out), overwrite=overwrite) as tmp:
        for name, t in tensors.items():
            arrays = {
                "mean": t["mean"].float().contiguous(), "std": t["std"].float().contiguous(),
                "labels": t["labels"].long().contiguous(),
            }
            for extra in ("indices", "conditions"):
                if extra in t:
                    arrays[extra] = t[extra].long().contiguous()
            save_file(arrays, str(tmp / f"{name}.safetensors"))
        write_json(tmp / INFO, info)
    return Path(out)


def read_latent_info(run: Path) -> dict[str, Any]:
    """RUN/latents/info.json (DataError if the cache was not built)."""
    path = RunDir(run).latents / INFO
    if not path.is_file():
        raise DataError(f"'{path}' does not exist; build the latent cache first (dopplerdiff cache-latents)")
    info = read_json(path)
    if not isinstance(info, dict):
        raise DataError(f"'{path}' is damaged (not a JSON object); rebuild it with dopplerdiff cache-latents")
    check_identity_names(info.get("identities", []), f"'{path}'")
    info.setdefault("conditions", [DEFAULT_CONDITION])  # caches written before walking conditions
    return info


def load_latents(run: Path, split: str) -> dict[str, torch.Tensor]:
    """The unscaled tensors of one split: ``mean``, ``std``, ``labels``, ``conditions`` (zeros if absent)."""
    if split not in SPLITS:
        raise DataError(f"unknown latent split '{split}' (expected one of {', '.join(SPLITS)})")
    path = RunDir(run).latents / f"{split}.safetensors"
    if not path.is_file():
        raise DataError(f"'{path}' does not exist; build the latent cache first (dopplerdiff cache-latents)")
    t = load_file(str(path))
    if "conditions" not in t:
        t["conditions"] = torch.zeros_like(t["labels"], dtype=torch.long)
    return t


class LatentDataset(Dataset):
    """Items ``{"latents": FloatTensor (C, h, w) in model space, "labels": LongTensor (),
    "conditions": LongTensor ()}``.

    ``sample=True`` draws ``mean + std * eps`` with the global torch RNG (a fresh posterior sample each
    time, as the autoencoder's KL training intends); ``sample=False`` uses the posterior mean.
    ``time_shift=True`` rolls each item by a random number of latent columns along time (the last axis):
    the latent counterpart of the images' circular time-shift augmentation (a window may start at any
    phase of the gait), so the denoiser sees more than the once-cached, un-augmented latents.
    """

    def __init__(self, run: Path, split: str = "train", sample: bool = True, time_shift: bool = False):
        self.info = read_latent_info(run)
        t = load_latents(run, split)
        self.mean, self.std, self.labels = t["mean"], t["std"], t["labels"]
        self.conditions = t["conditions"].long()
        self.sample, self.time_shift = sample, time_shift
        self.scale = float(self.info["scaling_factor"])
        self.shift = float(self.info["shift_factor"])
        self.identities: list[str] = list(self.info["identities"])
        self.condition_names: list[str] = list(self.info["conditions"])
        self.latent_shape: list[int] = list(self.info["latent_shape"])
        self.files: list[str] = list(self.info.get("files", {}).get(split, []))

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        z = self.mean[i]
        if self.sample:
            z = z + self.std[i] * torch.randn_like(z)
        if self.time_shift:
            z = torch.roll(z, int(torch.randint(0, z.shape[-1], ())), dims=-1)
        return {"latents": to_model_space(z, self.scale, self.shift), "labels": self.labels[i],
                "conditions": self.conditions[i]}


def load_codes(run: Path, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(indices (N, h, w) int64, labels (N,)) of a VQ run's cached split (DataError if not cached)."""
    t = load_latents(run, split)
    if "indices" not in t:
        raise DataError(
            f"the latent cache of '{run}' has no code indices (it was built from an AutoencoderKL or before "
            "code indices were cached); run `dopplerdiff cache-latents --run RUN --overwrite` on a VQ run"
        )
    return t["indices"].long(), t["labels"].long()


class CodeDataset(Dataset):
    """Items ``{"codes": LongTensor (h*w,) code indices (row-major), "labels": LongTensor ()}``."""

    def __init__(self, run: Path, split: str = "train"):
        self.info = read_latent_info(run)
        indices, self.labels = load_codes(run, split)
        self.shape = tuple(int(v) for v in indices.shape[1:])
        self.codes = indices.flatten(1)
        self.identities: list[str] = list(self.info["identities"])

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"codes": self.codes[i], "labels": self.labels[i]}
