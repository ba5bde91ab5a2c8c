"""`dopplerdiff train-diffusion` and `dopplerdiff generate`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from dopplerdiff.cli.app import app
from dopplerdiff.cli.common import (
    ConfigOpt,
    FilterOpt,
    FromRealOpt,
    GuidanceIntervalOpt,
    LatentsRunOpt,
    MaxAttemptsOpt,
    MinConfidenceOpt,
    OverridesArg,
    PhysicsQuantilesOpt,
    PhysicsStatsOpt,
    PhysicsToleranceOpt,
    QuietOpt,
    ReportToOpt,
    ResumeOpt,
    StrengthOpt,
    existing_dir,
    finite,
    new_out,
    report_overrides,
    seed_option,
    setup_logging,
    strategy_from,
    train_in_run,
)
from dopplerdiff.config import config_for
from dopplerdiff.errors import DopplerDiffError
from dopplerdiff.utils.rundir import RunDir


@app.command("train-diffusion")
def train_diffusion_cmd(
    run: Path = LatentsRunOpt,
    overrides: list[str] = OverridesArg,
    config: str = ConfigOpt,
    resume: str = ResumeOpt,
    report_to: str = ReportToOpt,
    quiet: bool = QuietOpt,
) -> None:
    """Train the identity-conditional denoiser on RUN/latents; writes RUN/diffusion and RUN/pipeline."""
    from dopplerdiff.train.diffusion import train_diffusion

    extra = [*(overrides or []), *report_overrides(report_to, ("diffusion",))]
    train_in_run(run, config, extra, resume, quiet, train_diffusion, "pipeline")


def _generate(run: Path, out: Path, cfg: Any, strategy: Any, plan: Any, *, fmt: str, progress: bool) -> Path:
    """``generate`` once its options are checked: the run's pipeline, the strategy's plan, the files."""
    from dopplerdiff.data.run_data import read_run_data
    from dopplerdiff.generate import check_format, write_plan
    from dopplerdiff.pipelines.auto_pipeline import load_run_pipeline
    from dopplerdiff.synthetic.strategy import with_strategy

    strategy.check(plan.steps)
    check_format(fmt)
    pipe = load_run_pipeline(run)
    plan = with_strategy(plan, strategy, run, pipe, cfg.data)
    meta = read_run_data(run).get("meta", {}) if RunDir(run).data_record.is_file() else {}
    return write_plan(pipe, plan, out, fmt=fmt, colormap=meta.get("colormap"),
                      native_size=meta.get("native_size"), progress=progress,
                      extra_manifest={"run": str(run)}, config=cfg)


@app.command("generate")
def generate_cmd(
    run: Path = typer.Option(..., "--run", "-r", help="Trained run directory (uses RUN/pipeline)."),
    out: Path = typer.Option(..., "--out", "-o", help="Output directory (must not exist)."),
    identity: list[str] = typer.Option(None, "--identity", "-i", help="Identity folder name; repeatable."),
    all_ids: bool = typer.Option(False, "--all", help="Generate for every identity of the run."),
    num: int = typer.Option(64, "--num", "-n", min=1, help="Samples per identity."),
    steps: int = typer.Option(
        None, "--steps", min=1, help="Sampler steps (default: the run's diffusion config)."
    ),
    scheduler: str = typer.Option(
        None, "--scheduler",
        help="ddpm, ddim, dpmpp, euler, euler_a, lms, heun or unipc (vq-diffusion runs: vq-diffusion)."
    ),
    guidance: float = typer.Option(
        None, "--guidance", min=0.0, callback=finite, help="Classifier-free guidance scale (1 = none)."
    ),
    seed: int = seed_option("Base seed; sample i of identity k uses seed (seed, k, i)."),
    fmt: str = typer.Option("png", "--format", help="png, jpg or npy."),
    batch_size: int = typer.Option(
        16, "--batch-size", min=1, help="Images per sampler batch (results do not depend on it)."
    ),
    guidance_interval: tuple[float, float] = GuidanceIntervalOpt,
    from_real: str = FromRealOpt,
    strength: float = StrengthOpt,
    filter_: bool = FilterOpt,
    min_confidence: float = MinConfidenceOpt,
    physics_stats: str = PhysicsStatsOpt,
    physics_quantiles: str = PhysicsQuantilesOpt,
    physics_tolerance: float = PhysicsToleranceOpt,
    max_attempts: int = MaxAttemptsOpt,
    condition: str = typer.Option(
        None, "--condition",
        help="Walking condition to generate (a run trained on several conditions); writes OUT/<condition>/.",
    ),
    condition_guidance: float = typer.Option(
        None, "--condition-guidance", min=0.0, callback=finite,
        help="Guidance scale of the condition (compositional guidance; default: --guidance).",
    ),
    overrides: list[str] = OverridesArg,
    config: str = ConfigOpt,
    quiet: bool = QuietOpt,
) -> None:
    """Generate spectrograms of chosen identities in the input data's layout, colormap and native size.

    Strategies: --guidance-interval; --from-real split|DIR --strength S (variations of real windows);
    --filter (oversample until N samples pass the run's encoder confidence and physics ranges)."""
    from dopplerdiff.generate import GenerationPlan

    setup_logging(quiet)
    existing_dir(run, "--run")
    if bool(identity) == all_ids:
        raise DopplerDiffError("give either --identity NAME (repeatable) or --all")
    strategy = strategy_from(guidance_interval, from_real, strength, filter_, min_confidence, physics_stats,
                             physics_quantiles, max_attempts, physics_tolerance)
    new_out(out)
    cfg = config_for(run, config, list(overrides or []))
    plan = GenerationPlan.from_options(
        cfg, identities=None if all_ids else list(identity), count=num, seed=seed, steps=steps,
        guidance=guidance, scheduler=scheduler, batch_size=batch_size, condition=condition,
        condition_guidance=condition_guidance)
    path = _generate(run, out, cfg, strategy, plan, fmt=fmt, progress=not quiet)
    if not quiet:
        typer.echo(f"wrote {path}")
