"""The typer application object shared by all command modules."""

from __future__ import annotations

import typer

app = typer.Typer(
    name="dopplerdiff",
    help="Identity-conditional latent diffusion for radar micro-Doppler spectrograms.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.callback()
def _root() -> None:
    """Identity-conditional latent diffusion for radar micro-Doppler spectrograms."""
