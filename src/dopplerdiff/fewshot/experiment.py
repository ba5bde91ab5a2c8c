"""The novel-walkers experiment end to end: options, every check before any work, the fold loop, the results
JSON (rewritten atomically after every (fold, k), so an interrupted run loses at most one cell) and sample
strips. ``dopplerdiff fewshot`` and ``bench/fewshot.py`` both call ``run_fewshot``.

Per fold the run's stages train on the base people only (``protocol.train_base``, kept under
``RUNS/fold<i>/run``; a rerun resumes them); per k each novel person's first k windows adapt the generator
(``protocol.adapt``; method ``tuned`` also fine-tunes cross-attention K/V, ``finetune``), synthetic windows
are drawn per method, and the classifier arms (``arms``) are trained and scored with paired seeds.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from dopplerdiff.config import Config, load_config
from dopplerdiff.data.contact import save_grid
from dopplerdiff.data.images import SpectrogramSet, load_spectrograms, to_unit
from dopplerdiff.data.layout import DEFAULT_CONDITION
from dopplerdiff.data.run_data import prepare_run_data
from dopplerdiff.data.simulate import simulate_dataset
from dopplerdiff.errors import ConfigError, DopplerDiffError
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
from dopplerdiff.utils.io import read_json, write_json

# copies: the k shots time-shifted up to N, no generator (the class-balance baseline of the synthetic arms)
METHODS = ("row", "seeded", "tuned", "copies")
ARCHITECTURES = ("encoder", "judge")  # the project's classifier and the independent judge's
STRIP_SYNTHETIC = 4  # synthetic windows per method beside a novel person's shots in its sample strip
# header keys a resumed results file must share with the options (what makes its cells comparable)
SETTINGS = ("profile", "overrides", "ks", "ns", "methods", "strengths", "seeds", "adapt_steps", "tune_steps",
            "classifier_steps", "folds", "open_set", "architectures")


@dataclasses.dataclass
class FewshotOptions:
    """What to measure and where: ``runs`` keeps the fold runs (and simulated data), ``results`` is the JSON,
    ``strips`` (optional) the folder of sample strips."""

    data: str  # 'sim' (the profile's simulated people) or a data folder
    runs: Path
    results: Path
    strips: Path | None = None
    profile: str | None = "quick"
    overrides: list[str] = dataclasses.field(default_factory=list)
    folds: int = 3
    only_folds: int | None = None
    novel: list[str] | None = None
    ks: list[int] = dataclasses.field(default_factory=lambda: [5])
    ns: list[int] = dataclasses.field(default_factory=lambda: [16, 64])
    methods: list[str] = dataclasses.field(default_factory=lambda: ["row", "seeded"])
    strengths: list[float] = dataclasses.field(default_factory=lambda: [0.5, 0.8])
    seeds: int = 2
    adapt_steps: int = 300
    tune_steps: int = 200
    classifier_steps: int | None = None
    open_set: bool = False
    architectures: list[str] = dataclasses.field(default_factory=lambda: list(ARCHITECTURES))
    device: str = "auto"
    name: str | None = None
    resume: bool = False  # keep the (fold, k) cells of an existing results file made with the same settings


@dataclasses.dataclass
class Plan:
    """What ``prepare`` resolved: the config, all windows, the folds, the classifier steps and the device."""

    cfg: Config
    data: Path
    full: SpectrogramSet
    folds: list[fs.Fold]
    steps: int
    device: Any


# -- parsing and checks ------------------------------------------------------------------------------------
def int_list(text: str, flag: str) -> list[int]:
    """'1,3,5' -> [1, 3, 5]; anything but positive integers is one error naming ``flag``."""
    try:
        out = [int(p) for p in str(text).split(",") if p.strip()]
    except ValueError:
        raise ConfigError(f"{flag} takes comma-separated positive integers, got '{text}'") from None
    if not out or min(out) < 1:
        raise ConfigError(f"{flag} takes comma-separated positive integers, got '{text}'")
    return out


def float_list(text: str, flag: str) -> list[float]:
    """'0.5,0.8' -> [0.5, 0.8]; each must lie in (0, 1] (img2img strengths)."""
    try:
        out = [float(p) for p in str(text).split(",") if p.strip()]
    except ValueError:
        raise ConfigError(f"{flag} takes comma-separated numbers in (0, 1], got '{text}'") from None
    if not out or any(not 0.0 < s <= 1.0 for s in out):
        raise ConfigError(f"{flag} takes comma-separated numbers in (0, 1], got '{text}'")
    return out


def name_list(text: str | None) -> list[str] | None:
    """'ID_3, ID_5' -> ['ID_3', 'ID_5']; None stays None (folds instead of one named fold)."""
    return None if text is None else [n.strip() for n in text.split(",") if n.strip()]


def _choices(text: str, flag: str, valid: tuple[str, ...]) -> list[str]:
    """'a,b' -> ['a', 'b'], each one of ``valid``; anything else is one error naming ``flag``."""
    out = [c.strip() for c in str(text).split(",") if c.strip()]
    if not out or any(c not in valid for c in out):
        raise ConfigError(f"{flag} takes {', '.join(valid)} (comma-separated), got '{text}'")
    return out


def method_list(text: str) -> list[str]:
    return _choices(text, "--methods", METHODS)


def architecture_list(text: str) -> list[str]:
    return _choices(text, "--architectures", ARCHITECTURES)


def default_name(data: str) -> str:
    return "sim" if data == "sim" else Path(data).name


def check_options(o: FewshotOptions) -> None:
    """Every option on its own, before anything is read or written."""
    counts = {"--folds": o.folds, "--seeds": o.seeds, "--adapt-steps": o.adapt_steps,
              "--tune-steps": o.tune_steps, "--only-folds": o.only_folds,
              "--classifier-steps": o.classifier_steps}
    bad = [f"{flag} {v}" for flag, v in counts.items() if v is not None and v < 1]
    if bad:
        raise ConfigError(f"{', '.join(bad)}: must be >= 1")
    method_list(",".join(o.methods))
    architecture_list(",".join(o.architectures))
    if "seeded" in o.methods:
        float_list(",".join(map(str, o.strengths)), "--strengths")
    int_list(",".join(map(str, o.ks)), "--k")
    int_list(",".join(map(str, o.ns)), "--n")
    if o.novel is not None and not o.novel:
        raise ConfigError("--novel names no person; give comma-separated identities, e.g. ID_3,ID_5")
    if o.data != "sim" and not Path(o.data).is_dir():
        raise DopplerDiffError(f"--data '{o.data}' is not a directory")


def _checked_folds(o: FewshotOptions, full: SpectrogramSet, cfg: Config) -> list[fs.Fold]:
    """The folds, each (fold, k) checked possible: an error names the argument that made it impossible."""
    try:
        folds = fs.make_folds(full.identities, o.folds, cfg.seed, o.novel)[: o.only_folds]
    except DopplerDiffError as exc:
        raise DopplerDiffError(f"{'--novel' if o.novel else '--folds'}: {exc}") from None
    for fold in folds:
        for k in o.ks:
            try:
                fs.split_novel(full, fold.novel, k, cfg.data.split.gap_windows)
            except DopplerDiffError as exc:
                raise DopplerDiffError(f"--k: {exc}") from None
    return folds


def prepare(o: FewshotOptions) -> Plan:
    """Config, data and folds, every (fold, k) checked; writes nothing unless ``data`` is 'sim' (then the
    profile's simulated people are written to RUNS/data once)."""
    check_options(o)
    cfg = load_config(o.profile, o.overrides)
    device = eval_device(o.device)
    data = Path(o.data) if o.data != "sim" else Path(o.runs) / "data"
    if o.data == "sim" and not data.exists():
        simulate_dataset(cfg.simulate, data, progress=False)
    full = load_spectrograms(data, cfg.data)
    if full.condition_names != [DEFAULT_CONDITION]:  # fold runs link the identity folders of the data root
        names = full.condition_names
        raise DopplerDiffError(f"--data '{data}' holds walking conditions ({', '.join(names)}); the "
                               f"novel-people experiment reads one: pass one condition folder, e.g. "
                               f"'{data / names[0]}'")
    folds = _checked_folds(o, full, cfg)
    return Plan(cfg, data, full, folds, o.classifier_steps or cfg.evaluate.augment_steps, device)


# -- the results file --------------------------------------------------------------------------------------
def header(o: FewshotOptions, plan: Plan) -> dict[str, Any]:
    """The results JSON before any cell (the keys of ``bench/fewshot.py``'s files, in their order)."""
    return {"dataset": o.name or default_name(o.data), "data": str(plan.data), "profile": o.profile or
            plan.cfg.profile, "overrides": list(o.overrides), "ks": o.ks, "ns": o.ns, "methods": o.methods,
            "strengths": o.strengths, "seeds": o.seeds, "adapt_steps": o.adapt_steps,
            "classifier_steps": plan.steps, "classic": dataclasses.asdict(CLASSIC),
            "lora": "built" if importlib.util.find_spec("peft") else "not built: peft is not importable",
            "folds": [dataclasses.asdict(f) for f in plan.folds],
            "threads": os.environ.get("OMP_NUM_THREADS"),
            "date": time.strftime("%Y-%m-%d %H:%M"), "rows": [], "train_seconds": {},
            "tune_steps": o.tune_steps, "open_set": o.open_set, "architectures": o.architectures}


def start(o: FewshotOptions, plan: Plan) -> dict[str, Any]:
    """A new results dict, or with ``resume`` the existing file's (same settings: its cells are kept)."""
    new = header(o, plan)
    path = Path(o.results)
    if not (o.resume and path.is_file()):
        return new
    old = read_json(path)
    old.setdefault("architectures", list(ARCHITECTURES))  # files from before the option scored both
    differ = [k for k in SETTINGS if old.get(k) != new[k]]
    if Path(old.get("data", "")).resolve() != Path(new["data"]).resolve():
        differ.insert(0, "data")
    if differ:
        raise DopplerDiffError(f"'{path}' was made with other settings ({', '.join(differ)}); resume with "
                               "the same options or choose another output folder")
    result = {**new, **{k: old[k] for k in ("rows", "train_seconds", "date", "wall_s") if k in old}}
    update_summary(result, o)
    return result


def update_summary(result: dict[str, Any], o: FewshotOptions) -> None:
    """Pool the rows of every k done so far (folds and seeds paired) into ``summary`` (and the open set's)."""
    done = [k for k in o.ks if any(r["k"] == k for r in result["rows"])]
    result["summary"] = {str(k): summarise([r["cells"] for r in result["rows"] if r["k"] == k]) for k in done}
    if o.open_set:
        result["open_set_summary"] = {
            str(k): summarise_open_set([r["open_set"] for r in result["rows"] if r["k"] == k]) for k in done}


# -- one (fold, k) cell -------------------------------------------------------------------------------------
def _draw(pipe: Any, shots: dict[str, np.ndarray], first: int, prior: Any, cfg: Config,
          o: FewshotOptions) -> tuple[dict[str, Any], dict[str, Any]]:
    """Synthetic sets of every method; (extra adaptation records, synthetic sets). Method (b) comes last:
    it changes the pipeline that (a) and (c) drew from."""
    syn = fs.synthetic_sets(pipe, shots, first, cfg, ns=o.ns, methods=o.methods, strengths=o.strengths)
    extra = {}
    if "tuned" in o.methods:
        extra["tuned"] = finetune_attention(pipe, shots, prior, cfg, steps=o.tune_steps, seed=cfg.seed)
        syn.update(fs.synthetic_sets(pipe, shots, first, cfg, ns=o.ns, methods=["row"], strengths=[],
                                     tag="tuned"))
    return extra, syn


def save_strip(path: Path, shots: dict[str, np.ndarray], syn: dict[str, Any], first: int,
               colormap: str) -> Path:
    """One picture: per novel person its k real shots, then ``STRIP_SYNTHETIC`` windows of each method (from
    the method's largest set), each row labelled."""
    largest: dict[str, tuple[int, Any]] = {}
    for key, arrays in syn.items():
        tag, _, n = key.rpartition("/n")
        if tag not in largest or int(n) > largest[tag][0]:
            largest[tag] = (int(n), arrays)
    rows, labels = [], []
    for j, (name, x) in enumerate(shots.items()):
        rows.append(to_unit(x))
        labels.append(f"{name} real")
        for tag, (_, (images, y)) in largest.items():
            rows.append(to_unit(images[y == first + j][:STRIP_SYNTHETIC]))
            labels.append(f"{name} {tag}")
    return save_grid(path, rows, colormap, labels)


def fold_k(fold: fs.Fold, k: int, run: Path, plan: Plan, o: FewshotOptions,
           on_arm: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
    """One (fold, k) cell: adapt the fold's generator to the k shots, draw, train and score every arm;
    ``on_arm`` gets the arms' results so far after every arm (long cells keep what they measured)."""
    cfg = plan.cfg
    base, split = prepare_run_data(run, None, cfg.data)  # the fold run's own record: base people only
    novel = fs.split_novel(plan.full, fold.novel, k, cfg.data.split.gap_windows)
    shots = {n: plan.full.images[s] for n, (s, _) in novel.items()}
    t0 = time.time()
    pipe = load_run_pipeline(run, device=str(plan.device))
    generative = set(o.methods) - {"copies"}  # copies need no adapted row
    adapted = fs.adapt(pipe, shots, cfg, steps=o.adapt_steps, seed=cfg.seed) if generative else {}
    t1 = time.time()
    data = fewshot_set(base, split, plan.full, novel)
    extra, syn = _draw(pipe, shots, len(base.identities), data.base_train, cfg, o)
    adapted.update(extra)
    strips = None  # drawn before scoring: the picture exists even if the classifiers are interrupted
    if o.strips is not None:
        strips = save_strip(Path(o.strips) / f"fold{fold.index}_k{k}.png", shots, syn, len(base.identities),
                            cfg.data.colormap)
    t2 = time.time()
    seeds = list(range(cfg.seed, cfg.seed + o.seeds))
    fits = {a: f for a, f in fitters(cfg, plan.steps, plan.device).items() if a in o.architectures}
    cells = score_arms(len(data.names), arm_table(data, syn), fits, seeds, scored_sets(data), on_arm=on_arm)
    t3 = time.time()
    opened = (open_set(data, syn, cfg, steps=plan.steps, seeds=seeds, device=plan.device) if o.open_set
              else None)
    row = {"fold": fold.index, "k": k, "base": fold.base, "novel": fold.novel, "adaptation": adapted,
           "counts": {"base_train": len(data.base_train[1]), "base_test": len(data.base_test[1]),
                      "shots": len(data.shots[1]), "novel_test": len(data.novel_test[1])},
           "seconds": {"adapt": round(t1 - t0, 1), "sample": round(t2 - t1, 1),
                       "classify": round(t3 - t2, 1), "open_set": round(time.time() - t3, 1)},
           "cells": cells, **({"open_set": opened} if opened is not None else {})}
    if strips is not None:
        row["strips"] = os.path.relpath(strips.resolve(), Path(o.results).resolve().parent)
    return row


# -- the experiment ---------------------------------------------------------------------------------------
def _partial_writer(result: dict[str, Any], o: FewshotOptions, fold: int,
                    k: int) -> Callable[[dict[str, Any]], None]:
    """After every arm: the results file with the unfinished (fold, k) under ``in_progress`` (its cells and
    their summary), outside ``rows``, so a resume recomputes that cell and a reader sees what was measured."""
    def write(cells: dict[str, Any]) -> None:
        write_json(o.results, {**result, "in_progress": {"fold": fold, "k": k, "cells": cells,
                                                         "summary": summarise([cells])}})
    return write


def run_fewshot(o: FewshotOptions,
                on_update: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
    """Every fold and k of ``o``; the results dict is written to ``o.results`` after every (fold, k) and
    passed to ``on_update`` (e.g. to render a report). Bad options raise before anything is written."""
    plan = prepare(o)
    result = start(o, plan)
    t0 = time.time() - float(result.get("wall_s", 0.0))
    for fold in plan.folds:
        todo = [k for k in o.ks if not any(r["fold"] == fold.index and r["k"] == k for r in result["rows"])]
        if not todo:
            continue
        t = time.time()
        fold_dir = Path(o.runs) / f"fold{fold.index}"
        base_dir = fs.base_data_folder(plan.data, fold.base, fold_dir / "data")
        fs.train_base(fold_dir / "run", plan.cfg, base_dir)
        result["train_seconds"][str(fold.index)] = round(time.time() - t, 1)
        for k in todo:
            result["rows"].append(fold_k(fold, k, fold_dir / "run", plan, o,
                                         on_arm=_partial_writer(result, o, fold.index, k)))
            update_summary(result, o)
            result["wall_s"] = round(time.time() - t0, 1)
            write_json(o.results, result)  # after every (fold, k): nothing is lost
            if on_update is not None:
                on_update(result)
    return result
