"""Read folder-per-identity spectrogram trees into arrays, invert colormaps, write images back.

Layout (``data.layout``): ``ROOT/<identity>/<files>`` or ``ROOT/<condition>/<identity>/<files>``;
jpg/jpeg/png/bmp (colormapped RGB or gray), ``.npy``
(2-D, or 3-D HxWxC / CxHxW) or MATLAB ``.mat`` (exactly one 2-D numeric variable). RGB images are
turned into one intensity channel by nearest-colour lookup on the colormap's 256-entry LUT
(``channels: 1``) or kept as RGB (``channels: 3``). Arrays live in [-1, 1] as float32 (N, C, H, W).
"""

from __future__ import annotations

import io
import os
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from dopplerdiff.config.data import DataConfig
from dopplerdiff.data.colormap import apply_colormap, colormap_lut, inverse_table, invert_colormap
from dopplerdiff.data.layout import (
    DEFAULT_CONDITION,
    IMAGE_EXTS,
    index_tree,
    natural_key,
    parse_name,
    scan_tree,
)
from dopplerdiff.errors import DataError
from dopplerdiff.utils.io import atomic_write_bytes

# Read from here by many modules; one implementation each, in data.layout.
__all__ = ["SpectrogramSet", "load_spectrograms", "natural_key", "parse_name", "scan_tree", "write_image"]

_NUMERIC_MODES = ("npy", "mat", "gray16", "F")
_GRAY_TOL = 10  # max |R-G|, |G-B| for an RGB file to count as grayscale (JPEG chroma noise)


@dataclass
class SpectrogramSet:
    """Spectrograms with labels and provenance; ``images`` is float32 (N, C, H, W) in [-1, 1]."""

    images: np.ndarray
    labels: np.ndarray
    identities: list[str]
    files: list[str]
    recordings: list[str]
    windows: np.ndarray
    meta: dict[str, Any] = field(default_factory=dict)
    # Walking condition per window (index into condition_names); a flat data root has one, "default".
    conditions: np.ndarray | None = None
    condition_names: list[str] = field(default_factory=lambda: [DEFAULT_CONDITION])

    def __post_init__(self) -> None:
        if self.conditions is None:
            self.conditions = np.zeros(len(self.labels), dtype=np.int64)

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def subset(self, idx: Sequence[int] | np.ndarray) -> SpectrogramSet:
        """The samples at ``idx`` (label map and meta unchanged)."""
        idx = np.asarray(idx, dtype=np.int64)
        return replace(
            self,
            images=self.images[idx],
            labels=self.labels[idx],
            files=[self.files[i] for i in idx],
            recordings=[self.recordings[i] for i in idx],
            windows=self.windows[idx],
            meta=dict(self.meta),
            conditions=self.conditions[idx],
        )


def to_unit(x: Any) -> Any:
    """[-1, 1] -> [0, 1] (numpy or torch)."""
    return (x + 1.0) / 2.0


def from_unit(x: Any) -> Any:
    """[0, 1] -> [-1, 1] (numpy or torch)."""
    return x * 2.0 - 1.0


# ---------------------------------------------------------------- reading single files
@dataclass
class _Read:
    """One decoded file before resizing: float32 (C, H, W) in [0, 1]."""

    array: np.ndarray
    mode: str
    residual: float | None = None  # mean distance to the colormap (colour files only)
    scaling: str = "unit"


def _to_unit_range(arr: np.ndarray) -> tuple[np.ndarray, str]:
    """Numeric array -> [0, 1]: integer types by their range, floats in [0, 1] as is, else min-max."""
    if arr.dtype == np.uint8:
        return arr.astype(np.float32) / 255.0, "uint8"
    if arr.dtype == np.uint16:
        return arr.astype(np.float32) / 65535.0, "uint16"
    a = arr.astype(np.float32)
    if not np.isfinite(a).all():
        raise ValueError("contains NaN or inf")
    lo, hi = float(a.min()), float(a.max())
    if lo >= -1e-3 and hi <= 1.0 + 1e-3:
        return np.clip(a, 0.0, 1.0), "unit"
    # Per-file min-max (e.g. dB spectrograms): the usual per-window normalisation of spectrograms.
    return (a - lo) / (hi - lo) if hi > lo else np.zeros_like(a), "minmax"


def _from_rgb(rgb: np.ndarray, cfg: DataConfig, mode: str) -> _Read:
    """uint8 (H, W, 3) -> channels per config (colormap inversion or RGB kept)."""
    d = rgb.astype(np.int16)
    spread = max(int(np.abs(d[..., 0] - d[..., 1]).max()), int(np.abs(d[..., 1] - d[..., 2]).max()))
    gray = spread <= _GRAY_TOL
    if cfg.channels == 3:
        return _Read(np.moveaxis(rgb, -1, 0).astype(np.float32) / 255.0, "gray" if gray else mode)
    if gray or cfg.colormap == "gray":
        return _Read((d.mean(-1) / 255.0).astype(np.float32)[None], "gray" if gray else mode)
    inten, residual = invert_colormap(rgb, cfg.colormap)
    return _Read(inten[None], mode, residual)


def _from_intensity(a01: np.ndarray, cfg: DataConfig, mode: str, scaling: str) -> _Read:
    """float (H, W) in [0, 1] -> channels per config (3 channels: render through the colormap)."""
    if cfg.channels == 3:
        rgb = apply_colormap(a01, cfg.colormap) if cfg.colormap != "gray" else np.repeat(
            np.round(a01[..., None] * 255).astype(np.uint8), 3, -1)
        return _Read(np.moveaxis(rgb, -1, 0).astype(np.float32) / 255.0, mode, scaling=scaling)
    return _Read(a01.astype(np.float32)[None], mode, scaling=scaling)


def _read_image(path: Path, cfg: DataConfig) -> _Read:
    with Image.open(path) as im:
        im.load()
        mode = im.mode
        if mode in ("I;16", "I;16B", "I;16L", "I", "F"):
            arr, scaling = _to_unit_range(np.asarray(im.convert("F") if mode == "F" else im))
            return _from_intensity(arr, cfg, "gray16" if mode.startswith("I") else "F", scaling)
        if mode in ("L", "1", "LA"):
            a01 = np.asarray(im.convert("L"), dtype=np.float32) / 255.0
            return _from_intensity(a01, cfg, "gray", "uint8")
        return _from_rgb(np.asarray(im.convert("RGB")), cfg, mode)


def _array_to_read(arr: np.ndarray, cfg: DataConfig, kind: str) -> _Read:
    if arr.ndim == 3:
        if arr.shape[0] in (1, 3, 4) and arr.shape[-1] not in (1, 3, 4):
            arr = np.moveaxis(arr, 0, -1)  # CxHxW -> HxWxC
        if arr.shape[-1] not in (1, 3, 4):
            raise ValueError(f"3-D array of shape {arr.shape} has no channel axis of size 1, 3 or 4")
        if arr.shape[-1] == 1:
            arr = arr[..., 0]
        else:
            a01, _ = _to_unit_range(arr[..., :3])
            return _from_rgb(np.round(a01 * 255).astype(np.uint8), cfg, f"{kind}-rgb")
    if arr.ndim != 2:
        raise ValueError(f"array of shape {arr.shape} is not 2-D (H, W) or 3-D (H, W, C) / (C, H, W)")
    if not np.issubdtype(arr.dtype, np.number) or np.iscomplexobj(arr):
        raise ValueError(f"array dtype {arr.dtype} is not real numeric")
    a01, scaling = _to_unit_range(arr)
    return _from_intensity(a01, cfg, kind, scaling)


def _read_mat(path: Path, cfg: DataConfig) -> _Read:
    from scipy.io import loadmat

    data = loadmat(path)
    found = {k: v for k, v in data.items() if not k.startswith("__")}
    arrays = {
        k: v for k, v in found.items()
        if isinstance(v, np.ndarray) and v.ndim == 2 and min(v.shape) > 1
        and np.issubdtype(v.dtype, np.number) and not np.iscomplexobj(v)
    }
    if len(arrays) != 1:
        names = ", ".join(f"{k} {getattr(v, 'shape', '')}" for k, v in found.items()) or "none"
        raise ValueError(
            f"expected exactly one 2-D numeric variable, found {len(arrays)} (variables: {names})"
        )
    return _array_to_read(next(iter(arrays.values())), cfg, "mat")


def read_file(path: Path, cfg: DataConfig) -> _Read:
    """Decode one supported file to float32 (C, H, W) in [0, 1] at its native size."""
    ext = path.suffix.lower()
    if ext in IMAGE_EXTS:
        return _read_image(path, cfg)
    if ext == ".npy":
        return _array_to_read(np.load(path, allow_pickle=False), cfg, "npy")
    if ext == ".mat":
        return _read_mat(path, cfg)
    raise ValueError(f"unsupported file type '{ext}'")


def resize(arr: np.ndarray, size: int | Sequence[int], resample: str = "bilinear") -> np.ndarray:
    """Resize float (C, H, W) per channel with PIL (antialiased when shrinking); size int or (H, W)."""
    h, w = (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))
    if arr.shape[-2:] == (h, w):
        return arr.astype(np.float32, copy=False)
    filt = {"bilinear": Image.BILINEAR, "area": Image.BOX, "bicubic": Image.BICUBIC, "lanczos": Image.LANCZOS}
    out = [np.asarray(Image.fromarray(c.astype(np.float32), mode="F").resize((w, h), filt[resample]))
           for c in arr]
    return np.clip(np.stack(out), 0.0, 1.0).astype(np.float32)


# ---------------------------------------------------------------- folder trees
def _decode_all(root: Path, files: list[str], cfg: DataConfig, progress: bool) -> tuple[np.ndarray, list]:
    """Decode every file into one preallocated array; per file (native size, residual, mode, scaling)."""
    # Workers write straight into one preallocated array: peak memory stays ~1x the dataset.
    images = np.empty((len(files), cfg.channels, cfg.size, cfg.size), dtype=np.float32)

    def work(i: int) -> tuple[str, float | None, str, str] | str:
        try:
            r = read_file(root / files[i], cfg)
        except Exception as exc:  # noqa: BLE001 - any decoder failure is reported per file
            return f"{files[i]}: {type(exc).__name__}: {exc}".splitlines()[0][:200]
        images[i] = from_unit(resize(r.array, cfg.size, cfg.resample))
        return f"{r.array.shape[1]}x{r.array.shape[2]}", r.residual, r.mode, r.scaling

    # Decoding and numpy lookups release the GIL; more threads than cores only adds contention.
    workers = cfg.workers or max(1, min(4, os.cpu_count() or 1, len(files) // 32))
    with ThreadPoolExecutor(max_workers=workers) as pool:
        it = pool.map(work, range(len(files)))
        if progress:
            from tqdm import tqdm

            it = tqdm(it, total=len(files), desc="loading", unit="img")
        results = list(it)
    bad = [r for r in results if isinstance(r, str)]
    if bad:
        listed = "; ".join(bad[:5]) + (f"; ... and {len(bad) - 5} more" if len(bad) > 5 else "")
        raise DataError(f"{len(bad)} unreadable file(s) under '{root}': {listed}")
    return images, results


def _load_meta(root: Path, cfg: DataConfig, files: list[str], decoded: list, sorted_ids: list[str],
               n_identities: int, ignored: int) -> dict:
    """What loading found: native sizes, formats, value modes, colormap fit, where window order came from."""
    natives = Counter(native for native, _, _, _ in decoded)
    h, w = (int(v) for v in natives.most_common(1)[0][0].split("x"))
    residuals = [res for _, res, _, _ in decoded if res is not None]
    exts = Counter(Path(f).suffix.lower() for f in files)
    ext = exts.most_common(1)[0][0]
    source = "filename" if not sorted_ids else ("sorted" if len(sorted_ids) == n_identities else "mixed")
    return {
        "root": str(root.resolve()),
        "colormap": cfg.colormap,
        "channels": cfg.channels,
        "size": cfg.size,
        "native_size": h if h == w else [h, w],
        "native_sizes": dict(natives),
        "ext": ext,
        "exts": dict(exts),
        "format": {".jpeg": "jpg"}.get(ext, ext.lstrip(".")),
        "modes": dict(Counter(mode for _, _, mode, _ in decoded)),
        "value_scaling": dict(Counter(sc for _, _, mode, sc in decoded if mode in _NUMERIC_MODES)),
        "colormap_residual": float(np.mean(residuals)) if residuals else None,
        "window_index_source": source,
        "sorted_identities": sorted_ids,
        "ignored_files": ignored,
    }


def load_spectrograms(root: Path, cfg: DataConfig, progress: bool = False) -> SpectrogramSet:
    """Load ``root/<identity>/*`` (or ``root/<condition>/<identity>/*``) into a SpectrogramSet resized to
    cfg.size, normalised to [-1, 1]."""
    root = Path(root)
    if cfg.colormap != "gray":
        colormap_lut(cfg.colormap)  # fail fast on an unknown colormap
        if cfg.channels == 1:
            inverse_table(cfg.colormap)  # build once here, not concurrently in every worker thread
    ix = index_tree(root)
    images, decoded = _decode_all(root, ix.files, cfg, progress)
    meta = _load_meta(root, cfg, ix.files, decoded, ix.sorted_groups, ix.groups, ix.tree.ignored)
    return SpectrogramSet(
        images=images,
        labels=np.asarray(ix.labels, dtype=np.int64),
        identities=ix.tree.identities,
        files=ix.files,
        recordings=ix.recordings,
        windows=np.asarray(ix.windows, dtype=np.int64),
        meta=meta,
        conditions=np.asarray(ix.conditions, dtype=np.int64),
        condition_names=ix.condition_names,
    )


# ---------------------------------------------------------------- writing
def write_image(
    path: Path, img01: np.ndarray, colormap: str, size: int | Sequence[int] | None = None
) -> None:
    """Write one image in [0, 1] ((C, H, W) or (H, W)) as png/jpg/bmp (colormapped when 1 channel and
    colormap != 'gray'), .npy (float32 (H, W) or (C, H, W)) or .mat (variable 'spectrogram'), by suffix.
    ``size`` (int or (H, W)) resizes first, e.g. back to the input's native size."""
    path = Path(path)
    arr = np.clip(np.asarray(img01, dtype=np.float32), 0.0, 1.0)
    arr = arr[None] if arr.ndim == 2 else arr
    if arr.ndim != 3 or arr.shape[0] not in (1, 3):
        raise DataError(f"write_image '{path}': expected (H, W) or (C, H, W) with C in 1, 3; got {arr.shape}")
    if size is not None:
        arr = resize(arr, size)
    ext = path.suffix.lower()
    buf = io.BytesIO()
    if ext == ".npy":
        np.save(buf, arr[0] if arr.shape[0] == 1 else arr)
    elif ext == ".mat":
        from scipy.io import savemat

        savemat(buf, {"spectrogram": arr[0] if arr.shape[0] == 1 else np.moveaxis(arr, 0, -1)})
    elif ext in IMAGE_EXTS:
        if arr.shape[0] == 3:
            im = Image.fromarray(np.round(np.moveaxis(arr, 0, -1) * 255).astype(np.uint8), "RGB")
        elif colormap == "gray":
            im = Image.fromarray(np.round(arr[0] * 255).astype(np.uint8), "L")
        else:
            im = Image.fromarray(apply_colormap(arr[0], colormap), "RGB")
        # JPEG at full chroma resolution: 4:2:0 subsampling smears colours off the colormap.
        fmt = {".jpg": "JPEG", ".jpeg": "JPEG", ".png": "PNG", ".bmp": "BMP"}[ext]
        im.save(buf, format=fmt, **({"quality": 95, "subsampling": 0} if fmt == "JPEG" else {}))
    else:
        raise DataError(
            f"write_image '{path}': unsupported suffix '{ext}' (use .png, .jpg, .bmp, .npy or .mat)"
        )
    atomic_write_bytes(path, buf.getvalue())


def images_to_pil(images01: np.ndarray, cmap: str) -> list[Image.Image]:
    """(B,C,H,W) in [0,1] -> PIL images, 1-channel images colormapped with ``cmap`` (gray: 'L')."""
    out = []
    for img in np.clip(images01, 0, 1):
        if img.shape[0] == 1 and cmap not in ("gray", "grey"):
            out.append(Image.fromarray(apply_colormap(img[0], cmap), "RGB"))
        elif img.shape[0] == 1:
            out.append(Image.fromarray((img[0] * 255).round().astype(np.uint8), "L"))
        else:
            out.append(Image.fromarray((img.transpose(1, 2, 0) * 255).round().astype(np.uint8), "RGB"))
    return out
