"""Options and helpers shared by CLI commands."""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import typer

from dopplerdiff.config import Config, config_for, load_config
from dopplerdiff.config.base import SEED_MAX
from dopplerdiff.config.evaluate import PHYSICS_TOLERANCE
from dopplerdiff.config.loop import report_to_names
from dopplerdiff.errors import DopplerDiffError
from dopplerdiff.train.tracking import check_trackers
from dopplerdiff.utils.io import recover_parts

ConfigOpt = typer.Option(
    None, "--config", "-c", help="Profile name (smoke, quick, paper) or a YAML file. Default: quick."
)
OverridesArg = typer.Argument(
    None, help="Config overrides as dotted key=value, e.g. autoencoder.train.steps=200"
)
QuietOpt = typer.Option(False, "--quiet", "-q", help="Only warnings and errors; no progress bars.")
ResumeOpt = typer.Option(None, "--resume", help="'latest' or a checkpoint directory to continue from.")
ReportToOpt = typer.Option(
    None, "--report-to",
    help="Dashboards besides log.jsonl: tensorboard, wandb or both comma-separated (logs in "
    "RUN/tensorboard); needs the optional 'tracking' extra (tensorboard).",
)
TRAINED = ("autoencoder", "diffusion", "decoder", "encoder")  # config sections with a train: LoopConfig


def report_overrides(report_to: str | None, sections: tuple[str, ...] = TRAINED) -> list[str]:
    """``--report-to`` as ``SECTION.train.report_to`` overrides; the trackers are checked before any work."""
    if report_to is None:
        return []
    check_trackers(report_to_names(report_to, "--report-to"))
    return [f"{sec}.train.report_to={report_to}" for sec in sections]


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


def positive(value: float | None) -> float | None:
    """Option callback: a finite number > 0 (a learning rate, a scale)."""
    if value is not None and not (math.isfinite(value) and value > 0):
        raise typer.BadParameter(f"must be a finite number > 0, got {value}")
    return value


def seed_option(help: str) -> Any:
    """The ``--seed`` of every sampling command: numpy's SeedSequence refuses negative seeds and torch's
    generators ones above 2^63 - 1, so both are usage errors here rather than tracebacks later."""
    return typer.Option(0, "--seed", min=0, max=SEED_MAX, help=help)


def new_out(out: Path, what: str = "--out") -> Path:
    """Refuse an output path that is a file or a non-empty folder, before any work."""
    p = Path(out)
    if p.exists() and not p.is_dir():
        raise DopplerDiffError(f"{what} '{out}' is an existing file; give a folder path that does not exist")
    if p.is_dir() and any(p.iterdir()):
        raise DopplerDiffError(f"{what} '{out}' already exists; choose another path or remove it")
    return p


def existing_dir(path: Path, what: str) -> Path:
    """``path``, which must be a directory; parts of it (a run's pipeline, decoder, ...) that an
    interrupted replacement left missing are restored first."""
    if not Path(path).is_dir():
        raise DopplerDiffError(f"{what} '{path}' is not a directory")
    recover_parts(Path(path))
    return Path(path)


LatentsRunOpt = typer.Option(..., "--run", "-r", help="Run directory with autoencoder/ and latents/.")


def train_in_run(run: Path, config: str | None, overrides: list[str], resume: str | None, quiet: bool,
                 train: Callable[..., Path], what: str) -> None:
    """A stage trained inside an existing run (``train(run, cfg, resume=, progress=)``); the main process
    prints what it wrote."""
    setup_logging(quiet)
    existing_dir(run, "--run")
    out = train(run, config_for(run, config, overrides), resume=resume, progress=not quiet)
    if not quiet and os.environ.get("RANK", "0") == "0":
        typer.echo(f"{what}: {out}")


GuidanceIntervalOpt = typer.Option(
    None, "--guidance-interval", help="LO HI: guidance only for noise levels t/T in [LO, HI]."
)
FromRealOpt = typer.Option(
    None, "--from-real", help="'split' (the run's training windows) or a folder ID_k/*: seeds."
)
StrengthOpt = typer.Option(None, "--strength", help="Noise strength in (0, 1] (--from-real; default 0.6).")
FilterOpt = typer.Option(False, "--filter", help="Keep samples passing confidence + physics tests.")
MinConfidenceOpt = typer.Option(
    0.5, "--min-confidence", help="--filter: least softmax confidence of the intended identity (0 = off)."
)
PhysicsStatsOpt = typer.Option(
    None, "--physics-stats",
    help="--filter: comma-separated physics statistics to keep in the identity's real range ('' = off; "
    "default extent,peak_extent,background,mean_intensity,occupancy).",
)
PhysicsQuantilesOpt = typer.Option(
    "0.025:0.975", "--physics-quantiles", help="--filter: the real training range LO:HI as quantiles."
)
PhysicsToleranceOpt = typer.Option(
    PHYSICS_TOLERANCE, "--physics-tolerance",
    help="--filter: widen each identity's range by this fraction of the range over all identities.",
)
MaxAttemptsOpt = typer.Option(10, "--max-attempts", help="--filter: attempts per wanted sample, then error.")


def strategy_from(
    guidance_interval: tuple[float, float] | None, from_real: str | None, strength: float | None,
    filter_: bool, min_confidence: float, physics_stats: str | None, physics_quantiles: str,
    max_attempts: int, physics_tolerance: float = PHYSICS_TOLERANCE,
) -> Any:
    """A ``synthetic.strategy.Strategy`` from the shared sampling options."""
    from dopplerdiff.synthetic.strategy import Strategy

    try:
        lo, hi = (float(v) for v in physics_quantiles.split(":"))
    except ValueError:
        msg = f"--physics-quantiles '{physics_quantiles}' must be LO:HI, e.g. 0.025:0.975"
        raise DopplerDiffError(msg) from None
    finite(strength)
    finite(min_confidence)
    finite(physics_tolerance)
    stats = {} if physics_stats is None else {
        "physics_stats": tuple(s.strip() for s in physics_stats.split(",") if s.strip())}
    return Strategy(
        guidance_interval=tuple(guidance_interval) if guidance_interval else None, from_real=from_real,
        strength=strength, filter=filter_, min_confidence=min_confidence, physics_quantiles=(lo, hi),
        max_attempts=max_attempts, physics_tolerance=physics_tolerance, **stats,
    )
