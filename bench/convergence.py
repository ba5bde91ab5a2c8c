"""Quality vs training compute: does more diffusion training make the samples useful?

One run directory per (dataset, profile, first-stage steps, real budget): the job up to the diffusion stage
(simulate or prepare, autoencoder, latents, encoder) runs once; the diffusion stage is then trained
cumulatively through the budgets, each one resuming the latest checkpoint with a larger
``diffusion.train.steps`` (``train.resume`` lets a resume change the step count only). The LR schedule is
``constant`` after warmup: a cosine schedule would tie every point to its own budget, so a point on the curve
would not be the start of the next. After each budget the project's evaluate stage scores the run into
RUN/eval_convergence/steps_NNNNNN (one folder per point, nothing overwritten).

    python bench/convergence.py --data sim|DIR [--profile quick] [--budgets 650,2000,6000,15000]
        [--ae-steps 450] [--train-per-identity N|full] [--device auto|cpu|cuda] [--name NAME]
        [--out DIR] [--results DIR] [--extra key=value ...] [--skip-eval-sections sweep,...] [--quiet]

bench/results/convergence_NAME.json is rewritten after every point (a rerun skips evaluated points and
resumes an interrupted training, so a long curve adds up across interruptions and machines), with one plot
(convergence_NAME.png: each metric vs diffusion steps) and, per metric, where it stops improving. See
docs/convergence.md.
"""

from __future__ import annotations

import argparse
import copy
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any, NoReturn

from convergence_curve import METRICS, extract, plot, print_table, stopping

from dopplerdiff.cli.common import setup_logging
from dopplerdiff.config import config_for
from dopplerdiff.errors import DopplerDiffError
from dopplerdiff.evaluate.evaluate import evaluate_run
from dopplerdiff.train.checkpoints import checkpoint_step, resolve_resume
from dopplerdiff.train.diffusion import train_diffusion
from dopplerdiff.utils.io import read_json, read_json_if_exists, write_json
from dopplerdiff.workflow import check_run_dir, resolve_run_config, run_all

RESULTS = Path(__file__).parent / "results"
BUDGETS = "650,2000,6000,15000"
LR_SCHEDULE = "constant"  # after warmup; every point continues the same trajectory
# stages the driver runs itself (diffusion, per budget) or replaces (samples, evaluation per budget)
DRIVER_STAGES = ("train diffusion", "generate", "evaluate")
log = logging.getLogger("convergence")
# --skip-eval-sections: evaluate's own switches for its costly parts (each drops the metrics it makes)
SECTIONS = {
    "sweep": lambda cfg: [f"evaluate.guidance_sweep=[{cfg.evaluate.guidance}]"],
    "judge": lambda cfg: ["evaluate.judge_steps=0"],  # judge, C2ST, texture, judge-arch augmentation
    "augmentation": lambda cfg: ["evaluate.augment_seeds=0"],
    "judge-augmentation": lambda cfg: ["evaluate.judge_augmentation=false"],
}


def fail(message: str) -> NoReturn:
    """One error line naming the argument, exit status 2 (as the CLI does)."""
    print(f"error: {message}", file=sys.stderr)
    raise SystemExit(2)


def parse_budgets(text: str) -> list[int]:
    """'650,2000' -> [650, 2000] (sorted, unique); anything but positive integers is an error."""
    parts = [p.strip() for p in text.split(",") if p.strip()]
    if not parts or not all(p.isdigit() and int(p) >= 1 for p in parts):
        fail(f"--budgets takes comma-separated positive step counts, got '{text}'")
    return sorted({int(p) for p in parts})


def diffusion_step(run: Path) -> int:
    """Optimiser steps of the run's newest diffusion checkpoint (0 before any)."""
    ckpt = resolve_resume("latest", run / "train" / "diffusion")
    return checkpoint_step(ckpt) if ckpt is not None else 0


def eval_dir(run: Path, budget: int) -> Path:
    return run / "eval_convergence" / f"steps_{budget:06d}"


def train_to(run: Path, cfg: Any, budget: int, progress: bool) -> dict[str, Any]:
    """Continue the diffusion stage to ``budget`` steps (resuming its latest checkpoint)."""
    start = diffusion_step(run)
    cfg_b = copy.deepcopy(cfg)
    cfg_b.diffusion.train.steps = budget
    t0 = time.time()
    if start > 0:
        log.info("diffusion: resuming step %d -> %d", start, budget)
    train_diffusion(run, cfg_b, resume="latest" if start > 0 else None, progress=progress)
    trained = read_json(run / "train" / "diffusion" / "metrics.json")
    if int(trained["step"]) != budget:  # the pipeline evaluated next must be this budget's
        raise DopplerDiffError(f"'{run}/pipeline' is at step {trained['step']}, not {budget}")
    return {"resumed_from": start, "trained_steps": budget - start, "train_s": round(time.time() - t0, 1),
            "selected_step": (trained.get("selected") or {}).get("step", budget)}


def point(run: Path, data_root: Path | None, cfg: Any, budget: int, eval_overrides: list[str],
          device: str, progress: bool) -> dict[str, Any]:
    """Train to ``budget``, evaluate into its own folder, return the JSON row."""
    row: dict[str, Any] = {"budget": budget, **train_to(run, cfg, budget, progress)}
    t0 = time.time()
    metrics = evaluate_run(run, config_for(run, None, eval_overrides), data_root=data_root,
                           out=eval_dir(run, budget), overwrite=True, device=device, progress=progress)
    row["eval_s"] = round(time.time() - t0, 1)
    row["wall_s"] = round(row["train_s"] + row["eval_s"], 1)
    # a curve may add up over several machines: each point says where it was trained and evaluated
    row.update(date=time.strftime("%Y-%m-%d %H:%M"), **device_info(device))
    return {**row, "status": "done", "eval_dir": str(eval_dir(run, budget)), **extract(metrics)}


def settings_of(args: argparse.Namespace, budget_n: int | None) -> dict[str, Any]:
    """What makes a curve: a rerun with other settings must use another --name."""
    data = args.data if args.data == "sim" else str(Path(args.data).resolve())
    return {"data": data, "profile": args.profile, "ae_steps": args.ae_steps,
            "train_per_identity": budget_n, "extra": list(args.extra)}


def check_settings(previous: dict[str, Any] | None, settings: dict[str, Any], path: Path) -> None:
    if previous and previous.get("settings") != settings:
        old = previous.get("settings") or {}
        diff = ", ".join(f"{k}: {old.get(k)!r} -> {v!r}" for k, v in settings.items() if old.get(k) != v)
        fail(f"--name: '{path}' holds a curve with other settings ({diff}); pass another --name")


def device_info(device: str) -> dict[str, Any]:
    """The device the run trains and evaluates on, and the CPU threads."""
    import torch

    cuda = device != "cpu" and torch.cuda.is_available()
    return {"device": f"cuda ({torch.cuda.get_device_name(0)})" if cuda else "cpu",
            "threads": torch.get_num_threads(), "omp_num_threads": os.environ.get("OMP_NUM_THREADS")}


def stage_seconds(run: Path) -> dict[str, float]:
    """Wall seconds per job stage summed over every invocation (RUN/timings.json)."""
    out: dict[str, float] = {}
    for inv in (read_json_if_exists(run / "timings.json") or {}).get("invocations", []):
        for r in inv.get("stages", []):
            out[r["stage"]] = round(out.get(r["stage"], 0.0) + float(r["seconds"]), 1)
    return out


def write(result: dict[str, Any], path: Path) -> None:
    """The JSON with the stopping statements, and its plot (rewritten after every point)."""
    done = [r for r in result["rows"] if r.get("status") == "done"]
    result["stopping"] = {m.name: stopping(m, done) for m in METRICS}
    result["date"] = time.strftime("%Y-%m-%d %H:%M")
    write_json(path, result)
    plot(result, path.with_suffix(".png"))


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default="sim", help="'sim' (simulated default, made by the run) or a folder")
    ap.add_argument("--profile", default="quick", help="profile or YAML file of the run (default quick)")
    ap.add_argument("--budgets", default=BUDGETS, help="diffusion steps to evaluate at, comma-separated")
    ap.add_argument("--ae-steps", type=int, default=450, help="first-stage steps (autoencoder.train.steps)")
    ap.add_argument("--train-per-identity", default="full",
                    help="real training windows per identity (data.train_per_identity), or full")
    ap.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"),
                    help="where to train and evaluate (auto: a GPU when there is one)")
    ap.add_argument("--name", default=None, help="curve name (default DATASET_PROFILE_aeN[_nK])")
    ap.add_argument("--out", default="runs/bench-convergence", help="where the run directory is kept")
    ap.add_argument("--results", default=str(RESULTS), help="folder of convergence_NAME.json/.png")
    ap.add_argument("--extra", nargs="*", default=[], help="config overrides of the run (key=value)")
    ap.add_argument("--skip-eval-sections", default="",
                    help=f"evaluation parts to leave out, comma-separated: {', '.join(SECTIONS)}")
    ap.add_argument("--quiet", action="store_true", help="no progress bars, warnings only")
    args = ap.parse_args(argv)
    if args.ae_steps < 1:
        fail(f"--ae-steps must be >= 1, got {args.ae_steps}")
    n = args.train_per_identity
    if n != "full" and not (n.isdigit() and int(n) >= 1):
        fail(f"--train-per-identity takes a positive integer or 'full', got '{n}'")
    args.skip = [s.strip() for s in args.skip_eval_sections.split(",") if s.strip()]
    bad = [s for s in args.skip if s not in SECTIONS]
    if bad:
        fail(f"--skip-eval-sections: unknown section(s) {', '.join(bad)}; choose from {', '.join(SECTIONS)}")
    if args.data != "sim" and not Path(args.data).is_dir():
        fail(f"--data '{args.data}' is not a directory")
    return args


def default_name(args: argparse.Namespace, budget_n: int | None) -> str:
    dataset = "sim" if args.data == "sim" else Path(args.data).resolve().name
    return f"{dataset}_{Path(args.profile).stem}_ae{args.ae_steps}" + (f"_n{budget_n}" if budget_n else "")


def prepare_run(args: argparse.Namespace, run: Path, data_root: Path | None, budgets: list[int],
                budget_n: int | None) -> tuple[Any, dict[str, float]]:
    """The run's config and every stage before the diffusion one (complete ones are skipped)."""
    check_run_dir(run, True, data_root)
    resume = (run / "config.yaml").is_file()
    # the recorded diffusion.train.steps is only the first budget's; each point sets its own
    overrides = [f"autoencoder.train.steps={args.ae_steps}", f"diffusion.train.lr_schedule={LR_SCHEDULE}",
                 *([] if resume else [f"diffusion.train.steps={budgets[0]}"]),
                 f"data.train_per_identity={'null' if budget_n is None else budget_n}", *args.extra]
    cfg = resolve_run_config(run, None if resume else args.profile, overrides, resume)
    if cfg.diffusion.train.lr_schedule != LR_SCHEDULE:  # a decaying LR would tie a point to its budget
        fail(f"--extra: diffusion.train.lr_schedule must stay '{LR_SCHEDULE}' for a cumulative curve, got "
             f"'{cfg.diffusion.train.lr_schedule}'")
    if cfg.decoder.kind == "diffusion":
        fail("--extra: decoder.kind=diffusion is not supported (the decoder is trained on one pipeline)")
    run.mkdir(parents=True, exist_ok=True)
    run_all(run, cfg, data_root, progress=not args.quiet, skip=DRIVER_STAGES)
    return cfg, stage_seconds(run)


def next_row(run: Path, data_root: Path | None, cfg: Any, budget: int, old: dict[str, Any] | None,
             eval_overrides: list[str], args: argparse.Namespace) -> dict[str, Any]:
    """The row of one budget: kept when already evaluated, skipped when the run is past it, else made."""
    done = (eval_dir(run, budget) / "metrics.json").is_file()
    if done and old and old.get("status") == "done":
        return old
    if done:  # evaluated, but the JSON was not written: rebuild the row (its timings are lost)
        return {"budget": budget, "status": "done", "eval_dir": str(eval_dir(run, budget)),
                **extract(read_json(eval_dir(run, budget) / "metrics.json"))}
    step = diffusion_step(run)
    if step > budget:
        return {"budget": budget, "status": "skipped",
                "reason": f"the run's diffusion is already at step {step} (budgets are reached in order)"}
    print(f"-- diffusion {step} -> {budget} steps, then evaluate", flush=True)
    return point(run, data_root, cfg, budget, eval_overrides, args.device, not args.quiet)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    if args.device == "cpu":  # before anything asks torch for a GPU: training follows accelerate's choice
        os.environ["CUDA_VISIBLE_DEVICES"] = ""
    setup_logging(args.quiet)
    budgets = parse_budgets(args.budgets)
    budget_n = None if args.train_per_identity == "full" else int(args.train_per_identity)
    name = args.name or default_name(args, budget_n)
    run, data_root = Path(args.out) / name, None if args.data == "sim" else Path(args.data)
    path = Path(args.results) / f"convergence_{name}.json"
    previous = read_json_if_exists(path)
    settings = settings_of(args, budget_n)
    check_settings(previous, settings, path)
    try:
        return measure(args, budgets, settings, run, data_root, path, previous)
    except DopplerDiffError as exc:
        fail(str(exc))


def measure(args: argparse.Namespace, budgets: list[int], settings: dict[str, Any], run: Path,
            data_root: Path | None, path: Path, previous: dict[str, Any] | None) -> dict[str, Any]:
    """Every point in order, the JSON and plot rewritten after each new one; the table at the end."""
    if args.device == "cuda" and device_info("cuda")["device"] == "cpu":
        fail("--device cuda: no CUDA device is available here")
    cfg, seconds = prepare_run(args, run, data_root, budgets, settings["train_per_identity"])
    eval_overrides = [o for s in args.skip for o in SECTIONS[s](cfg)]
    old_rows = {r["budget"]: r for r in (previous or {}).get("rows", [])}
    result = {"name": path.stem.removeprefix("convergence_"), "settings": settings, "run": str(run),
              "budgets": budgets, "lr_schedule": f"{LR_SCHEDULE} after {cfg.diffusion.train.warmup_steps} "
              "warmup steps (one trajectory through every budget)", "eval_overrides": eval_overrides,
              **device_info(args.device), "job_stage_seconds": seconds, "rows": []}
    changed = previous is None or previous.get("budgets") != budgets
    for budget in budgets:
        row = next_row(run, data_root, cfg, budget, old_rows.get(budget), eval_overrides, args)
        changed = changed or row is not old_rows.get(budget)
        result["rows"].append(row)
        if changed:  # after every point: an interruption loses at most the point under way
            write(result, path)
    if not changed:  # nothing new: the JSON stays as it was
        result = previous
    print_table(result)
    print(f"\n{path}")
    return result


if __name__ == "__main__":
    main()
