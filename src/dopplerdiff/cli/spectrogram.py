"""`dopplerdiff spectrogram`: raw FMCW recordings -> windows in the data layout; `simulate-raw` makes one."""

from __future__ import annotations

from pathlib import Path

import typer

from dopplerdiff.cli.app import app
from dopplerdiff.cli.common import QuietOpt, finite, new_out, setup_logging
from dopplerdiff.config.radar import load_radar_config
from dopplerdiff.config.simulate import SimulateConfig
from dopplerdiff.errors import DopplerDiffError

RadarOpt = typer.Option(..., "--radar", help="Radar config (JSON or YAML): chirp, ADC and frame parameters.")


def _range(text: str | None) -> list[float] | None:
    """'LO:HI' metres -> [LO, HI]."""
    if text is None:
        return None
    try:
        lo, hi = (float(v) for v in text.split(":"))
    except ValueError:
        raise typer.BadParameter(f"--range must be LO:HI in metres (e.g. 1:6), got {text!r}") from None
    return [lo, hi]


@app.command("spectrogram")
def spectrogram(
    raw: list[Path] = typer.Option(..., "--raw", help="Raw recordings: DCA1000 .bin, .npy/.mat IQ."),
    more: list[Path] | None = typer.Argument(None, help="More raw recordings (e.g. a shell glob)."),
    radar: Path = RadarOpt,
    out: Path = typer.Option(..., "--out", "-o", help="New identity folder DATA/ID_k for the windows."),
    window: float | None = typer.Option(None, "--window", callback=finite, help="Window (s), default 3."),
    hop: float | None = typer.Option(None, "--hop", callback=finite, help="Hop (s), default 1."),
    gate: str | None = typer.Option(None, "--gate", help="Range gate: track (default) or fixed."),
    range_m: str | None = typer.Option(None, "--range", help="Gate / tracking region LO:HI in metres."),
    clutter: str | None = typer.Option(None, "--clutter", help="Clutter removal: mean (default), mti, none."),
    fmt: str | None = typer.Option(None, "--format", help="png (default) or npy."),
    quiet: bool = QuietOpt,
) -> None:
    """Cut micro-Doppler windows out of raw FMCW recordings: OUT/ID{k}_case1_{r}_Doppler{i}.png."""
    setup_logging(quiet)
    flags = {"window_s": window, "hop_s": hop, "gate": gate, "range_m": _range(range_m), "clutter": clutter,
             "format": fmt}
    cfg = load_radar_config(radar, {k: v for k, v in flags.items() if v is not None})
    new_out(out)
    from dopplerdiff.data.rangedoppler import raw_to_dataset  # numpy/scipy stages load on use, as elsewhere

    meta = raw_to_dataset([*raw, *(more or [])], cfg, out, radar)
    if not quiet:
        counts = ", ".join(f"{Path(r['file']).name}: {r['windows']}" for r in meta["recordings"])
        image = meta["image"]
        typer.echo(f"wrote {out}: windows per recording {counts}; Doppler +-{image['doppler_hz_top']:g} Hz "
                   f"= +-{image['velocity_mps_top']:.2f} m/s")


@app.command("simulate-raw")
def simulate_raw(
    radar: Path = RadarOpt,
    out: Path = typer.Option(..., "--out", "-o", help="New .bin file (DCA1000 format)."),
    identity: int = typer.Option(1, "--identity", min=1, help="Simulated person (1-based)."),
    recording: int = typer.Option(1, "--recording", min=1, help="Recording of that person (1-based)."),
    windows: int = typer.Option(3, "--windows", min=1, help="Length in windows of the radar config."),
    seed: int = typer.Option(0, "--seed", min=0, help="Population seed (as `simulate --seed`)."),
    snr_db: float | None = typer.Option(None, "--snr-db", callback=finite, help="Noise per ADC sample."),
) -> None:
    """Write a simulated walk as a DCA1000 capture for the radar config (`spectrogram` without hardware)."""
    cfg = load_radar_config(radar)
    if out.exists():
        raise DopplerDiffError(f"--out '{out}' already exists; choose another path or remove it")
    if out.suffix.lower() != ".bin":
        raise DopplerDiffError(f"--out '{out}' must end in .bin")
    from dopplerdiff.data.simulate_raw import simulate_raw_recording, write_raw_recording

    sim = SimulateConfig(seed=seed, identities=identity, recordings_per_identity=recording,
                         per_identity=max(recording, 1))
    codes, _ = simulate_raw_recording(sim, cfg, identity - 1, recording - 1, windows, snr_db)
    write_raw_recording(out, codes, cfg)
    typer.echo(f"wrote {out}: {codes.shape[0]} chirps x {cfg.adc_samples} samples x {cfg.rx} rx "
               f"({codes.shape[0] / cfg.prf_hz:.1f} s)")
