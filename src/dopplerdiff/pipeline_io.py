"""Loading a saved DopplerDiffPipeline's parts, and turning its images into PIL images."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from dopplerdiff.errors import DopplerDiffError
from dopplerdiff.models.autoencoder import load_autoencoder
from dopplerdiff.models.condition import IdentityConditionEncoder
from dopplerdiff.models.decoder import load_decoder
from dopplerdiff.models.denoiser import load_denoiser
from dopplerdiff.models.vq_transformer import load_vq_transformer
from dopplerdiff.utils.io import loadable_weights, pretrained_config, read_json, recover_dir
from dopplerdiff.utils.names import check_identity_names

COMPONENTS = ("autoencoder", "denoiser", "condition_encoder", "scheduler")
OPTIONAL = ("decoder",)  # saved only when present (a diffusion decoder)


VQ_PIPELINE = "DopplerVQDiffusionPipeline"


def pipeline_index(path: Path) -> dict[str, Any]:
    """``model_index.json`` of a saved pipeline, its identity names checked; every component present (a
    pipeline left missing by an interrupted replacement is restored first)."""
    recover_dir(Path(path))
    index = Path(path) / "model_index.json"
    if not index.is_file():
        raise DopplerDiffError(f"'{path}' is not a saved pipeline (no model_index.json)")
    config = read_json(index)
    if not isinstance(config, dict):
        raise DopplerDiffError(f"'{index}' is damaged (not a JSON object); restore or remove it")
    check_identity_names(config.get("identities") or [], f"'{index}'")  # names become paths: refuse "../x"
    for name in COMPONENTS:
        if not (Path(path) / name).is_dir():
            raise DopplerDiffError(f"pipeline '{path}' is missing its '{name}' directory")
    return config


def load_pipeline(path: Path) -> Any:
    """A saved pipeline of either kind: DopplerDiffPipeline or (vq-diffusion) DopplerVQDiffusionPipeline.

    (The pipeline modules import this one, hence the imports inside the function.)"""
    if pipeline_index(Path(path)).get("_class_name") == VQ_PIPELINE:
        from dopplerdiff.pipeline_vq import DopplerVQDiffusionPipeline as cls
    else:
        from dopplerdiff.pipeline import DopplerDiffPipeline as cls
    with loadable_weights(path, "pipeline"):
        return cls.from_pretrained(path)


def load_vq_parts(path: Path) -> dict[str, Any]:
    """Constructor arguments of a saved DopplerVQDiffusionPipeline directory."""
    config = pipeline_index(path)
    if config.get("_class_name") != VQ_PIPELINE:
        raise DopplerDiffError(f"'{path}' holds a {config.get('_class_name')!r}, not a {VQ_PIPELINE}")
    parts = {
        "autoencoder": load_autoencoder_any(path / "autoencoder"),
        "denoiser": load_vq_transformer(path / "denoiser"),
        "condition_encoder": IdentityConditionEncoder.from_pretrained(path / "condition_encoder"),
        "scheduler": load_scheduler(path / "scheduler"),
    }
    init = {k: v for k, v in config.items() if not k.startswith("_") and k not in COMPONENTS}
    return {**parts, **init}


def load_parts(path: Path) -> dict[str, Any]:
    """Constructor arguments of a saved pipeline directory (local only); a missing part is a clear error."""
    config = pipeline_index(path)
    if config.get("_class_name") == VQ_PIPELINE:
        raise DopplerDiffError(f"'{path}' is a vq-diffusion pipeline; load it with {VQ_PIPELINE} "
                               "(or pipeline_io.load_pipeline)")
    parts = {
        "autoencoder": load_autoencoder_any(path / "autoencoder"),
        "denoiser": load_denoiser(path / "denoiser"),
        "condition_encoder": IdentityConditionEncoder.from_pretrained(path / "condition_encoder"),
        "scheduler": load_scheduler(path / "scheduler"),
        "decoder": _optional_decoder(path, config),
    }
    init = {k: v for k, v in config.items() if not k.startswith("_") and k not in COMPONENTS + OPTIONAL}
    return {**parts, **init}


def _optional_decoder(path: Path, index: dict[str, Any]):
    """The diffusion decoder when model_index.json names one (older pipelines have none)."""
    entry = index.get("decoder")
    if not entry or entry[0] is None:
        return None
    if not (path / "decoder").is_dir():
        raise DopplerDiffError(f"pipeline '{path}' names a decoder but has no 'decoder' directory")
    return load_decoder(path / "decoder")


def load_autoencoder_any(path: Path):
    """AutoencoderKL or VQModel from a save_pretrained directory (the first stage's loader)."""
    return load_autoencoder(Path(path))


def load_scheduler(path: Path):
    import diffusers

    name = pretrained_config(path, "scheduler", "scheduler_config.json").get("_class_name", "")
    cls = getattr(diffusers, name, None)
    if cls is None or not name.endswith("Scheduler"):
        raise DopplerDiffError(f"scheduler '{path}' has unsupported class {name!r}")
    return cls.from_pretrained(path)


def images_to_pil(images01: np.ndarray, cmap: str) -> list:
    """(B,C,H,W) in [0,1] -> PIL images, 1-channel images colormapped with ``cmap`` (gray: 'L')."""
    from PIL import Image

    from dopplerdiff.data.colormap import apply_colormap

    out = []
    for img in np.clip(images01, 0, 1):
        if img.shape[0] == 1 and cmap not in ("gray", "grey"):
            out.append(Image.fromarray(apply_colormap(img[0], cmap), "RGB"))
        elif img.shape[0] == 1:
            out.append(Image.fromarray((img[0] * 255).round().astype(np.uint8), "L"))
        else:
            out.append(Image.fromarray((img.transpose(1, 2, 0) * 255).round().astype(np.uint8), "RGB"))
    return out
