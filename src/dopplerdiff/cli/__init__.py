"""Command-line interface: parses arguments, calls stage functions, nothing else."""

from __future__ import annotations

import importlib
import sys

from dopplerdiff.cli.app import app
from dopplerdiff.errors import DopplerDiffError

# Each module registers its commands on ``app``; a module that is not there yet is skipped.
_COMMAND_MODULES = (
    "simulate", "data", "autoencoder", "diffusion", "encoder", "evaluate", "embed", "run", "edit",
)
for _name in _COMMAND_MODULES:
    try:
        importlib.import_module(f"dopplerdiff.cli.{_name}")
    except ModuleNotFoundError as _exc:
        if _exc.name != f"dopplerdiff.cli.{_name}":
            raise


def main() -> None:
    """Entry point: user errors print one line and exit 2; everything else propagates."""
    try:
        app(standalone_mode=False)
    except DopplerDiffError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)
    except Exception as exc:  # click's own usage errors
        import click

        if isinstance(exc, click.exceptions.ClickException):
            exc.show()
            sys.exit(exc.exit_code)
        if isinstance(exc, click.exceptions.Exit):
            sys.exit(exc.exit_code)
        if isinstance(exc, click.exceptions.Abort):
            sys.exit(1)
        raise
