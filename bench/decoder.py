"""VAE decoder vs diffusion decoder (and bicubic upsampling for an upsampler) on a run's real test windows.

Every test window is encoded once by the run's autoencoder (posterior mean, model space); each decoder turns
the same latents back into windows at the diffusion decoder's size, compared with the real windows at that
size:

* PSNR / SSIM against the real window (a stochastic decoder is *not* meant to win these: it samples the
  speckle instead of averaging it; they show how far its samples stray from the window);
* identity accuracy of the decoded windows under the independent judge (plain CNN, own seed, trained on real
  train windows at the compared size) and under the run's encoder (at the data size: larger outputs are
  area-averaged down first);
* C2ST: a classifier told to separate real test windows from decoded *other* test windows (0.5 =
  indistinguishable; the floor is real train vs real test);
* Fréchet distance in the run's encoder space against real test windows, beside the train-vs-test floor;
* texture: high-frequency energy share, sparsity and local variance relative to real test windows;
* decode time per image (this process's threads).

    python bench/decoder.py --run RUN [--name NAME] [--decoder DIR] [--max-per-identity N] [--steps N]

Results: bench/results/decoder_NAME.json (+ .png: real test windows above each decoder's output).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from dopplerdiff.classifier import identity_accuracy
from dopplerdiff.config import saved_config
from dopplerdiff.data.contact import save_grid
from dopplerdiff.data.images import to_unit
from dopplerdiff.data.run_data import prepare_run_data
from dopplerdiff.evaluate.c2st import disjoint_pair
from dopplerdiff.evaluate.independent import IndependentEval
from dopplerdiff.evaluate.metrics import frechet_distance
from dopplerdiff.evaluate.windows import encoder_outputs
from dopplerdiff.models.autoencoder import decode, encode, load_autoencoder
from dopplerdiff.models.decoder import load_decoder
from dopplerdiff.models.encoder import load_encoder
from dopplerdiff.train.losses import psnr_ssim

RESULTS = Path(__file__).parent / "results"
Decode = Callable[[torch.Tensor, int], torch.Tensor]  # (model-space latents, first index) -> images


def _batched(fn: Decode, z: torch.Tensor, bs: int) -> tuple[np.ndarray, float]:
    """All images of ``fn`` over ``z`` in batches, and the wall seconds per image."""
    out, t0 = [], time.perf_counter()
    with torch.no_grad():
        for i in range(0, len(z), bs):
            out.append(fn(z[i : i + bs], i).float().clamp(-1, 1).cpu())
    return torch.cat(out).numpy(), (time.perf_counter() - t0) / max(len(z), 1)


def _resize(x: torch.Tensor, size: int) -> torch.Tensor:
    if x.shape[-1] == size:
        return x
    return F.interpolate(x.float(), size=(size, size), mode="bicubic", align_corners=False).clamp(-1, 1)


def decoders(vae: Any, dec: Any, real_small: torch.Tensor, size: int, seed: int,
             steps: int | None) -> dict[str, Decode]:
    """name -> decode function (bicubic rows only when the diffusion decoder upsamples)."""
    up = size != real_small.shape[-1]

    def diffusion(z: torch.Tensor, i: int) -> torch.Tensor:
        gens = [torch.Generator().manual_seed(seed + i + j) for j in range(len(z))]
        vae_img = decode(vae, z).clamp(-1, 1) if dec.config.vae_image else None
        return dec.decode(z, vae_img, generator=gens, steps=steps)

    out: dict[str, Decode] = {
        "vae decoder" + (" + bicubic" if up else ""): lambda z, i: _resize(decode(vae, z), size),
        "diffusion decoder": diffusion,
    }
    if up:  # what plain interpolation of the real data-size window gives (no first stage at all)
        out["real at data size + bicubic"] = lambda z, i: _resize(real_small[i : i + len(z)], size)
    return out


def _subset(split: np.ndarray, labels: np.ndarray, n: int) -> np.ndarray:
    """The first ``n`` test windows of each identity (all with n = 0)."""
    if n <= 0:
        return split
    return np.concatenate([split[labels[split] == k][:n] for k in np.unique(labels[split])])


def load_sets(run: Path, cfg: Any, size: int, per_identity: int) -> dict[str, Any]:
    """Real windows at the data size and at the decoder's size (train/val/test), test possibly subset."""
    ds, split = prepare_run_data(run, None, cfg.data)
    big = ds if size == cfg.data.size else prepare_run_data(
        run, None, dataclasses.replace(cfg.data, size=size))[0]
    test = _subset(split["test"], ds.labels, per_identity)
    return {"k": len(ds.identities), "test_small": torch.from_numpy(np.ascontiguousarray(ds.images[test])),
            "train_small": ds.images[split["train"]],
            "y": ds.labels[test].astype(np.int64), "test": big.images[test],
            "train": (big.images[split["train"]], big.labels[split["train"]]),
            "val": (big.images[split["val"]], big.labels[split["val"]])}


def score(name: str, x: np.ndarray, sec: float, s: dict[str, Any], ind: IndependentEval, enc: Any,
          data_size: int, seed: int) -> dict[str, Any]:
    """One decoder's row: PSNR/SSIM, encoder and judge accuracy, C2ST, texture, seconds per image."""
    psnr, ssim = psnr_ssim(to_unit(torch.from_numpy(x)), to_unit(torch.from_numpy(s["test"])))
    ind.add_set("reconstruction", x, s["y"], disjoint_pair(s["test"], x, seed=seed))
    tex = ind.texture_m["reconstruction"]
    row = {"decoder": name, "psnr": psnr, "ssim": ssim, "seconds_per_image": sec,
           "judge": ind.judge_m["reconstruction"]["overall"],
           "c2st": ind.c2st_m.get("reconstruction", {}).get("accuracy"),
           "hf_ratio": tex["ratio_to_real"]["high_frequency_ratio"], "texture": tex}
    if enc is not None:
        small = F.adaptive_avg_pool2d(torch.from_numpy(x), (data_size, data_size)).numpy()
        feats, logits = encoder_outputs(enc, small)
        row["encoder"] = identity_accuracy(logits, s["y"], ind.k, 200, seed)["overall"]
        row["fd"] = frechet_distance(feats, s["test_feats"])
    return row


def fmt(v: Any, d: int = 3) -> str:
    return "—" if v is None else f"{v:.{d}f}"


def print_table(res: dict[str, Any]) -> None:
    print(f"\n{res['name']}: {res['n_test']} test windows, latents {res['latent_shape']} -> {res['size']}², "
          f"{res['threads']} thread(s); real test: judge {fmt(res['real']['judge'])}, encoder "
          f"{fmt(res['real'].get('encoder'))}, C2ST floor {fmt(res['c2st_floor'])}, FD floor "
          f"{fmt(res['real'].get('fd_floor_train_vs_test'), 1)}")
    cols = ("decoder", "PSNR", "SSIM", "judge", "encoder", "FD", "C2ST", "HF/real", "s/img")
    print(f"{cols[0]:<30}" + "".join(f"{c:>9}" for c in cols[1:]))
    for r in res["rows"]:
        cells = [fmt(r["psnr"], 2), fmt(r["ssim"]), fmt(r["judge"]), fmt(r.get("encoder")),
                 fmt(r.get("fd"), 1), fmt(r["c2st"]),
                 fmt(r["hf_ratio"], 2), fmt(r["seconds_per_image"], 4)]
        print(f"{r['decoder']:<30}" + "".join(f"{c:>9}" for c in cells))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", required=True, type=Path, help="run directory with autoencoder/ and decoder/")
    ap.add_argument("--decoder", type=Path, default=None, help="diffusion decoder (default RUN/decoder)")
    ap.add_argument("--name", default=None, help="results name (default: the run folder's name)")
    ap.add_argument("--max-per-identity", type=int, default=0, help="test windows per identity (0: all)")
    ap.add_argument("--steps", type=int, default=None, help="decoder sampler steps (default: its config)")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    run, t0 = args.run, time.time()
    cfg = saved_config(run)
    if cfg is None:
        raise SystemExit(f"error: '{run}' has no config.yaml (not a run directory)")
    dec = load_decoder(args.decoder or run / "decoder")
    vae = load_autoencoder(run / "autoencoder").eval()
    size = int(dec.config.size)
    s = load_sets(run, cfg, size, args.max_per_identity)
    enc = load_encoder(run / "encoder").eval() if (run / "encoder" / "config.json").is_file() else None
    with torch.no_grad():
        z = torch.cat([encode(vae, s["test_small"][i : i + 64]) for i in range(0, len(s["y"]), 64)])
    ind = IndependentEval(cfg.evaluate, s["train"], s["val"], (s["test"], s["y"]), s["k"])
    real = {"judge": ind.judge_m["real_test"]["overall"]}
    if enc is not None:
        s["test_feats"], logits = encoder_outputs(enc, s["test_small"].numpy())
        real["encoder"] = identity_accuracy(logits, s["y"], s["k"], 200, args.seed)["overall"]
        train_feats = encoder_outputs(enc, s["train_small"])[0]
        real["fd_floor_train_vs_test"] = frechet_distance(train_feats, s["test_feats"])
    rows, grid = [], [to_unit(s["test"][:8])]
    for name, fn in decoders(vae, dec, s["test_small"], size, args.seed, args.steps).items():
        x, sec = _batched(fn, z, args.batch_size)
        rows.append(score(name, x, sec, s, ind, enc, cfg.data.size, args.seed))
        grid.append(to_unit(x[:8]))
        print(f"{name}: done ({sec:.4f} s/image)", flush=True)
    real["texture"] = ind.texture_m["real_test"]  # filled by the first add_set
    res = {"name": args.name or run.name, "run": str(run), "date": time.strftime("%Y-%m-%d %H:%M"),
           "threads": torch.get_num_threads(), "size": size, "data_size": cfg.data.size,
           "latent_shape": list(z.shape[1:]), "n_test": len(s["y"]), "decoder_config": dict(dec.config),
           "decoder_steps": args.steps or int(dec.config.sample_steps), "real": real,
           "c2st_floor": ind.c2st_m.get("real_train_vs_test", {}).get("accuracy"), "rows": rows,
           "wall_s": time.time() - t0}
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"decoder_{res['name']}.json"
    out.write_text(json.dumps(res, indent=2, default=str) + "\n")
    save_grid(out.with_suffix(".png"), grid, cfg.data.colormap, ["real test", *[r["decoder"] for r in rows]])
    print_table(res)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
