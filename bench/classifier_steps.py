"""Is the augmentation experiment's classifier trained long enough? Real-only accuracy vs training steps.

The augmentation experiment compares arms at a fixed step budget (``evaluate.augment_steps``). If the
real-only classifier is still improving at that budget, arms that add windows see each real window less often
and lose for that reason alone. This script trains the real-only classifier of both architectures (the
encoder's with ``evaluate.augment_channels``, the judge's) on a run's training windows for each step count and
seed, with the experiment's validation-based selection, and scores real test.

    python bench/classifier_steps.py --run RUN [--steps 200,600,1200] [--seeds 3] [--name NAME]

Writes bench/results/classifier_steps_NAME.json and prints accuracy (mean, per seed) per architecture x steps.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from dopplerdiff.classifier import fit_classifier, predict
from dopplerdiff.config import config_for
from dopplerdiff.data.run_data import prepare_run_data
from dopplerdiff.evaluate.judge import fit_for_experiment, predict_for_experiment
from dopplerdiff.evaluate.loading import run_data_config

RESULTS = Path(__file__).parent / "results"


def accuracy(arch: str, cfg, train, val, test, k: int, steps: int, seed: int) -> float:
    """Real-test accuracy of one real-only classifier of the experiment."""
    if arch == "judge":
        model = fit_for_experiment(train.images, train.labels, k, None, steps=steps, seed=seed,
                                   val=(val.images, val.labels), channels=tuple(cfg.evaluate.judge_channels))
        logits = predict_for_experiment(model, test.images)[0]
    else:
        enc = cfg.encoder
        if cfg.evaluate.augment_channels:
            enc = replace(enc, channels=list(cfg.evaluate.augment_channels))
        model = fit_classifier(train.images, train.labels, k, enc, steps=steps, seed=seed,
                               augment=cfg.data.augment, val=(val.images, val.labels))
        logits = predict(model, test.images)[0]
    return float((logits.argmax(1) == test.labels).mean())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", type=Path, required=True, help="a run directory (its data, split and config)")
    ap.add_argument("--steps", default="200,600,1200", help="comma-separated step counts")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--name", default=None, help="results name (default: the run's folder name)")
    args = ap.parse_args()
    if not (args.run / "data.json").is_file():
        sys.exit(f"error: --run '{args.run}' has no data.json (not a run directory)")
    try:
        steps = [int(s) for s in args.steps.split(",") if s.strip()]
    except ValueError:
        sys.exit(f"error: --steps takes comma-separated whole numbers, got '{args.steps}'")
    if not steps or min(steps) < 1 or args.seeds < 1:
        sys.exit("error: --steps and --seeds must be >= 1")
    cfg = config_for(args.run, None, [])
    cfg.data = run_data_config(args.run, cfg.data)
    ds, split = prepare_run_data(args.run, None, cfg.data)
    train, val, test = (ds.subset(split[p]) for p in ("train", "val", "test"))
    k = len(ds.identities)
    rows = []
    print(f"{'architecture':<14}{'steps':>7}{'accuracy':>10}  per seed")
    for n in steps:
        for arch in ("encoder", "judge"):
            t0 = time.time()
            accs = [accuracy(arch, cfg, train, val, test, k, n, seed) for seed in range(args.seeds)]
            rows.append({"architecture": arch, "steps": n, "mean": float(np.mean(accs)), "runs": accs,
                         "seconds": round(time.time() - t0, 1)})
            print(f"{arch:<14}{n:>7}{np.mean(accs):>10.3f}  {' '.join(f'{a:.3f}' for a in accs)}", flush=True)
    out = RESULTS / f"classifier_steps_{args.name or args.run.name}.json"
    RESULTS.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"run": str(args.run), "n_train": len(train.labels), "identities": k,
                               "seeds": args.seeds, "date": time.strftime("%Y-%m-%d %H:%M"), "rows": rows},
                              indent=2) + "\n")
    print(out)


if __name__ == "__main__":
    main()
