"""Options and helpers shared by CLI commands."""

from __future__ import annotations

import logging
import math
from pathlib import Path

import typer

from dopplerdiff.config import Config, load_config
from dopplerdiff.errors import DopplerDiffError

ConfigOpt = typer.Option(
    None, "--config", "-c", help="Profile name (smoke, quick, paper) or a YAML file. Default: quick."
)
OverridesArg = typer.Argument(
    None, help="Config overrides as dotted key=value, e.g. autoencoder.train.steps=200"
)
QuietOpt = typer.Option(False, "--quiet", "-q", help="Only warnings and errors; no progress bars.")


def setup_logging(quiet: bool) -> None:
    logging.basicConfig(
        level=logging.WARNING if quiet else logging.INFO, format="%(message)s", force=True
    )


def resolve_config(config: str | None, overrides: list[str] | None) -> Config:
    return load_config(config, list(overrides or []))


def finite(value: float | None) -> float | None:
    """Option callback: NaN and infinity pass typer's range checks, so refuse them here."""
    if value is not None and not math.isfinite(value):
        raise typer.BadParameter(f"must be a finite number, got {value}")
    return value


def existing_dir(path: Path, what: str) -> Path:
    if not Path(path).is_dir():
        raise DopplerDiffError(f"{what} '{path}' is not a directory")
    return Path(path)
