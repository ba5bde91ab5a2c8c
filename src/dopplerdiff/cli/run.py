"""`dopplerdiff run`: the whole job in one command (simulate -> ... -> report)."""

from __future__ import annotations

import time
from pathlib import Path

import typer

from dopplerdiff.cli.app import app
from dopplerdiff.cli.common import OverridesArg, QuietOpt, ReportToOpt, report_overrides, setup_logging
from dopplerdiff.utils.rundir import RunDir


@app.command("run")
def run_cmd(
    overrides: list[str] = OverridesArg,
    data: Path = typer.Option(
        None, "--data", help="Folder of ID_k/ spectrograms (default: simulate into RUN/data)."
    ),
    profile: str = typer.Option(
        None, "--profile", "-p", help="smoke, quick (2-core CPU, default) or paper (GPU), or a YAML file."
    ),
    out: Path = typer.Option(Path("runs/demo"), "--out", help="Run directory."),
    resume: bool = typer.Option(False, "--resume", help="Continue a run; completed stages are skipped."),
    report_to: str = ReportToOpt,
    quiet: bool = QuietOpt,
) -> None:
    """The whole job: simulate (no --data), autoencoder, latents, diffusion, encoder, samples, report."""
    from rich.console import Console
    from rich.table import Table

    from dopplerdiff.cli.common import existing_dir
    from dopplerdiff.workflow import check_run_dir, resolve_run_config, run_all

    setup_logging(quiet)
    console = Console(quiet=quiet)
    if data is not None:
        existing_dir(data, "--data")
    tracking = report_overrides(report_to)
    check_run_dir(out, resume, data)
    cfg = resolve_run_config(out, profile, [*(overrides or []), *tracking], resume)
    t0 = time.time()

    def on_stage(i: int, n: int, stage, action: str) -> None:
        elapsed = time.time() - t0
        note = "already complete, skipped" if action == "skip" else f"elapsed {elapsed / 60:.1f} min"
        console.rule(f"[bold][{i}/{n}] {stage.name}[/bold] — {note}")

    rows = run_all(out, cfg, data, progress=not quiet, on_stage=on_stage)
    table = Table(title=f"dopplerdiff run ({cfg.profile}) -> {out}")
    for col in ("stage", "status", "minutes", "result"):
        table.add_column(col)
    for r in rows:
        table.add_row(r["stage"], r["status"], f"{r['seconds'] / 60:.1f}", r["summary"])
    Console().print(table)
    Console().print(f"total {(time.time() - t0) / 60:.1f} min; report: {RunDir(out).eval / 'report.html'}")
