"""DopplerDiffPipeline: identity-conditional latent diffusion sampling with classifier-free guidance.

Components: ``autoencoder`` (AutoencoderKL or VQModel), ``denoiser`` (UNet2DConditionModel or
DiTTransformer2DModel), ``condition_encoder`` (IdentityConditionEncoder; row K = null identity) and
``scheduler`` (any sampler from ``dopplerdiff.schedulers``). The label map (identity names, index -> name),
the data colormap, channels and native image size are stored in the pipeline config (model_index.json),
so identities can be given by name.

Guidance: ``eps = eps_null + g * (eps_cond - eps_null)`` with the null identity K. Conditional and null
halves run in ONE batched forward; ``g == 1`` is plain conditional sampling and skips the null half,
``g == 0`` is unconditional sampling and skips the conditional half.

Latent convention (whole project): ``z_model = (z - shift_factor) * scaling_factor``; images are decoded
from ``z_model / scaling_factor + shift_factor``. ``output_type='latent'`` returns ``z_model``.
"""

from __future__ import annotations

import inspect
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from diffusers import DiffusionPipeline, ImagePipelineOutput
from diffusers.utils.torch_utils import randn_tensor

from dopplerdiff.errors import DopplerDiffError
from dopplerdiff.models.autoencoder import latent_scale
from dopplerdiff.models.condition import IdentityConditionEncoder
from dopplerdiff.models.denoiser import denoise, load_denoiser
from dopplerdiff.schedulers import make_scheduler, scheduler_name
from dopplerdiff.utils.names import check_identity_names

OUTPUT_TYPES = ("np", "pt", "latent", "pil")
COMPONENTS = ("autoencoder", "denoiser", "condition_encoder", "scheduler")


def latent_scale_of(vae: Any) -> tuple[float, float]:
    """(scaling_factor, shift_factor) of an autoencoder: the first stage's one definition."""
    return latent_scale(vae)


class DopplerDiffPipeline(DiffusionPipeline):
    """Sample spectrograms of chosen identities; see the module docstring for conventions."""

    model_cpu_offload_seq = "condition_encoder->denoiser->autoencoder"

    def __init__(
        self,
        autoencoder,
        denoiser,
        condition_encoder,
        scheduler,
        identities: list[str] | None = None,
        colormap: str = "jet",
        channels: int = 1,
        native_size: int | None = None,
    ):
        super().__init__()
        self.register_modules(
            autoencoder=autoencoder,
            denoiser=denoiser,
            condition_encoder=condition_encoder,
            scheduler=scheduler,
        )
        k = condition_encoder.num_identities
        names = list(identities) if identities is not None else [f"ID_{i + 1}" for i in range(k)]
        if len(names) != k:
            raise DopplerDiffError(
                f"pipeline label map has {len(names)} names but the condition encoder has {k}"
            )
        self.register_to_config(
            identities=names, colormap=colormap, channels=channels, native_size=native_size
        )

    # -- identities and schedulers -------------------------------------------------------------------------
    @property
    def identities(self) -> list[str]:
        return list(self.config.identities)

    def identity_ids(self, identities: list[int | str]) -> list[int]:
        """Names or indices -> indices; unknown names/indices are errors listing the valid ones."""
        names = self.identities
        out = []
        for ident in identities:
            if isinstance(ident, str) and ident in names:
                out.append(names.index(ident))
            elif (
                isinstance(ident, int | np.integer)
                and not isinstance(ident, bool)
                and 0 <= ident < len(names)
            ):
                out.append(int(ident))
            else:
                raise DopplerDiffError(
                    f"unknown identity {ident!r}; valid: {', '.join(names)} (or indices 0..{len(names) - 1})"
                )
        return out

    def set_scheduler(self, name: str) -> None:
        """Swap the sampler by name (ddpm, ddim, dpmpp, euler, euler_a, lms, heun, unipc)."""
        self.scheduler = make_scheduler(name, self.scheduler.config)
        self.register_modules(scheduler=self.scheduler)

    @property
    def scheduler_name(self) -> str:
        return scheduler_name(self.scheduler)

    @property
    def latent_shape(self) -> tuple[int, int, int]:
        cfg = self.denoiser.config
        return int(cfg.in_channels), int(cfg.sample_size), int(cfg.sample_size)

    # -- sampling ------------------------------------------------------------------------------------------
    def _step_kwargs(self, generator: Any) -> dict[str, Any]:
        params = set(inspect.signature(self.scheduler.step).parameters)
        return {"generator": generator} if "generator" in params else {}

    def predict(self, latents: torch.Tensor, t: torch.Tensor, ids: torch.Tensor, guidance_scale: float):
        """Guided model output for ``latents`` at time ``t`` (cond + null in one forward)."""
        enc = self.condition_encoder
        b = latents.shape[0]
        if guidance_scale == 1.0:
            return denoise(self.denoiser, latents, t, enc.encode(ids))
        null = enc.encode(enc.null_ids(b, latents.device))
        if guidance_scale == 0.0:
            return denoise(self.denoiser, latents, t, null)
        out = denoise(self.denoiser, torch.cat([latents, latents]), t, torch.cat([enc.encode(ids), null]))
        cond_out, null_out = out.chunk(2)
        return null_out + guidance_scale * (cond_out - null_out)

    def decode_latents(self, z_model: torch.Tensor) -> torch.Tensor:
        """Model-space latents -> images in [-1, 1]."""
        scale, shift = latent_scale_of(self.autoencoder)
        z = (z_model / scale + shift).to(self.autoencoder.dtype)
        return self.autoencoder.decode(z).sample.clamp(-1, 1)

    def __call__(self, identities: list[int | str], *args: Any, **kwargs: Any):
        """Sample one image per entry of ``identities`` (names or indices); see ``sample`` for arguments.

        Modules run in eval mode (decoders can differ between modes) and get their mode back afterwards,
        so the training stage can sample with its live modules.
        """
        modules = (self.autoencoder, self.denoiser, self.condition_encoder)
        modes = [m.training for m in modules]
        try:
            for m in modules:
                m.eval()
            return self.sample(identities, *args, **kwargs)
        finally:
            for m, mode in zip(modules, modes, strict=True):
                m.train(mode)

    @torch.inference_mode()
    def sample(
        self,
        identities: list[int | str],
        num_inference_steps: int = 20,
        guidance_scale: float = 2.0,
        generator: torch.Generator | list[torch.Generator] | None = None,
        latents: torch.Tensor | None = None,
        output_type: str = "np",
        return_dict: bool = True,
    ):
        if isinstance(identities, int | str):
            identities = [identities]
        if num_inference_steps < 1:
            raise DopplerDiffError(f"num_inference_steps must be >= 1, got {num_inference_steps}")
        if guidance_scale < 0:
            raise DopplerDiffError(f"guidance_scale must be >= 0, got {guidance_scale}")
        if output_type not in OUTPUT_TYPES:
            raise DopplerDiffError(
                f"output_type '{output_type}' is unknown; valid: {', '.join(OUTPUT_TYPES)}"
            )
        ids_list = self.identity_ids(list(identities))
        if not ids_list:
            raise DopplerDiffError("no identities given")
        device, dtype = self.denoiser.device, self.denoiser.dtype
        shape = (len(ids_list), *self.latent_shape)
        if isinstance(generator, list) and len(generator) != shape[0]:
            raise DopplerDiffError(f"got {len(generator)} generators for a batch of {shape[0]}")
        if latents is None:
            latents = randn_tensor(shape, generator=generator, device=device, dtype=dtype)
        elif tuple(latents.shape) != shape:
            raise DopplerDiffError(f"latents must have shape {shape}, got {tuple(latents.shape)}")
        latents = latents.to(device=device, dtype=dtype)
        ids = torch.tensor(ids_list, dtype=torch.long, device=device)

        self.scheduler.set_timesteps(num_inference_steps, device=device)
        latents = latents * self.scheduler.init_noise_sigma
        extra = self._step_kwargs(generator)
        for t in self.progress_bar(self.scheduler.timesteps):
            model_in = self.scheduler.scale_model_input(latents, t)
            out = self.predict(model_in, t, ids, float(guidance_scale))
            latents = self.scheduler.step(out, t, latents, **extra).prev_sample

        if output_type == "latent":
            images = latents
        else:
            images = (self.decode_latents(latents).float() + 1) / 2
            if output_type == "np":
                images = images.permute(0, 2, 3, 1).cpu().numpy()
            elif output_type == "pil":
                images = self.to_pil(images.cpu().numpy())
        self.maybe_free_model_hooks()
        if not return_dict:
            return (images,)
        return ImagePipelineOutput(images=images)

    def to_pil(self, images01: np.ndarray) -> list:
        """(B,C,H,W) in [0,1] -> PIL images, 1-channel images colormapped with the data colormap."""
        from PIL import Image

        from dopplerdiff.data.colormap import apply_colormap

        out = []
        cmap = self.config.colormap
        for img in np.clip(images01, 0, 1):
            if img.shape[0] == 1 and cmap not in ("gray", "grey"):
                out.append(Image.fromarray(apply_colormap(img[0], cmap), "RGB"))
            elif img.shape[0] == 1:
                out.append(Image.fromarray((img[0] * 255).round().astype(np.uint8), "L"))
            else:
                out.append(Image.fromarray((img.transpose(1, 2, 0) * 255).round().astype(np.uint8), "RGB"))
        return out

    # -- loading -------------------------------------------------------------------------------------------
    @classmethod
    def from_pretrained(cls, path: str | Path, **kwargs: Any) -> DopplerDiffPipeline:  # type: ignore[override]
        """Load a saved pipeline directory (local only); a missing part is a clear error."""
        path = Path(path)
        index = path / "model_index.json"
        if not index.is_file():
            raise DopplerDiffError(f"'{path}' is not a saved pipeline (no model_index.json)")
        config = json.loads(index.read_text())
        check_identity_names(config.get("identities") or [], f"'{index}'")
        for name in COMPONENTS:
            if not (path / name).is_dir():
                raise DopplerDiffError(f"pipeline '{path}' is missing its '{name}' directory")
        parts = {
            "autoencoder": load_autoencoder_any(path / "autoencoder"),
            "denoiser": load_denoiser(path / "denoiser"),
            "condition_encoder": IdentityConditionEncoder.from_pretrained(path / "condition_encoder"),
            "scheduler": load_scheduler(path / "scheduler"),
        }
        init = {k: v for k, v in config.items() if not k.startswith("_") and k not in COMPONENTS}
        pipe = cls(**parts, **init)
        dtype = kwargs.get("torch_dtype")
        if dtype is not None:
            pipe.to(dtype=dtype)
        for module in (pipe.autoencoder, pipe.denoiser, pipe.condition_encoder):
            module.eval()
        return pipe


def load_autoencoder_any(path: Path):
    """AutoencoderKL or VQModel from a save_pretrained directory (the first stage's loader)."""
    from dopplerdiff.models.autoencoder import load_autoencoder

    return load_autoencoder(Path(path))


def load_scheduler(path: Path):
    import diffusers

    cfg_file = Path(path) / "scheduler_config.json"
    if not cfg_file.is_file():
        raise DopplerDiffError(f"scheduler directory '{path}' has no scheduler_config.json")
    name = json.loads(cfg_file.read_text()).get("_class_name", "")
    cls = getattr(diffusers, name, None)
    if cls is None or not name.endswith("Scheduler"):
        raise DopplerDiffError(f"scheduler '{path}' has unsupported class {name!r}")
    return cls.from_pretrained(path)
