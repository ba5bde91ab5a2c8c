"""Writing a plan's samples in the input data's layout, colormap and native size, with a manifest."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from dopplerdiff.config import Config
from dopplerdiff.data.images import write_image
from dopplerdiff.errors import DopplerDiffError
from dopplerdiff.generate.plan import GenerationPlan
from dopplerdiff.generate.samples import Drawn, sample
from dopplerdiff.pipelines.auto_pipeline import load_run_pipeline
from dopplerdiff.pipelines.pipeline_dopplerdiff import DopplerDiffPipeline
from dopplerdiff.utils.io import atomic_dir, write_manifest
from dopplerdiff.utils.rundir import RunDir

log = logging.getLogger(__name__)
FORMATS = ("png", "jpg", "npy")
SEED_RULE = "torch.Generator seeded with generate.sample_seed(seed, identity_index, sample_index)"


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


def write_plan(pipe: DopplerDiffPipeline, plan: GenerationPlan, out: Path, *, fmt: str = "png",
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
