"""The paper profile on a GPU: seconds per optimiser step and peak GPU memory of each trained stage.

Runs the real stage functions (accelerate loop, bf16, gradient accumulation, EMA) of ``--profile paper`` for
a few hundred steps on a small simulated set at 256² and records, per stage, the median ``step_time`` of the
training log (first logged step dropped: compilation and allocation), the peak memory PyTorch allocated, and
the sampling time per image with the profile's sampler. The first stage is timed without and with its
PatchGAN discriminator (``adversarial_start`` is moved inside the short run).

    python bench/paper_gpu.py [--steps 150] [--per-identity 20] [--work runs/bench-paper] [--quick]

The JSON is rewritten after every stage, so a run stopped by a time limit keeps what it measured; each
stage's wall time is printed as it ends.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from dopplerdiff.config import load_config
from dopplerdiff.data.simulate import simulate_dataset
from dopplerdiff.pipelines.pipeline_dopplerdiff import DopplerDiffPipeline
from dopplerdiff.train.autoencoder import train_autoencoder
from dopplerdiff.train.diffusion import train_diffusion
from dopplerdiff.train.latents import cache_latents

RESULTS = Path(__file__).parent / "results"


def _step_times(log: Path) -> list[tuple[int, float]]:
    rows = [json.loads(x) for x in log.read_text().splitlines() if x.strip()]
    return [(r["step"], r["step_time"]) for r in rows if "step_time" in r]


def _median(times: list[tuple[int, float]], lo: int, hi: int) -> float | None:
    sel = [t for s, t in times if lo < s <= hi]
    return float(np.median(sel)) if sel else None


def _peak_gb() -> float | None:
    return torch.cuda.max_memory_allocated() / 2**30 if torch.cuda.is_available() else None


def _reset_peak() -> None:
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=150)
    ap.add_argument("--per-identity", type=int, default=20, help="windows per identity (>= 20: a non-empty "
                    "validation split)")
    ap.add_argument("--work", default="runs/bench-paper")
    ap.add_argument("--quick", action="store_true", help="smoke profile, 6 steps (checks the script runs)")
    args = ap.parse_args()
    profile, steps = ("smoke", 6) if args.quick else ("paper", args.steps)
    gan_from = steps // 3
    log_every = 1 if args.quick else 10
    over = [f"autoencoder.train.steps={steps}", f"diffusion.train.steps={steps}",
            f"autoencoder.loss.adversarial_start={gan_from}", "autoencoder.loss.adversarial=0.1",
            f"simulate.per_identity={args.per_identity}", "simulate.recordings_per_identity=1",
            *[f"{s}.train.{k}={v}" for s in ("autoencoder", "diffusion")
              for k, v in (("checkpoint_every", 100000), ("val_every", 100000), ("log_every", log_every))]]
    cfg = load_config(profile, over)
    work = Path(args.work)
    run = work / "run"
    data = work / "data"
    if not (data / "metadata.json").is_file():
        t0 = time.time()
        simulate_dataset(cfg.simulate, data, progress=False)
        print(f"simulated {cfg.simulate.identities} x {cfg.simulate.per_identity} windows in "
              f"{time.time() - t0:.0f} s", flush=True)
    result: dict = {"profile": profile, "steps": steps, "date": time.strftime("%Y-%m-%d %H:%M"),
                    "device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu",
                    "torch": torch.__version__, "batch": {}, "stages": {}}
    for name in ("autoencoder", "diffusion"):
        t = getattr(cfg, name).train
        result["batch"][name] = {"micro_batch": t.batch_size, "grad_accum": t.grad_accum,
                                 "precision": t.mixed_precision}
    out = RESULTS / ("paper_gpu_quick.json" if args.quick else "paper_gpu.json")
    RESULTS.mkdir(parents=True, exist_ok=True)

    def save(stage: str) -> None:
        out.write_text(json.dumps(result, indent=2) + "\n")
        print(f"{stage} done: {json.dumps(result['stages'].get(stage, result.get(stage)))}", flush=True)

    _reset_peak()
    t0 = time.time()
    train_autoencoder(run, cfg, data_root=data, progress=False)
    times = _step_times(run / "train/autoencoder/log.jsonl")
    result["stages"]["autoencoder"] = {
        "wall_s": time.time() - t0, "peak_gpu_gb": _peak_gb(),
        "s_per_step_without_gan": _median(times, log_every, gan_from),
        "s_per_step_with_gan": _median(times, gan_from + log_every, steps)}
    save("autoencoder")
    cache_latents(run, progress=False)
    _reset_peak()
    t0 = time.time()
    train_diffusion(run, cfg, progress=False)
    times = _step_times(run / "train/diffusion/log.jsonl")
    result["stages"]["diffusion"] = {"wall_s": time.time() - t0, "peak_gpu_gb": _peak_gb(),
                                     "s_per_step": _median(times, log_every, steps)}
    save("diffusion")
    dev = "cuda" if torch.cuda.is_available() else "cpu"
    pipe = DopplerDiffPipeline.from_pretrained(run / "pipeline").to(dev)
    pipe.set_progress_bar_config(disable=True)
    d = cfg.diffusion
    _reset_peak()
    for i in range(2):  # the first call warms up
        t0 = time.time()
        ids = [j % len(pipe.identities) for j in range(8)]
        pipe(identities=ids, num_inference_steps=d.num_inference_steps, guidance_scale=d.guidance_scale,
             generator=torch.Generator().manual_seed(i))
        if torch.cuda.is_available():
            torch.cuda.synchronize()
    result["sampling"] = {"batch": 8, "steps": d.num_inference_steps, "scheduler": d.scheduler,
                          "guidance": d.guidance_scale, "s_per_image": (time.time() - t0) / 8,
                          "peak_gpu_gb": _peak_gb()}
    save("sampling")


if __name__ == "__main__":
    main()
