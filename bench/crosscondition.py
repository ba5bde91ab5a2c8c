"""A new walking condition from k windows: does a generator trained on every person's source-condition windows
and a few target-condition windows help identify people in the target condition?

Protocol (``dopplerdiff.fewshot.crosscondition``): every person is recorded in the source condition (the run's
split of it trains the generator and the classifiers); the shot people give the first k windows of their
first target-condition recording; ``--zero-shot`` people give none. The run's stages train on the source
folders plus the shots only. Classifiers over all people are trained on real (source training windows +
shots), classic augmentation, real + synthetic target-condition windows of every person (``row``: from noise
with the person's identity and the target condition; ``transferS``: SDEdit of the person's source windows
into the target condition at strength S), and classic + synthetic; scored on the target condition's later
windows of shot people (``target_shot``), on zero-shot people's target windows (``target_zero``) and on the
source test split (``source``, the no-harm check), under the project's classifier and the judge
architecture, with paired seeds.

    python bench/crosscondition.py --data DIR|sim [--source normal] [--target backpack] [--k 5]
        [--zero-shot 4] [--n 64] [--methods row,transfer] [--strengths 0.5] [--seeds 3] [--classifier-steps S]
        [--condition-guidance G] [--profile quick] [--device auto] [--name NAME] [--out DIR] [--extra k=v ...]

Runs are kept under --out (default runs/bench-crosscondition/NAME/k<k>; a rerun resumes them); results go to
bench/results/crosscondition_NAME.json, rewritten after every k, and a table is printed.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from dopplerdiff.config import load_config
from dopplerdiff.data.contact import save_grid
from dopplerdiff.data.images import load_spectrograms, to_unit
from dopplerdiff.data.run_data import prepare_run_data
from dopplerdiff.data.simulate import simulate_dataset
from dopplerdiff.errors import DopplerDiffError
from dopplerdiff.evaluate.loading import eval_device
from dopplerdiff.fewshot import crosscondition as cc
from dopplerdiff.fewshot.arms import CLASSIC, arm_table, fitters, score_arms, summarise
from dopplerdiff.fewshot.protocol import train_base
from dopplerdiff.pipelines import load_run_pipeline

RESULTS = Path(__file__).parent / "results"
PARTS = ("target_shot", "target_zero", "source")


def parse() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default="sim", help="'sim' (simulate the two conditions) or a "
                    "DATA/<condition>/ID_k folder")
    ap.add_argument("--source", default="normal")
    ap.add_argument("--target", default="backpack")
    ap.add_argument("--k", default="5", help="target windows per shot person, e.g. 1,3,5")
    ap.add_argument("--zero-shot", type=int, default=4, help="people without a target window")
    ap.add_argument("--n", type=int, default=64, help="synthetic target windows per person")
    ap.add_argument("--methods", default="row,transfer",
                    help="row (from noise), transfer (SDEdit of source windows)")
    ap.add_argument("--strengths", default="0.5", help="transfer strengths in (0, 1]")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--classifier-steps", type=int, default=None, help="default: evaluate.augment_steps")
    ap.add_argument("--condition-guidance", type=float, default=None, help="default: the guidance scale")
    ap.add_argument("--profile", default="quick")
    ap.add_argument("--extra", nargs="*", default=[], help="config overrides key=value")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--name", default=None)
    ap.add_argument("--out", default=None)
    return ap.parse_args()


def check_args(a: argparse.Namespace) -> dict[str, Any]:
    try:
        ks = [int(p) for p in a.k.split(",") if p.strip()]
        strengths = [float(s) for s in a.strengths.split(",") if s.strip()]
    except ValueError:
        sys.exit(f"error: --k takes integers and --strengths numbers, got '{a.k}' and '{a.strengths}'")
    methods = [m.strip() for m in a.methods.split(",") if m.strip()]
    if not methods or any(m not in ("row", "transfer") for m in methods):
        sys.exit(f"error: --methods takes row and/or transfer, got '{a.methods}'")
    if not ks or min(ks) < 1 or a.n < 1 or a.seeds < 1:
        sys.exit("error: --k, --n and --seeds must be >= 1")
    if "transfer" in methods and (not strengths or any(not 0 < s <= 1 for s in strengths)):
        sys.exit(f"error: --strengths takes numbers in (0, 1], got '{a.strengths}'")
    if a.data != "sim" and not Path(a.data).is_dir():
        sys.exit(f"error: --data '{a.data}' is not a directory")
    return {"ks": ks, "methods": methods, "strengths": strengths if "transfer" in methods else []}


def one_k(k: int, root: Path, full: Any, cfg: Any, a: argparse.Namespace, opts: dict[str, Any],
          out: Path, name: str, save: Any) -> dict[str, Any]:
    """Train (or resume) the k-shot run, draw the synthetic target windows, train and score every arm."""
    zero = cc.pick_zero_shot(full.identities, a.zero_shot, cfg.seed)
    plan = cc.plan_shots(full, a.target, k, zero, cfg.data.split.gap_windows)
    t0 = time.time()
    data = cc.fold_data_folder(root, full, a.source, a.target, plan, out / f"k{k}" / "data")
    run = out / f"k{k}" / "run"
    train_base(run, cfg, data)
    t1 = time.time()
    run_ds, split = prepare_run_data(run, None, cfg.data)
    cs = cc.crosscondition_set(run_ds, split, full, plan, a.target, zero)
    device = eval_device(a.device)
    syn = drawn(out / f"k{k}", cs, a, cfg, opts, device)
    if "row" not in opts["methods"]:
        syn = {m: v for m, v in syn.items() if not m.startswith("row/")}
    picture(RESULTS / f"crosscondition_{name}_k{k}.png", cs, syn, zero)
    t2 = time.time()
    seeds = list(range(cfg.seed, cfg.seed + a.seeds))
    steps = a.classifier_steps or cfg.evaluate.augment_steps
    tests = {**cs.tests, "source": cs.source_test}
    head = {"k": k, "zero_shot": zero, "partial": True}
    cells = score_arms(len(cs.names), arm_table(cs.train, syn), fitters(cfg, steps, device), seeds, tests,
                       on_arm=lambda so_far: save({**head, "cells": so_far}))
    return {"k": k, "zero_shot": zero, "counts": {"train": len(cs.train[1]),
            **{p: len(t[1]) for p, t in tests.items()}},
            "seconds": {"train": round(t1 - t0, 1), "sample": round(t2 - t1, 1),
                        "classify": round(time.time() - t2, 1)}, "cells": cells}


def drawn(kdir: Path, cs: Any, a: argparse.Namespace, cfg: Any, opts: dict[str, Any], device: Any) -> dict:
    """The synthetic sets, drawn once per (n, strengths, condition guidance) and kept in the k folder, so a
    rerun (e.g. with other classifier seeds or threads) reuses them."""
    key = f"n{a.n}_s{'-'.join(f'{s:g}' for s in opts['strengths'])}_g{a.condition_guidance}"
    path = kdir / f"synthetic_{key}.npz"
    if path.is_file():
        with np.load(path) as z:
            return {m: (z[f"{m}|x"], z[f"{m}|y"]) for m in json.loads(str(z["methods"]))}
    pipe = load_run_pipeline(kdir / "run", device=str(device))
    syn = cc.synthetic_sets(pipe, cs, a.target, cfg, n=a.n, strengths=opts["strengths"],
                            condition_guidance=a.condition_guidance)
    arrays = {f"{m}|{p}": v for m, (x, y) in syn.items() for p, v in (("x", x), ("y", y))}
    tmp = path.with_name(path.name + ".tmp.npz")
    np.savez(tmp, methods=json.dumps(list(syn)), **arrays)
    tmp.replace(path)
    return syn


def picture(path: Path, cs: Any, syn: dict[str, Any], zero: list[str], per_row: int = 4) -> None:
    """For one shot person and one zero-shot person: real source windows, real target test windows and each
    method's synthetic target windows, cells enlarged (nearest) to 128 px."""
    shot = next(p for p in cs.names if p not in zero)
    rows, labels = [], []
    for person in [shot, *zero[:1]]:
        j = cs.names.index(person)
        test = cs.tests["target_zero" if person in zero else "target_shot"]
        rows += [cs.source_train[0][cs.source_train[1] == j][:per_row], test[0][test[1] == j][:per_row]]
        labels += [f"{person} real source", f"{person} real target{' (zero-shot)' if person in zero else ''}"]
        for method, (x, y) in syn.items():
            rows.append(x[y == j][:per_row])
            labels.append(f"{person} {method.split('/')[0]}")
    save_grid(path, [to_unit(r) for r in rows], "jet", labels, min_cell=128)


def print_table(summary: dict[str, Any]) -> None:
    """Accuracy % and gain over real-only in points [95% CI] per arm, k, architecture and test set."""
    for k, by_arch in summary.items():
        for arch, arms in by_arch.items():
            print(f"\nk={k} {arch}: accuracy %, gain over real [95% CI]")
            print(f"{'arm':<26}" + "".join(f"{p:>32}" for p in PARTS))
            for arm, r in arms.items():
                cells = []
                for p in PARTS:
                    if p not in r:
                        cells.append(f"{'—':>32}")
                        continue
                    g = r.get(f"{p}_gain_vs_real")
                    txt = f"{100 * r[p]['mean']:.1f}"
                    if g and g.get("ci95"):
                        lo, hi = g["ci95"]
                        txt += f" {100 * g['mean']:+.1f} [{100 * lo:+.1f},{100 * hi:+.1f}]"
                    cells.append(f"{txt:>32}")
                print(f"{arm:<26}" + "".join(cells))


def _pct(r: dict[str, Any] | None) -> str:
    if not r:
        return "—"
    ci = r.get("ci95")
    return f"{100 * r['mean']:+.1f}" + (f" [{100 * ci[0]:+.1f}, {100 * ci[1]:+.1f}]" if ci else "")


def markdown(summary: dict[str, Any]) -> str:
    """The summary as markdown tables (one per k and architecture), for docs/results.md."""
    out = []
    for k, by_arch in summary.items():
        for arch, arms in by_arch.items():
            out.append(f"\n**k={k}, {arch} architecture**\n")
            out.append("| arm | shot people | gain vs real | gain vs classic | zero-shot people | "
                       "gain vs real | source | gain vs real |")
            out.append("|---|---|---|---|---|---|---|---|")
            for arm, r in arms.items():
                cells = [arm]
                for p, refs in (("target_shot", ("real", "classic")), ("target_zero", ("real",)),
                                ("source", ("real",))):
                    cells.append(f"{100 * r[p]['mean']:.1f}" if p in r else "—")
                    cells += [_pct(r.get(f"{p}_gain_vs_{ref}")) for ref in refs]
                out.append("| " + " | ".join(cells) + " |")
    return "\n".join(out)


def main() -> None:
    a = parse()
    opts = check_args(a)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    cfg = load_config(a.profile, a.extra)
    name = a.name or ("sim" if a.data == "sim" else Path(a.data).name)
    out = Path(a.out or f"runs/bench-crosscondition/{name}")
    root = Path(a.data) if a.data != "sim" else out / "sim-data"
    if a.data == "sim" and not root.exists():
        sim = dataclasses.replace(cfg.simulate, conditions=[a.source, a.target])
        simulate_dataset(sim, root, progress=False)
    full = load_spectrograms(root, cfg.data)
    try:  # every k must be possible before anything is trained
        cc.condition_index(full, a.source, "source")
        for k in opts["ks"]:
            cc.plan_shots(full, a.target, k, cc.pick_zero_shot(full.identities, a.zero_shot, cfg.seed),
                          cfg.data.split.gap_windows)
    except DopplerDiffError as exc:
        sys.exit(f"error: {exc}")
    result: dict[str, Any] = {
        "dataset": name, "data": str(root), "profile": a.profile, "overrides": a.extra, "source": a.source,
        "target": a.target, **opts, "zero_shot_people": a.zero_shot, "n": a.n, "seeds": a.seeds,
        "classifier_steps": a.classifier_steps or cfg.evaluate.augment_steps,
        "condition_guidance": a.condition_guidance, "classic": dataclasses.asdict(CLASSIC),
        "threads": os.environ.get("OMP_NUM_THREADS"), "date": time.strftime("%Y-%m-%d %H:%M"), "rows": []}
    path = RESULTS / f"crosscondition_{name}.json"
    RESULTS.mkdir(parents=True, exist_ok=True)
    t0 = time.time()

    def save(partial: dict[str, Any] | None = None) -> None:
        rows = result["rows"] + ([partial] if partial else [])
        result["summary"] = {str(r["k"]): summarise([r["cells"]]) for r in rows}
        result["wall_s"] = round(time.time() - t0, 1)
        path.write_text(json.dumps({**result, "rows": rows}, indent=2) + "\n")  # after every arm

    for k in opts["ks"]:
        result["rows"].append(one_k(k, root, full, cfg, a, opts, out, name, save))
        save()
    print_table(result["summary"])
    print(markdown(result["summary"]))
    print(f"\n{path}")


if __name__ == "__main__":
    main()
