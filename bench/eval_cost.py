"""What training the augmentation classifiers together saves: a micro-benchmark and a stage timer.

Micro-benchmark (default): M small classifiers of each architecture (the quick profile's encoder CNN with
``evaluate.augment_channels`` and recipe, and the judge CNN), each on its own random 64x64 windows with its
own seed, trained for ``--steps`` steps one after another (``together=1``) and together (``together=M``) in
the same process and thread setting; prints a table and writes bench/results/eval_cost_NAME.json.

    OMP_NUM_THREADS=1 python bench/eval_cost.py [--models 4,8,12] [--steps 20] [--threads 1] [--name NAME]

Stage timer: the whole ``evaluate`` stage of a run, once with the classifiers one after another
(``evaluate.augment_together=1``) and once together (``--together``, default 6: one group per experiment),
side by side on one machine; each writes to its own temporary folder (the run's eval/ is left alone). Writes
bench/results/eval_cost_stage_NAME.json with both wall times and both augmentation sections.

    python bench/eval_cost.py --run RUN [--order sequential,together] [--together 6] [--name NAME]

``--layout``: one step of one model of each architecture, NCHW vs channels-last (the layout the in-memory
fits train in), writes bench/results/eval_cost_layout_NAME.json.

``--keep-memory`` (all modes): glibc's malloc hands every freed block above its mmap threshold back to the
kernel, so each training step maps and zero-fills its large activations again; this flag makes it keep
them (``mallopt``), to measure what that costs.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from dopplerdiff.classifier import FitJob
from dopplerdiff.config import config_for, load_config
from dopplerdiff.evaluate.evaluate import evaluate_run
from dopplerdiff.evaluate.judge import JudgeCNN
from dopplerdiff.evaluate.together import fit_classifiers, fit_judges
from dopplerdiff.models.encoder import SpectrogramEncoder

RESULTS = Path(__file__).parent / "results"
K, N, SIZE = 31, 400, 64  # identities, windows per model, window size (the quick profile's)


def keep_freed_memory() -> bool:
    """glibc only: allocations up to 1 GiB from the heap, and freed heap memory never trimmed."""
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return False
    m_trim_threshold, m_mmap_threshold = -1, -3
    return bool(libc.mallopt(m_mmap_threshold, 1 << 30)) and bool(libc.mallopt(m_trim_threshold, 2**31 - 1))


def _jobs(m: int) -> list[FitJob]:
    rng = np.random.default_rng(0)
    return [FitJob(rng.uniform(-1, 1, (N, 1, SIZE, SIZE)).astype(np.float32), rng.integers(0, K, N), seed)
            for seed in range(m)]


def _fit(arch: str, jobs: list[FitJob], steps: int, together: int) -> float:
    cfg = load_config("quick")
    t0 = time.perf_counter()
    if arch == "encoder":
        enc = replace(cfg.encoder, channels=list(cfg.evaluate.augment_channels))
        fit_classifiers(jobs, K, enc, steps=steps, augment=cfg.data.augment, together=together)
    else:
        fit_judges(jobs, K, steps=steps, channels=tuple(cfg.evaluate.judge_channels), together=together)
    return time.perf_counter() - t0


def micro(models: list[int], steps: int, threads: int) -> list[dict]:
    torch.set_num_threads(threads)
    _fit("encoder", _jobs(2), 2, 2)  # warm-up: first calls pay for allocations and dispatch setup
    rows = []
    print(f"{'architecture':<14}{'M':>4}{'sequential s':>14}{'together s':>12}{'ratio':>8}")
    for arch in ("encoder", "judge"):
        for m in models:
            jobs = _jobs(m)
            seq, tog = _fit(arch, jobs, steps, 1), _fit(arch, jobs, steps, m)
            rows.append({"architecture": arch, "models": m, "steps": steps, "sequential_s": round(seq, 3),
                         "together_s": round(tog, 3), "ratio": round(seq / tog, 3)})
            print(f"{arch:<14}{m:>4}{seq:>14.2f}{tog:>12.2f}{seq / tog:>8.2f}", flush=True)
    return rows


def layout(threads: int, reps: int = 4, steps: int = 5) -> list[dict]:
    """Seconds per forward+backward step of one model (batch 64, 64x64), NCHW vs channels-last."""
    torch.set_num_threads(threads)
    x, y = torch.randn(64, 1, SIZE, SIZE), torch.randint(0, K, (64,))
    cfg = load_config("quick")
    rows = []
    for arch in ("encoder", "judge"):
        make = (lambda: SpectrogramEncoder(num_classes=K, cnn_channels=tuple(cfg.evaluate.augment_channels),
                                           image_size=SIZE)) if arch == "encoder" else \
            (lambda: JudgeCNN(1, K, tuple(cfg.evaluate.judge_channels)))
        best = {}
        for fmt in (torch.contiguous_format, torch.channels_last):
            model, xf = make().to(memory_format=fmt), x.contiguous(memory_format=fmt)
            times = []
            for _ in range(reps):
                t0 = time.perf_counter()
                for _ in range(steps):
                    out = model(xf)
                    F.cross_entropy(out[1] if isinstance(out, tuple) else out, y).backward()
                times.append((time.perf_counter() - t0) / steps)
            best[str(fmt).split(".")[-1]] = min(times[1:])  # the first repetition warms up
        rows.append({"architecture": arch, **{f"{k}_s": round(v, 4) for k, v in best.items()},
                     "ratio": round(best["contiguous_format"] / best["channels_last"], 3)})
        print(f"{arch:<10} NCHW {best['contiguous_format']:.4f} s/step, channels-last "
              f"{best['channels_last']:.4f} s/step, ratio {rows[-1]['ratio']:.2f}", flush=True)
    return rows


def stage(run: Path, order: list[str], together: int) -> dict:
    """Wall time of the evaluate stage with the classifiers one after another and together."""
    out: dict = {"run": str(run.resolve())}
    wall: dict[str, float] = {}
    for mode in order:
        overrides = [f"evaluate.augment_together={1 if mode == 'sequential' else together}"]
        cfg = config_for(run, None, overrides)
        with tempfile.TemporaryDirectory(prefix="dd-eval-cost-") as tmp:
            t0 = time.perf_counter()
            m = evaluate_run(run, cfg, out=Path(tmp) / "eval", progress=False)
            seconds = wall[mode] = time.perf_counter() - t0
        out[mode] = {"seconds": round(seconds, 1), "augment_together": cfg.evaluate.augment_together,
                     "augmentation": m.get("augmentation"), "augmentation_judge": m.get("augmentation_judge")}
        print(f"{mode:<12}{seconds:>10.1f} s (evaluate.augment_together={cfg.evaluate.augment_together})",
              flush=True)
    if {"sequential", "together"} <= set(wall) and wall["together"] > 0:
        out["ratio"] = round(wall["sequential"] / wall["together"], 3)
        print(f"ratio sequential / together: {out['ratio']:.2f}")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", type=Path, default=None, help="time the whole evaluate stage of this run")
    ap.add_argument("--order", default="sequential,together", help="stage timer: modes in order")
    ap.add_argument("--together", type=int, default=6, help="stage timer: classifiers at once when together")
    ap.add_argument("--models", default="4,8,12", help="micro-benchmark: comma-separated M")
    ap.add_argument("--steps", type=int, default=20, help="micro-benchmark: training steps per model")
    ap.add_argument("--threads", type=int, default=1, help="micro-benchmark: torch threads")
    ap.add_argument("--layout", action="store_true", help="one model's step: NCHW vs channels-last")
    ap.add_argument("--keep-memory", action="store_true", help="keep freed memory in the process (glibc)")
    ap.add_argument("--name", default=None, help="results name (default: threads / the run's folder name)")
    args = ap.parse_args()
    RESULTS.mkdir(parents=True, exist_ok=True)
    kept = keep_freed_memory() if args.keep_memory else False
    if args.keep_memory and not kept:
        sys.exit("error: --keep-memory needs glibc's mallopt")
    suffix = "_keepmem" if kept else ""
    if args.run is not None:
        if not (args.run / "data.json").is_file():
            sys.exit(f"error: --run '{args.run}' has no data.json (not a run directory)")
        order = [m.strip() for m in args.order.split(",") if m.strip()]
        if not order or any(m not in ("sequential", "together") for m in order):
            sys.exit(f"error: --order takes sequential and/or together, got '{args.order}'")
        if args.together < 2:
            sys.exit("error: --together must be >= 2 (1 is the sequential mode)")
        res = {**stage(args.run, order, args.together), "keep_memory": kept}
        path = RESULTS / f"eval_cost_stage_{args.name or args.run.name}{suffix}.json"
    elif args.layout:
        res = {"threads": args.threads, "keep_memory": kept, "torch": torch.__version__,
               "rows": layout(args.threads)}
        path = RESULTS / f"eval_cost_layout_{args.name or f'threads{args.threads}'}{suffix}.json"
    else:
        try:
            models = [int(m) for m in args.models.split(",") if m.strip()]
        except ValueError:
            sys.exit(f"error: --models takes comma-separated whole numbers, got '{args.models}'")
        if not models or min(models) < 1 or args.steps < 1 or args.threads < 1:
            sys.exit("error: --models, --steps and --threads must be >= 1")
        res = {"threads": args.threads, "keep_memory": kept, "windows_per_model": N, "size": SIZE,
               "identities": K, "torch": torch.__version__, "rows": micro(models, args.steps, args.threads)}
        path = RESULTS / f"eval_cost_{args.name or f'threads{args.threads}'}{suffix}.json"
    path.write_text(json.dumps(res, indent=2) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
