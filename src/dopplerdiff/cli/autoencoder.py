"""`dopplerdiff train-autoencoder` and `dopplerdiff cache-latents`: the first stage."""

from __future__ import annotations

from pathlib import Path

import typer

from dopplerdiff.cli.app import app
from dopplerdiff.cli.common import (
    ConfigOpt,
    OverridesArg,
    QuietOpt,
    ReportToOpt,
    report_overrides,
    resolve_config,
    setup_logging,
)
from dopplerdiff.utils.rundir import RunDir


@app.command("train-autoencoder")
def train_autoencoder_cmd(
    overrides: list[str] = OverridesArg,
    data: Path = typer.Option(
        None, "--data", "-d", help="Data folder DATA/<identity>/... (default: the one in RUN/data.json)."
    ),
    out: Path = typer.Option(
        ..., "--out", "--run", "-r", help="Run directory RUN (created if missing)."
    ),
    config: str = ConfigOpt,
    kind: str = typer.Option(
        None, "--kind", "-k", help="kl (AutoencoderKL) or vq (VQModel); overrides autoencoder.kind."
    ),
    resume: str = typer.Option(
        None, "--resume", help="'latest' or a checkpoint path in RUN/train/autoencoder to continue from."
    ),
    feature_encoder: Path = typer.Option(
        None, "--feature-encoder",
        help="Trained encoder for the feature loss (autoencoder.loss.feature > 0); default RUN/encoder.",
    ),
    report_to: str = ReportToOpt,
    quiet: bool = QuietOpt,
) -> None:
    """Train the first-stage autoencoder on the train split; measure the latent scale; save RUN/autoencoder.

    Writes RUN/autoencoder (save_pretrained, measured scaling/shift factors), RUN/train/autoencoder
    (checkpoints, log.jsonl, val/ grids, metrics.json), RUN/data.json, RUN/config.yaml, RUN/manifest.json.
    """
    from dopplerdiff.train.autoencoder import train_autoencoder

    setup_logging(quiet)
    extra = [f"autoencoder.kind={kind}"] if kind else []
    cfg = resolve_config(config, [*(overrides or []), *extra, *report_overrides(report_to, ("autoencoder",))])
    m = train_autoencoder(out, cfg, data_root=data, resume=resume, progress=not quiet,
                          feature_encoder=feature_encoder)
    if not m:  # a non-main process of a distributed run
        return
    v, lat = m["val"], m["latent"]
    line = (f"autoencoder ({m['kind']}) -> {RunDir(out).autoencoder}: "
            f"{m['steps']} steps in {m['train_wall_s']:.0f}s\n")
    if v.get("count"):
        line += (f"  val PSNR {v['psnr']:.2f} dB  SSIM {v['ssim']:.3f}  histogram L1 {v['hist_l1']:.3f}  "
                 f"dark fraction {v['dark_frac_recon']:.3f} (real {v['dark_frac_real']:.3f})\n")
        if "vq_perplexity" in v:
            line += f"  VQ codes used {v['vq_used_frac']:.2%}, perplexity {v['vq_perplexity']:.1f}\n"
    line += (f"  latents {m['latent_shape']}: scaling_factor {lat['scaling_factor']:.4f}, "
             f"shift_factor {lat['shift_factor']:.4f}")
    typer.echo(line)


@app.command("cache-latents")
def cache_latents_cmd(
    run: Path = typer.Option(..., "--run", "-r", help="Run directory with a trained RUN/autoencoder."),
    data: Path = typer.Option(
        None, "--data", help="Data folder (default: the one recorded in RUN/data.json)."
    ),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing RUN/latents."),
    batch_size: int = typer.Option(64, "--batch-size", min=1, help="Images encoded per batch."),
    quiet: bool = QuietOpt,
) -> None:
    """Encode every split once (posterior mean and std) into RUN/latents/ for diffusion training."""
    from dopplerdiff.cli.common import existing_dir
    from dopplerdiff.train.latents import cache_latents

    setup_logging(quiet)
    info = cache_latents(existing_dir(run, "--run"), data_root=data, overwrite=overwrite, progress=not quiet,
                         batch_size=batch_size)
    counts = ", ".join(f"{k} {len(v)}" for k, v in info["files"].items())
    typer.echo(f"latents {info['latent_shape']} ({info['kind']}) -> {RunDir(run).latents}: {counts}; "
               f"scale {info['scaling_factor']:.4f}, shift {info['shift_factor']:.4f}")
