"""The components of a saved pipeline: its ``model_index.json`` and the constructor arguments of either
pipeline class, read from the part directories. Imports no pipeline class (``auto_pipeline`` picks one)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import diffusers

from dopplerdiff.errors import DopplerDiffError
from dopplerdiff.models.autoencoder import load_autoencoder
from dopplerdiff.models.condition import IdentityConditionEncoder
from dopplerdiff.models.decoder import load_decoder
from dopplerdiff.models.denoiser import load_denoiser
from dopplerdiff.models.vq_transformer import load_vq_transformer
from dopplerdiff.utils.io import pretrained_config, read_json, recover_dir
from dopplerdiff.utils.names import check_identity_names

COMPONENTS = ("autoencoder", "denoiser", "condition_encoder", "scheduler")
OPTIONAL = ("decoder",)  # saved only when present (a diffusion decoder)


VQ_PIPELINE = "DopplerVQDiffusionPipeline"  # the ``_class_name`` of a vq-diffusion pipeline


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


def load_vq_parts(path: Path) -> dict[str, Any]:
    """Constructor arguments of a saved DopplerVQDiffusionPipeline directory."""
    config = pipeline_index(path)
    if config.get("_class_name") != VQ_PIPELINE:
        raise DopplerDiffError(f"'{path}' holds a {config.get('_class_name')!r}, not a {VQ_PIPELINE}")
    parts = {
        "autoencoder": load_autoencoder(path / "autoencoder"),
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
                               "(or pipelines.load_pipeline)")
    parts = {
        "autoencoder": load_autoencoder(path / "autoencoder"),
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


def load_scheduler(path: Path):
    """The diffusers scheduler class named in ``scheduler_config.json``, loaded from ``path``."""
    name = pretrained_config(path, "scheduler", "scheduler_config.json").get("_class_name", "")
    cls = getattr(diffusers, name, None)
    if cls is None or not name.endswith("Scheduler"):
        raise DopplerDiffError(f"scheduler '{path}' has unsupported class {name!r}")
    return cls.from_pretrained(path)
