"""First-stage training speed on this machine: step/s fp32 vs bf16 autocast (one run, same model and batch).

Also times the VQModel of the same size in fp32. A step = forward (encode, sample, decode), L1 + spectral +
KL/VQ losses, backward, gradient clipping and AdamW. The load average is recorded because the CPU may be
shared.

    python bench/autoencoder.py [--profile quick] [--steps 10] [--quick]
    python bench/autoencoder.py --variants [kl4,kl4-f2,...]

``--variants``: for each first-stage variant of bench/first_stage.py, s/step of its autoencoder (with the
discriminator when it has one) and of the diffusion UNet on its latents, at the profile's batch sizes
(bench/results/autoencoder_variants.json).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import time
from pathlib import Path

import torch
from first_stage import VARIANTS

from dopplerdiff.config import load_config
from dopplerdiff.models.autoencoder import build_autoencoder
from dopplerdiff.models.condition import build_condition_encoder
from dopplerdiff.models.denoiser import build_denoiser
from dopplerdiff.models.discriminator import PatchDiscriminator
from dopplerdiff.schedulers import training_scheduler
from dopplerdiff.train import losses as L
from dopplerdiff.train.autoencoder import AutoencoderTrainModule
from dopplerdiff.train.diffusion import diffusion_loss

RESULTS = Path(__file__).parent / "results"


def make_step(cfg, kind: str, bf16: bool, batch: int):
    """A closure doing one optimiser step of the first stage on a fixed random batch."""
    torch.manual_seed(0)
    ae = cfg.autoencoder
    ae.kind = kind
    net = AutoencoderTrainModule(build_autoencoder(ae, cfg.data)).train()
    opt = torch.optim.AdamW(net.parameters(), lr=1e-4)
    x = torch.rand(batch, cfg.data.channels, cfg.data.size, cfg.data.size) * 2 - 1
    autocast = torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()

    def step() -> float:
        with autocast:
            out = net(x)
            recon = out["recon"].float()
            loss, _ = L.reconstruction_loss(recon, x, ae.loss.l1, ae.loss.mse)
            loss = loss + ae.loss.spectral * L.spectral_loss(recon, x)
            if kind == "kl":
                loss = loss + ae.loss.kl * out["kl"]
            else:
                loss = loss + out["codebook"] + ae.loss.vq_commitment * out["commitment"]
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        return loss.item()

    return step


def gan_step(cfg, batch: int):
    """One first-stage step with the PatchGAN on (generator term + discriminator update), fp32."""
    torch.manual_seed(0)
    ae = cfg.autoencoder
    net = AutoencoderTrainModule(build_autoencoder(ae, cfg.data)).train()
    disc = PatchDiscriminator(cfg.data.channels, ae.disc_channels, size=cfg.data.size)
    opt, dopt = torch.optim.AdamW(net.parameters(), lr=1e-4), torch.optim.AdamW(disc.parameters(), lr=1e-4)
    x = torch.rand(batch, cfg.data.channels, cfg.data.size, cfg.data.size) * 2 - 1

    def step() -> None:
        out = net(x)
        recon = out["recon"]
        loss = L.reconstruction_loss(recon, x, ae.loss.l1, ae.loss.mse)[0] + ae.loss.kl * out["kl"]
        loss = loss + ae.loss.spectral * L.spectral_loss(recon, x) + 0.1 * L.generator_adv_loss(disc(recon))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        d = L.hinge_d_loss(*disc(torch.cat([x, recon.detach()])).chunk(2))
        dopt.zero_grad(set_to_none=True)
        d.backward()
        dopt.step()

    return step


def diffusion_step(cfg, k: int = 31):
    """One denoiser step on random latents of the variant's shape, at the profile's batch size."""
    torch.manual_seed(0)
    d, ae = cfg.diffusion, cfg.autoencoder
    size = cfg.data.size // ae.downsample_factor
    den = build_denoiser(d, ae.latent_channels, size, k).train()
    enc = build_condition_encoder(d, k, d.backbone)
    sched = training_scheduler(d.num_train_timesteps, d.beta_schedule, d.prediction_type)
    opt = torch.optim.AdamW([*den.parameters(), *enc.parameters()], lr=1e-4)
    b = d.train.batch_size
    z, ids = torch.randn(b, ae.latent_channels, size, size), torch.randint(0, k + 1, (b,))

    def step() -> None:
        loss = diffusion_loss(den, enc, sched, z, ids, d)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return step


def time_variants(names: list[str], profile: str, steps: int, warmup: int) -> None:
    rows = []
    for name in names:
        cfg = load_config(profile, VARIANTS[name])
        batch = cfg.autoencoder.train.batch_size
        ae_step = (gan_step(cfg, batch) if cfg.autoencoder.loss.adversarial > 0
                   else make_step(cfg, cfg.autoencoder.kind, False, batch))
        rows.append({"variant": name, "ae_s_per_step": seconds_per_step(ae_step, steps, warmup),
                     "diffusion_s_per_step": seconds_per_step(diffusion_step(cfg), steps, warmup)})
        print(f"{name:<12} autoencoder {rows[-1]['ae_s_per_step']:.3f} s/step   "
              f"diffusion {rows[-1]['diffusion_s_per_step']:.3f} s/step", flush=True)
    result = {"profile": profile, "steps_timed": steps, "torch_threads": torch.get_num_threads(),
              "loadavg_1min": os.getloadavg()[0], "date": time.strftime("%Y-%m-%d %H:%M"), "rows": rows}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "autoencoder_variants.json").write_text(json.dumps(result, indent=2) + "\n")


def seconds_per_step(step, steps: int, warmup: int) -> float:
    for _ in range(warmup):
        step()
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    return (time.perf_counter() - t0) / steps


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--profile", default="quick")
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--quick", action="store_true", help="smoke sizes, 3 steps (checks the script runs)")
    ap.add_argument("--variants", nargs="?", const=",".join(VARIANTS), default=None,
                    help="time these first-stage variants instead (default: all of bench/first_stage.py)")
    args = ap.parse_args()
    profile, steps, warmup = ("smoke", 3, 1) if args.quick else (args.profile, args.steps, 2)
    if args.variants is not None:
        time_variants([v for v in args.variants.split(",") if v], profile, steps, warmup)
        return
    cfg = load_config(profile)
    batch = cfg.autoencoder.train.batch_size
    load_before = os.getloadavg()[0]
    rows = []
    for kind, bf16 in (("kl", False), ("kl", True), ("vq", False)):
        sec = seconds_per_step(make_step(load_config(profile), kind, bf16, batch), steps, warmup)
        rows.append({"kind": kind, "precision": "bf16" if bf16 else "fp32", "s_per_step": sec,
                     "steps_per_s": 1.0 / sec, "images_per_s": batch / sec})
    fp32, bf16 = rows[0]["s_per_step"], rows[1]["s_per_step"]
    result = {
        "profile": profile, "quick": args.quick, "image_size": cfg.data.size, "batch": batch,
        "block_out_channels": cfg.autoencoder.block_out_channels, "steps_timed": steps,
        "torch_threads": torch.get_num_threads(), "loadavg_1min": [load_before, os.getloadavg()[0]],
        "rows": rows, "bf16_speedup_over_fp32": fp32 / bf16, "date": time.strftime("%Y-%m-%d %H:%M"),
    }
    print(f"autoencoder training speed ({profile}: {cfg.data.size}^2, batch {batch}, "
          f"{torch.get_num_threads()} threads, load {load_before:.1f})")
    print(f"{'kind':<6}{'precision':<11}{'s/step':>9}{'img/s':>9}")
    for r in rows:
        print(f"{r['kind']:<6}{r['precision']:<11}{r['s_per_step']:>9.3f}{r['images_per_s']:>9.1f}")
    print(f"bf16 / fp32 speed ratio: {fp32 / bf16:.2f}x")
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "autoencoder.json").write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
