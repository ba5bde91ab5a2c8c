"""Diffusion-stage speed on this machine, each comparison measured in one run.

1. training step/s fp32 vs bf16 autocast (the profile's UNet on its latent size);
2. training step/s on cached latents vs encoding every batch with the autoencoder (the diffusers
   example-script way);
3. sampling: DopplerDiffPipeline vs diffusers' own DiTPipeline on the same DiT, autoencoder and scheduler
   (guidance 1, since DiTPipeline hard-codes ImageNet's null class 1000), and vs bare denoiser calls.

    python bench/diffusion.py [--profile quick] [--quick]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import time
from pathlib import Path

import torch
from diffusers import DDIMScheduler, DiTPipeline

from dopplerdiff.config import load_config
from dopplerdiff.models.autoencoder import build_autoencoder
from dopplerdiff.models.condition import build_condition_encoder
from dopplerdiff.models.denoiser import build_denoiser, count_parameters, denoise
from dopplerdiff.pipelines.pipeline_dopplerdiff import DopplerDiffPipeline
from dopplerdiff.train.diffusion import diffusion_loss, training_scheduler

RESULTS = Path(__file__).parent / "results"


def _timed(fn, steps: int, warmup: int = 2) -> float:
    """Seconds per call of ``fn`` after ``warmup`` calls."""
    for _ in range(warmup):
        fn()
    t0 = time.perf_counter()
    for _ in range(steps):
        fn()
    return (time.perf_counter() - t0) / steps


def train_step_factory(cfg, denoiser, condition_encoder, vae, images, z, ids, *, bf16: bool, encode: bool):
    """A closure doing one optimiser step (optionally encoding ``images`` first)."""
    sched = training_scheduler(cfg.num_train_timesteps, cfg.beta_schedule, cfg.prediction_type)
    params = [*denoiser.parameters(), *condition_encoder.parameters()]
    opt = torch.optim.AdamW(params, lr=1e-4)
    autocast = torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()

    def step() -> None:
        with autocast:
            if encode:
                with torch.no_grad():
                    lat = vae.encode(images).latent_dist.sample()
                    latents = (lat - vae.config.shift_factor) * vae.config.scaling_factor
            else:
                latents = z
            loss = diffusion_loss(denoiser, condition_encoder, sched, latents, ids, cfg)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return step


def bench_training(cfg, k: int, batch: int, steps: int) -> dict:
    d, ae, data = cfg.diffusion, cfg.autoencoder, cfg.data
    latent = data.size // ae.downsample_factor
    torch.manual_seed(0)
    vae = build_autoencoder(ae, data).eval().requires_grad_(False)
    vae.register_to_config(scaling_factor=1.0, shift_factor=0.0)
    denoiser = build_denoiser(d, ae.latent_channels, latent, k).train()
    condition_encoder = build_condition_encoder(d, k, d.backbone).train()
    images = torch.rand(batch, data.channels, data.size, data.size) * 2 - 1
    z = torch.randn(batch, ae.latent_channels, latent, latent)
    ids = torch.randint(0, k + 1, (batch,))
    out = {"params": count_parameters(denoiser), "batch": batch,
           "latent": [ae.latent_channels, latent, latent]}
    for name, bf16, encode in [("fp32 cached", False, False), ("bf16 cached", True, False),
                               ("fp32 encode-every-batch", False, True)]:
        step = train_step_factory(d, denoiser, condition_encoder, vae, images, z, ids, bf16=bf16,
                                  encode=encode)
        out[name] = 1.0 / _timed(step, steps)
    out["bf16/fp32"] = out["bf16 cached"] / out["fp32 cached"]
    out["cached/encode-every-batch"] = out["fp32 cached"] / out["fp32 encode-every-batch"]
    return out


def bench_pipeline_vs_dit(cfg, k: int, batch: int, nfe: int, repeats: int) -> dict:
    d, ae, data = cfg.diffusion, cfg.autoencoder, cfg.data
    latent = data.size // ae.downsample_factor
    torch.manual_seed(0)
    vae = build_autoencoder(ae, data).eval()
    vae.register_to_config(scaling_factor=1.0, shift_factor=0.0)
    dit = build_denoiser(d, ae.latent_channels, latent, k).eval()
    sched = DDIMScheduler(num_train_timesteps=d.num_train_timesteps, beta_schedule=d.beta_schedule)
    ours = DopplerDiffPipeline(vae, dit, build_condition_encoder(d, k, "dit"), sched)
    theirs = DiTPipeline(transformer=dit, vae=vae, scheduler=DDIMScheduler.from_config(sched.config))
    for p in (ours, theirs):
        p.set_progress_bar_config(disable=True)
    labels = [i % k for i in range(batch)]

    def run_ours() -> None:
        ours(labels, num_inference_steps=nfe, guidance_scale=1.0, output_type="pt")

    def run_theirs() -> None:
        theirs(labels, num_inference_steps=nfe, guidance_scale=1.0, output_type="np")

    x = torch.randn(batch, ae.latent_channels, latent, latent)
    t = torch.tensor(500)
    ids = torch.tensor(labels)

    @torch.inference_mode()
    def bare() -> None:
        z = x
        for _ in range(nfe):
            z = denoise(dit, z, t, ids)
        vae.decode(z).sample  # noqa: B018 - the decode is what is timed

    out = {"params": count_parameters(dit), "batch": batch, "nfe": nfe}
    out["bare s"] = _timed(bare, repeats, warmup=1)
    out["dopplerdiff s"] = _timed(run_ours, repeats, warmup=1)
    out["DiTPipeline s"] = _timed(run_theirs, repeats, warmup=1)
    out["dopplerdiff/bare"] = out["dopplerdiff s"] / out["bare s"]
    out["dopplerdiff/DiTPipeline"] = out["dopplerdiff s"] / out["DiTPipeline s"]
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--profile", default="quick")
    ap.add_argument("--quick", action="store_true", help="smoke sizes, few repeats")
    ap.add_argument("--identities", type=int, default=31)
    args = ap.parse_args()
    profile = "smoke" if args.quick else args.profile
    cfg = load_config(profile)
    batch = 8 if args.quick else cfg.diffusion.train.batch_size
    steps = 3 if args.quick else 10
    train = bench_training(cfg, args.identities, batch, steps)
    dit_cfg = load_config(profile, ["diffusion.backbone=dit"])
    sample = bench_pipeline_vs_dit(dit_cfg, args.identities, 8 if args.quick else 32, 4 if args.quick else 20,
                                   2 if args.quick else 3)
    print(f"diffusion training ({profile}: {train['params'] / 1e6:.1f}M-param UNet, batch {batch}, "
          f"latents {train['latent']})")
    print(f"{'variant':<26}{'steps/s':>10}")
    for name in ("fp32 cached", "bf16 cached", "fp32 encode-every-batch"):
        print(f"{name:<26}{train[name]:>10.2f}")
    print(f"bf16/fp32 = {train['bf16/fp32']:.2f}x; cached/encode-every-batch = "
          f"{train['cached/encode-every-batch']:.2f}x")
    print(f"\nsampling, DiT {sample['params'] / 1e6:.1f}M params, batch {sample['batch']}, "
          f"{sample['nfe']} NFE")
    print(f"{'sampler':<26}{'seconds':>10}")
    for name in ("bare s", "dopplerdiff s", "DiTPipeline s"):
        print(f"{name[:-2]:<26}{sample[name]:>10.3f}")
    print(f"dopplerdiff/bare = {sample['dopplerdiff/bare']:.2f}x; "
          f"dopplerdiff/DiTPipeline = {sample['dopplerdiff/DiTPipeline']:.2f}x")
    RESULTS.mkdir(parents=True, exist_ok=True)
    result = {"profile": profile, "threads": torch.get_num_threads(), "training": train, "sampling": sample,
              "date": time.strftime("%Y-%m-%d")}
    (RESULTS / "diffusion.json").write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
