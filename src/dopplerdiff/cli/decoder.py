"""`dopplerdiff train-decoder`: the diffusion decoder on a run's cached latents."""

from __future__ import annotations

from pathlib import Path

from dopplerdiff.cli.app import app
from dopplerdiff.cli.common import (
    ConfigOpt,
    LatentsRunOpt,
    OverridesArg,
    QuietOpt,
    ReportToOpt,
    ResumeOpt,
    report_overrides,
    train_in_run,
)


@app.command("train-decoder")
def train_decoder_cmd(
    run: Path = LatentsRunOpt,
    overrides: list[str] = OverridesArg,
    config: str = ConfigOpt,
    resume: str = ResumeOpt,
    report_to: str = ReportToOpt,
    quiet: bool = QuietOpt,
) -> None:
    """Train a diffusion decoder (latent -> image at decoder.size) on RUN's training windows.

    Writes RUN/decoder and adds it to RUN/pipeline, so generate, edit and evaluate decode through it.
    Implies decoder.kind=diffusion."""
    from dopplerdiff.train.decoder import train_decoder

    # the command itself says which decoder; an explicit decoder.kind=vae override is still refused
    extra = ["decoder.kind=diffusion", *(overrides or []), *report_overrides(report_to, ("decoder",))]
    train_in_run(run, config, extra, resume, quiet, train_decoder, "decoder")
