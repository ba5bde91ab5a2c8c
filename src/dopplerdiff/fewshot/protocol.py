"""Novel walkers from a few windows (leave-people-out): folds, the generator trained on base people only,
and synthetic windows of each novel person after adapting the generator to its k windows.

* ``make_folds``: identities -> base / novel people per fold (every person novel once);
* ``split_novel``: a novel person's k shots (the first k windows of its first recording, in time order) and
  its test windows (everything of that person after the shots and the split's guard gap);
* ``base_data_folder``: a folder of symlinks to the base people's identity folders, so that the run's own
  ``prepare data`` stage (RUN/data.json, its label map and split) never sees a novel person;
* ``train_base``: the ``run`` job's stages (``dopplerdiff.workflow.stages``) on that folder, the stages that
  only serve a report (generate, evaluate, and the encoder unless the first stage needs it) left out;
* ``adapt`` / ``sample_row`` / ``sample_seeded``: method (a), a new identity row learned from the shots
  (``train.identity.learn_identity``, denoiser frozen) and sampled from noise; method (c), img2img from the
  shots with the adapted row at a strength (``generate.sample`` with sources).

Like ``bench/`` it drives the run's stages, so it sits above them (nothing below imports it). Images are
(N, C, H, W) float32 in [-1, 1].
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from dopplerdiff.config import Config, saved_config
from dopplerdiff.config.base import to_dict
from dopplerdiff.data.images import SpectrogramSet, natural_key
from dopplerdiff.errors import DopplerDiffError
from dopplerdiff.generate import GenerationPlan, sample
from dopplerdiff.train.identity import MIN_WINDOWS, learn_identity
from dopplerdiff.utils.io import run_lock
from dopplerdiff.utils.rundir import RunDir
from dopplerdiff.workflow import run_stage, stages

log = logging.getLogger(__name__)
REPORT_STAGES = ("generate", "evaluate")  # they only serve the run's report: left out of a fold's run


@dataclasses.dataclass
class Fold:
    """One leave-people-out fold: the generator sees ``base`` people only; ``novel`` people are adapted."""

    index: int
    base: list[str]
    novel: list[str]


def make_folds(identities: list[str], n_folds: int, seed: int = 0,
               novel: list[str] | None = None) -> list[Fold]:
    """``n_folds`` folds whose novel sets partition the people (seed-shuffled, then cut in near-equal parts);
    with ``novel``, the one fold it names. Every fold keeps >= 2 base people (a run needs 2 identities)."""
    ids = sorted(identities, key=natural_key)
    if novel is not None:
        unknown = [n for n in novel if n not in ids]
        if unknown or not novel:
            raise DopplerDiffError(f"novel people {', '.join(unknown) or '(none)'} are not identities of the "
                                   f"data ({', '.join(ids)})")
        parts = [sorted(set(novel), key=natural_key)]
    else:
        if n_folds < 1:
            raise DopplerDiffError(f"folds must be >= 1, got {n_folds}")
        order = [ids[i] for i in np.random.default_rng(seed).permutation(len(ids))]
        parts = [sorted(p, key=natural_key) for p in np.array_split(np.array(order, dtype=object), n_folds)]
    if any(len(ids) - len(p) < 2 or not p for p in parts):
        raise DopplerDiffError(f"{len(ids)} people cannot make {len(parts)} fold(s) with >= 1 novel and >= 2 "
                               "base people each; use fewer folds")
    return [Fold(i, [n for n in ids if n not in p], list(p)) for i, p in enumerate(parts)]


def split_novel(ds: SpectrogramSet, novel: list[str], k: int, gap: int) -> dict[str, tuple[np.ndarray, ...]]:
    """name -> (shot indices, test indices) into ``ds``: the first ``k`` windows of the person's first
    recording (time order) and every later window of the person beyond ``gap`` windows of guard."""
    if k < 1:
        raise DopplerDiffError(f"k (windows per novel person) must be >= 1, got {k}")
    out = {}
    for name in novel:
        if name not in ds.identities:
            raise DopplerDiffError(f"novel person '{name}' is not an identity of the data")
        idx = np.flatnonzero(ds.labels == ds.identities.index(name))
        first = min((ds.recordings[i] for i in idx), key=natural_key)
        rec = sorted((i for i in idx if ds.recordings[i] == first),
                     key=lambda i: (int(ds.windows[i]), natural_key(ds.files[i])))
        if len(rec) < k:
            raise DopplerDiffError(f"k={k} is larger than what novel person '{name}' has: its first "
                                   f"recording '{first}' has {len(rec)} window(s)")
        shots = np.asarray(rec[:k], np.int64)
        last = int(ds.windows[shots[-1]])
        later = [i for i in idx if ds.recordings[i] != first or ds.windows[i] > last + gap]
        test = np.asarray(later, np.int64)
        if len(test) == 0:
            raise DopplerDiffError(f"novel person '{name}' has no window after its k={k} shots and the guard "
                                   f"gap of {gap} window(s); lower k")
        out[name] = (shots, test)
    return out


def base_data_folder(data_root: Path, base: list[str], out: Path) -> Path:
    """``out`` holding one symlink per base person's identity folder (and nothing else); refused if ``out``
    already holds other entries, so a fold's run can never be continued on other people."""
    out = Path(out)
    if out.exists():
        have = sorted(p.name for p in out.iterdir())
        if have != sorted(base):
            raise DopplerDiffError(f"'{out}' holds {', '.join(have)}, not this fold's base people "
                                   f"({', '.join(base)}); remove it or choose another output folder")
        return out
    missing = [b for b in base if not (Path(data_root) / b).is_dir()]
    if missing:
        raise DopplerDiffError(f"data folder '{data_root}' has no identity folder {', '.join(missing)}")
    tmp = out.with_name(out.name + ".tmp")
    tmp.mkdir(parents=True, exist_ok=True)
    for b in base:
        if not (tmp / b).is_symlink():
            os.symlink((Path(data_root) / b).resolve(), tmp / b, target_is_directory=True)
    tmp.rename(out)
    return out


def train_base(run: Path, cfg: Config, data: Path, progress: bool = False) -> list[str]:
    """The run's stages on ``data`` (base people only) until the pipeline exists; returns those that ran.
    A stage already complete is skipped (its marker file exists), so an interrupted fold resumes; a run made
    with another config is refused."""
    run = Path(run)
    run.mkdir(parents=True, exist_ok=True)
    encoder_first = cfg.autoencoder.loss.feature > 0
    todo = [s for s in stages(False, encoder_first, cfg.decoder.kind == "diffusion")
            if s.name not in REPORT_STAGES and (encoder_first or s.name != "train encoder")]
    ran = []
    with run_lock(run):
        saved = saved_config(run)
        if saved is None:
            cfg.save(RunDir(run).config)
        elif to_dict(saved) != to_dict(cfg):  # a fold run is one config: its stages must agree
            raise DopplerDiffError(f"fold run '{run}' was made with another config; continue it with the "
                                   "same profile and overrides or choose another output folder")
        rd = RunDir(run)
        for stage in todo:
            if not rd.is_complete(stage.key):
                log.info("fold run %s: %s", run, stage.name)
                run_stage(stage, rd, cfg, Path(data), progress)
                ran.append(stage.name)
            stage.check(rd, Path(data))
    return ran


class _ShotSource:
    """``generate.sample`` sources: job (row, i) starts from shot ``i mod k`` of the person."""

    def __init__(self, shots: np.ndarray):
        self.shots = np.asarray(shots, np.float32)

    def image(self, k: int, i: int) -> np.ndarray:
        return self.shots[i % len(self.shots)]


def adapt(pipe: Any, shots: dict[str, np.ndarray], cfg: Config, *, steps: int, lr: float = 5e-2,
          seed: int = 0) -> dict[str, dict[str, Any]]:
    """Learn one identity row per novel person from its shots (in place); with fewer than MIN_WINDOWS shots
    they are topped up with circularly time-shifted copies (recorded). Returns name -> learn_identity's
    record."""
    out = {}
    for name, x in shots.items():
        windows = top_up(x, MIN_WINDOWS)
        rec = learn_identity(pipe, windows, name, cfg, steps=steps, lr=lr, seed=seed, progress=False)
        out[name] = {**rec, "shots": int(len(x)),
                     "topped_up_to": int(len(windows)) if len(windows) > len(x) else None}
    return out


def top_up(x: np.ndarray, n: int) -> np.ndarray:
    """``x`` (k, C, H, W) extended to ``n`` windows by circular time shifts of its windows (k < n).

    Where a window starts within the gait cycle carries no identity (the training stages augment with the
    same shift), so a shifted copy is another window of the same walk, not a duplicate."""
    if len(x) >= n:
        return x
    extra = [np.roll(x[i % len(x)], shift=(1 + i // len(x)) * x.shape[-1] // (n + 1), axis=-1)
             for i in range(n - len(x))]
    return np.concatenate([x, np.stack(extra)])


def _render(pipe: Any, name: str, n: int, cfg: Config, sources: Any = None,
            strength: float = 1.0) -> np.ndarray:
    plan = GenerationPlan.from_evaluate(cfg.evaluate, identities=(name,), count=n, sources=sources,
                                        strength=strength)
    return (sample(pipe, plan, progress=False).images * 2.0 - 1.0).astype(np.float32)


def sample_row(pipe: Any, name: str, n: int, cfg: Config) -> np.ndarray:
    """Method (a): ``n`` windows of the adapted person from noise (the evaluation's sampler settings)."""
    return _render(pipe, name, n, cfg)


def sample_seeded(pipe: Any, name: str, shots: np.ndarray, n: int, strength: float,
                  cfg: Config) -> np.ndarray:
    """Method (c): ``n`` img2img variations of the person's shots (cycled) with its adapted row."""
    if not 0.0 < strength <= 1.0:
        raise DopplerDiffError(f"strength must be in (0, 1], got {strength}")
    return _render(pipe, name, n, cfg, _ShotSource(shots), strength)


def synthetic_sets(pipe: Any, shots: dict[str, np.ndarray], first_label: int, cfg: Config, *, ns: list[int],
                   methods: list[str], strengths: list[float],
                   tag: str = "row") -> dict[str, tuple[np.ndarray, ...]]:
    """'row/nN', 'seededS/nN' and 'copies/nN' -> (images, labels) for every N in ``ns``: person j of
    ``shots`` (already adapted) gets label ``first_label + j``. Sample i of a person is the same for every N
    (seed-indexed), so the largest N is drawn once and the smaller sets are its prefixes. ``tag`` names the
    from-noise sets (another adaptation of the same people draws them again under its own name). ``copies``
    needs no generator: the shots themselves, time-shifted up to N (``top_up``), so that an arm with them
    has the same number of windows per novel person as a synthetic arm: the class-balance baseline."""
    top = max(ns)
    plans: list[tuple[str, Callable[[str, np.ndarray], np.ndarray]]] = []
    if "row" in methods:
        plans.append((tag, lambda name, x: sample_row(pipe, name, top, cfg)))
    if "seeded" in methods:
        plans += [(f"seeded{s:g}", lambda name, x, s=s: sample_seeded(pipe, name, x, top, s, cfg))
                  for s in strengths]
    if "copies" in methods:
        plans.append(("copies", lambda name, x: top_up(x, top)[:top]))
    out: dict[str, tuple[np.ndarray, ...]] = {}
    for tag, draw in plans:
        per = [draw(name, x) for name, x in shots.items()]
        for n in ns:
            labels = np.repeat(np.arange(first_label, first_label + len(per)), n).astype(np.int64)
            out[f"{tag}/n{n}"] = (np.concatenate([p[:n] for p in per]), labels)
    return out
