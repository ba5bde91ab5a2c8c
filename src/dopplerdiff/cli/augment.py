"""`dopplerdiff augment`: real training windows plus synthetic ones, as a training-ready folder."""

from __future__ import annotations

from pathlib import Path

import typer

from dopplerdiff.cli.app import app
from dopplerdiff.cli.common import (
    FilterOpt,
    FromRealOpt,
    GuidanceIntervalOpt,
    MaxAttemptsOpt,
    MinConfidenceOpt,
    PhysicsQuantilesOpt,
    PhysicsStatsOpt,
    PhysicsToleranceOpt,
    QuietOpt,
    StrengthOpt,
    existing_dir,
    finite,
    seed_option,
    setup_logging,
    strategy_from,
)
from dopplerdiff.config import config_for


@app.command("augment")
def augment_cmd(
    run: Path = typer.Option(..., "--run", "-r", help="Trained run directory (RUN/pipeline, RUN/data.json)."),
    out: Path = typer.Option(..., "--out", "-o", help="Output folder (must not exist or be empty)."),
    per_identity: int = typer.Option(None, "--per-identity", "-n", help="Synthetic windows per identity."),
    ratio: float = typer.Option(None, "--ratio", callback=finite,
                                help="Synthetic windows per real training window of each identity."),
    real_budget: int = typer.Option(None, "--real-per-identity",
                                    help="Use only the first M training windows per identity."),
    guidance_interval: tuple[float, float] = GuidanceIntervalOpt,
    from_real: str = FromRealOpt,
    strength: float = StrengthOpt,
    filter_: bool = FilterOpt,
    min_confidence: float = MinConfidenceOpt,
    physics_stats: str = PhysicsStatsOpt,
    physics_quantiles: str = PhysicsQuantilesOpt,
    physics_tolerance: float = PhysicsToleranceOpt,
    max_attempts: int = MaxAttemptsOpt,
    steps: int = typer.Option(None, "--steps", min=1,
                              help="Sampler steps (default: the run's diffusion config)."),
    guidance: float = typer.Option(None, "--guidance", min=0.0, callback=finite, help="Guidance scale."),
    scheduler: str = typer.Option(None, "--scheduler", help="Sampler name (default: the run's)."),
    seed: int = seed_option("Base seed; sample i of identity k uses seed (seed, k, i)."),
    batch_size: int = typer.Option(16, "--batch-size", min=1, help="Images per sampler batch."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an earlier augment output at --out."),
    quiet: bool = QuietOpt,
) -> None:
    """Write OUT/<identity>/: the run's real training windows plus synthetic_* windows, and a manifest."""
    from dopplerdiff.data.run_data import read_run_data
    from dopplerdiff.generate import GenerationPlan
    from dopplerdiff.pipelines.auto_pipeline import load_run_pipeline
    from dopplerdiff.synthetic.folder import check_out, real_windows, synthetic_counts, write_synthetic_folder
    from dopplerdiff.synthetic.strategy import with_strategy

    setup_logging(quiet)
    existing_dir(run, "--run")
    strategy = strategy_from(guidance_interval, from_real, strength, filter_, min_confidence, physics_stats,
                             physics_quantiles, max_attempts, physics_tolerance)
    check_out(out, overwrite)
    cfg = config_for(run, None, [])
    plan = GenerationPlan.from_options(cfg, count=1, seed=seed, steps=steps, guidance=guidance,
                                       scheduler=scheduler, batch_size=batch_size)
    strategy.check(plan.steps)
    meta = read_run_data(run).get("meta", {})
    pipe = load_run_pipeline(run)
    root, real = real_windows(run, pipe.identities, real_budget)
    counts = synthetic_counts(real, per_identity, ratio)
    plan = with_strategy(plan, strategy, run, pipe, cfg.data, budget=real_budget)
    man = write_synthetic_folder(pipe, run, out, plan, counts=counts, root=root, real=real,
                          native_size=meta.get("native_size"), overwrite=overwrite, progress=not quiet,
                          config=cfg)
    if not quiet:
        n_syn = sum(1 for f in man["files"] if f["synthetic"])
        rates = ", ".join(f"{n} {a['rate']:.0%}" for n, a in man["acceptance"].items())
        typer.echo(f"wrote {len(man['files']) - n_syn} real + {n_syn} synthetic windows to {out}"
                   + (f" (acceptance: {rates})" if strategy.filter else ""))
