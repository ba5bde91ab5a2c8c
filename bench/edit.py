"""Editing benchmark on a trained run: identity transfer vs strength, inpainting, few-shot identities.

    python bench/edit.py --run RUN --label sim [--heldout-run RUN2] [--fewshot-steps 300]

1. Transfer (test windows of the run, each re-rendered as the next identity): target- and source-identity
   accuracy by the run's encoder, and how much timing survives -- Pearson correlation over time of the
   torso line (strongest Doppler row per column) and of the upper envelope with the source's.
2. Inpainting (test windows, time span 0.4-0.6 masked): MSE inside the mask for the identity-conditioned
   fill, the unconditional fill, the conditioned fill with RePaint resampling (ddim) and linear
   interpolation across the gap; seam = mean jump across the mask border relative to the source's own.
3. Few-shot (with ``--heldout-run``, a run whose diffusion stage never saw some identities): learn each
   missing identity from k = 5, 10, 20 train windows, sample, and score with RUN's encoder (which knows
   them) beside RUN's own samples of that person (a model trained with them) and the untrained row (k=0).

Writes bench/results/edit.json (one entry per --label, merged).
"""

from __future__ import annotations

import argparse
import copy
import json
import time
from pathlib import Path

import numpy as np
import torch
from scipy.ndimage import gaussian_filter1d

from dopplerdiff.config import load_config
from dopplerdiff.data.run_data import prepare_run_data, read_run_data
from dopplerdiff.edit.ops import inpaint, span_mask, transfer
from dopplerdiff.generate import sample_seed
from dopplerdiff.models.encoder import load_encoder
from dopplerdiff.models.identity_rows import add_identity_row
from dopplerdiff.pipelines.auto_pipeline import load_run_pipeline
from dopplerdiff.train.encoder import predict
from dopplerdiff.train.identity import learn_identity

RESULTS = Path(__file__).parent / "results" / "edit.json"
STRENGTHS = (0.3, 0.5, 0.7, 0.9, 1.0)
SHOTS = (5, 10, 20)


def load(run: Path):
    cfg = load_config(str(run / "config.yaml"))
    ds, split = prepare_run_data(run, Path(read_run_data(run)["data_root"]), cfg.data)
    return cfg, ds, split


def pick_test(ds, split, n: int, seed: int = 0) -> np.ndarray:
    """Up to ``n`` test windows spread evenly over identities."""
    rng = np.random.default_rng(seed)
    test = split["test"]
    per = max(1, n // len(ds.identities))
    out = [rng.permutation(test[ds.labels[test] == k])[:per] for k in range(len(ds.identities))]
    return np.concatenate(out)


def classify(encoder, images01: np.ndarray, names: list[str]) -> np.ndarray:
    """Predicted identity names of images in [0, 1] (encoder label map)."""
    logits, _ = predict(encoder, images01 * 2 - 1)
    labels = list(encoder.config.identities)
    return np.array([labels[i] for i in logits.argmax(1)])


def lines(images01: np.ndarray, threshold: float = 0.25) -> tuple[np.ndarray, np.ndarray]:
    """Per-column torso row (argmax of the Doppler-smoothed column) and upper envelope row (first row from
    the top above floor + threshold * (colmax - floor)); the definitions of data.physics, per column."""
    x = images01.mean(axis=1)
    torso = gaussian_filter1d(x, 1.0, axis=1).argmax(axis=1)
    floor = np.median(x, axis=(1, 2), keepdims=True)
    level = floor + threshold * (x.max(axis=1, keepdims=True) - floor)
    above = x > level
    upper = np.where(above.any(axis=1), above.argmax(axis=1), x.shape[1] - 1)
    return torso.astype(float), upper.astype(float)


def corr(a: np.ndarray, b: np.ndarray) -> float:
    """Mean over windows of the Pearson correlation over time (constant lines count as 0)."""
    out = []
    for u, v in zip(a, b, strict=True):
        out.append(0.0 if u.std() == 0 or v.std() == 0 else float(np.corrcoef(u, v)[0, 1]))
    return float(np.mean(out))


def bench_transfer(pipe, encoder, ds, idx, d) -> list[dict]:
    src = ds.images[idx]
    src01 = (src + 1) / 2
    names = ds.identities
    src_names = np.array([names[k] for k in ds.labels[idx]])
    tgt_names = np.array([names[(k + 1) % len(names)] for k in ds.labels[idx]])
    s_torso, s_env = lines(src01)
    rows = []
    for strength in STRENGTHS:
        out = np.concatenate(
            [
                transfer(
                    pipe,
                    src[i : i + 1],
                    t,
                    strength=strength,
                    guidance=d.guidance_scale,
                    steps=d.num_inference_steps,
                    seed=i,
                )
                for i, t in enumerate(tgt_names)
            ]
        )
        pred = classify(encoder, out, names)
        torso, env = lines(out)
        rows.append(
            {
                "strength": strength,
                "target_acc": float((pred == tgt_names).mean()),
                "source_acc": float((pred == src_names).mean()),
                "torso_corr": corr(s_torso, torso),
                "envelope_corr": corr(s_env, env),
            }
        )
    rows.append(
        {
            "strength": "source",
            "target_acc": float((classify(encoder, src01, names) == tgt_names).mean()),
            "source_acc": float((classify(encoder, src01, names) == src_names).mean()),
            "torso_corr": 1.0,
            "envelope_corr": 1.0,
        }
    )
    return rows


def linear_fill(src01: np.ndarray, a: int, b: int) -> np.ndarray:
    """Linear interpolation across columns a..b-1 from the columns just outside the gap."""
    out = src01.copy()
    left, right = src01[..., a - 1 : a], src01[..., b : b + 1]
    w = (np.arange(a, b) - (a - 1)) / (b - (a - 1))
    out[..., a:b] = left * (1 - w) + right * w
    return out


def bench_inpaint(pipe, ds, idx, d, span=(0.4, 0.6)) -> list[dict]:
    src = ds.images[idx]
    src01 = (src + 1) / 2
    size = src.shape[-1]
    mask = span_mask((size, size), span, None)
    a, b = int(np.flatnonzero(mask[0])[0]), int(np.flatnonzero(mask[0])[-1]) + 1
    names = [ds.identities[k] for k in ds.labels[idx]]

    def fill(identity, scheduler="dpmpp", resample=0):
        pipe.set_scheduler(scheduler)
        return np.concatenate(
            [
                inpaint(
                    pipe,
                    src[i : i + 1],
                    mask,
                    identity(i),
                    guidance=d.guidance_scale,
                    steps=d.num_inference_steps,
                    seed=i,
                    resample_steps=resample,
                )
                for i in range(len(src))
            ]
        )

    methods = {
        "conditional fill": fill(lambda i: names[i]),
        "unconditional fill": fill(lambda i: None),
        "conditional + RePaint (ddim, r=2)": fill(lambda i: names[i], "ddim", 2),
        "linear interpolation": linear_fill(src01, a, b),
    }
    own_jump = (
        np.abs(src01[..., a] - src01[..., a - 1]).mean() + np.abs(src01[..., b] - src01[..., b - 1]).mean()
    )
    rows = []
    for name, out in methods.items():
        err = (out - src01) ** 2
        jump = np.abs(out[..., a] - out[..., a - 1]).mean() + np.abs(out[..., b] - out[..., b - 1]).mean()
        rows.append(
            {
                "method": name,
                "mse_mask": float(err[..., a:b].mean()),
                "mse_border_band": float(
                    np.concatenate([err[..., a : a + 2], err[..., b - 2 : b]], -1).mean()
                ),
                "seam_ratio": float(jump / own_jump),
            }
        )
    pipe.set_scheduler(d.scheduler)
    return rows


def sample_identity(pipe, name: str, n: int, d) -> np.ndarray:
    gens = [torch.Generator().manual_seed(sample_seed(0, 99, i)) for i in range(n)]
    return (
        pipe(
            [name] * n,
            num_inference_steps=d.num_inference_steps,
            guidance_scale=d.guidance_scale,
            generator=gens,
            output_type="pt",
        )
        .images.float()
        .numpy()
    )


def bench_fewshot(
    full_pipe, held_run, encoder, ds, split, cfg, steps, n_samples=16, pictures=None, label=""
) -> list[dict]:
    held = load_run_pipeline(held_run, "cpu")
    held.set_progress_bar_config(disable=True)
    held.set_scheduler(cfg.diffusion.scheduler)
    missing = [n for n in full_pipe.identities if n not in held.identities]
    rows = []
    rng = np.random.default_rng(0)
    for name in missing:
        k_id = ds.identities.index(name)
        pool = rng.permutation(split["train"][ds.labels[split["train"]] == k_id])
        trained = sample_identity(full_pipe, name, n_samples, cfg.diffusion)
        strip = [(ds.images[pool[:6]] + 1) / 2, trained[:6]]
        acc = float((classify(encoder, trained, ds.identities) == name).mean())
        rows.append({"identity": name, "k": "trained with", "accuracy": acc, "seconds": None})
        for k in (0, *SHOTS):
            pipe = copy.deepcopy(held)
            t0 = time.time()
            if k:
                learn_identity(pipe, ds.images[pool[:k]], name, cfg, steps=steps, progress=False)
            else:  # the inserted row before any learning (mean of the known identities)
                add_identity_row(pipe.condition_encoder, pipe.denoiser)
                pipe.register_to_config(identities=[*pipe.identities, name])
            imgs = sample_identity(pipe, name, n_samples, cfg.diffusion)
            acc = float((classify(encoder, imgs, ds.identities) == name).mean())
            rows.append({"identity": name, "k": k, "accuracy": acc, "seconds": round(time.time() - t0, 1)})
            strip.append(imgs[:6])
            print(rows[-1], flush=True)
        if pictures is not None and name == missing[0]:
            grid(strip, full_pipe.config.colormap, pictures / f"edit_fewshot_{label}.png")
    return rows


def grid(rows: list[np.ndarray], cmap: str, path: Path, gap: int = 2) -> None:
    """Rows of (N, C, H, W) images in [0, 1] -> one colormapped PNG (tiles separated by white gaps)."""
    from PIL import Image

    from dopplerdiff.data.colormap import apply_colormap

    h, w = rows[0].shape[-2:]
    n = max(len(r) for r in rows)
    canvas = np.full((len(rows) * (h + gap) - gap, n * (w + gap) - gap, 3), 255, np.uint8)
    for i, row in enumerate(rows):
        for j, img in enumerate(row):
            canvas[i * (h + gap) : i * (h + gap) + h, j * (w + gap) : j * (w + gap) + w] = apply_colormap(
                np.clip(img.mean(0), 0, 1), cmap
            )
    Image.fromarray(canvas).quantize(256).save(path, optimize=True)  # a palette keeps the docs small


def pictures(pipe, ds, idx, d, out: Path, label: str) -> None:
    """docs strips: transfer vs strength, inpainting, identity and noise interpolation."""
    from dopplerdiff.edit.ops import mix_strip, noise_strip

    out.mkdir(parents=True, exist_ok=True)
    cm = pipe.config.colormap
    src = ds.images[idx[:: max(1, len(idx) // 4)][:4]]
    names = ds.identities
    tgt = names[(int(ds.labels[idx[0]]) + 1) % len(names)]
    rows = [(src + 1) / 2] + [
        transfer(pipe, src, tgt, strength=s, guidance=d.guidance_scale, steps=d.num_inference_steps)
        for s in (0.3, 0.5, 0.7, 1.0)
    ]
    grid([np.stack(c) for c in zip(*rows, strict=True)], cm, out / f"edit_transfer_{label}.png")
    size = src.shape[-1]
    mask = span_mask((size, size), (0.4, 0.6), None)
    a, b = int(np.flatnonzero(mask[0])[0]), int(np.flatnonzero(mask[0])[-1]) + 1
    holed = (src + 1) / 2 * (1 - mask)
    fill = inpaint(pipe, src, mask, None, guidance=d.guidance_scale, steps=d.num_inference_steps)
    cond = [
        inpaint(
            pipe,
            src[i : i + 1],
            mask,
            names[int(ds.labels[idx[:: max(1, len(idx) // 4)][i]])],
            guidance=d.guidance_scale,
            steps=d.num_inference_steps,
        )
        for i in range(len(src))
    ]
    rows = [(src + 1) / 2, holed, np.concatenate(cond), fill, linear_fill((src + 1) / 2, a, b)]
    grid([np.stack(c) for c in zip(*rows, strict=True)], cm, out / f"edit_inpaint_{label}.png")
    ida, idb = names[0], names[min(len(names) - 1, 6)]
    mix, _ = mix_strip(pipe, ida, idb, 6, guidance=d.guidance_scale, steps=d.num_inference_steps)
    slerped, _ = noise_strip(pipe, ida, (0, 1), 6, guidance=d.guidance_scale, steps=d.num_inference_steps)
    grid([mix, slerped], cm, out / f"edit_interpolate_{label}.png")


def table(title: str, rows: list[dict]) -> None:
    print(f"\n{title}")
    keys = list(rows[0])
    print(" | ".join(keys))
    for r in rows:
        print(" | ".join(f"{v:.3f}" if isinstance(v, float) else str(v) for v in r.values()))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", type=Path, required=True)
    ap.add_argument("--label", required=True, help="key in bench/results/edit.json (e.g. sim, real)")
    ap.add_argument("--heldout-run", type=Path, help="run whose diffusion stage lacks some identities")
    ap.add_argument("--num", type=int, default=40, help="test windows for transfer and inpainting")
    ap.add_argument("--fewshot-steps", type=int, default=300)
    ap.add_argument("--pictures", type=Path, help="also write the docs strips into this folder")
    ap.add_argument("--skip", default="", help="comma-separated parts to skip: transfer,inpaint,fewshot")
    args = ap.parse_args()
    torch.manual_seed(0)
    cfg, ds, split = load(args.run)
    pipe = load_run_pipeline(args.run, "cpu")
    pipe.set_progress_bar_config(disable=True)
    pipe.set_scheduler(cfg.diffusion.scheduler)
    encoder = load_encoder(args.run / "encoder")
    idx = pick_test(ds, split, args.num)
    res = {
        "run": str(args.run),
        "date": time.strftime("%Y-%m-%d"),
        "windows": len(idx),
        "steps": cfg.diffusion.num_inference_steps,
        "scheduler": cfg.diffusion.scheduler,
        "guidance": cfg.diffusion.guidance_scale,
        "train_steps": {
            "autoencoder": cfg.autoencoder.train.steps,
            "diffusion": cfg.diffusion.train.steps,
            "encoder": cfg.encoder.train.steps,
        },
    }
    skip = set(args.skip.split(","))
    if args.pictures:
        pictures(pipe, ds, idx, cfg.diffusion, args.pictures, args.label)
    if "transfer" not in skip:
        res["transfer"] = bench_transfer(pipe, encoder, ds, idx, cfg.diffusion)
        table(f"[{args.label}] identity transfer vs strength", res["transfer"])
    if "inpaint" not in skip:
        res["inpaint"] = bench_inpaint(pipe, ds, idx, cfg.diffusion)
        table(f"[{args.label}] inpainting, time span 0.4-0.6 masked", res["inpaint"])
    if args.heldout_run and "fewshot" not in skip:
        res["fewshot_steps"] = args.fewshot_steps
        res["fewshot"] = bench_fewshot(
            pipe,
            args.heldout_run,
            encoder,
            ds,
            split,
            cfg,
            args.fewshot_steps,
            pictures=args.pictures,
            label=args.label,
        )
        table(f"[{args.label}] few-shot identity accuracy", res["fewshot"])
    if not {"transfer", "inpaint", "fewshot"} & set(res):
        return  # pictures only
    old = json.loads(RESULTS.read_text()) if RESULTS.is_file() else {}
    RESULTS.parent.mkdir(exist_ok=True)
    merged = {**old.get(args.label, {}), **res}  # parts measured in separate invocations accumulate
    RESULTS.write_text(json.dumps({**old, args.label: merged}, indent=2) + "\n")


if __name__ == "__main__":
    main()
