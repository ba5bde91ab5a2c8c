"""Loading a saved pipeline without knowing its class: ``model_index.json``'s ``_class_name`` picks it, as
diffusers' ``AutoPipeline`` does. A run's pipeline (``RUN/pipeline``) is loaded the same way."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from dopplerdiff.errors import DopplerDiffError
from dopplerdiff.pipelines.components import pipeline_index
from dopplerdiff.pipelines.pipeline_dopplerdiff import DopplerDiffPipeline
from dopplerdiff.pipelines.pipeline_vq_diffusion import DopplerVQDiffusionPipeline
from dopplerdiff.utils.io import loadable_weights, recover_dir
from dopplerdiff.utils.rundir import RunDir

# ``_class_name`` -> class; the names are what save_pretrained wrote, so pipelines saved before the
# pipelines/ package existed (same class names, other modules) load unchanged
PIPELINES = {cls.__name__: cls for cls in (DopplerDiffPipeline, DopplerVQDiffusionPipeline)}


def pipeline_class(path: Path) -> type:
    """The pipeline class named in ``path/model_index.json``; another name is one error listing ours."""
    name = pipeline_index(Path(path)).get("_class_name")
    if name not in PIPELINES:
        raise DopplerDiffError(f"'{Path(path) / 'model_index.json'}' holds a {name!r}, not a pipeline "
                               f"of this project ({', '.join(PIPELINES)})")
    return PIPELINES[name]


def load_pipeline(path: Path) -> Any:
    """A saved pipeline of either class: DopplerDiffPipeline or (vq-diffusion) DopplerVQDiffusionPipeline."""
    cls = pipeline_class(Path(path))
    with loadable_weights(path, "pipeline"):
        return cls.from_pretrained(path)


def load_run_pipeline(run: Path, device: str | torch.device | None = None) -> Any:
    """The trained pipeline of a run directory (RUN/pipeline) on ``device`` (default: CUDA if present)."""
    path = RunDir(run).pipeline
    recover_dir(path)  # a replacement killed between its two renames left only the previous version
    if not path.is_dir():
        raise DopplerDiffError(
            f"run '{run}' has no trained pipeline ('{path}' missing); run `dopplerdiff train-diffusion` first"
        )
    pipe = load_pipeline(path)
    return pipe.to(device or ("cuda" if torch.cuda.is_available() else "cpu"))
