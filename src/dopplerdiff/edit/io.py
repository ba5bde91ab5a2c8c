"""Reading edit inputs the way the run's data was read, and writing edit outputs atomically.

Inputs are decoded with the run's data settings (colormap inversion, channels) and resized to the model's
size; anything that differs from the run's data (size, colormap fit) is reported, as loading does.
"""

from __future__ import annotations

import logging
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from dopplerdiff.config.data import DataConfig
from dopplerdiff.data.images import from_unit, read_file, resize, write_image
from dopplerdiff.errors import DataError, DopplerDiffError
from dopplerdiff.generate import check_format
from dopplerdiff.utils.io import atomic_dir, write_manifest

log = logging.getLogger(__name__)
# Mean RGB distance (0..255 units) of a colour file to the colormap above which it was probably made with
# another colormap (jet JPEGs of the measured data: ~16; a viridis image read as jet: far above 40).
COLORMAP_RESIDUAL_WARN = 40.0
# Modes of files read as intensities (data.images); anything else was a colour image or array.
INTENSITY_MODES = ("gray", "gray16", "F", "npy", "mat")


def output_names(files: list[Path], suffix: str) -> list[str]:
    """``<stem><suffix>`` per input, made unique in input order (``a/w.png`` and ``b/w.png``, or ``w.png``
    and ``w.npy``, would otherwise write one file twice): a repeated name gets ``-2``, ``-3``, ..."""
    names: list[str] = []
    taken: set[str] = set()
    for f in files:
        base = name = f"{Path(f).stem}{suffix}"
        n = 1
        while name in taken:
            n += 1
            name = f"{base}-{n}"
        taken.add(name)
        names.append(name)
    return names


def _note(p: Path, r: Any, cfg: DataConfig, warn: bool) -> dict[str, Any]:
    """The per-file note of ``read_inputs``, with a warning for what changes the input's meaning."""
    native = tuple(int(v) for v in r.array.shape[1:])
    note = {"file": str(p), "native_size": list(native), "resized": native != (cfg.size, cfg.size),
            "colormap_residual": r.residual}
    if not warn:
        return note
    if note["resized"]:
        log.warning("%s: %dx%d resized to the model's %dx%d", p, *native, cfg.size, cfg.size)
    if r.residual is not None and r.residual > COLORMAP_RESIDUAL_WARN:
        log.warning("%s: colours fit the '%s' colormap poorly (mean RGB distance %.1f); another colormap?",
                    p, cfg.colormap, r.residual)
    if cfg.channels == 1 and cfg.colormap == "gray" and r.mode not in INTENSITY_MODES:
        log.warning("%s: a colour image on a gray run; its RGB channels were averaged (a colormapped "
                    "input reads as the wrong intensities)", p)
    return note


def read_inputs(files: list[Path], cfg: DataConfig,
                warn: bool = True) -> tuple[np.ndarray, list[dict[str, Any]]]:
    """Files -> ((N, C, size, size) in [-1, 1], per-file notes: native size, resized, colormap residual);
    ``warn`` False: no warnings (the same files read a second time at another size)."""
    images, notes, bad = [], [], []
    for p in files:
        try:
            r = read_file(Path(p), cfg)
        except Exception as exc:  # noqa: BLE001 - any decoder failure is reported per file
            bad.append(f"{p}: {type(exc).__name__}: {exc}".splitlines()[0][:200])
            continue
        if r.array.shape[0] != cfg.channels:
            bad.append(f"{p}: {r.array.shape[0]} channel(s), the run's data has {cfg.channels}")
            continue
        notes.append(_note(p, r, cfg, warn))
        images.append(resize(r.array, cfg.size, cfg.resample))
    if bad:
        raise DataError(f"{len(bad)} unreadable input file(s): " + "; ".join(bad[:5]))
    return from_unit(np.stack(images)).astype(np.float32), notes


def write_outputs(
    out: Path,
    images01: np.ndarray,
    names: list[str],
    *,
    colormap: str,
    size: Any,
    fmt: str,
    overwrite: bool = False,
    **manifest: Any,
) -> Path:
    """Write ``out/<name>.<fmt>`` per image (native size, run colormap) and manifest.json, atomically."""
    check_format(fmt)
    clash = sorted(n for n, c in Counter(names).items() if c > 1)
    if clash:  # two images under one name: the later would replace the earlier
        raise DopplerDiffError(f"output names are not unique: {', '.join(clash[:5])}")
    with atomic_dir(Path(out), overwrite=overwrite) as tmp:
        files = []
        for img, name in zip(images01, names, strict=True):
            write_image(tmp / f"{name}.{fmt}", img, colormap, size=size)
            files.append(f"{name}.{fmt}")
        write_manifest(tmp, files=files, colormap=colormap, size=size, format=fmt, **manifest)
    return Path(out)
