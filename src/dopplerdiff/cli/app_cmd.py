"""`dopplerdiff app`: the web page (Gradio, an optional extra) on a trained run."""

from __future__ import annotations

import logging
from pathlib import Path

import typer

from dopplerdiff.cli.app import app
from dopplerdiff.cli.common import QuietOpt, existing_dir, setup_logging


@app.command("app")
def app_cmd(
    run: Path = typer.Option(..., "--run", "-r", help="Trained run directory (uses RUN/pipeline)."),
    index: Path = typer.Option(None, "--index", "-i", help="Embedding index for the Identify tab."),
    port: int = typer.Option(7860, "--port", min=1, max=65535, help="Port to serve on."),
    host: str = typer.Option("127.0.0.1", "--host", help="Address to bind (0.0.0.0: reachable by others)."),
    quiet: bool = QuietOpt,
) -> None:
    """Web app: generate, edit and identify spectrograms, and read the run's report, in a browser."""
    from dopplerdiff.app import ui
    from dopplerdiff.app.handlers import open_app

    setup_logging(quiet)
    logging.getLogger("httpx").setLevel(logging.WARNING)  # gradio's own start-up requests are noise
    existing_dir(run, "--run")
    if index is not None:
        existing_dir(index, "--index")
    ui.require_gradio()  # before loading the pipeline: a missing extra is the first thing said
    ctx = open_app(run, index)
    typer.echo(f"serving run '{run}' on http://{host}:{port} (Ctrl-C stops)")
    ui.launch(ctx, host=host, port=port)
