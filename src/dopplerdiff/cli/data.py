"""`dopplerdiff inspect DATA`: what a spectrogram folder contains and how it will be split."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from dopplerdiff.cli.app import app
from dopplerdiff.cli.common import ConfigOpt, OverridesArg, QuietOpt, resolve_config, setup_logging
from dopplerdiff.data.contact import identity_rows, save_grid
from dopplerdiff.data.images import load_spectrograms
from dopplerdiff.data.layout import DEFAULT_CONDITION
from dopplerdiff.data.split import make_split, split_summary
from dopplerdiff.errors import DopplerDiffError


def _counts(d: dict) -> str:
    return ", ".join(f"{k} x{v}" for k, v in sorted(d.items(), key=lambda kv: -kv[1])) or "-"


@app.command("inspect")
def inspect_cmd(
    data: Path = typer.Argument(
        ..., help="Data folder: DATA/<identity>/<images or arrays> or DATA/<condition>/<identity>/<...>."
    ),
    overrides: list[str] = OverridesArg,
    config: str = ConfigOpt,
    sheet: Path = typer.Option(
        None, "--sheet",
        help="Also write a contact sheet to this PNG (never inside DATA); without it nothing is written.",
    ),
    per_identity: int = typer.Option(4, "--per-identity", min=1, help="Windows per identity on the sheet."),
    force: bool = typer.Option(False, "--force", help="Replace an existing --sheet file."),
    quiet: bool = QuietOpt,
) -> None:
    """Summarise a spectrogram folder: identities, recordings, sizes, file types, the leak-free split.

    Read-only unless ``--sheet PATH`` asks for a contact sheet."""
    setup_logging(quiet)
    cfg = resolve_config(config, overrides)
    if sheet is not None:
        sheet = _sheet_path(data, sheet, force)
    t0 = time.perf_counter()
    ds = load_spectrograms(data, cfg.data, progress=not quiet)
    load_s = time.perf_counter() - t0
    summary = split_summary(ds, make_split(ds, cfg.data))
    console = Console()
    conds = "" if ds.condition_names == [DEFAULT_CONDITION] else f", {len(ds.condition_names)} conditions"
    console.print(f"[bold]{data}[/bold]: {len(ds)} windows, {len(ds.identities)} identities{conds}")
    console.print(_split_table(ds, summary))
    if conds:
        console.print(_condition_table(summary))
    for line in _facts(ds, summary, cfg, load_s):
        console.print(line)
    if sheet is not None:
        rows, labels = identity_rows(ds, per_identity)
        save_grid(sheet, rows, cfg.data.colormap, labels)
        console.print(f"contact sheet: {sheet}")


def _sheet_path(data: Path, sheet: Path, force: bool) -> Path:
    """The contact sheet's path: a new .png outside DATA (an existing one only with --force)."""
    data_res, sheet = Path(data).resolve(), Path(sheet)
    if sheet.resolve().is_relative_to(data_res):
        raise DopplerDiffError(
            f"contact sheet '{sheet}' would be written inside DATA '{data}'; pass --sheet PATH elsewhere"
        )
    if sheet.suffix.lower() != ".png":
        raise DopplerDiffError(f"--sheet '{sheet}' must be a .png file")
    if sheet.exists() and not force:
        raise DopplerDiffError(f"contact sheet '{sheet}' already exists; pass --force to replace it")
    return sheet


def _split_table(ds: Any, summary: dict[str, Any]) -> Table:
    """One row per identity: files, recordings, window span and the split's counts."""
    table = Table()
    for col in ("identity", "files", "recordings", "windows", "train", "val", "test", "gap"):
        table.add_column(col, justify="left" if col == "identity" else "right")
    for lab, row in enumerate(summary["identities"]):
        w = ds.windows[ds.labels == lab]
        span = f"{w.min()}–{w.max()}" if len(w) else "-"
        table.add_row(row["identity"], str(row["files"]), str(row["recordings"]), span,
                      *(str(row[k]) for k in ("train", "val", "test", "gap")))
    tot = summary["totals"]
    table.add_row("total", str(len(ds)), str(len(set(ds.recordings))), "",
                  *(str(tot[k]) for k in ("train", "val", "test", "gap")), style="bold")
    return table


def _condition_table(summary: dict[str, Any]) -> Table:
    """One row per walking condition: windows, identities and the split's counts."""
    table = Table()
    cols = ("condition", "files", "identities", "train", "val", "test", "gap")
    for col in cols:
        table.add_column(col, justify="left" if col == "condition" else "right")
    for row in summary["conditions"]:
        table.add_row(*(str(row[k]) for k in cols))
    return table


def _facts(ds: Any, summary: dict[str, Any], cfg: Any, load_s: float) -> list[str]:
    """Sizes, file types, colormap fit, window-index source, the split rule, and warnings."""
    meta, sp, tot = ds.meta, cfg.data.split, summary["totals"]
    lines = [
        f"native sizes (HxW): {_counts(meta['native_sizes'])}"
        + ("  [mixed sizes: all resized]" if len(meta["native_sizes"]) > 1 else ""),
        f"resized to: {cfg.data.size}x{cfg.data.size}, channels {cfg.data.channels}, "
        f"resample {cfg.data.resample}",
        f"file types: {_counts(meta['exts'])}; image modes: {_counts(meta['modes'])}",
        f"colormap: {meta['colormap']}"
        + (f" (mean RGB distance to it {meta['colormap_residual']:.1f}/255)"
           if meta["colormap_residual"] is not None else ""),
        f"window index source: {meta['window_index_source']}"
        + (f" (sorted file order used for: {', '.join(meta['sorted_identities'])})"
           if meta["sorted_identities"] else ""),
        f"split: train {sp.train:g} | gap {sp.gap_windows} | val {sp.val:g} | gap {sp.gap_windows} | "
        f"test {sp.test:g} per recording; {tot['gap']} windows dropped in gaps",
        f"loaded in {load_s:.2f} s",
    ]
    if meta["value_scaling"]:
        lines.append(f"array value scaling: {_counts(meta['value_scaling'])}")
    if meta["ignored_files"]:
        lines.append(f"ignored {meta['ignored_files']} unsupported file(s)")
    if meta["colormap_residual"] is not None and meta["colormap_residual"] > 40:
        lines.append(f"[yellow]warning: colours are far from colormap '{meta['colormap']}'; "
                     "is data.colormap right?[/yellow]")
    if len(ds.identities) < 2:
        lines.append(
            "[yellow]note: a single identity loads fine, but identity conditioning needs >= 2[/yellow]"
        )
    missing = [r["identity"] for r in summary["identities"] if r["train"] == 0]
    if missing:
        lines.append(f"[yellow]warning: no training windows for {', '.join(missing)}[/yellow]")
    return lines
