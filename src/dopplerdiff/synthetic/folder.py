"""A training-ready folder of real training windows plus synthetic ones (`dopplerdiff augment`).

``OUT/<identity>/`` holds the run's real TRAIN windows (copied byte for byte, same relative paths) and
synthetic windows named ``synthetic_<ID>_gen_<i>.<ext>`` (``i`` = the sample's seed index) in the real files'
format, colormap and native size. ``OUT/manifest.json`` lists every file as real or synthetic and, for each
synthetic one, its seed, source window and the strategy that made it. Written atomically; an existing
non-empty folder is replaced only if it is an augment output and ``overwrite`` is set.
"""

from __future__ import annotations

import json
import logging
import math
import shutil
from pathlib import Path
from typing import Any

from dopplerdiff.data.images import write_image
from dopplerdiff.errors import DopplerDiffError
from dopplerdiff.generate import GenerationPlan, output_name, sample, strategy_record
from dopplerdiff.pipelines.pipeline_dopplerdiff import DopplerDiffPipeline
from dopplerdiff.synthetic.sources import split_files
from dopplerdiff.utils.io import atomic_dir, write_manifest

log = logging.getLogger(__name__)
KIND = "augment"
SYNTHETIC_PREFIX = "synthetic_"


def synthetic_name(identity: str, index: int, ext: str) -> str:
    """``ID_3``, 5, ``jpg`` -> ``synthetic_ID3_gen_5.jpg`` (never a real window's name)."""
    return SYNTHETIC_PREFIX + output_name(identity, index, ext)


def check_out(out: Path, overwrite: bool) -> None:
    """Refuse a non-empty ``out`` unless it is an earlier augment output and ``overwrite`` is set."""
    out = Path(out)
    if not out.exists() or (out.is_dir() and not any(out.iterdir())):
        return
    try:
        ours = json.loads((out / "manifest.json").read_text()).get("kind") == KIND
    except (OSError, ValueError, AttributeError):
        ours = False
    if not ours:
        raise DopplerDiffError(f"--out '{out}' is not empty and was not written by `dopplerdiff augment`; "
                               "choose another path")
    if not overwrite:
        raise DopplerDiffError(f"--out '{out}' already holds an augmented set; --overwrite replaces it")


def real_windows(run: Path, label_map: list[str], budget: int | None) -> tuple[Path, dict[str, list[str]]]:
    """The run's training files per identity (natural order), the first ``budget`` of each if given."""
    root, files = split_files(run, "train")
    unknown = sorted(set(files) - set(label_map))
    if unknown:
        raise DopplerDiffError(f"training identities {', '.join(unknown)} are unknown to the generator")
    if not files:
        raise DopplerDiffError(f"run '{run}' records no training windows in data.json")
    if budget is not None:
        if budget < 1:
            raise DopplerDiffError(f"--real-per-identity must be >= 1, got {budget}")
        small = min(files, key=lambda n: len(files[n]))
        if len(files[small]) < budget:
            raise DopplerDiffError(f"--real-per-identity {budget} is larger than the data: identity "
                                   f"'{small}' has {len(files[small])} training windows")
        files = {n: fs[:budget] for n, fs in files.items()}
    return root, files


def synthetic_counts(
    real: dict[str, list[str]], per_identity: int | None, ratio: float | None
) -> dict[str, int]:
    """Synthetic windows per identity: ``per_identity``, or ``ratio`` x its real windows (at least 1)."""
    if (per_identity is None) == (ratio is None):
        raise DopplerDiffError("give exactly one of --per-identity N or --ratio R")
    if per_identity is not None:
        if per_identity < 1:
            raise DopplerDiffError(f"--per-identity must be >= 1, got {per_identity}")
        return {n: per_identity for n in real}
    if not math.isfinite(ratio) or ratio <= 0:
        raise DopplerDiffError(f"--ratio must be a finite number > 0, got {ratio}")
    return {n: max(1, round(ratio * len(fs))) for n, fs in real.items()}


def write_synthetic_folder(
    pipe: DopplerDiffPipeline, run: Path, out: Path, plan: GenerationPlan, *, counts: dict[str, int],
    root: Path, real: dict[str, list[str]], native_size: Any = None, overwrite: bool = False,
    progress: bool = True, config: Any = None,
) -> dict[str, Any]:
    """Copy the real windows and add ``counts[identity]`` synthetic ones sampled by ``plan`` (its
    identities and count set per identity); returns the manifest written."""
    check_out(out, overwrite)
    size = native_size if native_size is not None else pipe.config.native_size
    with atomic_dir(Path(out), overwrite=overwrite) as tmp:
        listing = _copy_real(root, real, tmp)
        acceptance = {}
        for name, n in counts.items():
            ext = Path(real[name][0]).suffix.lstrip(".").lower() if real.get(name) else "png"
            got = sample(pipe, plan.replace(identities=(name,), count=n), progress=progress)
            k = int(got.labels[0])
            acceptance[name] = got.acceptance[k]
            for img, i, seed in zip(got.images, got.indices.tolist(), got.seeds, strict=True):
                rel = f"{name}/{synthetic_name(name, i, ext)}"
                write_image(tmp / rel, img, pipe.config.colormap, size=size)
                listing.append({"file": rel, "identity": name, "synthetic": True, "index": i, "seed": seed,
                                "source": None if plan.sources is None else plan.sources.name(k, i)})
        if config is not None:
            config.save(tmp / "config.yaml")
        manifest = write_manifest(
            tmp, kind=KIND, run=str(run), data_root=str(root), label_map=pipe.identities,
            real_per_identity={n: len(fs) for n, fs in real.items()}, synthetic_per_identity=counts,
            steps=plan.steps, guidance=plan.guidance, scheduler=pipe.scheduler_name,
            seed=plan.seed, seed_rule="generate.sample_seed(seed, identity_index, index)",
            strategy=strategy_record(plan), acceptance=acceptance, colormap=pipe.config.colormap,
            size=size, files=listing,
        )
    log.info("wrote %d real and %d synthetic windows to %s", sum(map(len, real.values())),
             sum(counts.values()), out)
    return manifest


def _copy_real(root: Path, real: dict[str, list[str]], tmp: Path) -> list[dict[str, Any]]:
    listing = []
    for name, rels in real.items():
        for rel in rels:
            (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(root / rel, tmp / rel)
            listing.append({"file": rel, "identity": name, "synthetic": False})
    return listing
