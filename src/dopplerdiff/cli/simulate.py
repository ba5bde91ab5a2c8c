"""`dopplerdiff simulate`: write a simulated walking-person dataset in the measured-data layout."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from dopplerdiff.cli.app import app
from dopplerdiff.cli.common import ConfigOpt, OverridesArg, QuietOpt, resolve_config, setup_logging


@app.command("simulate")
def simulate(
    out: Path = typer.Option(..., "--out", "-o", help="Output folder (must not exist or be empty)."),
    identities: int | None = typer.Option(None, "--identities", help="Number of people (default: config)."),
    per_identity: int | None = typer.Option(None, "--per-identity", help="Windows per person."),
    seed: int | None = typer.Option(None, "--seed", help="Population / noise seed."),
    size: int | None = typer.Option(None, "--size", help="Image side in pixels."),
    carrier_ghz: float | None = typer.Option(None, "--carrier-ghz", help="Radar carrier frequency (GHz)."),
    fmt: str | None = typer.Option(None, "--format", help="png or npy (float32 [0, 1])."),
    colormap: str | None = typer.Option(None, "--colormap", help="jet, gray or a matplotlib name."),
    conditions: str | None = typer.Option(
        None, "--conditions",
        help="Walking conditions, comma-separated (normal, backpack, hands_in_pockets, phone_in_hand, fast, "
             "slow, aspect_<deg>): writes OUT/<condition>/ID_k/ID{k}_case{c}_{r}_Doppler{i}.png.",
    ),
    config: str | None = ConfigOpt,
    overrides: list[str] | None = OverridesArg,
    quiet: bool = QuietOpt,
) -> None:
    """Simulate micro-Doppler spectrograms of walking people: OUT/ID_k/ID{k}_case1_{r}_Doppler{i}.png, or
    OUT/<condition>/ID_k/ID{k}_case{c}_{r}_Doppler{i}.png with --conditions (see docs/conditions.md)."""
    setup_logging(quiet)
    flags = {
        "identities": identities, "per_identity": per_identity, "seed": seed, "size": size,
        "carrier_ghz": carrier_ghz, "format": fmt, "colormap": colormap,
        "conditions": None if conditions is None else [c.strip() for c in conditions.split(",") if c.strip()],
    }
    # Flags are applied after the key=value overrides, so they win.
    extra = [f"simulate.{k}={json.dumps(v)}" for k, v in flags.items() if v is not None]
    cfg = resolve_config(config, [*(overrides or []), *extra]).simulate
    from dopplerdiff.data.simulate import simulate_dataset

    path = simulate_dataset(cfg, out, progress=not quiet)
    manifest = json.loads((path / "manifest.json").read_text())
    if not quiet:
        typer.echo(
            f"wrote {path}: {cfg.identities} identities x {cfg.per_identity} windows"
            f"{f' x {len(cfg.conditions)} conditions' if cfg.conditions else ''} = {manifest['windows']} "
            f"{cfg.size}x{cfg.size} {cfg.format} ({cfg.colormap if cfg.format == 'png' else 'float32'}) in "
            f"{manifest['seconds']:.1f} s, {manifest['spectrograms_per_s']:.0f} spectrograms/s, "
            f"{manifest['workers']} worker(s)"
        )
