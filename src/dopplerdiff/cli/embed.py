"""Embedding-index commands: embed, search, identify, enroll, remove."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer

from dopplerdiff.cli.app import app
from dopplerdiff.cli.common import ConfigOpt, OverridesArg, QuietOpt, resolve_config, setup_logging
from dopplerdiff.config import config_for
from dopplerdiff.errors import DopplerDiffError

IndexOpt = typer.Option(..., "--index", "-i", help="Index directory (created by `embed`).")
EncoderOverride = typer.Option(
    None, "--encoder", "-e", help="Encoder directory if it moved since `embed` (checked by fingerprint)."
)
JsonOpt = typer.Option(False, "--json", help="Print JSON instead of a table.")
FilesArg = typer.Argument(
    None, help="Spectrogram files or folders of them, then optional config overrides key=value."
)


def _files_and_overrides(items: list[str] | None) -> tuple[list[Path], list[str]]:
    """Split the trailing arguments: existing paths are inputs, ``key=value`` items are overrides."""
    files, overrides = [], []
    for item in items or []:
        if Path(item).exists():
            files.append(Path(item))
        elif "=" in item:
            overrides.append(item)
        else:
            raise DopplerDiffError(f"input file '{item}' does not exist")
    if not files:
        raise DopplerDiffError("give at least one spectrogram file or folder")
    return files, overrides


def _print_json(obj: Any) -> None:
    typer.echo(json.dumps(obj, indent=2))


def _fmt(x: float | None) -> str:
    return "-" if x is None else f"{x:.3f}"


@app.command("embed")
def embed_cmd(
    encoder: Path = typer.Option(..., "--encoder", "-e", help="Trained encoder directory (RUN/encoder)."),
    index: Path = IndexOpt,
    data: Path = typer.Option(
        None, "--data", "-d", help="Data folder (ID_k/...); default: the encoder run's data."
    ),
    split: str = typer.Option("all", "--split", help="all | none | train | val | test (comma-separated)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing index."),
    strangers: str = typer.Option(
        None, "--strangers",
        help="Comma-separated identities kept out of the gallery as calibration impostors "
        "(best: people the encoder never trained on).",
    ),
    config: str = ConfigOpt,
    overrides: list[str] = OverridesArg,
    quiet: bool = QuietOpt,
) -> None:
    """Embed a spectrogram folder into a new index (val rows calibrate, test rows evaluate)."""
    from rich.console import Console

    from dopplerdiff.embed.encode import recorded_data_root
    from dopplerdiff.embed.ops import create_index

    setup_logging(quiet)
    cfg = resolve_config(config, overrides)
    if data is None:
        data = recorded_data_root(encoder)
        if data is None:
            raise DopplerDiffError(f"encoder '{encoder}' belongs to no run with data.json; pass --data")
    names = [n.strip() for n in strangers.split(",") if n.strip()] if strangers else None
    out = create_index(encoder, data, index, cfg, split=split, overwrite=overwrite, strangers=names,
                       progress=not quiet)
    if quiet:
        return
    con = Console()
    counts = ", ".join(f"{k} {v}" for k, v in out["counts"].items())
    con.print(f"index {out['index']}: {out['rows']} vectors (dim {out['dim']}), "
              f"{len(out['identities'])} identities; {counts}; split from {out['split_source']}"
              + (f"; {out['skipped_gap']} guard-gap windows not indexed" if out["skipped_gap"] else ""))
    cal = out["calibration"]
    if cal:
        con.print(f"threshold {cal['threshold']:.3f} at FAR {cal['far']:.3f} (target {cal['target_far']}), "
                  f"FRR {cal['frr']:.3f}, EER {cal['eer']:.3f} on val ({cal['method']}; impostors: "
                  f"{cal['impostors']})")
        if cal["impostors_seen_by_encoder"]:
            con.print("[yellow]note: the calibration impostors were encoder training identities; the "
                      "false-accept rate for new people is likely above the target (use --strangers with "
                      "people the encoder never saw)[/yellow]")


@app.command("search")
def search_cmd(
    index: Path = IndexOpt,
    items: list[str] = FilesArg,
    k: int = typer.Option(None, "-k", "--k", min=1, help="Neighbours per query (default: embed.k)."),
    as_json: bool = JsonOpt,
    encoder: Path = EncoderOverride,
    config: str = ConfigOpt,
    quiet: bool = QuietOpt,
) -> None:
    """Nearest indexed spectrograms of each query file, with cosine scores."""
    from rich.console import Console
    from rich.table import Table

    from dopplerdiff.embed.ops import search_files

    setup_logging(quiet)
    files, overrides = _files_and_overrides(items)
    cfg = config_for(index, config, overrides)
    results = search_files(index, files, cfg, k=k, encoder=encoder)
    if as_json:
        return _print_json(results)
    con = Console()
    for res in results:
        table = Table(title=f"{res['query']}  ({res['backend']})", title_justify="left")
        for col in ("#", "cosine", "identity", "file", "split"):
            table.add_column(col)
        for n in res["neighbours"]:
            table.add_row(str(n["rank"]), f"{n['score']:.3f}", n["identity"], n["file"], n["split"])
        con.print(table)


@app.command("identify")
def identify_cmd(
    index: Path = IndexOpt,
    items: list[str] = FilesArg,
    threshold: str = typer.Option(
        "auto", "--threshold", "-t",
        help="auto (calibrated on the index's val rows to embed.target_far), none (closed set) or a number.",
    ),
    method: str = typer.Option(None, "--method", "-m", help="knn | centroid (default: embed.method)."),
    k: int = typer.Option(None, "-k", "--k", min=1, help="Neighbours of the k-NN vote (default: embed.k)."),
    fuse: bool = typer.Option(False, "--fuse", help="Treat all files as one walk (mean of scores)."),
    as_json: bool = JsonOpt,
    encoder: Path = EncoderOverride,
    config: str = ConfigOpt,
    quiet: bool = QuietOpt,
) -> None:
    """Identify who walks in each file (or in all files together), or say 'unknown'."""
    from rich.console import Console
    from rich.table import Table

    from dopplerdiff.embed.ops import identify_files

    setup_logging(quiet)
    files, overrides = _files_and_overrides(items)
    overrides += [f"embed.method={method}"] if method else []
    overrides += [f"embed.k={k}"] if k else []
    cfg = config_for(index, config, overrides)
    out = identify_files(index, files, cfg, threshold=threshold, fuse=fuse, encoder=encoder)
    if as_json:
        return _print_json(out)
    cal = out["calibration"]
    note = (f"threshold {_fmt(out['threshold'])}"
            + (f" (auto: FAR {cal['far']:.3f} <= {cal['target_far']} on {cal['n_impostor']} val impostor "
               f"scores, FRR {cal['frr']:.3f})" if cal else ""))
    table = Table(title=f"{out['method']}; {note}", title_justify="left")
    for col in ("files", "identity", "score", "best candidate", "runner-up"):
        table.add_column(col)
    for r in out["results"]:
        files_s = r["files"][0] if len(r["files"]) == 1 else f"{len(r['files'])} files (fused)"
        second = r["ranking"][1] if len(r["ranking"]) > 1 else None
        table.add_row(files_s, r["identity"], f"{r['score']:.3f}", r["best"],
                      f"{second['identity']} {second['score']:.3f}" if second else "-")
    con = Console()
    con.print(table)
    if cal and cal["impostors_seen_by_encoder"]:
        con.print("[yellow]note: the threshold was calibrated on impostors the encoder trained on; for new "
                  "people the false-accept rate is likely above the target (embed with --strangers)[/yellow]")


@app.command("enroll")
def enroll_cmd(
    index: Path = IndexOpt,
    identity: str = typer.Option(..., "--identity", "-n", help="Name of the person to add."),
    items: list[str] = FilesArg,
    append: bool = typer.Option(False, "--append", help="Add windows to an identity already enrolled."),
    encoder: Path = EncoderOverride,
    config: str = ConfigOpt,
    quiet: bool = QuietOpt,
) -> None:
    """Add a person to the index from a few windows (no retraining)."""
    from dopplerdiff.embed.ops import enroll_files

    setup_logging(quiet)
    files, overrides = _files_and_overrides(items)
    out = enroll_files(index, identity, files, config_for(index, config, overrides), append=append,
                       encoder=encoder)
    if not quiet:
        typer.echo(f"enrolled '{identity}' with {out['added']} windows; index now has {out['rows']} vectors, "
                   f"{len(out['identities'])} identities")


@app.command("remove")
def remove_cmd(
    index: Path = IndexOpt,
    identity: str = typer.Option(..., "--identity", "-n", help="Name of the person to remove."),
    config: str = ConfigOpt,
    overrides: list[str] = OverridesArg,
    quiet: bool = QuietOpt,
) -> None:
    """Remove every vector of a person from the index."""
    from dopplerdiff.embed.ops import remove_identity

    setup_logging(quiet)
    out = remove_identity(index, identity, config_for(index, config, list(overrides or [])))
    if not quiet:
        typer.echo(f"removed '{identity}' ({out['removed']} vectors); index now has {out['rows']} vectors, "
                   f"{len(out['identities'])} identities")
