"""Sampling throughput at equal quality: samples/s of sampler settings on a trained run, each with the Fréchet
distance and identity accuracy of its samples (the run's encoder, real test split) and the paired agreement
with the reference setting (the same (identity, index) seeds in every setting).

    python bench/throughput.py --run RUN [--settings dpmpp:10:32,unipc:5:32,dpmpp:10:64:cl] [--num 16]
        [--guidance 4] [--reps 1] [--out bench/results/throughput_NAME.json]

A setting is ``scheduler:steps:batch[:cl]`` (``cl``: the denoiser in channels-last memory format); the first
is the reference. Time it alone on the machine (two torch processes on 2 cores slow each other many times).
Writes the JSON and prints a table with the speed ratio to the reference.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dopplerdiff.config import config_for
from dopplerdiff.data.images import to_unit
from dopplerdiff.data.run_data import prepare_run_data
from dopplerdiff.evaluate.loading import load_run_encoder, run_data_config
from dopplerdiff.evaluate.metrics import frechet_distance
from dopplerdiff.evaluate.texture import high_frequency_ratio, histogram_distance
from dopplerdiff.evaluate.windows import encoder_outputs
from dopplerdiff.generate import render
from dopplerdiff.pipelines import load_run_pipeline
from dopplerdiff.schedulers import check_scheduler_name

ROOT = Path(__file__).resolve().parents[1]
DEFAULT = "dpmpp:10:32,dpmpp:10:64,dpmpp:10:32:cl,unipc:5:32,unipc:6:32,dpmpp:6:32"


def parse_settings(text: str) -> list[dict[str, Any]]:
    out = []
    for item in text.split(","):
        parts = item.strip().split(":")
        try:
            name, steps, batch = check_scheduler_name(parts[0]), int(parts[1]), int(parts[2])
        except (IndexError, ValueError) as exc:
            sys.exit(f"error: --settings item '{item}' must be scheduler:steps:batch[:cl] ({exc})")
        if steps < 1 or batch < 1 or parts[3:] not in ([], ["cl"]):
            sys.exit(f"error: --settings item '{item}': steps and batch >= 1, optional suffix ':cl'")
        out.append({"scheduler": name, "steps": steps, "batch": batch, "channels_last": parts[3:] == ["cl"]})
    return out


def draw(pipe: Any, s: dict[str, Any], k: int, num: int, guidance: float) -> tuple[np.ndarray, float]:
    """Samples (N,C,H,W in [-1,1]) of every identity under setting ``s`` and the wall seconds it took."""
    pipe.set_scheduler(s["scheduler"])
    pipe.denoiser.to(memory_format=torch.channels_last if s["channels_last"] else torch.contiguous_format)
    jobs = [(i, j) for i in range(k) for j in range(num)]
    t0 = time.perf_counter()
    with torch.inference_mode():
        img = render(pipe, jobs, steps=s["steps"], guidance=guidance, seed=0, batch_size=s["batch"])
    return img * 2.0 - 1.0, time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", type=Path, required=True)
    ap.add_argument("--settings", default=DEFAULT)
    ap.add_argument("--num", type=int, default=16, help="samples per identity and setting")
    ap.add_argument("--guidance", type=float, default=4.0)
    ap.add_argument("--reps", type=int, default=1, help="timed repetitions (the fastest counts)")
    ap.add_argument("--out", type=Path, default=None)
    a = ap.parse_args()
    settings = parse_settings(a.settings)
    if not (a.run / "pipeline" / "model_index.json").is_file():
        sys.exit(f"error: --run '{a.run}' has no trained pipeline")
    cfg = config_for(a.run, None)
    cfg.data = run_data_config(a.run, cfg.data)
    ds, split = prepare_run_data(a.run, None, cfg.data)
    tr, va, te = (ds.subset(split[p]) for p in ("train", "val", "test"))
    encoder = load_run_encoder(a.run, cfg, (tr.images, tr.labels), (va.images, va.labels),
                               list(ds.identities), [], progress=False)
    real_f, _ = encoder_outputs(encoder, te.images)
    real01 = to_unit(te.images)
    real_hf = high_frequency_ratio(real01)
    pipe = load_run_pipeline(a.run, "cpu")
    pipe.set_progress_bar_config(disable=True)
    k, rows, ref_pred = len(ds.identities), [], None
    labels = np.repeat(np.arange(k), a.num)
    for s in settings:
        secs = []
        for _ in range(a.reps):
            x, t = draw(pipe, s, k, a.num, a.guidance)
            secs.append(t)
        f, logits = encoder_outputs(encoder, x)
        x01 = to_unit(x)
        pred = logits.argmax(1)
        ref_pred = pred if ref_pred is None else ref_pred
        rows.append({**s, "samples": len(x), "seconds": min(secs), "samples_per_s": len(x) / min(secs),
                     "fd": frechet_distance(f, real_f), "identity_accuracy": float((pred == labels).mean()),
                     "agreement_with_reference": float((pred == ref_pred).mean()),
                     # texture, which a feature-space distance can miss: fewer steps may smooth the speckle
                     "hf_energy_vs_real": high_frequency_ratio(x01) / real_hf,
                     "histogram_distance": histogram_distance(x01, real01)})
        print(f"{s}: {rows[-1]['samples_per_s']:.2f} samples/s, FD {rows[-1]['fd']:.2f}, "
              f"accuracy {rows[-1]['identity_accuracy']:.3f}", flush=True)
    for r in rows:
        r["speed_vs_reference"] = r["samples_per_s"] / rows[0]["samples_per_s"]
    out = a.out or ROOT / "bench" / "results" / f"throughput_{a.run.name}.json"
    out.write_text(json.dumps({"run": str(a.run), "guidance": a.guidance, "num_per_identity": a.num,
                               "identities": k, "torch_threads": torch.get_num_threads(),
                               "load_avg": list(os.getloadavg()), "date": time.strftime("%Y-%m-%d %H:%M"),
                               "rows": rows}, indent=2) + "\n")
    print(f"\n{'setting':<28}{'samples/s':>10}{'x ref':>8}{'FD':>9}{'acc':>7}{'agree':>7}{'HF x real':>10}"
          f"{'hist':>7}")
    for r in rows:
        name = f"{r['scheduler']}:{r['steps']}:{r['batch']}" + (":cl" if r["channels_last"] else "")
        print(f"{name:<28}{r['samples_per_s']:>10.2f}{r['speed_vs_reference']:>8.2f}{r['fd']:>9.2f}"
              f"{r['identity_accuracy']:>7.3f}{r['agreement_with_reference']:>7.3f}{r['hf_energy_vs_real']:>10.3f}"
              f"{r['histogram_distance']:>7.3f}")
    print(out)


if __name__ == "__main__":
    main()
