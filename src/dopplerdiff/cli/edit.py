"""`dopplerdiff edit transfer|inpaint|interpolate` and `dopplerdiff enroll-generator`."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import typer

from dopplerdiff.cli.app import app
from dopplerdiff.cli.common import (
    QuietOpt,
    existing_dir,
    finite,
    new_out,
    positive,
    seed_option,
    setup_logging,
)
from dopplerdiff.config import config_for
from dopplerdiff.config.base import check_seed
from dopplerdiff.errors import DopplerDiffError
from dopplerdiff.utils.names import check_new_identity_name

edit_app = typer.Typer(help="Edit spectrograms with a trained run: transfer, inpaint, interpolate.",
                       no_args_is_help=True)
app.add_typer(edit_app, name="edit")

RunOpt = typer.Option(..., "--run", "-r", help="Trained run directory (uses RUN/pipeline).")
OutOpt = typer.Option(..., "--out", "-o", help="Output directory (must not exist).")
InputOpt = typer.Option(..., "--input", help="Spectrogram file or folder; repeatable.")
StepsOpt = typer.Option(None, "--steps", min=1, help="Sampler steps (default: the run's diffusion config).")
GuidanceOpt = typer.Option(None, "--guidance", min=0.0, callback=finite,
                           help="Guidance scale (default: the run's).")
SchedulerOpt = typer.Option(None, "--scheduler", help="Sampler name (default: the run's).")
SeedOpt = seed_option("Base seed; output i uses seed (seed, identity, i).")
FormatOpt = typer.Option("png", "--format", help="png, jpg or npy.")
BatchOpt = typer.Option(16, "--batch-size", min=1,
                        help="Windows per sampler batch (results do not depend on it).")


@dataclasses.dataclass
class Edit:
    """What every edit command resolves first: config, pipeline, data settings, sampling settings."""

    run: Path
    out: Path | None
    cfg: Any
    pipe: Any
    data_cfg: Any
    steps: int
    guidance: float
    seed: int

    def inputs(self, paths: list[Path]) -> tuple[list[Path], np.ndarray, list[dict]]:
        from dopplerdiff.edit.io import read_inputs
        from dopplerdiff.embed.encode import expand_files

        files = expand_files(list(paths))
        return (files, *read_inputs(files, self.data_cfg))

    def at_output_size(self, files: list[Path]) -> np.ndarray | None:
        """The inputs again at the size the pipeline samples when it differs from the model's (an upsampling
        diffusion decoder), for pasting known pixels; None otherwise."""
        from dopplerdiff.edit.io import read_inputs

        p = self.pipe
        size = int(p.decoder.config.size) if p.decodes_with_diffusion else self.data_cfg.size
        if size == self.data_cfg.size:
            return None
        return read_inputs(files, dataclasses.replace(self.data_cfg, size=size), warn=False)[0]

    def write(self, images01: np.ndarray, names: list[str], fmt: str, **manifest: Any) -> None:
        """Outputs at the run's native size and colormap, with the settings in manifest.json."""
        from dopplerdiff.edit.io import write_outputs

        p = self.pipe
        write_outputs(self.out, images01, names, colormap=p.config.colormap, size=p.config.native_size,
                      fmt=fmt, run=str(self.run), scheduler=p.scheduler_name, steps=self.steps,
                      guidance=self.guidance, seed=self.seed,
                      seed_rule="generate.sample_seed(seed, identity, i)", **manifest)


def _setup(run: Path, out: Path | None, scheduler: str | None, quiet: bool, steps: int | None = None,
           guidance: float | None = None, seed: int = 0, fmt: str = "png") -> Edit:
    """Resolve the run (its config, pipeline with the chosen sampler, data settings); refuse an existing
    --out or an unknown --format before any work."""
    from dopplerdiff.generate import check_format
    from dopplerdiff.pipelines.auto_pipeline import load_run_pipeline
    from dopplerdiff.pipelines.pipeline_vq_diffusion import refuse_edits

    setup_logging(quiet)
    existing_dir(run, "--run")
    check_format(fmt)
    if out is not None:
        new_out(out)
    cfg = config_for(run, None, [])
    pipe = load_run_pipeline(run)
    refuse_edits(pipe, f"the edit commands on run '{run}'")
    pipe.set_progress_bar_config(disable=quiet)
    pipe.set_scheduler(scheduler or cfg.diffusion.scheduler)
    d = cfg.diffusion
    return Edit(run, out, cfg, pipe, dataclasses.replace(cfg.data, colormap=pipe.config.colormap),
                d.num_inference_steps if steps is None else steps,
                d.guidance_scale if guidance is None else guidance, seed)


def _span(text: str | None, arg: str) -> tuple[float, float] | None:
    if text is None:
        return None
    try:
        lo, hi = (float(v) for v in text.split(":"))
    except ValueError:
        raise DopplerDiffError(f"{arg} '{text}' must be START:END (e.g. 0.4:0.6)") from None
    return lo, hi


def _seeds(text: str | None) -> tuple[int, int] | None:
    """--seeds S0:S1 as two integer seeds ('1.9' or '1e30' refused, not truncated or overflowed later)."""
    if text is None:
        return None
    try:
        s0, s1 = (int(v) for v in text.split(":"))
    except ValueError:
        raise DopplerDiffError(f"--seeds '{text}' must be two integer seeds S0:S1 (e.g. 0:1)") from None
    return check_seed(s0, "--seeds"), check_seed(s1, "--seeds")


@edit_app.command("transfer")
def transfer_cmd(
    run: Path = RunOpt, inputs: list[Path] = InputOpt, out: Path = OutOpt,
    identity: str = typer.Option(..., "--identity", "-i", help="Target identity."),
    strength: float = typer.Option(0.6, "--strength", help="Noise strength in (0, 1]; 1 = from pure noise."),
    condition: str = typer.Option(None, "--condition",
                                  help="Walking condition to render in (a run trained on conditions)."),
    condition_guidance: float = typer.Option(None, "--condition-guidance", min=0.0, callback=finite,
                                             help="Guidance scale of the condition (default: --guidance)."),
    guidance: float = GuidanceOpt, steps: int = StepsOpt, scheduler: str = SchedulerOpt, seed: int = SeedOpt,
    fmt: str = FormatOpt, batch_size: int = BatchOpt, quiet: bool = QuietOpt,
) -> None:
    """Re-render walks as another person (img2img): the same timing and speed course, identity k; with
    --condition, in another walking condition (the same walk with a backpack, ...)."""
    from dopplerdiff.edit.io import output_names
    from dopplerdiff.edit.ops import transfer
    from dopplerdiff.pipelines.sampling import check_strength

    e = _setup(run, out, scheduler, quiet, steps, guidance, seed, fmt)
    check_strength(strength, e.steps)
    e.pipe.identity_ids([identity])
    if condition is not None:
        e.pipe.condition_ids([condition])  # unknown, or a run without conditions: one error, nothing written
    files, images, notes = e.inputs(inputs)
    res = transfer(e.pipe, images, identity, strength=strength, guidance=e.guidance, steps=e.steps, seed=seed,
                   batch_size=batch_size, condition=condition, condition_guidance=condition_guidance)
    suffix = f"_as_{identity}" + (f"_{condition}" if condition else "")
    e.write(res, output_names(files, suffix), fmt, kind="edit-transfer", inputs=notes, identity=identity,
            strength=strength, **({"condition": condition, "condition_guidance": condition_guidance}
                                  if condition else {}))
    if not quiet:
        typer.echo(f"wrote {len(files)} transferred windows to {out}")


@edit_app.command("inpaint")
def inpaint_cmd(
    run: Path = RunOpt, inputs: list[Path] = InputOpt, out: Path = OutOpt,
    mask_time: str = typer.Option(None, "--mask-time", help="Time span T0:T1 to regenerate (fractions)."),
    mask_doppler: str = typer.Option(None, "--mask-doppler", help="Doppler band F0:F1 (rows, 0 = top)."),
    identity: str = typer.Option(None, "--identity", "-i", help="Fill as this identity (default: none)."),
    resample: int = typer.Option(0, "--resample", help="RePaint resampling per step (ddim/ddpm samplers)."),
    guidance: float = GuidanceOpt, steps: int = StepsOpt, scheduler: str = SchedulerOpt, seed: int = SeedOpt,
    fmt: str = FormatOpt, batch_size: int = BatchOpt, quiet: bool = QuietOpt,
) -> None:
    """Regenerate a masked time span and/or Doppler band consistently with the rest of the window."""
    from dopplerdiff.edit.io import output_names
    from dopplerdiff.edit.ops import inpaint, span_mask

    if resample and scheduler is None:
        scheduler = "ddim"  # resampling repeats steps: needs a sampler without step history
    if resample and scheduler not in ("ddim", "ddpm"):
        raise DopplerDiffError(f"--resample needs --scheduler ddim or ddpm (a step that can be repeated), "
                               f"not {scheduler}")
    e = _setup(run, out, scheduler, quiet, steps, guidance, seed, fmt)
    size = e.data_cfg.size
    mask = span_mask((size, size), _span(mask_time, "--mask-time"), _span(mask_doppler, "--mask-doppler"))
    if identity is not None:
        e.pipe.identity_ids([identity])
    files, images, notes = e.inputs(inputs)
    res = inpaint(e.pipe, images, mask, identity, guidance=e.guidance, steps=e.steps, seed=seed,
                  resample_steps=resample, batch_size=batch_size, known=e.at_output_size(files))
    e.write(res, output_names(files, "_inpainted"), fmt, kind="edit-inpaint", inputs=notes,
            identity=identity, mask_time=mask_time, mask_doppler=mask_doppler, resample_steps=resample)
    if not quiet:
        typer.echo(f"wrote {len(files)} inpainted windows to {out}")


@edit_app.command("interpolate")
def interpolate_cmd(
    run: Path = RunOpt, out: Path = OutOpt,
    start: str = typer.Option(None, "--from", help="Identity at one end of an identity strip."),
    end: str = typer.Option(None, "--to", help="Identity at the other end."),
    identity: str = typer.Option(None, "--identity", "-i",
                                 help="One identity (with --seeds) or a mix like ID_3:0.5,ID_7:0.5."),
    seeds: str = typer.Option(None, "--seeds", help="S0:S1 -- slerp between the noise of two seeds."),
    num: int = typer.Option(5, "--num", "-n", help="Images in the strip (or samples of a mix)."),
    guidance: float = GuidanceOpt, steps: int = StepsOpt, scheduler: str = SchedulerOpt, seed: int = SeedOpt,
    fmt: str = FormatOpt, batch_size: int = BatchOpt, quiet: bool = QuietOpt,
) -> None:
    """Identity strips (--from/--to), noise strips (--identity --seeds), virtual walkers (--identity MIX)."""
    from dopplerdiff.edit.ops import mix_samples, mix_strip, noise_strip
    from dopplerdiff.pipelines.sampling import parse_identity_mix

    if (start is None) != (end is None):
        raise DopplerDiffError("give both --from and --to")
    pair = _seeds(seeds)
    e = _setup(run, out, scheduler, quiet, steps, guidance, seed, fmt)
    args = {"guidance": e.guidance, "steps": e.steps, "batch_size": batch_size}
    if start is not None:
        e.pipe.identity_ids([start, end])
        imgs, ws = mix_strip(e.pipe, start, end, num, seed=seed, **args)
        names, what = [f"{start}_to_{end}_{i}" for i in range(num)], {"from": start, "to": end}
    elif identity is not None and pair is not None:
        s0, s1 = pair
        e.pipe.identity_ids([identity])
        imgs, ws = noise_strip(e.pipe, identity, (s0, s1), num, **args)
        names, what = [f"{identity}_slerp_{i}" for i in range(num)], {"identity": identity, "seeds": [s0, s1]}
    elif identity is not None:
        mix = parse_identity_mix(identity)
        imgs, ws = mix_samples(e.pipe, mix, num, seed=seed, **args), []
        names, what = [f"mix_{i}" for i in range(num)], {"mix": mix}
    else:
        raise DopplerDiffError("give --from A --to B, --identity ID --seeds S0:S1, or --identity A:w,B:w")
    e.write(imgs, names, fmt, kind="edit-interpolate", weights=ws, **what)
    if not quiet:
        typer.echo(f"wrote {len(names)} images to {out}")


@app.command("enroll-generator")
def enroll_generator_cmd(
    run: Path = RunOpt,
    identity: str = typer.Option(..., "--identity", "-i", help="Name of the new person."),
    files: list[Path] = typer.Argument(..., help="Windows of the new person (files or folders)."),
    replace: bool = typer.Option(False, "--replace", help="Relearn an identity that already exists."),
    steps: int = typer.Option(300, "--steps", min=1, help="Optimisation steps of the new identity row."),
    lr: float = typer.Option(5e-2, "--lr", callback=positive, help="Learning rate of the new row."),
    seed: int = SeedOpt, quiet: bool = QuietOpt,
) -> None:
    """Learn a new identity row from k windows (denoiser frozen); then `generate --identity NAME` works.

    Enroll the same files with `dopplerdiff enroll --index INDEX --identity NAME` so that `identify` and
    `generate` use the same name."""
    from dopplerdiff.train.identity import learn_identity, save_pipeline

    check_new_identity_name(identity, "--identity")  # the check the pipeline's loader makes, and more
    e = _setup(run, None, None, quiet, seed=seed)
    paths, images, notes = e.inputs(files)
    info = learn_identity(e.pipe, images, identity, e.cfg, replace=replace, steps=steps, lr=lr, seed=seed,
                          progress=not quiet)
    save_pipeline(e.pipe, run, {**info, "files": [str(p) for p in paths], "inputs": notes, "seed": seed})
    if not quiet:
        typer.echo(f"identity '{identity}' learned from {len(paths)} windows (loss {info['loss_before']:.4f} "
                   f"-> {info['loss_after']:.4f}); `dopplerdiff generate --run {run} --identity {identity}`")
