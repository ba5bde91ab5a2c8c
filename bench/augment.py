"""Which synthetic data raises identification accuracy, and at what real-data budget?

For every real budget (N training windows per identity, the first N in time order, or the full split) the
whole job runs once (`dopplerdiff run --profile quick` with ``data.train_per_identity=N``): the autoencoder,
the diffusion model, the encoder and every classifier see those N windows only, so the generator never
peeks at data the classifier does not have. Its evaluation trains the augmentation experiment's strategy
arms (``evaluate.augment_strategies``) with the same classifier, steps and seeds as the real-only baseline,
under the encoder's architecture and the independent judge's; this script collects the paired gains (mean
and 95% t-interval over seeds) per strategy x budget.

    python bench/augment.py --data sim|DIR [--budgets 10,30,full] [--strategies prior,interval,...]
        [--seeds 3] [--name NAME] [--out DIR] [--extra key=value ...] [--deadline S] [--quick]
        [--evaluate DIR] [--merge FILE ...]

Runs are kept under --out (default runs/bench-augment/NAME/budget_<N>; a rerun resumes them); results go to
bench/results/augment_NAME.json, rewritten after every budget, and a table is printed. ``--evaluate DIR``
trains nothing: it re-evaluates the kept runs into RUN/DIR (other strategies or settings, the same seeds) and
writes augment_NAME_DIR.json. ``--merge A.json B.json ...`` trains nothing: it joins the rows of earlier
result files (arms of one budget from several evaluations share the seeds and baseline, so they join into one
row) into augment_NAME.json. Every result gets the gain-vs-budget plot (augment_NAME.png) and a recommended
recipe per budget (``dopplerdiff.evaluate.strategies.recommend``).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from dopplerdiff.evaluate.strategies import ARCH_KEYS, recommend

RESULTS = Path(__file__).parent / "results"
STRATEGIES = "prior,interval,real:0.5,real:0.8,filtered,simpre"
# the pool's guidance is the only one scored: no sweep samples
BENCH = ["evaluate.guidance_sweep=[4.0]"]
ARCHS = ARCH_KEYS


def parse_budgets(text: str) -> list[int | None]:
    """'10,30,full' -> [10, 30, None]; exits with one error line on anything else."""
    out: list[int | None] = []
    for part in (p.strip() for p in text.split(",") if p.strip()):
        if part == "full":
            out.append(None)
        elif part.isdigit() and int(part) >= 1:
            out.append(int(part))
        else:
            sys.exit(f"error: --budgets takes positive integers or 'full', got '{part}'")
    if not out:
        sys.exit("error: --budgets is empty")
    return out


def budget_name(budget: int | None) -> str:
    return "full" if budget is None else str(budget)


def run_budget(budget: int | None, data: str, out: Path, strategies: list[str], seeds: int, extra: list[str],
               quick: bool, deadline: float | None, evaluate: str | None = None) -> dict[str, Any]:
    """The whole job at one budget in its own process (with ``evaluate``: only a new evaluation of the
    kept run); exit status and wall time."""
    run = out / f"budget_{budget_name(budget)}"
    run.parent.mkdir(parents=True, exist_ok=True)
    sets = [f"data.train_per_identity={'null' if budget is None else budget}",
            f"evaluate.augment_strategies={json.dumps(strategies)}", f"evaluate.augment_seeds={seeds}"]
    cmd = [sys.executable, "-m", "dopplerdiff.cli", "run", "--profile", "smoke" if quick else "quick",
           *([] if data == "sim" else ["--data", data]), "--out", str(run), "--quiet",
           *(["--resume"] if run.exists() else []), *BENCH, *sets, *extra]
    if evaluate:  # re-evaluate the kept run (e.g. other strategies) into RUN/<evaluate>
        cmd = [sys.executable, "-m", "dopplerdiff.cli", "evaluate", "--run", str(run), "--out",
               str(run / evaluate), "--overwrite", "--quiet", *BENCH, *sets[1:], *extra]
    t0 = time.time()
    limit = None if deadline is None else max(deadline - time.time(), 1)
    with open(out / f"budget_{budget_name(budget)}.log", "a") as fh:
        try:
            code = subprocess.run(cmd, stdout=fh, stderr=subprocess.STDOUT, env=dict(os.environ),
                                  timeout=limit).returncode
        except subprocess.TimeoutExpired:
            code = "timeout"
    print(f"budget {budget_name(budget)}: exit {code} after {time.time() - t0:.0f} s", flush=True)
    return {"budget": budget_name(budget), "exit": code, "wall_s": round(time.time() - t0, 1),
            "run": str(run), "eval": evaluate or "eval", "command": cmd[1:]}


def _recipe(recipe: dict[str, Any]) -> dict[str, Any]:
    """An arm's recipe with the count of its source windows instead of their names."""
    out = {k: v for k, v in recipe.items() if k != "source_windows"}
    if "source_windows" in recipe:
        out["n_source_windows"] = len(recipe["source_windows"])
    return out


def collect(row: dict[str, Any]) -> dict[str, Any]:
    """Gains per strategy and architecture from the run's metrics.json (nothing if it has none)."""
    path = Path(row["run"]) / row["eval"] / "metrics.json"
    if not path.is_file():
        return {**row, "missing": f"no {row['eval']}/metrics.json"}
    m = json.loads(path.read_text())
    row = {**row, "counts": m.get("counts"), "real_test_accuracy": m["accuracy"]["real_test"]["overall"],
           "recipes": {n: _recipe(r) for n, r in m.get("augmentation_strategies", {}).items()},
           "missing_in_run": m.get("missing", []),
           "recommendation": recommend({arch: (m.get(key) or {}).get("strategies") for arch, key in ARCHS})}
    for arch, key in ARCHS:
        s = (m.get(key) or {}).get("strategies")
        if not s:
            continue
        row[arch] = {"baseline": s["baseline"], "seeds": s["seeds"], "steps": s["steps"],
                     "arms": {n: {"accuracy": a["accuracy"]["mean"], "gain": a["gain"]["mean"],
                                  "gain_ci95": a["gain"]["ci95"], "gain_runs": a["gain"]["runs"],
                                  "synthetic_per_identity": a["synthetic_per_identity"],
                                  "synthetic_to_real": a.get("synthetic_to_real"),
                                  "synthetic_weight": a.get("synthetic_weight", 1.0)}
                              for n, a in s["arms"].items()}}
    return row


def _cell(arm: dict[str, Any] | None) -> str:
    if not arm:
        return "—"
    ci = arm.get("gain_ci95")
    return f"{100 * arm['gain']:+.1f} [{100 * ci[0]:+.1f},{100 * ci[1]:+.1f}]" if ci else \
        f"{100 * arm['gain']:+.1f}"


def print_table(rows: list[dict[str, Any]], strategies: list[str]) -> None:
    """Gain in accuracy points [95% CI] per strategy (rows) and budget x architecture (columns)."""
    cols = [(r, arch) for r in rows for arch, _ in ARCHS if arch in r]
    print("\ngain over real-only, accuracy points [95% CI over seeds]")
    print(f"{'strategy':<20}" + "".join(f"{r['budget'] + ' ' + a:>26}" for r, a in cols))
    print(f"{'(real-only)':<20}" + "".join(f"{100 * r[a]['baseline']['mean']:>25.1f}%" for r, a in cols))
    for name in strategies:
        print(f"{name:<20}" + "".join(f"{_cell(r[a]['arms'].get(name)):>26}" for r, a in cols))


def merge_rows(files: list[Path]) -> list[dict[str, Any]]:
    """Rows of several result files, one per budget (in first-seen order); arms of one budget measured by
    several evaluations are joined (they share seeds and baseline), and the recommendation is remade."""
    by: dict[str, dict[str, Any]] = {}
    for f in files:
        for row in json.loads(Path(f).read_text())["rows"]:
            if "encoder" not in row:
                continue
            have = by.setdefault(row["budget"], json.loads(json.dumps(row)))
            if have.get("run") == row.get("run") and have.get("eval") == row.get("eval"):
                continue  # the row itself (first seen) or the same evaluation listed twice
            for arch, _ in ARCHS:
                if arch in row and arch in have:
                    have[arch]["arms"].update(row[arch]["arms"])
            have["recipes"] = {**have.get("recipes", {}), **row.get("recipes", {})}
    for row in by.values():
        row["recommendation"] = recommend(
            {arch: {"arms": {n: {"gain": {"mean": a["gain"], "ci95": a["gain_ci95"]}}
                             for n, a in row[arch]["arms"].items()}} for arch, _ in ARCHS if arch in row})
    return list(by.values())


def plot_gains(rows: list[dict[str, Any]], strategies: list[str], path: Path) -> None:
    """Gain over real-only vs real budget, one line per strategy, one panel per architecture (95% CI bars)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in rows if "encoder" in r]
    archs = [a for a, _ in ARCHS if any(a in r for r in rows)]
    fig, axes = plt.subplots(1, len(archs), figsize=(5.5 * len(archs), 4.2), squeeze=False, sharey=True)
    x = list(range(len(rows)))
    for ax, arch in zip(axes[0], archs, strict=True):
        for j, name in enumerate(strategies):
            pts = [(i, r[arch]["arms"][name]) for i, r in zip(x, rows, strict=True)
                   if arch in r and name in r[arch]["arms"]]
            if not pts:
                continue
            xs = [i + 0.04 * (j - len(strategies) / 2) for i, _ in pts]
            g = [100 * a["gain"] for _, a in pts]
            err = [[100 * (a["gain"] - (a["gain_ci95"] or [a["gain"]] * 2)[0]) for _, a in pts],
                   [100 * ((a["gain_ci95"] or [a["gain"]] * 2)[1] - a["gain"]) for _, a in pts]]
            ax.errorbar(xs, g, yerr=err, marker="o", capsize=3, label=name)
        ax.axhline(0, color="k", lw=0.8)
        ax.set_xticks(x)
        ax.set_xticklabels([f"{r['budget']}\n(real-only {100 * r[arch]['baseline']['mean']:.1f}%)"
                            if arch in r else r["budget"] for r in rows])
        ax.set_xlabel("real training windows per identity")
        ax.set_title(f"{arch} architecture")
    axes[0][0].set_ylabel("gain in real-test accuracy, points (95% CI)")
    axes[0][-1].legend(fontsize=7, loc="best")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def finish(result: dict[str, Any], result_path: Path, strategies: list[str]) -> None:
    """Write the JSON and the plot, print the table and the recommendations."""
    result_path.write_text(json.dumps(result, indent=2) + "\n")
    rows = [r for r in result["rows"] if "encoder" in r]
    print_table(rows, strategies)
    for r in rows:
        rec = r["recommendation"]
        print(f"budget {r['budget']}: recommended {rec['strategy'] or 'real windows only'} "
              f"(best arm {rec['best']}: " + ", ".join(f"{a} {100 * g:+.1f}" for a, g in rec["gain"].items())
              + ")")
    if rows:
        plot_gains(rows, strategies, result_path.with_suffix(".png"))
    print(f"\n{result_path}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default="sim", help="'sim' (simulated default, made by the run) or a folder")
    ap.add_argument("--budgets", default="10,30,full", help="windows per identity, comma-separated, or full")
    ap.add_argument("--strategies", default=STRATEGIES, help="comma-separated strategy names")
    ap.add_argument("--seeds", type=int, default=3, help="classifier seeds per arm (evaluate.augment_seeds)")
    ap.add_argument("--name", default=None, help="results name (default: sim or the folder's name)")
    ap.add_argument("--out", default=None, help="where runs are kept (default runs/bench-augment/NAME)")
    ap.add_argument("--extra", nargs="*", default=[], help="overrides added to every run")
    ap.add_argument("--deadline", type=float, default=None, help="seconds after which a run is stopped")
    ap.add_argument("--evaluate", default=None, metavar="DIR",
                    help="only re-evaluate the kept runs into RUN/DIR (e.g. with other --strategies)")
    ap.add_argument("--quick", action="store_true", help="smoke profile (checks the script runs)")
    ap.add_argument("--merge", nargs="+", type=Path, default=None, metavar="FILE",
                    help="only join earlier result files into augment_NAME.json (with its plot)")
    args = ap.parse_args()
    if args.merge:
        missing = [str(f) for f in args.merge if not f.is_file()]
        if missing:
            sys.exit(f"error: --merge: no such file {', '.join(missing)}")
        rows = merge_rows(args.merge)
        names = list(dict.fromkeys(n for r in rows for n in r["encoder"]["arms"]))
        finish({"dataset": args.name or "merged", "merged_from": [str(f) for f in args.merge],
                "budgets": [r["budget"] for r in rows], "strategies": names,
                "date": time.strftime("%Y-%m-%d %H:%M"), "rows": rows},
               RESULTS / f"augment_{args.name or 'merged'}.json", names)
        return
    budgets = parse_budgets(args.budgets)
    strategies = [s.strip() for s in args.strategies.split(",") if s.strip()]
    if args.seeds < 1:
        sys.exit(f"error: --seeds must be >= 1, got {args.seeds}")
    if args.data != "sim" and not Path(args.data).is_dir():
        sys.exit(f"error: --data '{args.data}' is not a directory")
    name = args.name or ("sim" if args.data == "sim" else Path(args.data).name)
    out = Path(args.out or f"runs/bench-augment/{name}")
    suffix = ("_quick" if args.quick else "") + (f"_{args.evaluate}" if args.evaluate else "")
    result_path = RESULTS / f"augment_{name}{suffix}.json"
    RESULTS.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    deadline = None if args.deadline is None else t0 + args.deadline
    rows: list[dict[str, Any]] = []
    for budget in budgets:
        rows.append(collect(run_budget(budget, args.data, out, strategies, args.seeds, args.extra, args.quick,
                                       deadline, args.evaluate)))
        result = {"dataset": name, "data": str(args.data), "profile": "smoke" if args.quick else "quick",
                  "budgets": [budget_name(b) for b in budgets], "strategies": strategies, "seeds": args.seeds,
                  "overrides": BENCH + args.extra, "threads": os.environ.get("OMP_NUM_THREADS"),
                  "date": time.strftime("%Y-%m-%d %H:%M"), "wall_s": round(time.time() - t0, 1), "rows": rows}
        result_path.write_text(json.dumps(result, indent=2) + "\n")  # after every budget: nothing is lost
    finish(result, result_path, strategies)


if __name__ == "__main__":
    main()
