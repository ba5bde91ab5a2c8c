"""`dopplerdiff train-encoder`: train the spectrogram identity encoder on the real training split."""

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


@app.command("train-encoder")
def train_encoder_cmd(
    overrides: list[str] = OverridesArg,
    data: Path = typer.Option(
        None, "--data", help="Data folder DATA/<identity>/... (default: the one recorded in RUN/data.json)."
    ),
    out: Path = typer.Option(..., "--out", help="Output directory, usually RUN/encoder."),
    config: str = ConfigOpt,
    kind: str = typer.Option(None, "--kind", help="Backbone: cnn or vit (overrides encoder.kind)."),
    resume: str = typer.Option(
        None, "--resume", help="'latest' or a checkpoint path in RUN/train/encoder to continue from."
    ),
    report_to: str = ReportToOpt,
    quiet: bool = QuietOpt,
) -> None:
    """Train the encoder (cross-entropy + supervised contrastive) on the leak-free train split.

    Selects weights on the validation split, reports accuracy on the test split, and writes OUT
    (save_pretrained) with metrics.json, config.yaml and manifest.json.
    """
    from dopplerdiff.train.encoder import train_encoder

    setup_logging(quiet)
    extra = [f"encoder.kind={kind}"] if kind else []
    cfg = resolve_config(config, [*(overrides or []), *extra, *report_overrides(report_to, ("encoder",))])
    metrics = train_encoder(data, out, cfg, resume=resume, progress=not quiet)
    if not metrics:  # a non-main process of a distributed run
        return

    def ci(part: str) -> str:
        m = metrics[part]
        if m.get("overall") is None:
            return "n/a (empty split)"
        lo, hi = m["ci95"]
        return f"{m['overall']:.3f} [95% CI {lo:.3f}-{hi:.3f}], n={m['n']}"

    typer.echo(
        f"encoder ({metrics['kind']}, {metrics['num_parameters']:,} parameters) -> {out}\n"
        f"  steps {metrics['steps']} in {metrics['train_seconds']:.0f}s, "
        f"selected step {metrics['selected_step']}\n"
        f"  val accuracy  {ci('val')}\n"
        f"  test accuracy {ci('test')}  (chance {metrics['chance']:.3f})"
    )
