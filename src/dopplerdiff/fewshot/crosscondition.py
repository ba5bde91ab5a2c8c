"""A new walking condition from a few windows: every person recorded in a source condition (``normal``), a
few windows of some of them in a target condition (``backpack``), identification in the target condition.

* ``plan_shots``: per person, the first k windows of its first target-condition recording (the shots) and its
  later target windows after the split's guard gap (the test); ``zero_shot`` people give no shot, all their
  target windows are test windows;
* ``fold_data_folder``: ``DATA/<source>/<ID>`` (symlinks to the whole source folders) and
  ``DATA/<target>/<ID>/`` holding symlinks to the shot files only, so the run's own stages never see a target
  window beyond the shots (the run's split keeps a person's few target windows whole in training);
* ``crosscondition_set``: the classifier's real windows (the run's training split: source windows and the
  shots), the source test split (the no-harm check) and the target test windows of shot and zero-shot people;
* ``synthetic_sets``: target-condition windows of every person drawn by the run's pipeline, from noise
  (``row``) or translated from the person's source training windows at a strength (``transferS``, SDEdit
  with the identity and the target condition).

Images are (N, C, H, W) float32 in [-1, 1].
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

import numpy as np

from dopplerdiff.config import Config
from dopplerdiff.data.images import SpectrogramSet
from dopplerdiff.errors import DopplerDiffError
from dopplerdiff.fewshot.arms import Arrays
from dopplerdiff.fewshot.protocol import split_novel
from dopplerdiff.generate import GenerationPlan, sample


def condition_index(ds: SpectrogramSet, name: str, what: str) -> int:
    """Index of condition ``name`` in ``ds``; one error naming the known conditions otherwise."""
    if name not in ds.condition_names:
        raise DopplerDiffError(f"{what} condition '{name}' is not a condition of the data "
                               f"({', '.join(ds.condition_names)})")
    return ds.condition_names.index(name)


def pick_zero_shot(identities: list[str], n: int, seed: int = 0) -> list[str]:
    """``n`` people (seed-chosen, natural order) who give no target window: generated zero-shot."""
    if not 0 <= n < len(identities):
        raise DopplerDiffError(f"zero-shot people must be in [0, {len(identities) - 1}], got {n}")
    chosen = set(np.random.default_rng(seed).permutation(len(identities))[:n].tolist())
    return [p for i, p in enumerate(identities) if i in chosen]


def plan_shots(ds: SpectrogramSet, target: str, k: int, zero_shot: list[str],
               gap: int) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """person -> (shot indices, test indices) into ``ds`` for the target condition (see module doc)."""
    t = condition_index(ds, target, "target")
    unknown = [z for z in zero_shot if z not in ds.identities]
    if unknown:
        raise DopplerDiffError(f"zero-shot people {', '.join(unknown)} are not identities of the data")
    in_target = np.flatnonzero(ds.conditions == t)
    people = [p for j, p in enumerate(ds.identities) if np.any(ds.labels[in_target] == j)]
    missing = [z for z in zero_shot if z not in people]
    if missing:
        raise DopplerDiffError(f"zero-shot people {', '.join(missing)} have no '{target}' window to test on")
    shot_people = [p for p in people if p not in zero_shot]
    if not shot_people:
        raise DopplerDiffError(f"every person is zero-shot: the generator needs '{target}' windows of "
                               "someone")
    whole = 3 + 2 * gap  # a shorter recording stays whole in the run's training part (data.split)
    if k >= whole:
        raise DopplerDiffError(f"k={k} target windows would be cut by the run's split into train/val/test "
                               f"blocks ({whole} windows or more with gap_windows={gap}); "
                               f"use k <= {whole - 1}")
    sub = ds.subset(in_target)
    planned = split_novel(sub, shot_people, k, gap) if shot_people else {}
    out = {p: (in_target[s], in_target[te]) for p, (s, te) in planned.items()}
    for z in zero_shot:
        out[z] = (np.zeros(0, np.int64), in_target[ds.labels[in_target] == ds.identities.index(z)])
    return out


def fold_data_folder(root: Path, ds: SpectrogramSet, source: str, target: str,
                     plan: dict[str, tuple[np.ndarray, np.ndarray]], out: Path) -> Path:
    """``out/<source>/<ID>`` -> the data's source folders, ``out/<target>/<ID>/<file>`` -> the shot files;
    refused if ``out`` exists with other shots (a run continued on other windows would mix protocols)."""
    out = Path(out)
    want = {ds.files[i] for shots, _ in plan.values() for i in shots}  # paths relative to the data root
    if out.exists():
        have = {str(p.relative_to(out)) for p in (out / target).rglob("*") if p.is_symlink()}
        if have != want:
            raise DopplerDiffError(f"'{out}' holds other {target} shots than this plan's; remove it or "
                                   "choose another output folder")
        return out
    tmp = out.with_name(out.name + ".tmp")
    tmp.mkdir(parents=True, exist_ok=True)
    src_dir = Path(root) / source
    for person in sorted(p.name for p in src_dir.iterdir() if p.is_dir()):
        link = tmp / source / person
        link.parent.mkdir(parents=True, exist_ok=True)
        if not link.is_symlink():
            os.symlink((src_dir / person).resolve(), link, target_is_directory=True)
    for rel in sorted(want):
        link = tmp / rel
        link.parent.mkdir(parents=True, exist_ok=True)
        if not link.is_symlink():
            os.symlink((Path(root) / rel).resolve(), link)
    tmp.rename(out)
    return out


@dataclasses.dataclass
class CrossSet:
    """One run's real windows for identification in the target condition; labels are the run's."""

    names: list[str]
    train: Arrays
    source_train: Arrays
    source_test: Arrays
    tests: dict[str, Arrays]


def crosscondition_set(run_ds: SpectrogramSet, split: dict[str, np.ndarray], full: SpectrogramSet,
                       plan: dict[str, tuple[np.ndarray, np.ndarray]], target: str,
                       zero_shot: list[str]) -> CrossSet:
    """Real training windows: the run's source-condition training split and every shot (from ``full``); the
    run's source-condition test split; the target test windows of shot people (``target_shot``) and of
    zero-shot people (``target_zero``)."""
    names = list(run_ds.identities)
    if sorted(names) != sorted(full.identities):
        raise DopplerDiffError(f"the run's people ({', '.join(names)}) are not the data's")

    def take(people: list[str]) -> Arrays:
        idx = [plan[p][1] for p in people]
        if not idx:
            return np.zeros((0, *full.images.shape[1:]), np.float32), np.zeros(0, np.int64)
        y = np.concatenate([np.full(len(i), names.index(p)) for p, i in zip(people, idx, strict=True)])
        return full.images[np.concatenate(idx)], y.astype(np.int64)

    t = run_ds.condition_names.index(target) if target in run_ds.condition_names else -1
    src, test = (split[p][run_ds.conditions[split[p]] != t] for p in ("train", "test"))
    shot = np.concatenate([plan[p][0] for p in plan] + [np.zeros(0, np.int64)])
    shot_y = np.asarray([names.index(full.identities[full.labels[i]]) for i in shot], np.int64)
    source_train = (run_ds.images[src], run_ds.labels[src])
    return CrossSet(names=names, source_train=source_train,
                    train=(np.concatenate([source_train[0], full.images[shot]]),
                           np.concatenate([source_train[1], shot_y])),
                    source_test=(run_ds.images[test], run_ds.labels[test]),
                    tests={"target_shot": take([p for p in plan if p not in zero_shot]),
                           "target_zero": take([p for p in plan if p in zero_shot])})


class _Sources:
    """``generate.sample`` sources: job (row, i) starts from the person's source window ``i`` (cycled)."""

    def __init__(self, per_row: dict[int, np.ndarray]):
        self.per_row = per_row

    def image(self, k: int, i: int) -> np.ndarray:
        x = self.per_row[k]
        return x[i % len(x)]


def synthetic_sets(pipe: Any, cs: CrossSet, target: str, cfg: Config, *, n: int, strengths: list[float],
                   condition_guidance: float | None = None) -> dict[str, Arrays]:
    """'row/nN' and 'transferS/nN' -> target-condition windows of every person with its label."""
    for s in strengths:
        if not 0.0 < s <= 1.0:
            raise DopplerDiffError(f"strength must be in (0, 1], got {s}")
    rows = [pipe.identities.index(p) for p in cs.names]
    labels = np.repeat(np.arange(len(rows)), n).astype(np.int64)
    plan = GenerationPlan.from_evaluate(cfg.evaluate, identities=rows, count=n, condition=target,
                                        condition_guidance=condition_guidance)
    out = {f"row/n{n}": ((sample(pipe, plan, progress=False).images * 2 - 1).astype(np.float32), labels)}
    x, y = cs.source_train
    per_row = {r: x[y == j] for j, r in enumerate(rows)}  # the person's source-condition training windows
    for s in strengths:
        img = sample(pipe, plan.replace(sources=_Sources(per_row), strength=s), progress=False).images
        out[f"transfer{s:g}/n{n}"] = ((img * 2 - 1).astype(np.float32), labels)
    return out
