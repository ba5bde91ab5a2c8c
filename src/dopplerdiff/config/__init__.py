"""Typed configs: one dataclass per stage, loaded from YAML profiles plus dotted overrides."""

from __future__ import annotations

from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from dopplerdiff.config.autoencoder import AutoencoderConfig, AutoencoderLossConfig
from dopplerdiff.config.base import apply_overrides, from_dict, read_yaml, to_dict
from dopplerdiff.config.data import AugmentConfig, DataConfig, SplitConfig
from dopplerdiff.config.decoder import DecoderConfig
from dopplerdiff.config.diffusion import ConditionConfig, DiffusionConfig
from dopplerdiff.config.embed import EmbedConfig
from dopplerdiff.config.encoder import EncoderConfig
from dopplerdiff.config.evaluate import EvaluateConfig
from dopplerdiff.config.loop import LoopConfig
from dopplerdiff.config.simulate import SimulateConfig
from dopplerdiff.errors import ConfigError
from dopplerdiff.utils.io import atomic_write_bytes

PROFILES = ("smoke", "quick", "paper")


@dataclass
class Config:
    """The whole resolved configuration of a run."""

    profile: str = "custom"
    seed: int = 0
    data: DataConfig = field(default_factory=DataConfig)
    simulate: SimulateConfig = field(default_factory=SimulateConfig)
    autoencoder: AutoencoderConfig = field(default_factory=AutoencoderConfig)
    diffusion: DiffusionConfig = field(default_factory=DiffusionConfig)
    decoder: DecoderConfig = field(default_factory=DecoderConfig)
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    evaluate: EvaluateConfig = field(default_factory=EvaluateConfig)
    embed: EmbedConfig = field(default_factory=EmbedConfig)

    def __post_init__(self) -> None:
        check_combinations(self)

    def to_dict(self) -> dict[str, Any]:
        return to_dict(self)

    def save(self, path: Path) -> None:
        """Write ``path`` atomically: a reader never sees a truncated YAML (which would still parse)."""
        atomic_write_bytes(Path(path), yaml.safe_dump(self.to_dict(), sort_keys=False).encode())


VQ_SAMPLER = "vq-diffusion"


def check_combinations(cfg: Config) -> None:
    """Settings of different sections that cannot work together: one ConfigError naming both."""
    size, data = cfg.decoder.size, cfg.data.size
    if size and (size < data or size % data):
        # the upsampler's pairs are (latent of the window at data.size, the window at decoder.size)
        raise ConfigError(f"decoder.size={size} must be 0, data.size ({data}) or a multiple of it")
    d = cfg.diffusion
    if d.backbone == "vq-diffusion":
        if cfg.autoencoder.kind != "vq":
            raise ConfigError(
                f"diffusion.backbone: vq-diffusion diffuses the code indices of a VQModel and needs "
                f"autoencoder.kind: vq (got autoencoder.kind: {cfg.autoencoder.kind})"
            )
        samplers = (("diffusion.scheduler", d.scheduler), ("evaluate.scheduler", cfg.evaluate.scheduler))
        for key, value in samplers:
            if value != VQ_SAMPLER:
                raise ConfigError(
                    f"diffusion.backbone: vq-diffusion samples only with VQDiffusionScheduler: set "
                    f"{key}={VQ_SAMPLER} (got {key}: {value})"
                )
        for key, steps in (("diffusion.num_inference_steps", d.num_inference_steps),
                           ("evaluate.steps", cfg.evaluate.steps)):
            if steps > d.vq.num_train_timesteps:
                raise ConfigError(
                    f"{key}={steps} exceeds the discrete chain's diffusion.vq.num_train_timesteps="
                    f"{d.vq.num_train_timesteps}; sampling runs at most that many steps"
                )
        if d.select_best:
            raise ConfigError("diffusion.select_best is not implemented for diffusion.backbone: vq-diffusion")
        if cfg.decoder.kind == "diffusion":
            raise ConfigError("decoder.kind: diffusion decodes continuous latents; diffusion.backbone: "
                              "vq-diffusion decodes code indices with the VQModel (set decoder.kind: vae)")
        return
    for key, value in (("diffusion.scheduler", d.scheduler), ("evaluate.scheduler", cfg.evaluate.scheduler)):
        if value == VQ_SAMPLER:
            raise ConfigError(
                f"{key}: {VQ_SAMPLER} samples discrete codes and needs diffusion.backbone: vq-diffusion "
                f"(got diffusion.backbone: {d.backbone})"
            )


def profile_path(name: str) -> Path:
    """Path of a shipped profile YAML (smoke, quick, paper)."""
    return Path(str(resources.files("dopplerdiff") / "configs" / f"{name}.yaml"))


def load_config(config: str | Path | None = None, overrides: list[str] | tuple[str, ...] = ()) -> Config:
    """Load a profile name or YAML path (default: quick) and apply ``key=value`` overrides."""
    if config is None:
        config = "quick"
    if str(config) in PROFILES:
        data = read_yaml(profile_path(str(config)))
    else:
        path = Path(config)
        if not path.exists() and path.suffix == "":
            raise ConfigError(f"config '{config}' is neither a profile ({', '.join(PROFILES)}) nor a file")
        data = read_yaml(path)
        try:
            return from_dict(Config, apply_overrides(data, overrides))
        except ConfigError as exc:
            raise ConfigError(f"config file '{path}': {exc}") from exc
    apply_overrides(data, overrides)
    return from_dict(Config, data)


def saved_config(directory: Path) -> Config | None:
    """The config recorded in ``DIR/config.yaml`` (a run, encoder or index), or None when there is none."""
    path = Path(directory) / "config.yaml"
    return load_config(path) if path.is_file() else None


def config_for(directory: Path, config: str | Path | None, overrides: list[str] | tuple[str, ...] = ()
               ) -> Config:
    """``config`` if given, else ``DIR/config.yaml``, else quick; then ``overrides``.

    Commands on an existing run or index thus read data as it was made.
    """
    if config is None and (Path(directory) / "config.yaml").is_file():
        config = Path(directory) / "config.yaml"
    return load_config(config, list(overrides))


def config_from_dict(data: dict[str, Any]) -> Config:
    """Rebuild a Config from a saved run's ``config.yaml`` contents."""
    return from_dict(Config, data)


__all__ = [
    "AugmentConfig", "AutoencoderConfig", "AutoencoderLossConfig", "ConditionConfig", "Config",
    "ConfigError", "DataConfig", "DecoderConfig", "DiffusionConfig", "EmbedConfig", "EncoderConfig",
    "EvaluateConfig",
    "LoopConfig", "PROFILES", "SimulateConfig", "SplitConfig", "config_from_dict", "load_config",
    "profile_path", "config_for", "saved_config",
]
