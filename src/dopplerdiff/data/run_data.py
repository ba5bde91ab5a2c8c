"""RUN/data.json: which data a run was trained on, its label map and its fixed split.

Every stage of a run calls ``prepare_run_data`` so that all of them see the same identities in the same
order and the same train/val/test files, even if the split code or the folder changes later.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from dopplerdiff.config import Config
from dopplerdiff.config.base import to_dict
from dopplerdiff.config.data import DataConfig
from dopplerdiff.data.images import SpectrogramSet, load_spectrograms
from dopplerdiff.data.layout import DEFAULT_CONDITION
from dopplerdiff.data.split import SPLITS, make_split
from dopplerdiff.errors import DataError
from dopplerdiff.utils.io import write_json
from dopplerdiff.utils.names import check_identity_names
from dopplerdiff.utils.paths import check_relpath
from dopplerdiff.utils.rundir import RunDir


def read_run_data(run: Path) -> dict[str, Any]:
    """Contents of RUN/data.json (DataError if the run has none or it is malformed); ``conditions`` is
    filled in as ``["default"]`` for files written before walking conditions."""
    path = RunDir(run).data_record
    if not path.is_file():
        raise DataError(
            f"'{path}' does not exist; '{run}' is not a prepared run directory (pass --data DATA)"
        )
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise DataError(f"'{path}' is not valid JSON: {exc}") from exc
    missing = [k for k in ("data_root", "identities", "split") if k not in data]
    if missing:
        raise DataError(f"'{path}' lacks the key(s) {', '.join(missing)}")
    check_identity_names(data["identities"], f"'{path}'")
    split = data["split"]
    if not isinstance(split, dict) or not all(isinstance(v, list) for v in split.values()):
        raise DataError(f"'{path}': 'split' is not a mapping of split names to file lists")
    for files in split.values():  # entries become paths under the data root (and under augment's --out)
        for rel in files:
            check_relpath(rel, f"'{path}'")
    conds = data.setdefault("conditions", [DEFAULT_CONDITION])  # files written before conditions: one
    if (not isinstance(conds, list) or not conds or len(set(conds)) != len(conds)
            or not all(isinstance(c, str) and c for c in conds)):
        raise DataError(f"'{path}': 'conditions' is not a list of distinct condition names: {conds!r}")
    return data


def _recorded_split(ds: SpectrogramSet, recorded: dict[str, list[str]], path: Path) -> dict[str, np.ndarray]:
    pos = {f: i for i, f in enumerate(ds.files)}
    missing = [f for name in SPLITS for f in recorded.get(name, []) if f not in pos]
    if missing:
        raise DataError(
            f"{len(missing)} file(s) of the split recorded in '{path}' are not in the data under "
            f"'{ds.meta.get('root')}' (e.g. {', '.join(missing[:3])}); "
            "use the same data or a new run directory"
        )
    return {
        name: np.asarray(sorted(pos[f] for f in recorded.get(name, [])), dtype=np.int64) for name in SPLITS
    }


def _check_budget(recorded: dict[str, Any], cfg: DataConfig, path: Path) -> None:
    """A run prepared with one real-data budget cannot be continued with another."""
    was = recorded.get("train_per_identity")
    if was != cfg.train_per_identity:
        raise DataError(f"'{path}' was prepared with data.train_per_identity={was} but the config asks for "
                        f"{cfg.train_per_identity}; use the same setting or a new run directory")


def prepare_run_data(
    run: Path, data_root: Path | None, cfg: DataConfig, progress: bool = False
) -> tuple[SpectrogramSet, dict[str, np.ndarray]]:
    """Load the run's data and split; write RUN/data.json the first time, validate and reuse it after."""
    run = Path(run)
    path = RunDir(run).data_record
    recorded = read_run_data(run) if path.exists() else None
    if data_root is None:
        if recorded is None:
            raise DataError(f"no data given and '{path}' does not exist; pass the data folder (--data DATA)")
        data_root = Path(recorded["data_root"])
    ds = load_spectrograms(Path(data_root), cfg, progress=progress)
    if recorded is not None:
        if list(recorded["identities"]) != list(ds.identities):
            raise DataError(
                f"identities in '{data_root}' ({', '.join(ds.identities)}) do not match those recorded in "
                f"'{path}' ({', '.join(recorded['identities'])}); use the run's data or a new run directory"
            )
        if list(recorded["conditions"]) != list(ds.condition_names):
            raise DataError(
                f"walking conditions in '{data_root}' ({', '.join(ds.condition_names)}) do not match those "
                f"recorded in '{path}' ({', '.join(recorded['conditions'])}); use the run's data or a new "
                "run directory"
            )
        _check_budget(recorded, cfg, path)
        return ds, _recorded_split(ds, recorded["split"], path)
    split = make_split(ds, cfg)
    run.mkdir(parents=True, exist_ok=True)
    write_json(path, {
        "data_root": str(Path(data_root).resolve()),
        "identities": ds.identities,
        "conditions": ds.condition_names,
        "split": {name: [ds.files[i] for i in split[name]] for name in SPLITS},
        "meta": ds.meta,
        "data_config": to_dict(cfg),
        "train_per_identity": cfg.train_per_identity,
    })
    return ds, split


def prepare_run(run: Path, cfg: Config, *, data_root: Path | None = None, resume: str | None = None,
                progress: bool = True) -> None:
    """The run's data stage: write (or check) RUN/data.json for ``data_root``; ``resume`` makes the common
    stage signature (one pass, no checkpoints)."""
    prepare_run_data(run, data_root, cfg.data, progress=progress)
