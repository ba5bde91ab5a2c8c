"""Seed-indexed generation with a trained pipeline, and writing samples in the input data's layout.

Sample ``i`` of identity ``k`` uses its own ``torch.Generator`` seeded from ``(seed, k, i)`` (initial noise
and any stochastic sampler noise come from it), so every sample can be regenerated alone, independently of
batch size and of which other identities were generated with it.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from dopplerdiff.config import Config
from dopplerdiff.config.base import check_seed
from dopplerdiff.data.images import write_image
from dopplerdiff.errors import DopplerDiffError
from dopplerdiff.pipelines.auto_pipeline import load_run_pipeline
from dopplerdiff.pipelines.pipeline_dopplerdiff import DopplerDiffPipeline
from dopplerdiff.schedulers import check_scheduler_name
from dopplerdiff.utils.io import atomic_dir, write_manifest
from dopplerdiff.utils.rundir import RunDir

log = logging.getLogger(__name__)
FORMATS = ("png", "jpg", "npy")


def sample_seed(seed: int, identity: int, index: int) -> int:
    """A 63-bit seed for sample ``index`` of identity ``identity`` (well mixed by SeedSequence)."""
    check_seed(seed)
    words = np.random.SeedSequence([int(seed), int(identity), int(index)]).generate_state(2, dtype=np.uint32)
    return (int(words[0]) << 31) ^ int(words[1])


def check_format(fmt: str) -> str:
    """``fmt`` if it is an output format, else one error listing them (checked before any sampling)."""
    if fmt not in FORMATS:
        raise DopplerDiffError(f"--format '{fmt}' is unknown; valid: {', '.join(FORMATS)}")
    return fmt


def render(
    pipe: DopplerDiffPipeline,
    jobs: list[tuple[int, int]],
    *,
    steps: int,
    guidance: float,
    seed: int,
    batch_size: int = 32,
    guidance_interval: tuple[float, float] | None = None,
    sources: Any = None,
    strength: float = 1.0,
    bar: Any = None,
    output_type: str = "pt",
    condition: int | str | None = None,
    condition_guidance: float | None = None,
) -> np.ndarray:
    """Images (N,C,H,W) in [0,1] for jobs ``(identity, index)``, each from its own ``sample_seed``
    (``output_type="latent"``: the model-space latents instead).

    With ``sources`` (an object with ``image(k, i)`` -> (C,H,W) in [-1,1]) each job is img2img from its source
    window at ``strength``; otherwise from pure noise. Uses the pipeline's current scheduler. ``condition``:
    the walking condition of every sample (a pipeline trained on conditions); the seeds do not depend on it,
    so the same (identity, index) is the same noise in every condition.
    """
    walk = {}
    if condition is not None:
        walk = {"conditions": condition, "condition_guidance_scale": condition_guidance}
    device = pipe.denoiser.device
    images: list[np.ndarray] = []
    for start in range(0, len(jobs), batch_size):
        chunk = jobs[start : start + batch_size]
        gens = [torch.Generator(device=device).manual_seed(sample_seed(seed, k, i)) for k, i in chunk]
        img2img = {}
        if sources is not None:
            img2img = {"image": np.stack([sources.image(k, i) for k, i in chunk]), "strength": strength}
        out = pipe(
            [k for k, _ in chunk],
            num_inference_steps=steps,
            guidance_scale=guidance,
            generator=gens,
            output_type=output_type,
            guidance_interval=guidance_interval,
            **img2img,
            **walk,
        ).images
        images.append(out.float().cpu().numpy())
        if bar is not None:
            bar.update(len(chunk))
    return np.concatenate(images).astype(np.float32)


def _check_counts(num_per_identity: int, batch_size: int) -> None:
    if num_per_identity < 1:
        raise DopplerDiffError(f"number of samples per identity must be >= 1, got {num_per_identity}")
    if batch_size < 1:
        raise DopplerDiffError(f"batch size must be >= 1, got {batch_size}")


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
    guidance_interval: tuple[float, float] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Generate ``num_per_identity`` samples per identity -> ((N,C,H,W) float32 in [0,1], (N,) int64 labels).

    Order: identity by identity in the given order, sample index 0..num-1 within each. Sets the pipeline's
    scheduler to ``scheduler``.
    """
    _check_counts(num_per_identity, batch_size)
    ids = pipe.identity_ids(list(identity_ids))
    pipe.set_scheduler(check_scheduler_name(scheduler))
    pipe.set_progress_bar_config(disable=True)
    jobs = [(k, i) for k in ids for i in range(num_per_identity)]
    with tqdm(total=len(jobs), desc="generate", unit="img", disable=not progress) as bar:
        images = render(pipe, jobs, steps=steps, guidance=guidance, seed=seed, batch_size=batch_size,
                        guidance_interval=guidance_interval, bar=bar)
    return images, np.array([k for k, _ in jobs], dtype=np.int64)


@dataclasses.dataclass
class Drawn:
    """Accepted samples of ``draw``: images in [0,1], labels, sample indices (seed index), acceptance."""

    images: np.ndarray
    labels: np.ndarray
    indices: np.ndarray
    acceptance: dict[int, dict[str, float]]


def draw(
    pipe: DopplerDiffPipeline,
    ids: list[int],
    num_per_identity: int,
    *,
    sample_filter: Any = None,
    max_attempts: int = 10,
    batch_size: int = 16,
    progress: bool = True,
    allow_short: bool = False,
    **render_args: Any,
) -> Drawn:
    """``num_per_identity`` accepted samples per identity, oversampling indices 0, 1, ... in order.

    ``sample_filter.accept(images01, labels)`` -> bool mask (None accepts everything). An identity that has
    not reached ``num_per_identity`` after ``max_attempts * num_per_identity`` attempts is an error, or with
    ``allow_short`` keeps what passed (``acceptance[k]["kept"]``; an error only if nothing passed at all).
    """
    _check_counts(num_per_identity, batch_size)
    cap = max(int(max_attempts), 1) * num_per_identity
    images, labels, indices, acceptance = [], [], [], {}
    bar = tqdm(total=len(ids) * num_per_identity, desc="generate", unit="img", disable=not progress)
    for k in ids:
        kept, tried, passed = [], 0, 0
        while len(kept) < num_per_identity:
            if tried >= cap and allow_short:
                break
            if tried >= cap:
                bar.close()
                raise DopplerDiffError(
                    f"identity '{pipe.identities[k]}': only {passed} of {tried} samples passed the filter, "
                    f"{num_per_identity} needed within {cap} attempts; relax --min-confidence or "
                    "--physics-quantiles, or raise --max-attempts"
                )
            n = min(batch_size, cap - tried) if sample_filter is not None else num_per_identity - len(kept)
            jobs = [(k, i) for i in range(tried, tried + n)]
            imgs = render(pipe, jobs, batch_size=batch_size, **render_args)
            ok = np.ones(n, bool) if sample_filter is None else sample_filter.accept(imgs, np.full(n, k))
            passed += int(ok.sum())
            take = list(np.flatnonzero(ok))[: num_per_identity - len(kept)]
            kept += [(tried + j, imgs[j]) for j in take]
            bar.update(len(take))
            tried += n
        acceptance[k] = {"attempts": tried, "passed": passed, "rate": passed / tried, "kept": len(kept)}
        indices += [i for i, _ in kept]
        images += [img for _, img in kept]
        labels += [k] * len(kept)
    bar.close()
    if not images:
        raise DopplerDiffError(f"no sample passed the filter within {cap} attempts for any identity")
    return Drawn(np.stack(images).astype(np.float32), np.array(labels, np.int64), np.array(indices, np.int64),
                 acceptance)


def output_name(identity: str, index: int, fmt: str) -> str:
    """``ID_3`` -> ``ID3_gen_{index}.{fmt}`` (the input naming ``ID{k}_...`` without the underscore)."""
    return f"{identity.replace('_', '')}_gen_{index}.{fmt}"


def _write_samples(tmp: Path, names: list[str], got: Drawn, *, seed: int, fmt: str, cmap: str, size: Any,
                   sources: Any, condition: str | None) -> tuple[dict, dict, dict]:
    """Write every drawn sample under ``tmp``; ({identity: files}, {identity: seeds}, {identity: sources})."""
    files: dict[str, list[str]] = {}
    seeds: dict[str, list[int]] = {}
    origin: dict[str, list[str]] = {}
    for img, k, i in zip(got.images, got.labels.tolist(), got.indices.tolist(), strict=True):
        name = names[k]
        rel = Path(condition or "") / name / output_name(name, i, fmt)
        (tmp / rel.parent).mkdir(parents=True, exist_ok=True)
        write_image(tmp / rel, img, cmap, size=size)
        files.setdefault(name, []).append(str(rel))
        seeds.setdefault(name, []).append(sample_seed(seed, k, i))
        if sources is not None:
            origin.setdefault(name, []).append(sources.name(k, i))
    return files, seeds, origin


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
    guidance_interval: tuple[float, float] | None = None,
    sources: Any = None,
    strength: float = 1.0,
    sample_filter: Any = None,
    max_attempts: int = 10,
    condition: str | None = None,
    condition_guidance: float | None = None,
) -> Path:
    """Generate and write ``out/<identity>/<ID>_gen_<i>.<fmt>`` at the native size, atomically.

    ``identities`` None means all. ``colormap``/``native_size`` default to the pipeline's config (the
    input data's). ``i`` is the sample's seed index (with a filter, the indices of the accepted samples).
    Strategies: ``guidance_interval``; ``sources`` (``synthetic.sources.RealSources``) + ``strength`` for
    real-seeded variations; ``sample_filter`` (``synthetic.filtering.SampleFilter``) with oversampling up to
    ``max_attempts`` x N. Writes ``manifest.json`` with the settings, every sample's seed and source, and the
    acceptance rate per identity. With ``condition`` (a walking condition of the pipeline) the samples go to
    ``out/<condition>/<identity>/``, the conditions layout of the input data, guided by
    ``condition_guidance`` (default: ``guidance``).
    """
    check_format(fmt)
    names = pipe.identities if identities is None else list(identities)
    ids = pipe.identity_ids(names)
    names = [pipe.identities[k] for k in ids]
    cmap = colormap or pipe.config.colormap
    size = native_size if native_size is not None else pipe.config.native_size
    pipe.set_scheduler(check_scheduler_name(scheduler))
    pipe.set_progress_bar_config(disable=True)
    out = Path(out)
    with atomic_dir(out) as tmp:
        got = draw(pipe, ids, num_per_identity, sample_filter=sample_filter, max_attempts=max_attempts,
                   batch_size=batch_size, progress=progress, steps=steps, guidance=guidance, seed=seed,
                   guidance_interval=guidance_interval, sources=sources, strength=strength,
                   condition=condition, condition_guidance=condition_guidance)
        files, seeds, origin = _write_samples(tmp, pipe.identities, got, seed=seed, fmt=fmt, cmap=cmap,
                                              size=size, sources=sources, condition=condition)
        if config is not None:
            config.save(tmp / "config.yaml")
        walk = {} if condition is None else {"condition": condition, "condition_guidance": condition_guidance}
        strategy = {"guidance_interval": list(guidance_interval) if guidance_interval else None,
                    "from_real": None if sources is None else sources.origin,
                    "strength": strength if sources is not None else None,
                    "filter": None if sample_filter is None else sample_filter.describe()}
        write_manifest(
            tmp, kind="generate", identities=names, label_map=pipe.identities, **walk,
            num_per_identity=num_per_identity, steps=steps, guidance=guidance, scheduler=scheduler, seed=seed,
            seed_rule="torch.Generator seeded with generate.sample_seed(seed, identity_index, sample_index)",
            format=fmt, colormap=cmap, size=size, batch_size=batch_size, files=files, sample_seeds=seeds,
            strategy=strategy, sources=origin or None,
            acceptance={pipe.identities[k]: v for k, v in got.acceptance.items()}, **(extra_manifest or {}),
        )
    log.info("wrote %d samples of %d identities to %s", len(got.images), len(names), out)
    return out


def generate_run(run: Path, cfg: Config, *, resume: str | None = None,
                 progress: bool = True) -> Path:
    """The run's generate stage: ``diffusion.samples_per_identity`` samples of every identity from
    RUN/pipeline into RUN/samples with the config's sampler settings; ``resume`` makes the common stage
    signature (one atomic pass, no checkpoints)."""
    d = cfg.diffusion
    return write_generated(load_run_pipeline(run), RunDir(run).samples, None, d.samples_per_identity,
                           steps=d.num_inference_steps, guidance=d.guidance_scale, scheduler=d.scheduler,
                           seed=cfg.seed, progress=progress, config=cfg)
