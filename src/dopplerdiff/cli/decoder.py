"""`dopplerdiff train-decoder`: the diffusion decoder on a run's cached latents."""

from __future__ import annotations

import os
from pathlib import Path

import typer

from dopplerdiff.cli.app import app
from dopplerdiff.cli.common import ConfigOpt, OverridesArg, QuietOpt, ResumeOpt, existing_dir, setup_logging
from dopplerdiff.config import config_for


@app.command("train-decoder")
def train_decoder_cmd(
    run: Path = typer.Option(..., "--run", "-r", help="Run directory with autoencoder/ and latents/."),
    overrides: list[str] = OverridesArg,
    config: str = ConfigOpt,
    resume: str = ResumeOpt,
    quiet: bool = QuietOpt,
) -> None:
    """Train a diffusion decoder (latent -> image at decoder.size) on RUN's training windows.

    Writes RUN/decoder and adds it to RUN/pipeline, so generate, edit and evaluate decode through it.
    Implies decoder.kind=diffusion."""
    from dopplerdiff.train.decoder import train_decoder

    setup_logging(quiet)
    existing_dir(run, "--run")
    # the command itself says which decoder; an explicit decoder.kind=vae override is still refused
    cfg = config_for(run, config, ["decoder.kind=diffusion", *(overrides or [])])
    out = train_decoder(run, cfg, resume=resume, progress=not quiet)
    if not quiet and os.environ.get("RANK", "0") == "0":
        typer.echo(f"decoder: {out}")
