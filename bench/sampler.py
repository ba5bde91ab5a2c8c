"""Sampler benchmark: time per batch for ddpm/ddim/dpmpp/euler, pipeline overhead, optional Fréchet distance.

    python bench/sampler.py --run RUN            # a trained run (RUN/pipeline)
    python bench/sampler.py --quick              # builds a tiny smoke run on simulated data first

Overhead ratio = pipeline wall time / (NFE x bare denoiser forward on the guided batch + one decode):
how much the scheduler, guidance arithmetic and Python around the network cost. Fréchet distance (encoder
feature space, generated vs real test windows) only when RUN/encoder and the metrics module exist.
Writes bench/results/sampler.json.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
SETTINGS = [("ddpm", 1000), ("ddim", 50), ("dpmpp", 10), ("dpmpp", 20), ("euler", 20)]


def build_quick_run(tmp: Path) -> Path:
    """Smoke-sized run: simulated data, autoencoder, latents, a few diffusion steps."""
    from dopplerdiff.config import load_config
    from dopplerdiff.data.simulate import simulate_dataset
    from dopplerdiff.train.autoencoder import train_autoencoder
    from dopplerdiff.train.diffusion import train_diffusion
    from dopplerdiff.train.latents import cache_latents

    cfg = load_config("smoke")
    data = simulate_dataset(cfg.simulate, tmp / "data", progress=False)
    run = tmp / "run"
    train_autoencoder(run, cfg, data_root=data, progress=False)
    cache_latents(run, progress=False)
    train_diffusion(run, cfg, progress=False)
    return run


def _best(fn, reps: int) -> float:
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


@torch.inference_mode()
def bare_costs(pipe, batch: int, guidance: float, reps: int = 3) -> tuple[float, float]:
    """(seconds per bare denoiser forward on the guided batch, seconds per decode of ``batch`` latents)."""
    from dopplerdiff.models.denoiser import denoise

    c, h, w = pipe.latent_shape
    rows = batch * (2 if guidance not in (0.0, 1.0) else 1)
    x = torch.randn(rows, c, h, w, device=pipe.device)
    cond = pipe.condition_encoder.encode(torch.zeros(rows, dtype=torch.long, device=pipe.device))
    t = torch.tensor(500, device=pipe.device)
    pipe.denoiser.eval()
    pipe.autoencoder.eval()
    denoise(pipe.denoiser, x, t, cond)  # warm-up
    fwd = _best(lambda: denoise(pipe.denoiser, x, t, cond), reps)
    z = torch.randn(batch, c, h, w, device=pipe.device)
    pipe.decode_latents(z)
    dec = _best(lambda: pipe.decode_latents(z), reps)
    return fwd, dec


def frechet(run: Path, images01: np.ndarray) -> float | None:
    """FD of generated vs real test windows in the project's encoder space, or None if unavailable."""
    try:
        from dopplerdiff.config import load_config
        from dopplerdiff.data.run_data import prepare_run_data
        from dopplerdiff.evaluate.metrics import frechet_distance_images
        from dopplerdiff.models.encoder import load_encoder

        if not (run / "encoder").is_dir():
            return None
        cfg = load_config(str(run / "config.yaml"))
        ds, split = prepare_run_data(run, None, cfg.data)
        real = ds.images[split["test"]]
        return float(frechet_distance_images(load_encoder(run / "encoder"), images01 * 2 - 1, real))
    except Exception as exc:  # optional metric: report why it is missing, never fail the benchmark
        print(f"(Fréchet distance skipped: {exc})", file=sys.stderr)
        return None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", type=Path, help="trained run directory")
    ap.add_argument("--quick", action="store_true", help="build a tiny run and use small sizes")
    ap.add_argument("--batch", type=int, default=None, help="images per batch (default 16, quick 4)")
    ap.add_argument("--guidance", type=float, default=2.0)
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "sampler.json")
    args = ap.parse_args()
    if args.run is None and not args.quick:
        ap.error("give --run RUN or --quick")
    from dopplerdiff.generate import GenerationPlan, sample
    from dopplerdiff.pipelines.auto_pipeline import load_run_pipeline

    tmp = None
    run = args.run
    if run is None:
        tmp = tempfile.TemporaryDirectory()
        run = build_quick_run(Path(tmp.name))
    batch = args.batch or (4 if args.quick else 16)
    pipe = load_run_pipeline(run)
    pipe.set_progress_bar_config(disable=True)
    k = len(pipe.identities)
    ids = [i % k for i in range(batch)]
    fwd, dec = bare_costs(pipe, batch, args.guidance)
    rows = []
    for name, steps in SETTINGS:
        if args.quick and name == "ddpm":
            steps = 200  # keeps --quick quick; the full run uses 1000
        pipe.set_scheduler(name)
        pipe.scheduler.set_timesteps(steps)
        nfe = len(pipe.scheduler.timesteps)
        gens = [torch.Generator().manual_seed(i) for i in range(batch)]
        pipe(ids, num_inference_steps=1, guidance_scale=args.guidance, generator=gens)  # warm-up
        t0 = time.perf_counter()
        imgs = pipe(
            ids, num_inference_steps=steps, guidance_scale=args.guidance, generator=gens, output_type="pt"
        ).images
        wall = time.perf_counter() - t0
        rows.append(
            {
                "scheduler": name,
                "steps": steps,
                "nfe": nfe,
                "batch": batch,
                "s_per_batch": wall,
                "ms_per_image": 1000 * wall / batch,
                "overhead_ratio": wall / (nfe * fwd + dec),
            }
        )
        del imgs
    fd_plan = GenerationPlan(identities=list(range(k)), count=max(2, 64 // k) if args.quick else 100 // k + 1,
                             steps=20, guidance=args.guidance, scheduler="dpmpp", batch_size=batch,
                             mix_identities=True)
    fd_images = sample(pipe, fd_plan, progress=False).images
    fd = frechet(run, fd_images)
    result = {
        "run": str(args.run) if args.run else "quick (smoke run built on simulated data)",
        "device": str(pipe.device),
        "torch_threads": torch.get_num_threads(),
        "load_avg": list(os.getloadavg()),
        "latent_shape": list(pipe.latent_shape),
        "denoiser": type(pipe.denoiser).__name__,
        "params": sum(p.numel() for p in pipe.denoiser.parameters()),
        "guidance": args.guidance,
        "bare_forward_s": fwd,
        "decode_s": dec,
        "rows": rows,
        "frechet_distance_dpmpp20": fd,
    }
    print(f"{'scheduler':<8} {'steps':>5} {'NFE':>5} {'s/batch':>9} {'ms/img':>8} {'overhead':>9}")
    for r in rows:
        print(
            f"{r['scheduler']:<8} {r['steps']:>5} {r['nfe']:>5} {r['s_per_batch']:>9.3f} "
            f"{r['ms_per_image']:>8.1f} {r['overhead_ratio']:>9.2f}"
        )
    print(
        f"bare denoiser forward {fwd * 1000:.1f} ms (batch {batch}, guided), decode {dec * 1000:.1f} ms; "
        f"FD(dpmpp 20) = {fd}"
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")
    if tmp is not None:
        tmp.cleanup()


if __name__ == "__main__":
    main()
