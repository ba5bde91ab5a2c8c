"""Real windows that seed img2img variations: the run's TRAIN split, or a folder of ``<identity>/`` files.

Sample ``i`` of identity ``k`` is seeded by window ``i mod n_k`` of that identity's windows in a fixed
(natural file-name) order, so a sample is reproducible alone. Validation and test windows of the run never
seed a sample: the split reader takes the train split only, and a folder whose files repeat (byte for byte)
a val/test window of the run is refused.
"""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path

import numpy as np

from dopplerdiff.config.data import DataConfig
from dopplerdiff.data.images import natural_key, scan_tree
from dopplerdiff.data.run_data import read_run_data
from dopplerdiff.embed.encode import read_files
from dopplerdiff.errors import DataError, DopplerDiffError
from dopplerdiff.utils.paths import path_inside
from dopplerdiff.utils.rundir import RunDir

SPLIT = "split"  # --from-real split: the run's training windows


@dataclasses.dataclass
class RealSources:
    """Per identity index: source files (names for manifests) and images (n, C, H, W) in [-1, 1]."""

    origin: str
    paths: dict[int, list[Path]]
    names: dict[int, list[str]]
    images: dict[int, np.ndarray]

    def _pick(self, k: int, i: int) -> int:
        if k not in self.images:
            raise DopplerDiffError(f"no source windows for identity index {k}")
        return i % len(self.images[k])

    def image(self, k: int, i: int) -> np.ndarray:
        return self.images[k][self._pick(k, i)]

    def name(self, k: int, i: int) -> str:
        return self.names[k][self._pick(k, i)]

    def count(self, k: int) -> int:
        return len(self.images.get(k, ()))

    def limit(self, m: int) -> RealSources:
        """Only the first ``m`` windows of each identity (a real-data budget)."""
        cut = {k: slice(0, m) for k in self.images}
        return RealSources(self.origin, {k: v[cut[k]] for k, v in self.paths.items()},
                           {k: v[cut[k]] for k, v in self.names.items()},
                           {k: v[cut[k]] for k, v in self.images.items()})


def split_files(run: Path, which: str = "train") -> tuple[Path, dict[str, list[str]]]:
    """(data root, {identity: files of ``which`` relative to the root, natural order}) from RUN/data.json.

    Every entry is checked to name a file inside the data root (``utils.paths.path_inside``)."""
    data = read_run_data(run)
    root, source = Path(data["data_root"]), f"'{RunDir(run).data_record}'"
    out: dict[str, list[str]] = {}
    for rel in data["split"].get(which, []):
        path_inside(root, rel, source)
        out.setdefault(rel.split("/", 1)[0], []).append(rel)
    return root, {k: sorted(v, key=natural_key) for k, v in out.items()}


def _load(origin: str, root: Path, files: dict[str, list[str]], label_map: list[str],
          cfg: DataConfig) -> RealSources:
    unknown = sorted(set(files) - set(label_map))
    if unknown:
        raise DopplerDiffError(f"source identities {', '.join(unknown)} are not in the run's label map "
                               f"({', '.join(label_map[:8])}{'...' if len(label_map) > 8 else ''})")
    paths = {label_map.index(n): [root / f for f in fs] for n, fs in files.items() if fs}
    if not paths:
        raise DopplerDiffError(f"no source windows in {origin}")
    images = {k: read_files(ps, cfg) for k, ps in paths.items()}
    return RealSources(origin, paths, {k: [f for f in files[label_map[k]]] for k in paths}, images)


def train_sources(run: Path, label_map: list[str], cfg: DataConfig) -> RealSources:
    """The run's training windows (RUN/data.json, train split only)."""
    root, files = split_files(run, "train")
    if not files:
        raise DopplerDiffError(f"run '{run}' records no training windows in data.json")
    if not root.is_dir():
        raise DataError(f"the run's data root '{root}' (RUN/data.json) is not a directory")
    return _load("split:train", root, files, label_map, cfg)


def _digest(path: Path) -> str:
    return hashlib.sha1(Path(path).read_bytes()).hexdigest()


def folder_sources(folder: Path, run: Path, label_map: list[str], cfg: DataConfig) -> RealSources:
    """Windows of ``folder/<identity>/``; identities must be in the run's label map, and no file may be a
    copy of a validation or test window of the run."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DopplerDiffError(f"--from-real '{folder}' is neither 'split' nor a directory")
    _, per_id, _ = scan_tree(folder)
    src = _load(str(folder), folder, per_id, label_map, cfg)
    if RunDir(run).data_record.is_file():
        _refuse_held_out(src, run)
    return src


def _refuse_held_out(src: RealSources, run: Path) -> None:
    held: dict[str, str] = {}
    for which in ("val", "test"):
        root, files = split_files(run, which)
        for rels in files.values():
            held.update({_digest(root / r): f"{which} window {r}" for r in rels if (root / r).is_file()})
    for ps in src.paths.values():
        for p in ps:
            hit = held.get(_digest(p))
            if hit:
                raise DopplerDiffError(f"source '{p}' is the run's {hit}; only training windows may seed "
                                       "samples (use --from-real split)")


def real_sources(spec: str, run: Path, label_map: list[str], cfg: DataConfig) -> RealSources:
    """``split`` -> the run's training windows; anything else is a folder."""
    if spec == SPLIT:
        return train_sources(run, label_map, cfg)
    return folder_sources(Path(spec), run, label_map, cfg)
