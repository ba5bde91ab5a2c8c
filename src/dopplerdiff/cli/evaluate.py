"""`dopplerdiff evaluate --run RUN`: honest evaluation of a run -> RUN/eval/{metrics.json, report.html}."""

from __future__ import annotations

from pathlib import Path

import typer

from dopplerdiff.cli.app import app
from dopplerdiff.cli.common import ConfigOpt, OverridesArg, QuietOpt, existing_dir, finite, setup_logging
from dopplerdiff.utils.rundir import RunDir


@app.command("evaluate")
def evaluate_cmd(
    run: Path = typer.Option(
        ..., "--run", "-r", help="Run directory (RUN/data.json, RUN/encoder, RUN/pipeline)."
    ),
    overrides: list[str] = OverridesArg,
    data: Path = typer.Option(
        None, "--data", help="Data folder (default: the one recorded in RUN/data.json)."
    ),
    num_per_identity: int = typer.Option(
        None, "--num-per-identity", min=1, help="Generated samples per identity."
    ),
    steps: int = typer.Option(None, "--steps", min=1, help="Sampler steps."),
    scheduler: str = typer.Option(
        None, "--scheduler", help="Sampler: ddim, dpmpp, euler, ... (see generate)."
    ),
    guidance: float = typer.Option(
        None, "--guidance", min=0.0, callback=finite, help="Classifier-free guidance scale."
    ),
    out: Path = typer.Option(None, "--out", help="Output directory (default RUN/eval)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing output directory."),
    device: str = typer.Option("auto", "--device", help="auto, cpu or cuda."),
    config: str = ConfigOpt,
    quiet: bool = QuietOpt,
) -> None:
    """Identity accuracy, Fréchet distance/KID with floors, physics, memorisation, augmentation, report."""
    from rich.console import Console
    from rich.table import Table

    from dopplerdiff.config import config_for
    from dopplerdiff.evaluate.evaluate import evaluate_run
    from dopplerdiff.evaluate.summary import summary_rows

    setup_logging(quiet)
    run = existing_dir(run, "run directory")
    # Default to the run's own resolved config: evaluation must read data as the run was trained.
    flags = {
        "num_per_identity": num_per_identity,
        "steps": steps,
        "scheduler": scheduler,
        "guidance": guidance,
    }
    cfg = config_for(
        run, config, list(overrides or []) + [f"evaluate.{k}={v}" for k, v in flags.items() if v is not None]
    )
    metrics = evaluate_run(
        run, cfg, data_root=data, out=out, overwrite=overwrite, device=device, progress=not quiet
    )

    console = Console()
    target = out if out is not None else RunDir(run).eval
    table = Table(title=f"evaluation of {run}")  # the result itself, so printed even with --quiet
    table.add_column("metric", justify="left")
    table.add_column("value", justify="right")
    for label, value in summary_rows(metrics):
        table.add_row(label, value)
    console.print(table)
    for item in metrics.get("missing", []):
        console.print(f"[yellow]missing:[/yellow] {item}")
    console.print(f"wrote {target / 'metrics.json'} and {target / 'report.html'}")
