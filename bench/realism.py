"""Is the simulated population hard enough? Identity accuracy of a small CNN on a leak-free split.

    python bench/realism.py [--quick] [--size 64] [--epochs 20] [--real DIR] [--contact PATH]
                            [--data SIMDIR] [sim.key=value ...]

Simulates the default population (31 identities x 120 windows; --quick: 10 x 60) at ``--size``, loads it
with the data layer, splits it leak-free (contiguous blocks per recording with a guard gap, the data
config's split), trains a small CNN on train, picks the epoch by val accuracy and reports test accuracy vs
chance. ``--real DIR`` runs the identical protocol on a measured folder for comparison (real 10-person data:
about 50% at 64x64). ``--contact PATH`` writes a sheet of simulated windows (and real ones with --real).
Trailing ``key=value`` items override the simulate config (e.g. identity_spread=0.7).
Writes bench/results/realism.json.
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
from torch import nn

from dopplerdiff.config import load_config
from dopplerdiff.config.base import to_dict
from dopplerdiff.config.data import DataConfig
from dopplerdiff.data.contact import identity_rows, save_grid
from dopplerdiff.data.images import SpectrogramSet, load_spectrograms
from dopplerdiff.data.simulate import simulate_dataset
from dopplerdiff.data.split import leak_free_split

RESULTS = Path(__file__).resolve().parent / "results"


def small_cnn(n_classes: int, width: int = 16) -> nn.Module:
    def block(i: int, o: int) -> list[nn.Module]:
        return [nn.Conv2d(i, o, 3, padding=1), nn.BatchNorm2d(o), nn.ReLU(), nn.MaxPool2d(2)]

    return nn.Sequential(
        *block(1, width), *block(width, 2 * width), *block(2 * width, 4 * width),
        *block(4 * width, 4 * width),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(0.3), nn.Linear(4 * width, n_classes),
    )


def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    model.eval()
    with torch.no_grad():
        pred = torch.cat([model(x[i : i + 256]).argmax(1) for i in range(0, len(x), 256)])
    return float((pred == y).float().mean()) if len(y) else float("nan")


def identity_accuracy(ds: SpectrogramSet, data_cfg: DataConfig, epochs: int, seed: int = 0) -> dict:
    """Train on the leak-free train part, select the epoch on val, report test accuracy."""
    split = leak_free_split(ds, data_cfg.split)
    torch.manual_seed(seed)
    x = torch.from_numpy(ds.images)
    y = torch.from_numpy(ds.labels)
    xs = {k: x[v] for k, v in split.items()}
    ys = {k: y[v] for k, v in split.items()}
    model = small_cnn(len(ds.identities))
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=1e-4)
    steps = epochs * (len(xs["train"]) // 64 + 1)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=2e-3, total_steps=steps)
    gen = torch.Generator().manual_seed(seed)
    best = (-1.0, 0, None)
    t0 = time.perf_counter()
    for epoch in range(epochs):
        model.train()
        perm = torch.randperm(len(xs["train"]), generator=gen)
        for i in range(0, len(perm), 64):
            b = perm[i : i + 64]
            xb = xs["train"][b]
            # Circular time shift: the start of a window within the gait cycle carries no identity.
            shift = int(torch.randint(0, xb.shape[-1], (1,), generator=gen))
            xb = torch.roll(xb, shift, dims=-1)
            loss = nn.functional.cross_entropy(model(xb), ys["train"][b], label_smoothing=0.1)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
        val = accuracy(model, xs["val"], ys["val"])
        if val > best[0]:
            best = (val, epoch, {k: v.clone() for k, v in model.state_dict().items()})
        print(f"  epoch {epoch + 1:>2}/{epochs} loss {loss.item():.3f} val {val:.3f}", file=sys.stderr)
    model.load_state_dict(best[2])
    return {
        "identities": len(ds.identities), "windows": len(ds), "size": int(ds.images.shape[-1]),
        "split_sizes": {k: int(len(v)) for k, v in split.items()},
        "chance": 1.0 / len(ds.identities), "best_epoch": best[1] + 1, "val_accuracy": round(best[0], 4),
        "test_accuracy": round(accuracy(model, xs["test"], ys["test"]), 4),
        "train_accuracy": round(accuracy(model, xs["train"], ys["train"]), 4),
        "train_seconds": round(time.perf_counter() - t0, 1),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="10 identities x 60 windows, 8 epochs")
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--epochs", type=int, default=None)
    ap.add_argument("--real", type=Path, default=None, help="measured data folder to compare with")
    ap.add_argument("--contact", type=Path, default=None, help="write a contact sheet PNG here")
    ap.add_argument("--data", type=Path, default=None, help="use an existing simulated folder")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("overrides", nargs="*", help="simulate config overrides key=value")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    epochs = args.epochs or (8 if args.quick else 20)
    ids, per = (10, 60) if args.quick else (31, 120)
    sim_cfg = load_config("quick", [f"simulate.identities={ids}", f"simulate.per_identity={per}",
                                    f"simulate.size={args.size}", *[f"simulate.{o}" for o in args.overrides]])
    data_cfg = DataConfig(size=args.size)
    result: dict = {"quick": args.quick, "epochs": epochs, "simulate": to_dict(sim_cfg.simulate)}
    with tempfile.TemporaryDirectory() as tmp:
        root = args.data
        if root is None:
            t0 = time.perf_counter()
            root = simulate_dataset(sim_cfg.simulate, Path(tmp) / "sim", progress=False)
            result["simulate_seconds"] = round(time.perf_counter() - t0, 1)
        sim = load_spectrograms(root, data_cfg)
        print(f"simulated: {len(sim)} windows, {len(sim.identities)} identities", file=sys.stderr)
        result["simulated"] = identity_accuracy(sim, data_cfg, epochs)
    rows, labels = identity_rows(sim.subset(np.flatnonzero(sim.labels < 4)), per_identity=6)
    labels = [f"sim {t}" for t in labels]
    if args.real is not None:
        real = load_spectrograms(args.real, data_cfg)
        print(f"real: {len(real)} windows, {len(real.identities)} identities", file=sys.stderr)
        result["real"] = identity_accuracy(real, data_cfg, epochs)
        rrows, rlabels = identity_rows(real.subset(np.flatnonzero(real.labels < 4)), per_identity=6)
        rows, labels = [*rrows, *rows], [*[f"real {t}" for t in rlabels], *labels]
    if args.contact is not None:
        save_grid(args.contact, rows, "jet", labels)
        result["contact"] = str(args.contact)
    result["load_average_at_end"] = os.getloadavg()
    head = (f"{'data':<10} {'ids':>4} {'windows':>8} {'train/val/test':>16} {'chance':>7} {'test acc':>9} "
            f"{'train acc':>9}")
    print(head)
    print("-" * len(head))
    for name in ("simulated", "real"):
        if name in result:
            r = result[name]
            parts = "/".join(str(r["split_sizes"].get(k, 0)) for k in ("train", "val", "test"))
            print(f"{name:<10} {r['identities']:>4} {r['windows']:>8} {parts:>16} {r['chance']:>7.3f} "
                  f"{r['test_accuracy']:>9.3f} {r['train_accuracy']:>9.3f}")
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "realism.json").write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {RESULTS / 'realism.json'}")


if __name__ == "__main__":
    main()
