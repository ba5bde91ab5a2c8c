"""DopplerVQDiffusionPipeline: identity-conditional discrete diffusion over a VQModel's code indices.

The generator of ``diffusion.backbone: vq-diffusion`` (Gu et al. 2022, "Vector Quantized Diffusion Model for
Text-to-Image Synthesis"; diffusers' ``VQDiffusionPipeline`` with an identity instead of a text prompt).
Components: ``autoencoder`` (VQModel), ``denoiser`` (``Transformer2DModel`` with ``num_vector_embeds`` =
codebook size + 1, see ``models.vq_transformer``), ``condition_encoder`` (IdentityConditionEncoder; row K =
the trained null identity) and ``scheduler`` (``VQDiffusionScheduler`` of the training chain). Saved with
``save_pretrained`` and loaded with ``from_pretrained`` (or ``pipelines.load_pipeline``, which picks the
pipeline class from ``model_index.json``); it answers the same ``generate`` / ``evaluate`` calls as
``DopplerDiffPipeline``.

Sampling: every code starts as the mask token; each step the transformer predicts ``log p(x_0 | x_t)``,
guidance mixes it with the null identity's prediction in log space and renormalises
(``log p = log p_null + g (log p_cond - log p_null)``, as diffusers' VQ-Diffusion pipeline), optional
truncation keeps the most likely codes up to ``truncation_rate`` of the mass, and the scheduler's posterior
``q(x_{t-1} | x_t, x_0)`` is sampled with Gumbel noise from the sample's own generator.

Few steps: with ``num_inference_steps`` S below the training chain's T, sampling runs an S-step
``VQDiffusionScheduler`` chain with the same cumulative schedule end points. Its schedules are linear in
t / (S - 1), so its level t' equals the training chain's level t = t' (T - 1) / (S - 1) (rounded), and the
transformer is asked at that training timestep. S = T is the training chain itself.

The edit paths of the continuous pipeline (img2img, inpainting, identity mixtures, given noise) need
continuous latents; here they are refused with one error.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from diffusers import DiffusionPipeline, ImagePipelineOutput, VQDiffusionScheduler
from diffusers.schedulers.scheduling_vq_diffusion import gumbel_noised

from dopplerdiff.errors import DopplerDiffError
from dopplerdiff.models.autoencoder import decode_codes
from dopplerdiff.models.vq_transformer import log_p_x0, num_codes
from dopplerdiff.pipelines.components import load_vq_parts
from dopplerdiff.pipelines.sampling import (
    check_interval,
    check_output_type,
    condition_batch,
    eval_modes,
    guidance_at,
    identity_indices,
    images_as,
)
from dopplerdiff.schedulers import VQ_SCHEDULER

NO_EDIT = (
    "the vq-diffusion pipeline samples code indices from the fully masked state only: img2img, "
    "inpainting, identity mixtures and given noise (image=, mask=, strength<1, resample_steps, "
    "identity_weights, {{name: weight}} identities, latents=) need a continuous-latent pipeline "
    "(diffusion.backbone unet or dit); refused: {what}"
)


def refuse_edits(pipe: Any, what: str) -> None:
    """One clear error when an edit/learn command meets a vq-diffusion pipeline."""
    if isinstance(pipe, DopplerVQDiffusionPipeline):
        raise DopplerDiffError(NO_EDIT.format(what=what))


def vq_scheduler(codebook_size: int, num_train_timesteps: int, **schedule: float) -> VQDiffusionScheduler:
    """The mask-and-replace chain over ``codebook_size`` codes + the mask token."""
    return VQDiffusionScheduler(num_vec_classes=codebook_size + 1, num_train_timesteps=num_train_timesteps,
                                **schedule)


def model_timesteps(steps: int, train_steps: int) -> list[tuple[int, int]]:
    """[(sampler level t', training timestep t)] from t' = steps-1 down to 0 (see the module docstring)."""
    if steps == 1:
        return [(0, train_steps - 1)]  # one step: x_0 straight from the fully masked state
    return [(s, int(round(s * (train_steps - 1) / (steps - 1)))) for s in range(steps - 1, -1, -1)]


def truncate(log_p: torch.Tensor, rate: float) -> torch.Tensor:
    """Zero (log -inf) the least likely codes beyond cumulative probability ``rate`` (diffusers' rule)."""
    if rate >= 1.0:
        return log_p
    sorted_log_p, order = torch.sort(log_p, 1, descending=True)
    keep = sorted_log_p.exp().cumsum(dim=1) < rate
    keep = torch.cat((torch.ones_like(keep[:, :1]), keep[:, :-1]), dim=1)  # the most likely code always
    keep = keep.gather(1, order.argsort(1))
    return log_p.masked_fill(~keep, -torch.inf)


class DopplerVQDiffusionPipeline(DiffusionPipeline):
    """Sample spectrograms of chosen identities by discrete diffusion over VQ codes (module docstring)."""

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
        truncation_rate: float = 1.0,
    ):
        super().__init__()
        self.register_modules(autoencoder=autoencoder, denoiser=denoiser, condition_encoder=condition_encoder,
                              scheduler=scheduler)
        k = condition_encoder.num_identities
        names = list(identities) if identities is not None else [f"ID_{i + 1}" for i in range(k)]
        if len(names) != k:
            raise DopplerDiffError(
                f"pipeline label map has {len(names)} names but the condition encoder has {k}"
            )
        codes = int(autoencoder.config.num_vq_embeddings)
        if num_codes(denoiser) != codes or int(scheduler.config.num_vec_classes) != codes + 1:
            raise DopplerDiffError(
                f"vq-diffusion parts disagree: the VQModel has {codes} codes, the transformer models "
                f"{num_codes(denoiser)} and the scheduler {int(scheduler.config.num_vec_classes) - 1}"
            )
        self.register_to_config(identities=names, colormap=colormap, channels=channels,
                                native_size=native_size, truncation_rate=float(truncation_rate))

    # -- the interface shared with DopplerDiffPipeline ------------------------------------------------------
    @property
    def identities(self) -> list[str]:
        return list(self.config.identities)

    @property
    def decodes_with_diffusion(self) -> bool:
        """Codes are always decoded by the VQModel (a diffusion decoder needs continuous latents)."""
        return False

    def identity_ids(self, identities: list[int | str]) -> list[int]:
        return identity_indices(self.identities, identities)

    @property
    def conditions(self) -> list[str]:
        """No walking conditions: the discrete model is conditioned on identities only."""
        return []

    def condition_ids(self, conditions: list[int | str]) -> list[int]:
        return condition_batch(self.conditions, list(conditions), len(conditions)).tolist()

    def set_scheduler(self, name: str) -> None:
        """Only ``vq-diffusion`` applies: the continuous samplers cannot sample code indices."""
        if name != VQ_SCHEDULER:
            raise DopplerDiffError(
                f"scheduler '{name}' does not apply to a vq-diffusion pipeline; it samples with "
                f"VQDiffusionScheduler ('{VQ_SCHEDULER}')"
            )

    @property
    def scheduler_name(self) -> str:
        return VQ_SCHEDULER

    @property
    def latent_shape(self) -> tuple[int, int]:
        """(h, w) of the code grid."""
        side = int(self.denoiser.config.sample_size)
        return side, side

    @property
    def train_timesteps(self) -> int:
        return int(self.scheduler.config.num_train_timesteps)

    def decode_codes(self, codes: torch.Tensor) -> torch.Tensor:
        """(B, h, w) code indices -> images in [-1, 1]."""
        return decode_codes(self.autoencoder, codes).clamp(-1, 1)

    # -- sampling ----------------------------------------------------------------------------------------
    def predict(self, codes: torch.Tensor, t: int, ids: torch.Tensor, guidance_scale: float) -> torch.Tensor:
        """Guided ``log p(x_0 | x_t)`` (B, codebook, h*w) at training timestep ``t`` (cond + null batched)."""
        cond_enc = self.condition_encoder
        if guidance_scale == 1.0:
            return log_p_x0(self.denoiser, codes, t, cond_enc.encode(ids))
        null = cond_enc.null_ids(codes.shape[0], codes.device)
        if guidance_scale == 0.0:
            return log_p_x0(self.denoiser, codes, t, cond_enc.encode(null))
        out = log_p_x0(self.denoiser, torch.cat([codes, codes]), t, cond_enc.encode(torch.cat([ids, null])))
        cond, uncond = out.chunk(2)
        guided = uncond + guidance_scale * (cond - uncond)
        return guided - torch.logsumexp(guided, dim=1, keepdim=True)

    def check_inputs(self, identities: Any, output_type: str, steps: int, guidance: float, interval: Any,
                     edits: dict[str, Any]) -> tuple[float, float] | None:
        """One error for the first bad argument of ``__call__`` (an edit argument first); the checked
        guidance interval. ``edits``: image, mask, strength, resample_steps, identity_weights, latents."""
        given = [f"{name}=" for name in ("image", "mask", "identity_weights", "latents")
                 if edits[name] is not None]
        given += ["strength<1"] * (float(edits["strength"]) < 1.0)
        given += ["resample_steps"] * (int(edits["resample_steps"]) > 0)
        given += ["identity mixture"] * any(isinstance(i, dict) for i in identities or [])
        if given:
            raise DopplerDiffError(NO_EDIT.format(what=", ".join(given)))
        check_output_type(output_type)
        if not 1 <= int(steps) <= self.train_timesteps:
            raise DopplerDiffError(
                f"num_inference_steps must be in [1, {self.train_timesteps}] (the length of the trained "
                f"chain), got {steps}"
            )
        if guidance < 0 or not np.isfinite(guidance):
            raise DopplerDiffError(f"guidance_scale must be a finite number >= 0, got {guidance}")
        return check_interval(interval)

    @eval_modes
    @torch.inference_mode()
    def __call__(
        self,
        identities: list[int | str] | None = None,
        num_inference_steps: int = 20,
        guidance_scale: float = 2.0,
        generator: torch.Generator | list[torch.Generator] | None = None,
        latents: torch.Tensor | None = None,
        output_type: str = "np",
        return_dict: bool = True,
        *,
        seed: int | None = None,
        image: Any = None,
        strength: float = 1.0,
        mask: Any = None,
        resample_steps: int = 0,
        guidance_interval: tuple[float, float] | None = None,
        identity_weights: Any = None,
    ):
        r"""Sample one spectrogram per entry of ``identities`` (names or indices of the label map).

        Args:
            num_inference_steps: steps of the sampling chain, 1..T (T = the training chain's length).
            guidance_scale: ``log p_null + g (log p_cond - log p_null)``, renormalised; 1 = none, 0 = null.
            generator: a ``torch.Generator`` or one per sample (Gumbel noise of every step).
            output_type: ``np`` (B,H,W,C in [0,1]), ``pt`` (B,C,H,W in [0,1]), ``pil``, or ``latent``: the
                code indices (B, h, w) int64.
            guidance_interval: (lo, hi) in units of t / T: guidance only while the level lies inside.

        The edit arguments (``image``, ``mask``, ``strength`` < 1, ``resample_steps``, ``identity_weights``,
        ``latents``, mixtures) are refused: see the module docstring.

        Examples:
            >>> pipe = DopplerVQDiffusionPipeline.from_pretrained("runs/vq/pipeline")
            >>> imgs = pipe(["ID_3", "ID_7"], num_inference_steps=10, guidance_scale=2.0, seed=0).images
        """
        edits = {"image": image, "mask": mask, "strength": strength, "resample_steps": resample_steps,
                 "identity_weights": identity_weights, "latents": latents}
        interval = self.check_inputs(identities, output_type, num_inference_steps, guidance_scale,
                                     guidance_interval, edits)
        device = self._execution_device
        ids = torch.tensor(self.identity_ids(list(identities or [])), dtype=torch.long, device=device)
        if generator is None and seed is not None:
            generator = torch.Generator(device=device).manual_seed(int(seed))
        if isinstance(generator, list) and len(generator) != len(ids):
            raise DopplerDiffError(f"got {len(generator)} generators for a batch of {len(ids)}")
        codes = self.sample_codes(ids, int(num_inference_steps), float(guidance_scale), generator, interval)
        return self._output(codes, output_type, return_dict)

    def sample_codes(self, ids: torch.Tensor, steps: int, guidance: float, generator: Any,
                     interval: tuple[float, float] | None = None) -> torch.Tensor:
        """(B,) identity ids -> (B, h, w) sampled code indices (modules' modes left alone)."""
        h, w = self.latent_shape
        k = num_codes(self.denoiser)
        sched = vq_scheduler(k, steps, **{key: self.scheduler.config[key] for key in (
            "alpha_cum_start", "alpha_cum_end", "gamma_cum_start", "gamma_cum_end")})
        sched.set_timesteps(steps, device=ids.device)
        codes = torch.full((len(ids), h * w), k, dtype=torch.long, device=ids.device)  # all masked
        rate = float(self.config.truncation_rate)
        for level, t in self.progress_bar(model_timesteps(steps, self.train_timesteps)):
            g = guidance_at(t, self.train_timesteps, guidance, interval)
            log_p = truncate(self.predict(codes, t, ids, g), rate).clamp(-70)
            log_prev = log_p if level == 0 else sched.q_posterior(log_p, codes, level)
            codes = self._sample(log_prev, generator)
        return codes.view(len(ids), h, w)

    @staticmethod
    def _sample(log_p: torch.Tensor, generator: Any) -> torch.Tensor:
        """Gumbel-max draw per position; a list of generators gives every sample its own noise."""
        if isinstance(generator, list):
            draws = [gumbel_noised(log_p[i : i + 1], g).argmax(dim=1) for i, g in enumerate(generator)]
            return torch.cat(draws)
        return gumbel_noised(log_p, generator).argmax(dim=1)

    def _output(self, codes: torch.Tensor, output_type: str, return_dict: bool):
        images = codes
        if output_type != "latent":
            images = images_as((self.decode_codes(codes).float() + 1) / 2, output_type, self.config.colormap)
        self.maybe_free_model_hooks()
        return ImagePipelineOutput(images=images) if return_dict else (images,)

    # -- loading ---------------------------------------------------------------------------------------------
    @classmethod
    def from_pretrained(cls, path: str | Path, **kwargs: Any) -> DopplerVQDiffusionPipeline:  # type: ignore[override]
        """Load a saved vq-diffusion pipeline directory (local only); a missing part is a clear error."""
        pipe = cls(**load_vq_parts(Path(path)))
        for module in (pipe.autoencoder, pipe.denoiser, pipe.condition_encoder):
            module.eval()
        return pipe
