"""Identification benchmark: closed-set top-1, open-set FAR/FRR/EER, and search latency.

    python bench/identify.py [--quick] [--data DIR] [--config quick] [--steps N]

Data: the simulated default (31 identities, simulated once into a cache folder) or ``--data`` (e.g. the
measured folder). Leak-free split of the config. Protocol:
- closed set: an encoder trained on the train split of every identity; gallery = train windows; queries =
  test windows; top-1 by centroid and k-NN (also 3-window fused walks, and the classifier head for scale);
- open set: ``--holdout`` identities are removed *before training the encoder* (it never sees them) and
  are never enrolled; the threshold is calibrated on val windows of the enrolled identities
  (leave-one-identity-out, target FAR from the config); genuine = test windows of enrolled identities,
  impostors = every window of the held-out identities. FAR, FRR, EER and DIR (correct and accepted);
- latency: exact search over 10k and 100k random 128-d vectors, numpy / torch / faiss (if installed).
Prints tables and writes bench/results/identify.json.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from dopplerdiff.config import load_config
from dopplerdiff.config.base import to_dict
from dopplerdiff.data.images import load_spectrograms
from dopplerdiff.data.split import leak_free_split
from dopplerdiff.embed.identify import Gallery, calibrate, loo_scores, stranger_scores, window_groups
from dopplerdiff.embed.index import EmbeddingIndex, normalize
from dopplerdiff.embed.openset import equal_error_rate, far_frr
from dopplerdiff.embed.search import faiss_available, make_backend

RESULTS = Path(__file__).resolve().parent / "results"


def simulated_default(cfg, quick: bool) -> Path:
    """Simulate the default population once into a cache folder keyed by the simulator config."""
    from dopplerdiff.data.simulate import simulate_dataset

    sim = cfg.simulate
    if quick:
        sim = dataclasses.replace(sim, identities=10, per_identity=40)
    key = hashlib.sha256(json.dumps(to_dict(sim), sort_keys=True).encode()).hexdigest()[:12]
    out = Path(tempfile.gettempdir()) / "dopplerdiff-bench" / f"sim-{key}"
    if not (out / "manifest.json").is_file():
        print(f"simulating {sim.identities} x {sim.per_identity} windows into {out} ...", flush=True)
        simulate_dataset(sim, out, progress=True)
    return out


def fit(images, labels, num_classes, cfg, steps, val, seed):
    from dopplerdiff.train.encoder import fit_classifier

    t0 = time.perf_counter()
    enc = fit_classifier(images, labels, num_classes, cfg.encoder, steps=steps, seed=seed,
                         augment=cfg.data.augment, val=val, progress=True)
    return enc, time.perf_counter() - t0


def embed_all(enc, images):
    from dopplerdiff.train.encoder import predict

    logits, emb = predict(enc, images)
    return logits, normalize(emb)


def make_index(ds, emb, names, keep=None) -> EmbeddingIndex:
    rows = np.arange(len(ds)) if keep is None else np.flatnonzero(keep)
    return EmbeddingIndex(emb[rows], [ds.identities[ds.labels[i]] for i in rows], [ds.files[i] for i in rows],
                          [ds.recordings[i] for i in rows], [int(ds.windows[i]) for i in rows],
                          [str(names[i]) for i in rows])


def closed_set(ds, split, names, cfg, steps, k, fuse: int) -> dict:
    tr, va = split["train"], split["val"]
    enc, secs = fit(ds.images[tr], ds.labels[tr], len(ds.identities), cfg, steps,
                    (ds.images[va], ds.labels[va]), cfg.seed)
    logits, emb = embed_all(enc, ds.images)
    index = make_index(ds, emb, names, names != "")
    gallery = Gallery.from_index(index, "numpy")
    test = np.flatnonzero(index.mask(("test",)))
    truth = np.array([gallery.identities.index(index.identity[r]) for r in test])
    out = {"encoder_train_s": round(secs, 1), "n_test": len(test), "n_gallery": int(len(gallery.vectors)),
           "head_top1": float((logits[split["test"]].argmax(1) == ds.labels[split["test"]]).mean())}
    for method in ("centroid", "knn"):
        s = gallery.scores(index.vectors[test], method, k)
        out[f"{method}_top1"] = float((s.argmax(1) == truth).mean())
        groups = window_groups(index, test, fuse)
        pos = {int(r): i for i, r in enumerate(test)}
        fused = [s[[pos[int(r)] for r in g]].mean(0).argmax() == truth[pos[int(g[0])]] for g in groups]
        out[f"{method}_top1_fused{fuse}"] = float(np.mean(fused)) if fused else float("nan")
    return out


def open_set(ds, split, names, cfg, steps, k, holdout: int, calib: int, fuse: int) -> dict:
    """Test strangers and calibration strangers are both removed before encoder training."""
    rng = np.random.default_rng(cfg.seed)
    drawn = rng.choice(len(ds.identities), size=holdout + calib, replace=False).tolist()
    test_strangers, cal_strangers = sorted(drawn[:holdout]), sorted(drawn[holdout:])
    known = [i for i in range(len(ds.identities)) if i not in drawn]
    remap = {old: new for new, old in enumerate(known)}
    is_known = np.isin(ds.labels, known)
    tr = np.array([i for i in split["train"] if is_known[i]])
    va = np.array([i for i in split["val"] if is_known[i]])
    y = lambda idx: np.array([remap[int(v)] for v in ds.labels[idx]])  # noqa: E731
    enc, secs = fit(ds.images[tr], y(tr), len(known), cfg, steps, (ds.images[va], y(va)), cfg.seed + 1)
    _, emb = embed_all(enc, ds.images)
    names = names.copy()
    names[np.isin(ds.labels, cal_strangers)] = "stranger"  # calibration impostors (all their windows)
    names[np.isin(ds.labels, test_strangers)] = "test_stranger"  # evaluation impostors
    full = make_index(ds, emb, names, names != "")
    full.encoder = {"identities": [ds.identities[i] for i in known]}
    enrolled = full.subset(full.mask(exclude=("test_stranger",)))
    loo_index = enrolled.subset(enrolled.mask(exclude=("stranger",)))
    gallery = Gallery.from_index(enrolled, "numpy")
    out = {"test_strangers": [ds.identities[i] for i in test_strangers],
           "calibration_strangers": [ds.identities[i] for i in cal_strangers],
           "encoder_train_s": round(secs, 1), "target_far": cfg.embed.target_far, "fuse": fuse}
    test = np.flatnonzero(enrolled.mask(("test",)))
    srows = np.flatnonzero(full.mask(("test_stranger",)))
    for method in ("centroid", "knn"):
        s = gallery.scores(enrolled.vectors[test], method, k)
        pos = {int(r): i for i, r in enumerate(test)}
        for group in (1, fuse):
            genuine, _ = loo_scores(enrolled, gallery, test, method, k, group)
            imp = stranger_scores(full, gallery, srows, method, k, group)
            eer, _ = equal_error_rate(genuine, imp)
            for source, idx in (("loo", loo_index), ("strangers", enrolled)):
                try:
                    cal = calibrate(idx, method=method, k=k, target_far=cfg.embed.target_far, backend="numpy",
                                    group_size=group)
                except Exception as exc:  # noqa: BLE001 - e.g. too few consecutive windows to fuse
                    out[f"{method}_w{group}_{source}"] = {"error": str(exc)}
                    continue
                t = cal["threshold"]
                far, frr = far_frr(genuine, imp, t)
                hits = []  # correct-and-accepted (detection and identification rate)
                for g in window_groups(enrolled, test, group):
                    row = s[[pos[int(r)] for r in g]].mean(0)
                    truth = gallery.identities.index(enrolled.identity[int(g[0])])
                    hits.append(row.argmax() == truth and row.max() >= t)
                out[f"{method}_w{group}_{source}"] = {
                    "threshold": t, "val_far": cal["far"], "far": far, "frr": frr, "eer": eer,
                    "dir": float(np.mean(hits)) if hits else float("nan"),
                    "n_genuine": len(genuine), "n_impostor": len(imp),
                }
    return out


def latency(sizes: list[int], dim: int = 128, n_queries: int = 200) -> list[dict]:
    rng = np.random.default_rng(0)
    rows = []
    backends = ["numpy", "torch"] + (["faiss"] if faiss_available() else [])
    for n in sizes:
        gallery = normalize(rng.standard_normal((n, dim)).astype(np.float32))
        queries = normalize(rng.standard_normal((n_queries, dim)).astype(np.float32))
        for name in backends:
            t0 = time.perf_counter()
            b = make_backend(gallery, name)
            build = time.perf_counter() - t0
            b.search(queries[:2], 10)  # warm-up
            single = []
            for q in queries[:50]:
                t0 = time.perf_counter()
                b.search(q[None], 10)
                single.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            b.search(queries, 10)
            batch = (time.perf_counter() - t0) / n_queries
            rows.append({"n": n, "dim": dim, "backend": name, "build_ms": build * 1e3,
                         "single_query_ms_median": float(np.median(single)) * 1e3,
                         "batched_ms_per_query": batch * 1e3})
    return rows


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small data, few steps, 10k latency only")
    ap.add_argument("--data", type=Path, default=None, help="spectrogram folder (default: simulated default)")
    ap.add_argument("--config", default="quick")
    ap.add_argument("--steps", type=int, default=None, help="encoder training steps (default: config's)")
    ap.add_argument("--holdout", type=int, default=2, help="test strangers (never trained on or enrolled)")
    ap.add_argument("--calib-strangers", type=int, default=2, help="calibration strangers (never trained on)")
    ap.add_argument("--fuse", type=int, default=None, help="windows per fused walk (default 3; quick 2)")
    ap.add_argument("--size", type=int, default=None, help="image size (default: config's data.size)")
    ap.add_argument("--out", type=Path, default=RESULTS / "identify.json")
    args = ap.parse_args(argv)

    cfg = load_config(args.config)
    if args.quick:
        cfg.data = dataclasses.replace(cfg.data, size=32)
    if args.size:
        cfg.data = dataclasses.replace(cfg.data, size=args.size)
    steps = args.steps or (60 if args.quick else cfg.encoder.train.steps)
    args.fuse = args.fuse or (2 if args.quick else 3)
    k = cfg.embed.k
    data = args.data or simulated_default(cfg, args.quick)
    t0 = time.perf_counter()
    ds = load_spectrograms(data, cfg.data, progress=True)
    load_s = time.perf_counter() - t0
    split = leak_free_split(ds, cfg.data.split)
    names = np.array([""] * len(ds), dtype=object)
    for part, idx in split.items():
        names[idx] = part
    print(f"{data}: {len(ds)} windows, {len(ds.identities)} identities, size {cfg.data.size}, "
          f"split {({p: len(v) for p, v in split.items()})}, loaded in {load_s:.1f}s; encoder steps {steps}")

    closed = closed_set(ds, split, names, cfg, steps, k, args.fuse)
    print("\nclosed set (test windows):")
    for key, val in closed.items():
        print(f"  {key:22s} {val:.3f}" if isinstance(val, float) else f"  {key:22s} {val}")
    opened = open_set(ds, split, names, cfg, steps, k, args.holdout, args.calib_strangers, args.fuse)
    print(f"\nopen set: test strangers {opened['test_strangers']}, calibration strangers "
          f"{opened['calibration_strangers']} (both unseen by encoder and gallery), "
          f"target FAR {opened['target_far']}; wN = N-window fused walks; threshold from "
          "leave-one-identity-out (loo) or calibration strangers")
    print(f"  {'method':24s} {'thr':>6s} {'calFAR':>7s} {'FAR':>6s} {'FRR':>6s} {'EER':>6s} {'DIR':>6s} "
          f"{'n_gen':>6s} {'n_imp':>6s}")
    for key, r in opened.items():
        if isinstance(r, dict) and "error" in r:
            print(f"  {key:24s} {r['error']}")
        elif isinstance(r, dict):
            print(f"  {key:24s} {r['threshold']:6.3f} {r['val_far']:7.3f} {r['far']:6.3f} {r['frr']:6.3f} "
                  f"{r['eer']:6.3f} {r['dir']:6.3f} {r['n_genuine']:6d} {r['n_impostor']:6d}")
    lat = latency([10_000] if args.quick else [10_000, 100_000])
    print(f"\nexact search latency (k=10, 128-d, threads={os.environ.get('OMP_NUM_THREADS', 'default')}):")
    print(f"  {'n':>7s} {'backend':8s} {'build ms':>9s} {'1 query ms':>11s} {'batched ms/q':>13s}")
    for r in lat:
        print(f"  {r['n']:7d} {r['backend']:8s} {r['build_ms']:9.2f} {r['single_query_ms_median']:11.3f} "
              f"{r['batched_ms_per_query']:13.4f}")
    result = {"data": str(data), "quick": args.quick, "config": args.config, "size": cfg.data.size,
              "encoder_steps": steps, "k": k, "n_windows": len(ds), "identities": len(ds.identities),
              "closed_set": closed, "open_set": opened, "latency": lat,
              "machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0]}}
    # One JSON for all datasets: each run updates its own entry (simulated / folder name, -quick suffix).
    key = "simulated" if args.data is None else Path(args.data).resolve().name
    key += "-quick" if args.quick else ""
    args.out.parent.mkdir(parents=True, exist_ok=True)
    everything = json.loads(args.out.read_text()) if args.out.is_file() else {}
    everything[key] = result
    args.out.write_text(json.dumps(everything, indent=2, default=float) + "\n")
    print(f"\nwrote {args.out} [{key}]")


if __name__ == "__main__":
    main()
