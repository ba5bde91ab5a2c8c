"""First-stage variants end to end: what each autoencoder keeps, and what the samples then look like.

For every variant (config overrides on the quick profile) and every dataset, the whole job
(`dopplerdiff run --profile quick`: autoencoder, latents, diffusion, encoder, samples, evaluation) runs with
the same budgets; the table reads each run's metrics: reconstruction PSNR/SSIM, identity accuracy of real
test windows, test reconstructions and generated samples under the run's encoder AND the independent judge,
the real-vs-synthetic two-sample tests (C2ST, 0.5 = indistinguishable), high-frequency energy relative to
real, Fréchet distance ratios (to the train-vs-test floor), k-NN precision/recall, and the augmentation
experiment's paired gain under both classifiers. A picture shows real test windows above the reconstructions
and samples of each variant.

    python bench/first_stage.py --data sim|DIR [--name NAME] [--variants kl4,kl8,...] [--jobs N]
        [--work DIR] [--extra key=value ...] [--quick]

Runs go to --work (default runs/bench-first-stage/NAME); results to bench/results/first_stage_NAME.json and
first_stage_NAME.png. Runs are independent processes, ``--jobs`` at a time (each with cores/jobs threads),
so on a GPU machine the grid runs in parallel; time per step on a 2-core CPU comes from
``bench/autoencoder.py``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

from dopplerdiff.config import config_from_dict, load_config
from dopplerdiff.data.contact import save_grid
from dopplerdiff.data.images import to_unit
from dopplerdiff.data.run_data import prepare_run_data
from dopplerdiff.data.simulate import simulate_dataset
from dopplerdiff.evaluate.c2st import disjoint_pair
from dopplerdiff.evaluate.independent import IndependentEval
from dopplerdiff.evaluate.windows import reconstruct as reconstruct_images
from dopplerdiff.models.autoencoder import load_autoencoder, reconstruct
from dopplerdiff.pipelines.pipeline_dopplerdiff import DopplerDiffPipeline
from dopplerdiff.train.autoencoder import train_autoencoder

RESULTS = Path(__file__).parent / "results"
GAN = ["autoencoder.loss.adversarial=0.1", "autoencoder.loss.adversarial_start=150"]
UNET4 = ["diffusion.block_out_channels=[32,64,128,192]", "diffusion.attention_levels=[false,false,true,true]"]
# name -> overrides of the quick profile. kl4 is the quick profile's first stage before this comparison.
VARIANTS: dict[str, list[str]] = {
    "kl4": ["autoencoder.latent_channels=4"],
    "kl8": ["autoencoder.latent_channels=8"],
    "kl16": ["autoencoder.latent_channels=16"],
    "kl8-gan": ["autoencoder.latent_channels=8", *GAN],
    "kl16-gan": ["autoencoder.latent_channels=16", *GAN],
    # f=2: 4x32x32 latents; a fourth UNet level keeps the diffusion step near the f=4 cost (1.24x measured)
    "kl4-f2": ["autoencoder.latent_channels=4", "autoencoder.block_out_channels=[16,32]", *UNET4],
    "kl4-f2-gan": ["autoencoder.latent_channels=4", "autoencoder.block_out_channels=[16,32]", *GAN, *UNET4],
    "kl8-feature": ["autoencoder.latent_channels=8", "autoencoder.loss.feature=1.0"],
    "kl8-shift": ["autoencoder.latent_channels=8", "diffusion.latent_time_shift=true"],
}
# the bench needs no guidance sweep (the pool's guidance is scored) and reads no report pictures
BENCH = ["evaluate.guidance_sweep=[4.0]"]
SETS = ("real_test", "reconstruction", "generated")
QUICK = ["--profile", "smoke"]


def simulate_default(out: Path, quick: bool) -> Path:
    """The quick profile's simulated default dataset (once; reused by every variant)."""
    if not (out / "metadata.json").is_file():
        simulate_dataset(load_config("smoke" if quick else "quick").simulate, out, progress=False)
    return out


def run_variant(name: str, data: Path, work: Path, extra: list[str], threads: int, quick: bool,
                deadline: float | None = None) -> dict:
    """One whole job in its own process (killed at ``deadline``, a time.time()); wall time and exit status."""
    run = work / name
    log = work / f"{name}.log"
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    profile = QUICK if quick else ["--profile", "quick"]
    cmd = [sys.executable, "-m", "dopplerdiff.cli", "run", *profile, "--data", str(data), "--out", str(run),
           "--quiet", "--resume", *BENCH, *VARIANTS[name], *extra]
    t0 = time.time()
    limit = None if deadline is None else max(deadline - time.time(), 1)
    with open(log, "a") as fh:
        try:
            code = subprocess.run(cmd, stdout=fh, stderr=subprocess.STDOUT, env=env, timeout=limit).returncode
        except subprocess.TimeoutExpired:
            code = "timeout"  # what finished before the deadline is still collected
    print(f"{name}: exit {code} after {time.time() - t0:.0f} s", flush=True)
    return {"variant": name, "exit": code, "wall_s": time.time() - t0, "run": str(run)}


def _read(path: Path) -> dict:
    return json.loads(path.read_text()) if path.is_file() else {}


def _median_step_time(log: Path) -> float | None:
    rows = [json.loads(x) for x in log.read_text().splitlines() if x.strip()] if log.is_file() else []
    times = [r["step_time"] for r in rows if "step_time" in r][1:]  # the first includes warm-up
    return float(np.median(times)) if times else None


def _get(d: dict, *keys: str):
    for k in keys:
        if not isinstance(d, dict) or k not in d:
            return None
        d = d[k]
    return d


def collect(row: dict) -> dict:
    """The table's numbers from one finished run directory."""
    run = Path(row["run"])
    ae, m = _read(run / "train/autoencoder/metrics.json"), _read(run / "eval/metrics.json")
    dist = m.get("distribution", {})
    floor = _get(dist, "train_vs_test", "fd")

    def fd_ratio(key: str):
        fd = _get(dist, key, "fd")
        return fd / floor if fd is not None and floor else None

    return {
        **row,
        "latent_shape": ae.get("latent_shape"), "psnr": _get(ae, "val", "psnr"),
        "ssim": _get(ae, "val", "ssim"),
        "ae_gpu_step_s": _median_step_time(run / "train/autoencoder/log.jsonl"),
        "diffusion_gpu_step_s": _median_step_time(run / "train/diffusion/log.jsonl"),
        "encoder": {k: _get(m, "accuracy", k, "overall") for k in SETS},
        "judge": {k: _get(m, "judge", k, "overall") for k in SETS},
        "c2st": {k: _get(m, "c2st", k, "accuracy") for k in ("real_train_vs_test", "reconstruction",
                                                               "generated")},
        "hf_ratio": {k: _get(m, "texture", k, "ratio_to_real", "high_frequency_ratio")
                     for k in ("reconstruction", "generated")},
        "sparsity_ratio": {k: _get(m, "texture", k, "ratio_to_real", "sparsity")
                           for k in ("reconstruction", "generated")},
        "fd_ratio": {"reconstruction": fd_ratio("recon_vs_test"), "generated": fd_ratio("gen_vs_test")},
        "precision": _get(dist, "gen_vs_test", "precision"), "recall": _get(dist, "gen_vs_test", "recall"),
        "aug_gain_encoder_arch": _get(m, "augmentation", "gain"),
        "aug_gain_judge": _get(m, "augmentation_judge", "gain"),
        "memorised": _get(m, "memorisation", "fraction"),
    }


def picture(rows: list[dict], data: Path, out: Path, n: int = 6) -> None:
    """Real test windows (top) above each variant's reconstructions and one sample per identity."""
    done = [r for r in rows if (Path(r["run"]) / "pipeline/model_index.json").is_file()]
    if not done:
        return
    first = Path(done[0]["run"])
    cfg = config_from_dict(yaml.safe_load((first / "config.yaml").read_text()))
    ds, split = prepare_run_data(first, data, cfg.data)
    test = split["test"]
    pick = [next(i for i in test if ds.labels[i] == k) for k in range(min(n, len(ds.identities)))]
    real = torch.from_numpy(np.ascontiguousarray(ds.images[pick]))
    grid, names = [to_unit(real).numpy()], ["real test"]
    for r in done:
        run = Path(r["run"])
        with torch.no_grad():
            rec = reconstruct(load_autoencoder(run / "autoencoder").eval(), real).clamp(-1, 1)
        grid.append(to_unit(rec).numpy())
        names.append(f"{r['variant']} recon")
        pipe = DopplerDiffPipeline.from_pretrained(run / "pipeline")
        pipe.set_progress_bar_config(disable=True)
        ids = [int(ds.labels[i]) for i in pick]
        imgs = pipe(identities=ids, num_inference_steps=cfg.evaluate.steps,
                    guidance_scale=cfg.evaluate.guidance, generator=torch.Generator().manual_seed(0),
                    output_type="np").images
        grid.append(np.moveaxis(np.asarray(imgs), -1, 1))
        names.append(f"{r['variant']} sample")
    save_grid(out, grid, cfg.data.colormap, labels=names)


def fmt(v, d=2) -> str:
    return "—" if v is None else f"{v:.{d}f}"


def _trio(d: dict, keys: tuple[str, ...], digits: int = 2) -> str:
    return "/".join(fmt(d.get(k), digits) for k in keys)


def _line(cells: list[str], widths: list[int]) -> str:
    """First cell left-aligned, the rest right-aligned."""
    pairs = enumerate(zip(cells, widths, strict=True))
    return "".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in pairs)


def print_table(rows: list[dict]) -> None:
    cols = [("variant", 12), ("latent", 9), ("PSNR", 6), ("enc real/rec/gen", 17), ("judge real/rec/gen", 19),
            ("C2ST floor/rec/gen", 19), ("HF rec/gen", 11), ("FDx rec/gen", 12), ("P/R", 10),
            ("gain enc/judge", 15)]
    print(_line([name for name, _ in cols], [w for _, w in cols]))
    for r in rows:
        if r["exit"] != 0:
            print(f"{r['variant']:<12} did not finish (exit {r['exit']}); finished parts below")
        ge, gj = r["aug_gain_encoder_arch"] or {}, r["aug_gain_judge"] or {}
        cells = [r["variant"], "x".join(map(str, r["latent_shape"] or [])), fmt(r["psnr"], 1),
                 _trio(r["encoder"], SETS), _trio(r["judge"], SETS),
                 _trio(r["c2st"], ("real_train_vs_test", "reconstruction", "generated")),
                 _trio(r["hf_ratio"], SETS[1:]), _trio(r["fd_ratio"], SETS[1:], 1),
                 f"{fmt(r['precision'])}/{fmt(r['recall'])}",
                 f"{fmt(ge.get('mean'), 3)}/{fmt(gj.get('mean'), 3)}"]
        print(_line(cells, [w for _, w in cols]))


def recon_picture(names: list[str], data: Path, work: Path, out: Path, n: int = 8) -> None:
    """Real test windows (one per identity) above each variant's reconstructions of them."""
    runs = [work / v for v in names if (work / v / "autoencoder/config.json").is_file()]
    if not runs:
        return
    cfg = config_from_dict(yaml.safe_load((runs[0] / "config.yaml").read_text()))
    ds, split = prepare_run_data(runs[0], data, cfg.data)
    pick = [next(i for i in split["test"] if ds.labels[i] == k) for k in range(min(n, len(ds.identities)))]
    real = torch.from_numpy(np.ascontiguousarray(ds.images[pick]))
    grid, labels = [to_unit(real).numpy()], ["real test"]
    for run in runs:
        vae = load_autoencoder(run / "autoencoder").eval()
        with torch.no_grad():
            grid.append(to_unit(reconstruct(vae, real).clamp(-1, 1)).numpy())
        labels.append(f"{run.name} recon")
    save_grid(out, grid, cfg.data.colormap, labels=labels)


def autoencoder_only(names: list[str], data: Path, work: Path, extra: list[str], quick: bool,
                     save: Any = None) -> list[dict]:
    """First stage alone, in this process: each variant's reconstructions of the real test windows under the
    independent judge (trained once on real train, shared by every variant), C2ST and texture statistics.
    ``save(rows)`` is called after every variant, so a stopped grid keeps what it measured."""
    profile = "smoke" if quick else "quick"
    rows, judge, ref = [], None, None
    for name in names:
        cfg = load_config(profile, [*BENCH, *VARIANTS[name], *extra])
        run, t0 = work / name, time.time()
        if not (run / "autoencoder/config.json").is_file():
            resume = "latest" if any((run / "train/autoencoder").glob("checkpoint-*")) else None
            train_autoencoder(run, cfg, data_root=data, resume=resume, progress=False)
        ds, split = prepare_run_data(run, data, cfg.data)
        tr, va, te = (ds.subset(split[p]) for p in ("train", "val", "test"))
        if judge is None:
            judge = IndependentEval(cfg.evaluate, (tr.images, tr.labels), (va.images, va.labels),
                                    (te.images, te.labels), len(ds.identities))
            ref = judge.judge_m["real_test"]["overall"]
        vae = load_autoencoder(run / "autoencoder").eval()
        pair = disjoint_pair(tr.images, reconstruct_images(vae, tr.images), seed=cfg.evaluate.seed)
        judge.add_set("reconstruction", reconstruct_images(vae, te.images), te.labels, pair)
        ae = _read(run / "train/autoencoder/metrics.json")
        rows.append({"variant": name, "latent_shape": ae.get("latent_shape"), "psnr": _get(ae, "val", "psnr"),
                     "ssim": _get(ae, "val", "ssim"), "judge_real_test": ref,
                     "judge_reconstruction": judge.judge_m["reconstruction"]["overall"],
                     "c2st_reconstruction": judge.c2st_m.get("reconstruction", {}).get("accuracy"),
                     "c2st_floor": judge.c2st_m.get("real_train_vs_test", {}).get("accuracy"),
                     "texture": judge.texture_m["reconstruction"],
                     "texture_real": judge.texture_m["real_test"],
                     "seconds": time.time() - t0})
        r = rows[-1]
        print(f"{name:<12} PSNR {fmt(r['psnr'], 1)}  judge recon {fmt(r['judge_reconstruction'])} "
              f"(real {fmt(ref)})  C2ST {fmt(r['c2st_reconstruction'])} (floor {fmt(r['c2st_floor'])})  "
              f"HF {fmt(r['texture']['ratio_to_real']['high_frequency_ratio'])}", flush=True)
        if save is not None:
            save(rows)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default="sim", help="'sim' (the simulated default) or a data folder")
    ap.add_argument("--name", default=None, help="results name (default: sim or the folder's name)")
    ap.add_argument("--variants", default=",".join(VARIANTS))
    ap.add_argument("--jobs", type=int, default=1)
    ap.add_argument("--work", default=None)
    ap.add_argument("--extra", nargs="*", default=[], help="overrides added to every run")
    ap.add_argument("--deadline", type=float, default=None, help="seconds after which runs are stopped")
    ap.add_argument("--picture-only", action="store_true",
                    help="only redraw the reconstruction picture of existing --autoencoder-only runs")
    ap.add_argument("--autoencoder-only", action="store_true",
                    help="first stage alone, variants in sequence in this process (no diffusion)")
    ap.add_argument("--quick", action="store_true", help="smoke profile (checks the script runs)")
    args = ap.parse_args()
    names = [v for v in args.variants.split(",") if v]
    unknown = sorted(set(names) - set(VARIANTS))
    if unknown:
        sys.exit(f"error: unknown variant(s) {unknown}; valid: {', '.join(VARIANTS)}")
    name = args.name or ("sim" if args.data == "sim" else Path(args.data).name)
    work = Path(args.work or f"runs/bench-first-stage/{name}")
    work.mkdir(parents=True, exist_ok=True)
    data = simulate_default(work / "simdata", args.quick) if args.data == "sim" else Path(args.data)
    threads = max(1, (os.cpu_count() or 2) // max(args.jobs, 1))
    t0 = time.time()
    if args.picture_only:
        recon_picture(names, data, work, RESULTS / f"first_stage_ae_{name}.png")
        return
    if args.autoencoder_only:
        out = RESULTS / f"first_stage_ae_{name}{'_quick' if args.quick else ''}.json"
        RESULTS.mkdir(parents=True, exist_ok=True)

        def save(rows: list[dict]) -> None:
            out.write_text(json.dumps({"dataset": name, "variants": {v: VARIANTS[v] for v in names},
                                       "date": time.strftime("%Y-%m-%d %H:%M"), "wall_s": time.time() - t0,
                                       "threads": torch.get_num_threads(), "rows": rows}, indent=2) + "\n")

        autoencoder_only(names, data, work, args.extra, args.quick, save)
        recon_picture(names, data, work, out.with_suffix(".png"))
        return
    deadline = None if args.deadline is None else t0 + args.deadline
    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        rows = list(pool.map(lambda v: run_variant(v, data, work, args.extra, threads, args.quick, deadline),
                             names))
    rows = [collect(r) for r in rows]
    result = {"dataset": name, "data": str(data), "variants": {v: VARIANTS[v] for v in names},
              "bench_overrides": BENCH + args.extra, "jobs": args.jobs, "wall_s": time.time() - t0,
              "device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu",
              "date": time.strftime("%Y-%m-%d %H:%M"), "quick": args.quick, "rows": rows}
    RESULTS.mkdir(parents=True, exist_ok=True)
    suffix = "_quick" if args.quick else ""
    (RESULTS / f"first_stage_{name}{suffix}.json").write_text(json.dumps(result, indent=2) + "\n")
    print_table(rows)
    picture(rows, data, RESULTS / f"first_stage_{name}{suffix}.png")


if __name__ == "__main__":
    main()
