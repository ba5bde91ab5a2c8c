"""Command-line interface: parses arguments, calls stage functions, nothing else."""

from __future__ import annotations

import errno
import sys

import typer

# Each module registers its commands on ``app`` when imported; a missing module is an import error.
from dopplerdiff.cli import (  # noqa: F401
    app_cmd,
    augment,
    autoencoder,
    data,
    decoder,
    diffusion,
    edit,
    embed,
    encoder,
    evaluate,
    fewshot,
    run,
    simulate,
    spectrogram,
)
from dopplerdiff.cli.app import app
from dopplerdiff.errors import DopplerDiffError

# File-system errors caused by where the user writes (full disk, read-only or forbidden place).
USER_OS_ERRORS = {errno.ENOSPC, errno.EROFS, errno.EACCES, errno.EPERM, errno.EDQUOT, errno.ENAMETOOLONG}


def _fail(message: str, code: int = 2) -> None:
    print(f"error: {message}", file=sys.stderr)
    sys.exit(code)


def os_error_message(exc: OSError) -> str:
    """One line naming the path and the reason (``No space left on device: 'RUN/x'``)."""
    path = exc.filename if exc.filename is not None else "?"
    return f"cannot write or read '{path}': {exc.strerror or exc}"


def main() -> None:
    """Entry point: user errors print one ``error:`` line and exit 2; bugs propagate with a traceback."""
    if len(sys.argv) <= 1:  # no command: the help, as `--help` gives it
        sys.argv.append("--help")
    try:
        app(standalone_mode=False)
    except DopplerDiffError as exc:
        _fail(str(exc))
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)
    except typer.Exit as exc:  # --help and explicit exits
        sys.exit(exc.exit_code)
    except typer.Abort:
        _fail("aborted", 1)
    except typer.TyperException as exc:  # typer's (bundled click's) usage errors: bad or missing arguments
        _fail(" ".join(exc.format_message().split()))
    except OSError as exc:
        if exc.errno not in USER_OS_ERRORS:
            raise
        _fail(os_error_message(exc))
