"""Novel walkers from k windows: does a generator trained on other people help identify a new person?

Leave-people-out folds (``dopplerdiff.fewshot.protocol``): per fold the run's stages (autoencoder, latents,
diffusion) train on the base people only, from a folder of symlinks to their identity folders; each novel
person gives its first k windows, the generator learns its identity row from them (method a: sampled from
noise; method c: img2img variations of the k windows at each strength), and classifiers over base + novel
people are trained on real / classic-augmented / +synthetic windows (``fewshot.arms``), scored on
the novel people's later windows and on the base people's test split, under the project's classifier and
the independent judge architecture, with paired seeds. ``--open-set`` also enrolls each novel person in an
embedding gallery of an encoder trained on the base people (``fewshot.openset``).

    python bench/fewshot.py --data DIR|sim [--profile quick] [--folds 3] [--only-folds F] [--novel A,B]
        [--k 1,3,5,10] [--n 16,64] [--methods row,seeded] [--strengths 0.5,0.8] [--seeds 2]
        [--adapt-steps 300] [--classifier-steps S] [--open-set] [--device auto] [--name NAME] [--out DIR]
        [--extra key=value ...]

Fold runs are kept under --out (default runs/bench-fewshot/NAME/fold<i>; a rerun resumes them); results go
to bench/results/fewshot_NAME.json, rewritten after every (fold, k), and a table is printed.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import json
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any

from dopplerdiff.config import load_config
from dopplerdiff.data.images import load_spectrograms
from dopplerdiff.data.run_data import prepare_run_data
from dopplerdiff.data.simulate import simulate_dataset
from dopplerdiff.errors import DopplerDiffError
from dopplerdiff.evaluate.loading import eval_device
from dopplerdiff.fewshot import protocol as fs
from dopplerdiff.fewshot.arms import (
    CLASSIC,
    arm_table,
    fewshot_set,
    fitters,
    score_arms,
    scored_sets,
    summarise,
)
from dopplerdiff.fewshot.finetune import finetune_attention
from dopplerdiff.fewshot.openset import open_set, summarise_open_set
from dopplerdiff.pipelines.auto_pipeline import load_run_pipeline

RESULTS = Path(__file__).parent / "results"
# copies: the k shots time-shifted up to N, no generator (the class-balance baseline of the synthetic arms)
METHODS = ("row", "seeded", "tuned", "copies")


def ints(text: str, flag: str) -> list[int]:
    try:
        out = [int(p) for p in text.split(",") if p.strip()]
    except ValueError:
        sys.exit(f"error: {flag} takes comma-separated integers, got '{text}'")
    if not out or min(out) < 1:
        sys.exit(f"error: {flag} takes positive integers, got '{text}'")
    return out


def parse() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default="sim", help="'sim' (the profile's simulated people) or a data folder")
    ap.add_argument("--profile", default="quick")
    ap.add_argument("--extra", nargs="*", default=[], help="config overrides key=value")
    ap.add_argument("--folds", type=int, default=3, help="leave-people-out folds (every person novel once)")
    ap.add_argument("--only-folds", type=int, default=None, metavar="F", help="run only the first F folds")
    ap.add_argument("--novel", default=None, help="comma-separated novel people: one fold instead of --folds")
    ap.add_argument("--k", default="5", help="windows per novel person, e.g. 1,3,5,10")
    ap.add_argument("--n", default="16,64", help="synthetic windows per novel person, e.g. 16,64")
    ap.add_argument("--methods", default="row,seeded",
                    help="row (identity row only), seeded (img2img), tuned (rows + cross-attention K/V with "
                         "prior preservation), copies (the shots time-shifted up to N: class balance)")
    ap.add_argument("--tune-steps", type=int, default=200, help="fine-tuning steps of the tuned method")
    ap.add_argument("--strengths", default="0.5,0.8", help="img2img strengths of the seeded method")
    ap.add_argument("--seeds", type=int, default=2, help="classifier seeds per arm")
    ap.add_argument("--adapt-steps", type=int, default=300, help="steps learning each novel identity row")
    ap.add_argument("--classifier-steps", type=int, default=None, help="default: evaluate.augment_steps")
    ap.add_argument("--open-set", action="store_true",
                    help="also enroll novel people in an embedding gallery: rank-1, EER, DIR at target FAR")
    ap.add_argument("--device", default="auto", help="auto (CUDA if present), cpu, cuda, ...")
    ap.add_argument("--name", default=None)
    ap.add_argument("--out", default=None, help="where fold runs are kept")
    return ap.parse_args()


def check_args(a: argparse.Namespace) -> dict[str, Any]:
    methods = [m.strip() for m in a.methods.split(",") if m.strip()]
    bad = [m for m in methods if m not in METHODS]
    if bad or not methods:
        sys.exit(f"error: --methods takes {', '.join(METHODS)}, got '{a.methods}'")
    try:
        strengths = [float(s) for s in a.strengths.split(",") if s.strip()]
    except ValueError:
        sys.exit(f"error: --strengths takes numbers in (0, 1], got '{a.strengths}'")
    if "seeded" in methods and (not strengths or any(not 0 < s <= 1 for s in strengths)):
        sys.exit(f"error: --strengths takes numbers in (0, 1], got '{a.strengths}'")
    if a.seeds < 1 or a.adapt_steps < 1:
        sys.exit("error: --seeds and --adapt-steps must be >= 1")
    if a.data != "sim" and not Path(a.data).is_dir():
        sys.exit(f"error: --data '{a.data}' is not a directory")
    return {"ks": ints(a.k, "--k"), "ns": ints(a.n, "--n"), "methods": methods, "strengths": strengths}


def fold_k(fold: fs.Fold, k: int, run: Path, full: Any, cfg: Any, opts: dict[str, Any], a: argparse.Namespace,
           steps: int) -> dict[str, Any]:
    """One (fold, k) cell: adapt the fold's generator to the k shots, draw, train and score every arm."""
    base, split = prepare_run_data(run, None, cfg.data)  # the fold run's own record: base people only
    novel = fs.split_novel(full, fold.novel, k, cfg.data.split.gap_windows)
    shots = {n: full.images[s] for n, (s, _) in novel.items()}
    t0 = time.time()
    device = eval_device(a.device)
    pipe = load_run_pipeline(run, device=str(device))
    generative = set(opts["methods"]) - {"copies"}
    adapted = fs.adapt(pipe, shots, cfg, steps=a.adapt_steps, seed=cfg.seed) if generative else {}
    t1 = time.time()
    syn = fs.synthetic_sets(pipe, shots, len(base.identities), cfg, ns=opts["ns"], methods=opts["methods"],
                            strengths=opts["strengths"])
    data = fewshot_set(base, split, full, novel)
    if "tuned" in opts["methods"]:  # method (b), after (a) and (c) drew from the rows alone
        adapted["tuned"] = finetune_attention(pipe, shots, data.base_train, cfg, steps=a.tune_steps,
                                              seed=cfg.seed)
        syn.update(fs.synthetic_sets(pipe, shots, len(base.identities), cfg, ns=opts["ns"], methods=["row"],
                                     strengths=[], tag="tuned"))
    t2 = time.time()
    seeds = list(range(cfg.seed, cfg.seed + a.seeds))
    fits = fitters(cfg, steps, device)
    cells = score_arms(len(data.names), arm_table(data, syn), fits, seeds, scored_sets(data))
    t3 = time.time()
    opened = open_set(data, syn, cfg, steps=steps, seeds=seeds, device=device) if a.open_set else None
    return {"fold": fold.index, "k": k, "base": fold.base, "novel": fold.novel, "adaptation": adapted,
            "counts": {"base_train": len(data.base_train[1]), "base_test": len(data.base_test[1]),
                       "shots": len(data.shots[1]), "novel_test": len(data.novel_test[1])},
            "seconds": {"adapt": round(t1 - t0, 1), "sample": round(t2 - t1, 1),
                        "classify": round(t3 - t2, 1), "open_set": round(time.time() - t3, 1)},
            "cells": cells, **({"open_set": opened} if opened is not None else {})}


def print_table(summary: dict[str, Any]) -> None:
    """Novel-person accuracy and gain over real-only [95% CI] per arm (rows) and k x architecture."""
    cols = [(k, arch) for k, s in summary.items() for arch in s]
    print("\nnovel-person accuracy %, gain over real-only in points [95% CI]; base-people gain")
    print(f"{'arm':<22}" + "".join(f"{'k=' + k + ' ' + arch:>40}" for k, arch in cols))
    arms = list(dict.fromkeys(a for k, arch in cols for a in summary[k][arch]))
    for arm in arms:
        cells = []
        for k, arch in cols:
            r = summary[k][arch].get(arm)
            if r is None:
                cells.append(f"{'—':>40}")
                continue
            g, b = r.get("novel_gain_vs_real"), r.get("base_gain_vs_real")
            ci = g and g.get("ci95")
            txt = f"{100 * r['novel']['mean']:.1f}"
            if g:
                txt += f" {100 * g['mean']:+.1f}"
                txt += f" [{100 * ci[0]:+.1f},{100 * ci[1]:+.1f}]" if ci else ""
                txt += f" base {100 * b['mean']:+.1f}"
            cells.append(f"{txt:>40}")
        print(f"{arm:<22}" + "".join(cells))


def print_open_set(summary: dict[str, Any]) -> None:
    """Open set per k and enrollment arm: rank-1, DIR at the target FAR and EER, % (gain over real)."""
    print("\nopen set (novel people enrolled in a gallery of a base-people encoder), %: rank-1 / DIR / EER")
    for k, arms in summary.items():
        for arm, r in arms.items():
            cells = []
            for m in ("rank1", "dir", "eer"):
                g = r.get(f"{m}_gain_vs_real")
                cells.append(f"{100 * r[m]['mean']:.1f}" + (f" ({100 * g['mean']:+.1f})" if g else ""))
            print(f"k={k:<4}{arm:<22}" + " / ".join(cells))


def main() -> None:
    a = parse()
    opts = check_args(a)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    cfg = load_config(a.profile, a.extra)
    name = a.name or ("sim" if a.data == "sim" else Path(a.data).name)
    out = Path(a.out or f"runs/bench-fewshot/{name}")
    data = Path(a.data) if a.data != "sim" else out / "data"
    if a.data == "sim" and not data.exists():
        simulate_dataset(cfg.simulate, data, progress=False)
    full = load_spectrograms(data, cfg.data)
    novel = [n.strip() for n in a.novel.split(",") if n.strip()] if a.novel else None
    try:
        folds = fs.make_folds(full.identities, a.folds, cfg.seed, novel)[: a.only_folds]
        for fold in folds:  # every (fold, k) must be possible before anything is trained
            for k in opts["ks"]:
                fs.split_novel(full, fold.novel, k, cfg.data.split.gap_windows)
    except DopplerDiffError as exc:
        sys.exit(f"error: {exc}")
    steps = a.classifier_steps or cfg.evaluate.augment_steps
    result: dict[str, Any] = {
        "dataset": name, "data": str(data), "profile": a.profile, "overrides": a.extra, **opts,
        "seeds": a.seeds,
        "adapt_steps": a.adapt_steps, "classifier_steps": steps, "classic": dataclasses.asdict(CLASSIC),
        "lora": "built" if importlib.util.find_spec("peft") else "not built: peft is not importable",
        "folds": [dataclasses.asdict(f) for f in folds], "threads": os.environ.get("OMP_NUM_THREADS"),
        "date": time.strftime("%Y-%m-%d %H:%M"), "rows": [], "train_seconds": {}}
    path = RESULTS / f"fewshot_{name}.json"
    RESULTS.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    for fold in folds:
        t = time.time()
        base_dir = fs.base_data_folder(data, fold.base, out / f"fold{fold.index}" / "data")
        fs.train_base(out / f"fold{fold.index}" / "run", cfg, base_dir)
        result["train_seconds"][str(fold.index)] = round(time.time() - t, 1)
        run = out / f"fold{fold.index}" / "run"
        for k in opts["ks"]:
            result["rows"].append(fold_k(fold, k, run, full, cfg, opts, a, steps))
            done = [kk for kk in opts["ks"] if any(r["k"] == kk for r in result["rows"])]
            result["summary"] = {str(kk): summarise([r["cells"] for r in result["rows"] if r["k"] == kk])
                                 for kk in done}
            if a.open_set:
                result["open_set_summary"] = {
                    str(kk): summarise_open_set([r["open_set"] for r in result["rows"] if r["k"] == kk])
                    for kk in done}
            result["wall_s"] = round(time.time() - t0, 1)
            path.write_text(json.dumps(result, indent=2) + "\n")  # after every (fold, k): nothing is lost
    print_table(result["summary"])
    if a.open_set:
        print_open_set(result["open_set_summary"])
    print(f"\n{path}")


if __name__ == "__main__":
    main()
