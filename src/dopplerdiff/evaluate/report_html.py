"""HTML building blocks of the reports (evaluation, few windows): the page and its CSS, escaped cells and
tables, sections, inline PNG images."""

from __future__ import annotations

import base64
import html
import io
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from PIL import Image

from dopplerdiff.data.colormap import apply_colormap

CSS = """
body{font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:24px auto;max-width:1200px;
color:#222;line-height:1.4;padding:0 16px;overflow-wrap:break-word}
h1{margin-bottom:4px}h2{border-bottom:2px solid #ddd;padding-bottom:4px;margin-top:36px}
.sub{color:#666;font-size:0.9em}
table{border-collapse:collapse;margin:8px 0 16px 0;font-size:0.92em;display:block;max-width:100%;
overflow-x:auto}
img{max-width:100%;height:auto}
th,td{border:1px solid #ccc;padding:4px 10px;text-align:right}th{background:#f3f3f3}
td.l,th.l{text-align:left}
tr.floor td{color:#555;background:#fafafa}
.missing{border:2px solid #d9822b;background:#fff6ec;padding:8px 16px;border-radius:6px}
.ok{border:2px solid #3a9a4a;background:#f0fbf1;padding:8px 16px;border-radius:6px}
.grid td{border:none;padding:1px;text-align:center}
.grid th{border:none;background:none;text-align:left;font-weight:normal;font-size:0.85em;padding-right:8px}
img.px{image-rendering:pixelated}
.note{font-size:0.88em;color:#444}
.good{color:#1a7f37;font-weight:bold}.bad{color:#b42318;font-weight:bold}
@media (max-width:600px){body{margin:8px auto;padding:0 8px}th,td{padding:3px 6px}h2{margin-top:24px}}
"""
PAGE_END = "</body></html>"


def page_head(title: str, subtitle_html: str) -> str:
    """A self-contained page's head (inline CSS), title and subtitle (already HTML); end it with PAGE_END."""
    t = html.escape(title)
    return ("<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
            "<meta name='viewport' content='width=device-width, initial-scale=1'>\n"
            f"<title>{t}</title><style>{CSS}</style></head><body>\n"
            f"<h1>{t}</h1><div class='sub'>{subtitle_html}</div>")


def colorize(img01: np.ndarray, colormap: str) -> np.ndarray:
    """(C,H,W) or (H,W) in [0,1] -> (H,W,3) uint8; one channel goes through the data's colormap."""
    arr = np.asarray(img01, dtype=np.float32)
    if arr.ndim == 3 and arr.shape[0] == 1:
        arr = arr[0]
    arr = np.clip(np.nan_to_num(arr), 0.0, 1.0)
    if arr.ndim == 2:
        if colormap in ("gray", "grey", "greys_r"):
            return (np.repeat(arr[..., None], 3, axis=-1) * 255.0 + 0.5).astype(np.uint8)
        return apply_colormap(arr, colormap)
    return (np.transpose(arr[:3], (1, 2, 0)) * 255.0 + 0.5).astype(np.uint8)


def png_b64(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def image_b64(img01: np.ndarray, colormap: str = "jet") -> str:
    """Encode one image as a ``data:image/png;base64,...`` URI."""
    buf = io.BytesIO()
    Image.fromarray(colorize(img01, colormap)).save(buf, format="PNG")
    return png_b64(buf.getvalue())


def img_tag(img01: np.ndarray, colormap: str, alt: str, px: int = 80) -> str:
    """An inline image; ``alt`` says what it shows (screen readers, and the text when images are off)."""
    a = html.escape(alt, quote=True)
    size = f'width="{px}" height="{px}"'
    return f'<img class="px" src="{image_b64(img01, colormap)}" {size} alt="{a}" title="{a}">'


def fmt(v: Any, digits: int = 3) -> str:
    if v is None:
        return "—"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, int | np.integer):
        return str(int(v))
    if isinstance(v, float | np.floating):
        if not math.isfinite(float(v)):
            return "—"
        return f"{float(v):.{digits}f}"
    return html.escape(str(v))


def ci(d: dict | None) -> str:
    if not d or d.get("ci95") is None:
        return ""
    lo, hi = d["ci95"]
    return f" <span class='sub'>[{fmt(lo)}, {fmt(hi)}]</span>"


def table(
    header: Sequence[str], rows: Sequence[Sequence[Any]], row_classes: Sequence[str] | None = None
) -> str:
    head = "".join(f"<th{' class=l' if i == 0 else ''}>{html.escape(h)}</th>" for i, h in enumerate(header))
    body = []
    for r, row in enumerate(rows):
        cls = f' class="{row_classes[r]}"' if row_classes and row_classes[r] else ""
        cells = "".join(
            f"<td{' class=l' if i == 0 else ''}>{c if isinstance(c, Raw) else fmt(c)}</td>"
            for i, c in enumerate(row)
        )
        body.append(f"<tr{cls}>{cells}</tr>")
    return f"<table><tr>{head}</tr>{''.join(body)}</table>"


class Raw(str):
    """A table cell that is already HTML."""


def section(sid: str, title: str, body: str) -> str:
    return f'<section id="{sid}"><h2>{html.escape(title)}</h2>{body}</section>'


def not_computed(reason: str = "") -> str:
    return f"<p class='note'>Not computed{': ' + html.escape(reason) if reason else '.'}</p>"
