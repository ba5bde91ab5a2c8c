"""KL + UNet vs VQ + UNet vs VQ + discrete diffusion (``backbone: vq-diffusion``), same data and budget.

Every arm starts from the quick profile at 64x64 with an f=4 first stage ([16,32,64], 4 latent channels; the
VQModel has 256 codes, so the discrete model sees 16x16 = 256 codes per window):

* ``kl+unet``: AutoencoderKL + the continuous UNet ([32,64,128], attention at 8x8 and 4x4), DPM-Solver++;
* ``vq+unet``: VQModel + the same UNet on the pre-quantisation latents (today's ``--kind vq``);
* ``vq+vq-diffusion``: the same VQModel + the discrete transformer over its codes, VQDiffusionScheduler.

Budget: the two autoencoders train the same number of steps; every diffusion arm gets the same wall-clock
budget (``--diffusion-seconds``), turned into a step count by timing a few training steps of that arm first
(so a costlier step means fewer steps). All arms sample with the same number of steps and guidance. One
encoder (trained on real train windows only) scores every arm: identity accuracy of the samples, Fréchet
distance and k-NN precision/recall of sample features vs real test features, next to the real test accuracy
and the train-vs-test FD floor.

    python bench/vq_diffusion.py --data DIR|sim [--name NAME] [--diffusion-seconds 240] [--arms a,b,c]
        [--work DIR] [--rescore] [--quick] [key=value ...]

Writes bench/results/vq_diffusion_NAME.json and prints a table. Runs one thread, sequentially.
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dopplerdiff.config import load_config
from dopplerdiff.data.run_data import prepare_run_data
from dopplerdiff.data.simulate import simulate_dataset
from dopplerdiff.evaluate.metrics import frechet_distance, precision_recall
from dopplerdiff.evaluate.windows import encode_windows
from dopplerdiff.generate import GenerationPlan, sample
from dopplerdiff.models.condition import build_condition_encoder
from dopplerdiff.models.denoiser import build_denoiser
from dopplerdiff.models.encoder import load_encoder
from dopplerdiff.models.vq_transformer import build_vq_transformer
from dopplerdiff.pipelines.auto_pipeline import load_run_pipeline
from dopplerdiff.pipelines.pipeline_vq_diffusion import vq_scheduler
from dopplerdiff.schedulers import training_scheduler
from dopplerdiff.train.autoencoder import train_autoencoder
from dopplerdiff.train.diffusion import diffusion_loss, train_diffusion
from dopplerdiff.train.encoder import train_encoder
from dopplerdiff.train.latents import cache_latents
from dopplerdiff.train.vq_diffusion import vq_diffusion_loss

RESULTS = Path(__file__).parent / "results"
F4 = ["autoencoder.block_out_channels=[16,32,64]", "autoencoder.latent_channels=4"]
UNET = ["diffusion.block_out_channels=[32,64,128]", "diffusion.attention_levels=[false,true,true]"]
VQD = ["diffusion.backbone=vq-diffusion", "diffusion.scheduler=vq-diffusion",
       "evaluate.scheduler=vq-diffusion"]
COMMON = ["diffusion.val_identities=2", "diffusion.val_samples=2"]
ARMS: dict[str, list[str]] = {
    "kl+unet": ["autoencoder.kind=kl", *F4, *UNET],
    "vq+unet": ["autoencoder.kind=vq", *F4, *UNET],
    "vq+vq-diffusion": ["autoencoder.kind=vq", *F4, *VQD],
}


def arm_config(arm: str, profile: str, extra: list[str], steps: int | None = None):
    over = [*ARMS[arm], *COMMON, *extra]
    if steps is not None:
        every = max(steps, 1)
        over += [f"diffusion.train.steps={steps}", f"diffusion.train.val_every={every}",
                 f"diffusion.train.checkpoint_every={every}",
                 f"diffusion.train.warmup_steps={min(50, max(steps // 10, 1))}"]
    return load_config(profile, over)


def seconds_per_step(cfg, k: int, latent: int, codes: int, repeats: int = 3) -> float:
    """Wall seconds of one training step of the arm's diffusion model (random inputs, after one warm-up)."""
    d, bs = cfg.diffusion, cfg.diffusion.train.batch_size
    torch.manual_seed(0)
    enc = build_condition_encoder(d, k, d.backbone)
    y = torch.randint(0, k, (bs,))
    if d.backbone == "vq-diffusion":
        model, sched = build_vq_transformer(d, codes, latent), vq_scheduler(codes, d.vq.num_train_timesteps)
        x0 = torch.randint(0, codes, (bs, latent * latent))

        def loss():
            return vq_diffusion_loss(model, enc, sched, x0, y, d.vq.aux_weight)[0]
    else:
        model = build_denoiser(d, cfg.autoencoder.latent_channels, latent, k)
        sched = training_scheduler(d.num_train_timesteps, d.beta_schedule, d.prediction_type)
        z = torch.randn(bs, cfg.autoencoder.latent_channels, latent, latent)

        def loss():
            return diffusion_loss(model, enc, sched, z, y, d)
    opt = torch.optim.AdamW([*model.parameters(), *enc.parameters()], lr=1e-4)
    times = []
    for _ in range(repeats + 1):
        t0 = time.perf_counter()
        value = loss()
        opt.zero_grad()
        value.backward()
        opt.step()
        times.append(time.perf_counter() - t0)
    return float(np.median(times[1:]))


def _read(path: Path) -> dict:
    return json.loads(path.read_text()) if path.is_file() else {}


def score(run: Path, cfg, encoder, test, num: int) -> dict[str, Any]:
    """Generate ``num`` per identity with the run's pipeline; score them with the shared encoder."""
    pipe = load_run_pipeline(run, "cpu")
    k = len(pipe.identities)
    e = cfg.evaluate
    t0 = time.time()
    plan = GenerationPlan(identities=list(range(k)), count=num, steps=e.steps, guidance=e.guidance,
                          scheduler=e.scheduler, batch_size=32, mix_identities=True)
    got = sample(pipe, plan, progress=False)
    imgs, labels = got.images, got.labels
    sample_s = time.time() - t0
    gen = encode_windows(encoder, imgs * 2.0 - 1.0, labels)
    pr = precision_recall(test.f, gen.f, k=min(3, len(test.f) - 1, len(gen.f) - 1))  # k < 3: smoke sizes
    return {"accuracy": float((gen.logits.argmax(1) == gen.y).mean()), "fd": frechet_distance(gen.f, test.f),
            "precision": pr["precision"], "recall": pr["recall"], "num": int(len(gen.y)),
            "sample_s": round(sample_s, 1), "sample_s_per_image": round(sample_s / len(gen.y), 3),
            "steps": e.steps, "guidance": e.guidance, "scheduler": e.scheduler}


def first_stage(kind: str, data: Path, work: Path, profile: str, extra: list[str]) -> tuple[Path, float]:
    """Train and cache one autoencoder (shared by the arms using it); (run, wall seconds)."""
    run = work / f"ae-{kind}"
    if (run / "latents" / "info.json").is_file():
        return run, float(_read(run / "bench_wall.json").get("seconds", float("nan")))
    if run.exists():
        shutil.rmtree(run)
    arm = "kl+unet" if kind == "kl" else "vq+unet"
    t0 = time.time()
    train_autoencoder(run, arm_config(arm, profile, extra), data_root=data, progress=False)
    cache_latents(run, data_root=data, progress=False)
    wall = time.time() - t0
    (run / "bench_wall.json").write_text(json.dumps({"seconds": wall}))
    return run, wall


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", required=True, help="image folder, or 'sim' for the quick simulated default")
    ap.add_argument("--name", default=None)
    ap.add_argument("--work", default=None)
    ap.add_argument("--arms", default=",".join(ARMS))
    ap.add_argument("--diffusion-seconds", type=float, default=240.0)
    ap.add_argument("--autoencoder-steps", type=int, default=300)
    ap.add_argument("--encoder-steps", type=int, default=300)
    ap.add_argument("--num-per-identity", type=int, default=16)
    ap.add_argument("--rescore", action="store_true",
                    help="arms already trained in --work are only sampled and scored again (e.g. with "
                         "evaluate.guidance=G)")
    ap.add_argument("--quick", action="store_true", help="smoke sizes and seconds (a check that it runs)")
    ap.add_argument("extra", nargs="*", help="further key=value overrides for every arm")
    args = ap.parse_args()
    torch.set_num_threads(1)
    profile = "smoke" if args.quick else "quick"
    name = args.name or ("sim" if args.data == "sim" else Path(args.data).name)
    work = Path(args.work or f"runs/bench-vq-diffusion/{name}")
    work.mkdir(parents=True, exist_ok=True)
    extra = [f"autoencoder.train.steps={args.autoencoder_steps}", f"encoder.train.steps={args.encoder_steps}",
             "evaluate.steps=10", "diffusion.num_inference_steps=10", *args.extra]
    if args.quick:
        extra = ["diffusion.vq.num_train_timesteps=10", "autoencoder.train.steps=4", "encoder.train.steps=4",
                 "evaluate.steps=2", "diffusion.num_inference_steps=2", *args.extra]
    data = Path(args.data)
    if args.data == "sim":
        data = work / "data"
        if not (data / "metadata.json").is_file():
            simulate_dataset(load_config(profile).simulate, data, progress=False)
    arms = [a for a in args.arms.split(",") if a]
    base = arm_config(arms[0], profile, extra)
    started = time.time()

    t0 = time.time()
    if not (work / "encoder" / "config.json").is_file():
        train_encoder(data, work / "encoder", base, progress=False)
    encoder_s = time.time() - t0
    encoder = load_encoder(work / "encoder").eval()
    ds, split = prepare_run_data(work / "encoder-data", data, base.data)
    test = encode_windows(encoder, ds.images[split["test"]], ds.labels[split["test"]])
    train = encode_windows(encoder, ds.images[split["train"]], ds.labels[split["train"]])
    k = len(ds.identities)
    rows: dict[str, Any] = {}
    for arm in arms:
        kind = "kl" if arm.startswith("kl") else "vq"
        ae_run, ae_s = first_stage(kind, data, work, profile, extra)
        cfg0 = arm_config(arm, profile, extra)
        info = _read(ae_run / "latents" / "info.json")
        latent = int(info["latent_shape"][-1])
        run = work / arm
        trained = _read(run / "train" / "diffusion" / "metrics.json")
        if args.rescore and (run / "pipeline" / "model_index.json").is_file():  # score the trained arm again
            steps, step_s, diffusion_s = int(trained["step"]), float("nan"), float(trained["wall_s"])
            cfg = arm_config(arm, profile, extra, steps)
        else:
            step_s = seconds_per_step(cfg0, k, latent, cfg0.autoencoder.num_vq_embeddings)
            steps = max(2, int(args.diffusion_seconds / step_s)) if not args.quick else 4
            cfg = arm_config(arm, profile, extra, steps)
            if run.exists():
                shutil.rmtree(run)
            shutil.copytree(ae_run, run)
            t0 = time.time()
            train_diffusion(run, cfg, progress=False)
            diffusion_s = time.time() - t0
        ae_metrics = _read(ae_run / "train" / "autoencoder" / "metrics.json")
        val = ae_metrics.get("val", {})
        dm = _read(run / "train" / "diffusion" / "metrics.json")
        rows[arm] = {
            "autoencoder": {"kind": kind, "seconds": round(ae_s, 1), "psnr": val.get("psnr"),
                            "ssim": val.get("ssim"), "latent_shape": info["latent_shape"]},
            "diffusion": {"backbone": cfg.diffusion.backbone, "steps": steps,
                          "batch": cfg.diffusion.train.batch_size, "timed_step_s": round(step_s, 3),
                          "seconds": round(diffusion_s, 1), "params": dm.get("params", {}),
                          "final_loss": dm.get("final_loss")},
            "samples": score(run, cfg, encoder, test, args.num_per_identity),
        }
        print(f"{arm}: {json.dumps(rows[arm])}", flush=True)
        write(work, name, args, rows, test, train, k, encoder_s, started)
    print_table(rows, test, train)


def write(work: Path, name: str, args: argparse.Namespace, rows: dict, test, train, k: int, encoder_s: float,
          started: float) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"vq_diffusion_{name}.json"
    result = {
        "date": time.strftime("%Y-%m-%d"), "data": args.data, "identities": k,
        "test_windows": int(len(test.y)),
        "budget": {"diffusion_seconds": args.diffusion_seconds, "autoencoder_steps": args.autoencoder_steps,
                   "encoder_steps": args.encoder_steps, "threads": torch.get_num_threads(),
                   "note": "one thread, nice 19, on a 2-core machine shared with other jobs: seconds are "
                           "wall time and vary with the machine's load"},
        "real": {"test_accuracy": float((test.logits.argmax(1) == test.y).mean()),
                 "fd_train_vs_test": frechet_distance(train.f, test.f)},
        "encoder_seconds": round(encoder_s, 1), "total_seconds": round(time.time() - started, 1),
        "arms": rows, "complete": len(rows) == len(args.arms.split(",")), "work": str(work),
        "rescored": bool(args.rescore), "overrides": list(args.extra),
    }
    out.write_text(json.dumps(result, indent=2) + "\n")
    return out


def print_table(rows: dict, test, train) -> None:
    real = float((test.logits.argmax(1) == test.y).mean())
    floor = frechet_distance(train.f, test.f)
    print(f"\nreal test accuracy {real:.3f}; FD train vs test {floor:.1f}")
    head = ["arm", "AE PSNR", "diff steps", "diff s", "acc", "acc/real", "FD", "FD/floor", "prec", "rec",
            "s/img"]
    print("  ".join(f"{h:>10}" if i else f"{h:<16}" for i, h in enumerate(head)))
    for arm, r in rows.items():
        s = r["samples"]
        cells = [f"{r['autoencoder']['psnr'] or float('nan'):.2f}", str(r["diffusion"]["steps"]),
                 f"{r['diffusion']['seconds']:.0f}", f"{s['accuracy']:.3f}", f"{s['accuracy'] / real:.2f}",
                 f"{s['fd']:.1f}", f"{s['fd'] / floor:.2f}", f"{s['precision']:.2f}", f"{s['recall']:.2f}",
                 f"{s['sample_s_per_image']:.3f}"]
        print(f"{arm:<16}" + "  ".join(f"{c:>10}" for c in cells))


if __name__ == "__main__":
    main()
