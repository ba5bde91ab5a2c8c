"""DopplerDiffPipeline: identity-conditional latent diffusion sampling with classifier-free guidance.

Components: ``autoencoder`` (AutoencoderKL or VQModel), ``denoiser`` (UNet2DConditionModel or
DiTTransformer2DModel), ``condition_encoder`` (IdentityConditionEncoder; row K = null identity) and
``scheduler`` (any sampler from ``dopplerdiff.schedulers``). The label map (identity names, index -> name),
the data colormap, channels and native image size are stored in the pipeline config (model_index.json),
so identities can be given by name.

Guidance: ``eps = eps_null + g * (eps_cond - eps_null)`` with the null identity K. Conditional and null
halves run in ONE batched forward; ``g == 1`` is plain conditional sampling and skips the null half,
``g == 0`` is unconditional sampling and skips the conditional half.

Walking conditions (``config.conditions``, a pipeline trained on several): ``conditions=`` are guided apart
from the identity (``sampling.compose_guidance``, three parts in one forward); without them the condition
token is the null condition and guidance is as above.

Optional component ``decoder`` (a ``DiffusionDecoder``): when present, ``decode_latents`` -- the one decode
that sampling, editing and evaluation go through -- samples images with it instead of the autoencoder's
decoder (``pipe.use_decoder = False`` switches back, e.g. to compare the two).

Latent convention (whole project): ``z_model = (z - shift_factor) * scaling_factor``; images are decoded
from ``z_model / scaling_factor + shift_factor``. ``output_type='latent'`` returns ``z_model``.
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from diffusers import DiffusionPipeline, ImagePipelineOutput
from diffusers.utils.torch_utils import randn_tensor

from dopplerdiff.errors import DopplerDiffError
from dopplerdiff.models.autoencoder import decode as decode_latents
from dopplerdiff.models.autoencoder import encode as encode_latents
from dopplerdiff.models.denoiser import denoise
from dopplerdiff.pipelines.components import load_parts
from dopplerdiff.pipelines.sampling import (
    as_image_tensor,
    check_interval,
    check_output_type,
    check_sample_args,
    compose_guidance,
    condition_batch,
    condition_walk,
    condition_weights,
    eval_modes,
    guidance_at,
    identity_indices,
    images_as,
    img2img_timesteps,
    latent_mask,
    mixed_tokens,
    pipeline_conditions,
    renoise,
    soft_labels,
)
from dopplerdiff.schedulers import make_scheduler, scheduler_name


class DopplerDiffPipeline(DiffusionPipeline):
    """Sample spectrograms of chosen identities; see the module docstring for conventions."""

    model_cpu_offload_seq = "condition_encoder->denoiser->autoencoder"
    _optional_components = ["decoder"]

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
        decoder=None,
        conditions: list[str] | None = None,
    ):
        super().__init__()
        self.register_modules(
            autoencoder=autoencoder,
            denoiser=denoiser,
            condition_encoder=condition_encoder,
            scheduler=scheduler,
            decoder=decoder,
        )
        self.use_decoder = True  # False: decode with the autoencoder even when a diffusion decoder is present
        k = condition_encoder.num_identities
        names = list(identities) if identities is not None else [f"ID_{i + 1}" for i in range(k)]
        if len(names) != k:
            raise DopplerDiffError(
                f"pipeline label map has {len(names)} names but the condition encoder has {k}"
            )
        self.register_to_config(
            identities=names, colormap=colormap, channels=channels, native_size=native_size,
            conditions=pipeline_conditions(conditions, condition_encoder.num_conditions),
        )

    # -- identities and schedulers -------------------------------------------------------------------------
    @property
    def identities(self) -> list[str]:
        return list(self.config.identities)

    def identity_ids(self, identities: list[int | str]) -> list[int]:
        """Names or indices -> indices; unknown names/indices are errors listing the valid ones."""
        return identity_indices(self.identities, identities)

    @property
    def conditions(self) -> list[str]:
        """Walking-condition names (index -> name); empty for a pipeline trained on one condition."""
        return list(self.config.get("conditions") or [])

    def condition_ids(self, conditions: list[int | str]) -> list[int]:
        """Condition names/indices -> indices (errors as ``identity_ids``, and without conditions)."""
        return condition_batch(self.conditions, list(conditions), len(conditions)).tolist()

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

    def _condition(self, ids: torch.Tensor, weights: torch.Tensor | None, conds: Any = None) -> torch.Tensor:
        """Tokens of ids (B,) or UNet mixtures ``weights`` (B, K+1), with walking conditions ``conds``."""
        cond_enc = self.condition_encoder
        # the DiT mixes inside its label tables (_forward)
        if weights is None or cond_enc.config.kind == "label":
            return cond_enc.encode(ids) if conds is None else cond_enc.encode(ids, conds)
        return mixed_tokens(cond_enc, weights, conds)

    def _forward(self, x: torch.Tensor, t: torch.Tensor, cond: torch.Tensor, soft: torch.Tensor | None):
        """One denoiser forward; ``soft`` (B, K+1) mixes the DiT's label-table rows for this call."""
        if soft is None:
            return denoise(self.denoiser, x, t, cond)
        with soft_labels(self.denoiser, soft):
            return denoise(self.denoiser, x, t, cond)

    def predict(
        self,
        latents: torch.Tensor,
        t: torch.Tensor,
        ids: torch.Tensor,
        guidance_scale: float,
        weights: torch.Tensor | None = None,
        conds: torch.Tensor | None = None, condition_scale: float = 1.0,
    ):
        """Guided model output for ``latents`` at time ``t`` (cond + null in one forward).

        ``weights`` (B, K+1), when given, replaces the one-hot condition of ``ids`` by a mixture of rows;
        ``conds`` (B,) walking conditions, guided with ``condition_scale``."""
        cond_enc = self.condition_encoder
        if conds is not None:
            return self._predict_composed(latents, t, ids, guidance_scale, weights, conds, condition_scale)
        dit_mix = weights is not None and cond_enc.config.kind == "label"
        if guidance_scale == 1.0:
            return self._forward(latents, t, self._condition(ids, weights), weights if dit_mix else None)
        null_ids = cond_enc.null_ids(latents.shape[0], latents.device)
        if guidance_scale == 0.0:
            return self._forward(latents, t, cond_enc.encode(null_ids), None)
        cond = torch.cat([self._condition(ids, weights), cond_enc.encode(null_ids)])
        soft = None
        if dit_mix:
            soft = torch.cat([weights, F.one_hot(null_ids, weights.shape[1]).to(weights.dtype)])
        out = self._forward(torch.cat([latents, latents]), t, cond, soft)
        cond_out, null_out = out.chunk(2)
        return null_out + guidance_scale * (cond_out - null_out)

    def _predict_composed(self, latents, t, ids, g_id: float, weights, conds, g_cond: float):
        """``sampling.compose_guidance`` of (id, cond), (id, null) and (null, null) in one forward."""
        id_cond = self._condition(ids, weights, conds)
        if g_id == 1.0 and g_cond == 1.0:
            return self._forward(latents, t, id_cond, None)
        null_ids = self.condition_encoder.null_ids(latents.shape[0], latents.device)
        tokens = torch.cat([id_cond, self._condition(ids, weights), self._condition(null_ids, None)])
        out = self._forward(torch.cat([latents] * 3), t, tokens, None)
        return compose_guidance(*reversed(out.chunk(3)), g_id, g_cond)

    @property
    def decodes_with_diffusion(self) -> bool:
        """Whether ``decode_latents`` samples with the diffusion decoder (present and not switched off)."""
        return self.decoder is not None and self.use_decoder

    def decode_latents(self, z_model: torch.Tensor,
                       generator: torch.Generator | list[torch.Generator] | None = None) -> torch.Tensor:
        """Model-space latents -> images in [-1, 1]: the one decode of the pipeline.

        With a diffusion decoder (and ``use_decoder``) the image is sampled at the decoder's size, its noise
        drawn from ``generator`` (the sampling generator(s), continued), so a seed fixes the whole image.
        """
        if not self.decodes_with_diffusion:
            return decode_latents(self.autoencoder, z_model).clamp(-1, 1)
        vae_image = None
        if self.decoder.config.vae_image:
            vae_image = decode_latents(self.autoencoder, z_model).clamp(-1, 1)
        return self.decoder.decode(z_model, vae_image, generator=generator)

    def encode_images(self, images: torch.Tensor) -> torch.Tensor:
        """Images in [-1, 1] -> model-space latents (posterior mean)."""
        return encode_latents(self.autoencoder, images.to(self._execution_device))

    def identity_condition(
        self, identities: Any, identity_weights: Any = None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(ids (B,), weights (B, K+1) or None) from names/indices/mixtures or explicit weights.

        An entry of ``identities`` may be a mapping {name or index: weight} (a convex mix of identities);
        ``identity_weights`` (B, K) gives the mixtures as a matrix instead. Plain identities give
        ``weights=None`` and take the exact one-row path.
        """
        ids, weights = condition_weights(
            identities, identity_weights, len(self.identities), self.identity_ids
        )
        device = self._execution_device
        return ids.to(device), None if weights is None else weights.to(device)

    @eval_modes
    @torch.inference_mode()
    def __call__(
        self,
        identities: list[int | str | dict] | None = None,
        num_inference_steps: int = 20,
        guidance_scale: float = 2.0,
        generator: torch.Generator | list[torch.Generator] | None = None,
        latents: torch.Tensor | None = None,
        output_type: str = "np",
        return_dict: bool = True,
        *,
        seed: int | None = None,
        image: torch.Tensor | np.ndarray | None = None,
        strength: float = 1.0,
        mask: torch.Tensor | np.ndarray | None = None,
        resample_steps: int = 0,
        guidance_interval: tuple[float, float] | None = None,
        identity_weights: torch.Tensor | np.ndarray | None = None,
        conditions: list[int | str] | str | int | None = None,
        condition_guidance_scale: float | None = None,
    ):
        r"""Sample (or edit) one spectrogram per entry of ``identities``.

        Args:
            identities: names or indices of the pipeline's label map, or mappings {name: weight} for a
                "virtual" walker mixed from several identities (a convex mix of condition embeddings).
            num_inference_steps: sampler steps of the full schedule (img2img runs the last
                ``int(num_inference_steps * strength)`` of them).
            guidance_scale: classifier-free guidance ``eps_null + g (eps_cond - eps_null)``; 1 = none.
            generator: a ``torch.Generator`` or one per sample (initial noise and sampler noise).
            latents: initial noise (B, C, h, w) in model space, e.g. a slerp of two seeds' noise; with
                ``image`` it is the noise added to the encoded source.
            output_type: ``np`` (B,H,W,C in [0,1]), ``pt`` (B,C,H,W in [0,1]), ``pil`` or ``latent``.
            seed: shorthand for ``generator=torch.Generator().manual_seed(seed)`` (ignored with a generator).
            image: img2img / inpainting source, (B,C,H,W) or (C,H,W) in [-1, 1] at the model's image size.
            strength: noise strength in (0, 1]: the source is noised to the timestep at this fraction of the
                schedule and denoised with the given identity; 1.0 starts from pure noise.
            mask: inpainting mask at image size, 1 = regenerate, 0 = keep; after every step the kept part is
                replaced by the source re-noised to the current noise level (latent blending).
            resample_steps: RePaint resampling: each step is repeated this many extra times after jumping
                back to the noisier level (harmonises the fill with the kept part; ddim/ddpm samplers).
            guidance_interval: (lo, hi) in units of t / num_train_timesteps: guidance only while the noise
                level lies inside [lo, hi], plain conditional prediction outside (Kynkäänniemi et al. 2024).
            identity_weights: (B, K) non-negative weights over identities instead of ``identities``.
            conditions: walking condition(s) of ``pipe.conditions`` by name/index, one or one per sample.
            condition_guidance_scale: the condition's guidance (compositional); None = ``guidance_scale``.

        Examples:
            >>> pipe = DopplerDiffPipeline.from_pretrained("runs/demo/pipeline")
            >>> imgs = pipe(["ID_3", "ID_7"], num_inference_steps=10, guidance_scale=4.0, seed=0).images
            >>> x = torch.zeros(1, 1, 64, 64)  # a window in [-1, 1]
            >>> moved = pipe(["ID_7"], image=x, strength=0.6, seed=0, output_type="pt").images
            >>> mix = pipe([{"ID_3": 0.5, "ID_7": 0.5}], seed=0).images

        ``pipe.sample(...)`` takes the same arguments and leaves the modules' train/eval mode alone.
        """
        interval = self.check_inputs(output_type, num_inference_steps, guidance_scale, strength,
                                     resample_steps, guidance_interval, image, mask)
        ids, weights = self.identity_condition(identities, identity_weights)
        device = self._execution_device
        walk = condition_walk(self.conditions, conditions, len(ids), guidance_scale, condition_guidance_scale)
        if generator is None and seed is not None:
            generator = torch.Generator(device=device).manual_seed(int(seed))
        noise = self.prepare_latents(len(ids), generator, latents)

        self.scheduler.set_timesteps(num_inference_steps, device=device)
        timesteps, z0, m = self._source(image, mask, strength, num_inference_steps, len(ids))
        if z0 is None or strength >= 1.0:
            latents = noise * self.scheduler.init_noise_sigma  # 1.0 = from pure noise (as diffusers' inpaint)
        else:
            latents = self.scheduler.add_noise(z0, noise, timesteps[:1])
        known = None if m is None else (z0, m, noise)
        latents = self._denoise_loop(latents, timesteps, ids, weights, guidance_scale, interval, generator,
                                     known, resample_steps, walk)
        return self._output(latents, output_type, return_dict, generator)

    sample = __call__.__wrapped__  # the same loop without the eval-mode switch

    def check_inputs(self, output_type: str, steps: int, guidance: float, strength: float, resample: int,
                     interval: Any, image: Any, mask: Any) -> tuple[float, float] | None:
        """One error for the first bad argument of ``__call__``; the checked guidance interval."""
        check_output_type(output_type)
        check_sample_args(steps, guidance, strength, resample, self.scheduler)
        interval = check_interval(interval)
        if mask is not None and image is None:
            raise DopplerDiffError("mask needs the source image (image=...)")
        return interval

    def prepare_latents(self, batch: int, generator: Any, latents: torch.Tensor | None) -> torch.Tensor:
        """The initial noise (batch, C, h, w): drawn from ``generator``, or the given ``latents`` checked."""
        device, dtype = self._execution_device, self.denoiser.dtype
        shape = (batch, *self.latent_shape)
        if isinstance(generator, list) and len(generator) != batch:
            raise DopplerDiffError(f"got {len(generator)} generators for a batch of {batch}")
        if latents is None:
            latents = randn_tensor(shape, generator=generator, device=device, dtype=dtype)
        elif tuple(latents.shape) != shape:
            raise DopplerDiffError(f"latents must have shape {shape}, got {tuple(latents.shape)}")
        return latents.to(device=device, dtype=dtype)

    def _source(self, image: Any, mask: Any, strength: float, steps: int, batch: int):
        """(timesteps, encoded source z0, latent mask) for img2img/inpainting; the full schedule without."""
        if image is None:
            return self.scheduler.timesteps, None, None
        hw = (self.latent_shape[1] * self.vae_factor(),) * 2
        x = as_image_tensor(image, batch, (int(self.config.channels), *hw))
        z0 = self.encode_images(x).to(self.denoiser.dtype)
        timesteps, _ = img2img_timesteps(self.scheduler, steps, strength)
        m = None if mask is None else latent_mask(mask, batch, hw, self.latent_shape[1:]).to(z0)
        return timesteps, z0, m

    def _denoise_loop(self, latents, timesteps, ids, weights, guidance, interval, generator, known, resample,
                      walk=None):
        """Denoise along ``timesteps``; with ``known`` = (z0, mask, noise), keep the source outside the mask
        (re-noised to each level, as diffusers' inpainting pipelines do), with `resample` RePaint repeats;
        ``walk`` = (conditions (B,), their guidance scale) or None."""
        extra = self._step_kwargs(generator)
        n_train = int(self.scheduler.config.num_train_timesteps)
        for i, t in enumerate(self.progress_bar(timesteps)):
            g = guidance_at(t, n_train, float(guidance), interval)
            walk_now = () if walk is None else (walk[0], guidance_at(t, n_train, walk[1], interval))
            last = i == len(timesteps) - 1
            for r in range(resample + 1):
                model_in = self.scheduler.scale_model_input(latents, t)
                out = self.predict(model_in, t, ids, g, weights, *walk_now)
                prev = self.scheduler.step(out, t, latents, **extra).prev_sample
                if known is not None:
                    z0, mask, noise = known
                    kept = z0 if last else self.scheduler.add_noise(z0, noise, timesteps[i + 1 : i + 2])
                    prev = (1 - mask) * kept + mask * prev
                if r < resample and not last:
                    latents = renoise(self.scheduler, prev, timesteps[i + 1], t, generator)
                else:
                    latents = prev
        return latents

    def _output(self, latents: torch.Tensor, output_type: str, return_dict: bool, generator: Any = None):
        images = latents
        if output_type != "latent":
            images = images_as((self.decode_latents(latents, generator).float() + 1) / 2, output_type,
                               self.config.colormap)
        self.maybe_free_model_hooks()
        return ImagePipelineOutput(images=images) if return_dict else (images,)

    def vae_factor(self) -> int:
        """Spatial down-sampling factor of the autoencoder (2^(levels-1))."""
        return 2 ** (len(self.autoencoder.config.block_out_channels) - 1)

    # -- loading -------------------------------------------------------------------------------------------
    @classmethod
    def from_pretrained(cls, path: str | Path, **kwargs: Any) -> DopplerDiffPipeline:  # type: ignore[override]
        """Load a saved pipeline directory (local only); a missing part is a clear error."""
        pipe = cls(**load_parts(Path(path)))
        dtype = kwargs.get("torch_dtype")
        if dtype is not None:
            pipe.to(dtype=dtype)
        for module in (pipe.autoencoder, pipe.denoiser, pipe.condition_encoder, pipe.decoder):
            if module is not None:
                module.eval()
        return pipe
