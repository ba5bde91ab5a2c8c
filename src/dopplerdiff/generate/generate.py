"""Sampling a ``GenerationPlan`` and writing its samples: ``sample(pipe, plan)``, ``write_plan``.

Sample ``i`` of identity ``k`` uses its own ``torch.Generator`` seeded from ``(seed, k, i)`` (initial noise
and any stochastic sampler noise come from it), so every sample can be regenerated alone, independently of
batch size and of which other identities were generated with it (up to the last float bits: batched
kernels round differently, so ``sample`` keeps each caller's batches as they were). ``write_plan`` writes
them in the input data's layout, colormap and native size, with a manifest.
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
from dopplerdiff.generate.plan import GenerationPlan
from dopplerdiff.pipelines.auto_pipeline import load_run_pipeline
from dopplerdiff.pipelines.pipeline_dopplerdiff import DopplerDiffPipeline
from dopplerdiff.utils.io import atomic_dir, write_manifest
from dopplerdiff.utils.rundir import RunDir

log = logging.getLogger(__name__)
FORMATS = ("png", "jpg", "npy")
SEED_RULE = "torch.Generator seeded with generate.sample_seed(seed, identity_index, sample_index)"


def sample_seed(seed: int, identity: int, index: int) -> int:
    """A 63-bit seed for sample ``index`` of identity ``identity`` (well mixed by SeedSequence)."""
    check_seed(seed)
    words = np.random.SeedSequence([int(seed), int(identity), int(index)]).generate_state(2, dtype=np.uint32)
    return (int(words[0]) << 31) ^ int(words[1])


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


@dataclasses.dataclass
class Drawn:
    """The samples of a plan: images (N,C,H,W) in [0,1], labels (identity rows), indices (seed index ``i``),
    acceptance per identity row (attempts, passed, rate, kept) and every sample's ``sample_seed``."""

    images: np.ndarray
    labels: np.ndarray
    indices: np.ndarray
    acceptance: dict[int, dict[str, float]]
    seeds: list[int] = dataclasses.field(default_factory=list)


def _render_args(plan: GenerationPlan) -> dict[str, Any]:
    return {"steps": plan.steps, "guidance": plan.guidance, "seed": plan.seed, "batch_size": plan.batch_size,
            "guidance_interval": plan.interval, "sources": plan.sources, "strength": plan.strength,
            "condition": plan.condition, "condition_guidance": plan.condition_guidance}


def sample(pipe: DopplerDiffPipeline, plan: GenerationPlan, *, progress: bool = True) -> Drawn:
    """The samples of ``plan``: identities in the plan's order, indices 0, 1, ... within each.

    Without a filter every job ``(k, i)`` is rendered in batches of ``plan.batch_size`` (holding several
    identities only with ``plan.mix_identities``). With one, each identity is oversampled in batches until
    ``plan.count`` pass or ``plan.attempts * plan.count`` were tried: then an error, or with
    ``plan.allow_short`` what passed (an error only if nothing passed at all). Sets the pipeline's sampler
    to ``plan.scheduler``.
    """
    names = pipe.identities if plan.identities is None else list(plan.identities)
    ids = pipe.identity_ids(names)
    if plan.scheduler is not None:
        pipe.set_scheduler(plan.scheduler)
    pipe.set_progress_bar_config(disable=True)
    with tqdm(total=len(ids) * plan.count, desc="generate", unit="img", disable=not progress) as bar:
        draw_all = _unfiltered if plan.filter is None else _filtered
        images, jobs, acceptance = draw_all(pipe, plan, ids, bar)
    labels = [k for k, _ in jobs]
    return Drawn(images, np.array(labels, np.int64), np.array([i for _, i in jobs], np.int64), acceptance,
                 [sample_seed(plan.seed, k, i) for k, i in jobs])


def _unfiltered(pipe: Any, plan: GenerationPlan, ids: list[int], bar: Any) -> tuple:
    n = plan.count
    groups = [ids] if plan.mix_identities else [[k] for k in ids]
    jobs = [(k, i) for k in ids for i in range(n)]
    images = np.concatenate([render(pipe, [(k, i) for k in group for i in range(n)], bar=bar,
                                    **_render_args(plan)) for group in groups])
    return images, jobs, {k: {"attempts": n, "passed": n, "rate": 1.0, "kept": n} for k in ids}


def _filtered(pipe: Any, plan: GenerationPlan, ids: list[int], bar: Any) -> tuple:
    """Oversample every identity in order until ``plan.count`` pass ``plan.filter`` (see ``sample``)."""
    need, cap = plan.count, plan.attempts * plan.count
    images, jobs, acceptance = [], [], {}
    for k in ids:
        kept, tried, passed = [], 0, 0
        while len(kept) < need and not (tried >= cap and plan.allow_short):
            if tried >= cap:
                raise DopplerDiffError(
                    f"identity '{pipe.identities[k]}': only {passed} of {tried} samples passed the filter, "
                    f"{need} needed within {cap} attempts; relax --min-confidence or "
                    "--physics-quantiles, or raise --max-attempts"
                )
            n = min(plan.batch_size, cap - tried)
            batch = render(pipe, [(k, i) for i in range(tried, tried + n)], **_render_args(plan))
            ok = plan.filter.accept(batch, np.full(n, k))
            passed += int(ok.sum())
            take = list(np.flatnonzero(ok))[: need - len(kept)]
            kept += [(tried + j, batch[j]) for j in take]
            bar.update(len(take))
            tried += n
        acceptance[k] = {"attempts": tried, "passed": passed, "rate": passed / tried, "kept": len(kept)}
        jobs += [(k, i) for i, _ in kept]
        images += [img for _, img in kept]
    if not images:
        raise DopplerDiffError(f"no sample passed the filter within {cap} attempts for any identity")
    return np.stack(images).astype(np.float32), jobs, acceptance


def check_format(fmt: str) -> str:
    """``fmt`` if it is an output format, else one error listing them (checked before any sampling)."""
    if fmt not in FORMATS:
        raise DopplerDiffError(f"--format '{fmt}' is unknown; valid: {', '.join(FORMATS)}")
    return fmt


def output_name(identity: str, index: int, fmt: str) -> str:
    """``ID_3`` -> ``ID3_gen_{index}.{fmt}`` (the input naming ``ID{k}_...`` without the underscore)."""
    return f"{identity.replace('_', '')}_gen_{index}.{fmt}"


def strategy_record(plan: GenerationPlan) -> dict[str, Any]:
    """How the plan's samples were made, as manifests record it."""
    return {"guidance_interval": list(plan.interval) if plan.interval else None,
            "from_real": None if plan.sources is None else plan.sources.origin,
            "strength": plan.strength if plan.sources is not None else None,
            "filter": None if plan.filter is None else plan.filter.describe()}


def _write_samples(tmp: Path, names: list[str], got: Drawn, plan: GenerationPlan, *, fmt: str, cmap: str,
                   size: Any) -> tuple[dict, dict, dict]:
    """Write every drawn sample under ``tmp``; ({identity: files}, {identity: seeds}, {identity: sources})."""
    files: dict[str, list[str]] = {}
    seeds: dict[str, list[int]] = {}
    origin: dict[str, list[str]] = {}
    for img, k, i, s in zip(got.images, got.labels.tolist(), got.indices.tolist(), got.seeds, strict=True):
        name = names[k]
        rel = Path(plan.condition or "") / name / output_name(name, i, fmt)
        (tmp / rel.parent).mkdir(parents=True, exist_ok=True)
        write_image(tmp / rel, img, cmap, size=size)
        files.setdefault(name, []).append(str(rel))
        seeds.setdefault(name, []).append(s)
        if plan.sources is not None:
            origin.setdefault(name, []).append(plan.sources.name(k, i))
    return files, seeds, origin


def write_plan(pipe: DopplerDiffPipeline, plan: GenerationPlan, out: str | Path, *, fmt: str = "png",
               colormap: str | None = None, native_size: int | list[int] | None = None, progress: bool = True,
               extra_manifest: dict[str, Any] | None = None, config: Any = None) -> Path:
    """Sample ``plan`` and write ``out/<identity>/<ID>_gen_<i>.<fmt>`` at the native size, atomically.

    ``colormap``/``native_size`` default to the pipeline's config (the input data's). ``i`` is the sample's
    seed index (with a filter, the indices of the accepted samples). With ``plan.condition`` the samples go
    to ``out/<condition>/<identity>/``, the conditions layout of the input data. ``manifest.json`` records
    the plan, every sample's seed and source and the acceptance rate per identity; ``config`` is saved as
    ``config.yaml``.
    """
    check_format(fmt)
    names = [pipe.identities[k] for k in pipe.identity_ids(
        pipe.identities if plan.identities is None else list(plan.identities))]
    if plan.condition is not None:
        pipe.condition_ids([plan.condition])  # an unknown condition: one error before anything is written
    cmap = colormap or pipe.config.colormap
    size = native_size if native_size is not None else pipe.config.native_size
    out = Path(out)
    with atomic_dir(out) as tmp:
        got = sample(pipe, plan, progress=progress)
        files, seeds, origin = _write_samples(tmp, pipe.identities, got, plan, fmt=fmt, cmap=cmap, size=size)
        if config is not None:
            config.save(tmp / "config.yaml")
        walk = {} if plan.condition is None else {"condition": plan.condition,
                                                  "condition_guidance": plan.condition_guidance}
        write_manifest(
            tmp, kind="generate", identities=names, label_map=pipe.identities, **walk,
            num_per_identity=plan.count, steps=plan.steps, guidance=plan.guidance,
            scheduler=plan.scheduler or pipe.scheduler_name, seed=plan.seed, seed_rule=SEED_RULE, format=fmt,
            colormap=cmap, size=size, batch_size=plan.batch_size, files=files, sample_seeds=seeds,
            strategy=strategy_record(plan), sources=origin or None,
            acceptance={pipe.identities[k]: v for k, v in got.acceptance.items()}, **(extra_manifest or {}),
        )
    log.info("wrote %d samples of %d identities to %s", len(got.images), len(names), out)
    return out


def write_generated(pipe: DopplerDiffPipeline, out: Path, identities: list[str] | None, num_per_identity: int,
                    *, steps: int, guidance: float, scheduler: str, seed: int, fmt: str = "png",
                    batch_size: int = 16, **writer: Any) -> Path:
    """``write_plan`` of the plan plain sampling with these settings makes (``identities`` None: all);
    ``writer``: ``write_plan``'s keywords (colormap, native_size, progress, extra_manifest, config)."""
    plan = GenerationPlan(identities=identities, count=num_per_identity, steps=steps, guidance=guidance,
                          scheduler=scheduler, seed=seed, batch_size=batch_size)
    return write_plan(pipe, plan, out, fmt=fmt, **writer)


def generate_run(run: Path, cfg: Config, *, resume: str | None = None,
                 progress: bool = True) -> Path:
    """The run's generate stage: ``diffusion.samples_per_identity`` samples of every identity from
    RUN/pipeline into RUN/samples with the config's sampler settings; ``resume`` makes the common stage
    signature (one atomic pass, no checkpoints)."""
    d = cfg.diffusion
    plan = GenerationPlan.from_diffusion(d, count=d.samples_per_identity, seed=cfg.seed)
    return write_plan(load_run_pipeline(run), plan, RunDir(run).samples, progress=progress, config=cfg)
