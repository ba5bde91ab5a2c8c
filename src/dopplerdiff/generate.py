"""Seed-indexed generation with a trained pipeline, and writing samples in the input data's layout.

Sample ``i`` of identity ``k`` uses its own ``torch.Generator`` seeded from ``(seed, k, i)`` (initial noise
and any stochastic sampler noise come from it), so every sample can be regenerated alone, independently of
batch size and of which other identities were generated with it.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from dopplerdiff.errors import DopplerDiffError
from dopplerdiff.pipeline import DopplerDiffPipeline
from dopplerdiff.schedulers import check_scheduler_name

log = logging.getLogger(__name__)
FORMATS = ("png", "jpg", "npy")


def sample_seed(seed: int, identity: int, index: int) -> int:
    """A 63-bit seed for sample ``index`` of identity ``identity`` (well mixed by SeedSequence)."""
    words = np.random.SeedSequence([int(seed), int(identity), int(index)]).generate_state(2, dtype=np.uint32)
    return (int(words[0]) << 31) ^ int(words[1])


def generate_samples(
    pipe: DopplerDiffPipeline,
    identity_ids: list[int],
    num_per_identity: int,
    *,
    steps: int,
    guidance: float,
    scheduler: str,
    seed: int,
    batch_size: int = 32,
    progress: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """Generate ``num_per_identity`` samples per identity -> ((N,C,H,W) float32 in [0,1], (N,) int64 labels).

    Order: identity by identity in the given order, sample index 0..num-1 within each. Sets the pipeline's
    scheduler to ``scheduler``.
    """
    if num_per_identity < 1:
        raise DopplerDiffError(f"number of samples per identity must be >= 1, got {num_per_identity}")
    if batch_size < 1:
        raise DopplerDiffError(f"batch size must be >= 1, got {batch_size}")
    ids = pipe.identity_ids(list(identity_ids))
    pipe.set_scheduler(check_scheduler_name(scheduler))
    pipe.set_progress_bar_config(disable=True)
    jobs = [(k, i) for k in ids for i in range(num_per_identity)]
    device = pipe.denoiser.device
    images: list[np.ndarray] = []
    bar = tqdm(total=len(jobs), desc="generate", unit="img", disable=not progress)
    for start in range(0, len(jobs), batch_size):
        chunk = jobs[start : start + batch_size]
        gens = [torch.Generator(device=device).manual_seed(sample_seed(seed, k, i)) for k, i in chunk]
        out = pipe(
            [k for k, _ in chunk],
            num_inference_steps=steps,
            guidance_scale=guidance,
            generator=gens,
            output_type="pt",
        ).images
        images.append(out.float().cpu().numpy())
        bar.update(len(chunk))
    bar.close()
    labels = np.array([k for k, _ in jobs], dtype=np.int64)
    return np.concatenate(images).astype(np.float32), labels


def output_name(identity: str, index: int, fmt: str) -> str:
    """``ID_3`` -> ``ID3_gen_{index}.{fmt}`` (the input naming ``ID{k}_...`` without the underscore)."""
    return f"{identity.replace('_', '')}_gen_{index}.{fmt}"


def write_generated(
    pipe: DopplerDiffPipeline,
    out: Path,
    identities: list[str] | None,
    num_per_identity: int,
    *,
    steps: int,
    guidance: float,
    scheduler: str,
    seed: int,
    fmt: str = "png",
    batch_size: int = 16,
    colormap: str | None = None,
    native_size: int | list[int] | None = None,
    progress: bool = True,
    extra_manifest: dict[str, Any] | None = None,
    config: Any = None,
) -> Path:
    """Generate and write ``out/<identity>/<ID>_gen_<i>.<fmt>`` at the native size, atomically.

    ``identities`` None means all. ``colormap``/``native_size`` default to the pipeline's config (the
    input data's). Writes ``manifest.json`` with the settings and every sample's seed.
    """
    from dopplerdiff.data.images import write_image
    from dopplerdiff.utils.io import atomic_dir, write_manifest

    if fmt not in FORMATS:
        raise DopplerDiffError(f"format '{fmt}' is unknown; valid: {', '.join(FORMATS)}")
    names = pipe.identities if identities is None else list(identities)
    ids = pipe.identity_ids(names)
    names = [pipe.identities[k] for k in ids]
    cmap = colormap or pipe.config.colormap
    size = native_size if native_size is not None else pipe.config.native_size
    out = Path(out)
    with atomic_dir(out) as tmp:
        images, labels = generate_samples(
            pipe,
            ids,
            num_per_identity,
            steps=steps,
            guidance=guidance,
            scheduler=scheduler,
            seed=seed,
            batch_size=batch_size,
            progress=progress,
        )
        files: dict[str, list[str]] = {}
        seeds: dict[str, list[int]] = {}
        for n, (img, k) in enumerate(zip(images, labels, strict=True)):
            name, i = pipe.identities[int(k)], n % num_per_identity
            rel = Path(name) / output_name(name, i, fmt)
            (tmp / name).mkdir(exist_ok=True)
            write_image(tmp / rel, img, cmap, size=size)
            files.setdefault(name, []).append(str(rel))
            seeds.setdefault(name, []).append(sample_seed(seed, int(k), i))
        if config is not None:
            config.save(tmp / "config.yaml")
        write_manifest(
            tmp,
            kind="generate",
            identities=names,
            label_map=pipe.identities,
            num_per_identity=num_per_identity,
            steps=steps,
            guidance=guidance,
            scheduler=scheduler,
            seed=seed,
            seed_rule="torch.Generator seeded with generate.sample_seed(seed, identity_index, sample_index)",
            format=fmt,
            colormap=cmap,
            size=size,
            batch_size=batch_size,
            files=files,
            sample_seeds=seeds,
            **(extra_manifest or {}),
        )
    log.info("wrote %d samples of %d identities to %s", len(images), len(names), out)
    return out


def load_run_pipeline(run: Path, device: str | None = None) -> DopplerDiffPipeline:
    """The trained pipeline of a run directory (RUN/pipeline) on ``device`` (default: CUDA if present)."""
    path = Path(run) / "pipeline"
    if not path.is_dir():
        raise DopplerDiffError(
            f"run '{run}' has no trained pipeline ('{path}' missing); run `dopplerdiff train-diffusion` first"
        )
    pipe = DopplerDiffPipeline.from_pretrained(path)
    return pipe.to(device or ("cuda" if torch.cuda.is_available() else "cpu"))
