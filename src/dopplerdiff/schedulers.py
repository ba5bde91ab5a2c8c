"""Sampler names -> diffusers schedulers, all built from the training noise schedule.

Every sampler is created with ``from_config`` of the training ``DDPMScheduler`` (same betas, same
prediction type) and ``timestep_spacing='trailing'``: with few steps, 'leading'/'linspace' spacing starts
sampling below t = T-1 from pure noise, which wastes steps and leaves residual noise (Lin et al. 2024,
"Common diffusion noise schedules and sample steps are flawed"). With 1000 DDPM steps it makes no difference.
"""

from __future__ import annotations

from typing import Any

from diffusers import (
    DDIMScheduler,
    DDPMScheduler,
    DPMSolverMultistepScheduler,
    EulerAncestralDiscreteScheduler,
    EulerDiscreteScheduler,
    HeunDiscreteScheduler,
    LMSDiscreteScheduler,
    UniPCMultistepScheduler,
)
from diffusers.schedulers.scheduling_utils import SchedulerMixin

from dopplerdiff.config import VQ_SAMPLER
from dopplerdiff.errors import DopplerDiffError

# name -> (class, extra config)
SCHEDULERS: dict[str, tuple[type, dict[str, Any]]] = {
    "ddpm": (DDPMScheduler, {}),
    "ddim": (DDIMScheduler, {"set_alpha_to_one": False}),
    "dpmpp": (DPMSolverMultistepScheduler, {"algorithm_type": "dpmsolver++", "solver_order": 2}),
    "euler": (EulerDiscreteScheduler, {}),
    "euler_a": (EulerAncestralDiscreteScheduler, {}),
    "lms": (LMSDiscreteScheduler, {}),
    "heun": (HeunDiscreteScheduler, {}),
    "unipc": (UniPCMultistepScheduler, {}),
}
SCHEDULER_NAMES = tuple(SCHEDULERS)
# The discrete sampler of ``diffusion.backbone: vq-diffusion`` (VQDiffusionScheduler, see
# pipelines.pipeline_vq_diffusion); it samples code indices, so it is no choice for the continuous backbones
# and ``make_scheduler`` refuses it.
VQ_SCHEDULER = VQ_SAMPLER


def training_scheduler(
    num_train_timesteps: int = 1000, beta_schedule: str = "scaled_linear", prediction_type: str = "epsilon"
) -> DDPMScheduler:
    """The DDPM noise schedule used for training (and the base config for every sampler)."""
    kwargs: dict[str, Any] = {}
    if beta_schedule == "scaled_linear":
        # Stable Diffusion's range; diffusers' DDPM default (1e-4..0.02) is meant for 'linear' pixel space.
        kwargs = {"beta_start": 0.00085, "beta_end": 0.012}
    return DDPMScheduler(
        num_train_timesteps=num_train_timesteps,
        beta_schedule=beta_schedule,
        prediction_type=prediction_type,
        clip_sample=False,
        timestep_spacing="trailing",
        **kwargs,
    )


def check_scheduler_name(name: str) -> str:
    if name not in SCHEDULERS and name != VQ_SCHEDULER:
        raise DopplerDiffError(
            f"unknown scheduler '{name}'; valid: {', '.join(SCHEDULER_NAMES)} "
            f"({VQ_SCHEDULER} for diffusion.backbone: vq-diffusion)"
        )
    return name


def make_scheduler(name: str, base_config: Any) -> SchedulerMixin:
    """Sampler ``name`` with the noise schedule of ``base_config`` (any scheduler's ``.config``)."""
    if name == VQ_SCHEDULER:
        raise DopplerDiffError(
            f"scheduler '{VQ_SCHEDULER}' samples discrete codes: it needs a vq-diffusion pipeline "
            "(diffusion.backbone: vq-diffusion), not a continuous latent denoiser"
        )
    cls, extra = SCHEDULERS[check_scheduler_name(name)]
    base = {k: v for k, v in dict(base_config).items() if not k.startswith("_")}
    keep = (
        "num_train_timesteps",
        "beta_start",
        "beta_end",
        "beta_schedule",
        "trained_betas",
        "prediction_type",
    )
    cfg = {k: base[k] for k in keep if k in base}
    cfg.update({"timestep_spacing": "trailing", **extra})
    if cls in (DDPMScheduler, DDIMScheduler):
        cfg["clip_sample"] = False  # latents are not bounded to [-1, 1]
    return cls(**{k: v for k, v in cfg.items() if k in _init_keys(cls)})


def _init_keys(cls: type) -> set[str]:
    import inspect

    return set(inspect.signature(cls.__init__).parameters)


def scheduler_name(scheduler: SchedulerMixin) -> str:
    """Our name for a scheduler instance (inverse of make_scheduler)."""
    for name, (cls, extra) in SCHEDULERS.items():
        if type(scheduler) is cls and all(scheduler.config.get(k) == v for k, v in extra.items()):
            return name
    return type(scheduler).__name__
