"""Labelled image grids (contact sheets) for inspection, validation and sample previews."""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from dopplerdiff.data.colormap import apply_colormap
from dopplerdiff.data.images import SpectrogramSet, to_unit
from dopplerdiff.utils.io import atomic_write_bytes

_PAD = 2
_LABEL_H = 14


def _to_rgb(img01: np.ndarray, colormap: str) -> np.ndarray:
    """(C, H, W) in [0, 1] -> uint8 (H, W, 3)."""
    img01 = np.clip(np.asarray(img01, dtype=np.float32), 0.0, 1.0)
    if img01.shape[0] == 3:
        return np.round(np.moveaxis(img01, 0, -1) * 255).astype(np.uint8)
    if colormap == "gray":
        return np.repeat(np.round(img01[0, ..., None] * 255).astype(np.uint8), 3, -1)
    return apply_colormap(img01[0], colormap)


def grid_image(
    rows: Sequence[np.ndarray], colormap: str, labels: Sequence[str] | None = None, min_cell: int = 64,
) -> Image.Image:
    """Rows of (N, C, H, W) images in [0, 1] as one RGB picture, one row per array, label on the left.

    Small images are enlarged (nearest) to at least ``min_cell`` pixels so 16x16 samples stay visible;
    rows shorter than the longest are padded with blank cells.
    """
    if not rows:
        raise ValueError("grid_image needs at least one row")
    h, w = (int(v) for v in rows[0].shape[-2:])
    scale = max(1, int(np.ceil(min_cell / max(h, w))))
    ch, cw = h * scale, w * scale
    ncols = max(int(r.shape[0]) for r in rows)
    font = ImageFont.load_default()
    label_w = 0
    if labels is not None:
        label_w = 8 + max(int(ImageDraw.Draw(Image.new("RGB", (1, 1))).textlength(str(t), font=font))
                          for t in labels)
    sheet = Image.new("RGB", (label_w + ncols * (cw + _PAD) + _PAD, len(rows) * (ch + _PAD) + _PAD), "white")
    draw = ImageDraw.Draw(sheet)
    for r, row in enumerate(rows):
        y = _PAD + r * (ch + _PAD)
        if labels is not None:
            draw.text((4, y + max(0, (ch - _LABEL_H) // 2)), str(labels[r]), fill="black", font=font)
        for c in range(int(row.shape[0])):
            tile = Image.fromarray(_to_rgb(row[c], colormap))
            if tile.size != (cw, ch):
                tile = tile.resize((cw, ch), Image.NEAREST)
            sheet.paste(tile, (label_w + _PAD + c * (cw + _PAD), y))
    return sheet


def save_grid(
    path: Path, rows: Sequence[np.ndarray], colormap: str, labels: Sequence[str] | None = None,
    min_cell: int = 64,
) -> Path:
    """Write ``grid_image(rows, colormap, labels, min_cell)`` as PNG (atomically) and return the path."""
    path = Path(path)
    buf = io.BytesIO()
    grid_image(rows, colormap, labels, min_cell).save(buf, format="PNG")
    atomic_write_bytes(path, buf.getvalue())
    return path


def identity_rows(ds: SpectrogramSet, per_identity: int = 4) -> tuple[list[np.ndarray], list[str]]:
    """Evenly spaced windows (in recording/window order) of each identity, as rows in [0, 1]."""
    rows, labels = [], []
    for lab, ident in enumerate(ds.identities):
        idx = np.flatnonzero(ds.labels == lab)
        if len(idx) == 0:
            continue
        idx = idx[np.lexsort((ds.windows[idx], [ds.recordings[i] for i in idx]))]
        pick = idx[np.unique(np.linspace(0, len(idx) - 1, min(per_identity, len(idx))).round().astype(int))]
        rows.append(to_unit(ds.images[pick]))
        labels.append(f"{ident} ({len(idx)})")
    return rows, labels
