"""`dopplerdiff fewshot`: new people from a few windows (leave-people-out) -> OUT/results.json, report.html,
or only the report of an existing results JSON."""

from __future__ import annotations

from pathlib import Path

import typer

from dopplerdiff.cli.app import app
from dopplerdiff.cli.common import OverridesArg, QuietOpt, existing_dir, setup_logging
from dopplerdiff.errors import DopplerDiffError

RESULTS_NAME, REPORT_NAME, STRIPS_NAME = "results.json", "report.html", "strips"


OutOpt = typer.Option(
    None, "--out", "-o",
    help="Output folder: fold runs, results.json, report.html, strips/ (must not exist or be empty; with "
    "--report-only: the report's .html path).")
MethodsOpt = typer.Option(
    "row,seeded", "--methods",
    help="row (identity row only), seeded (img2img of the shots), tuned (rows + cross-attention K/V with "
    "prior preservation), copies (the shots time-shifted up to N, no generator: the class-balance baseline).")
ClassifierStepsOpt = typer.Option(
    None, "--classifier-steps", min=1, help="Classifier training steps (default: evaluate.augment_steps).")
ArchitecturesOpt = typer.Option(
    "encoder,judge", "--architectures",
    help="Classifier architectures scoring the arms: encoder (the project's), judge (the independent one).")
ReportOnlyOpt = typer.Option(
    None, "--report-only", help="Only render the report of a results JSON (this command's or the bench's).")


@app.command("fewshot")
def fewshot_cmd(
    overrides: list[str] = OverridesArg,
    data: Path = typer.Option(None, "--data", help="Folder of ID_k/ spectrograms (every person)."),
    out: Path = OutOpt,
    profile: str = typer.Option(None, "--profile", "-p", help="smoke, quick (default), paper, a YAML."),
    folds: int = typer.Option(3, "--folds", min=1, help="Leave-people-out folds (every person novel once)."),
    only_folds: int = typer.Option(None, "--only-folds", min=1, help="Run only the first F folds."),
    novel: str = typer.Option(None, "--novel", help="Comma-separated novel people: one fold, not --folds."),
    k: str = typer.Option("5", "--k", help="Real windows per novel person, e.g. 1,3,5,10."),
    n: str = typer.Option("16,64", "--n", help="Synthetic windows per novel person, e.g. 16,64."),
    methods: str = MethodsOpt,
    strengths: str = typer.Option("0.5,0.8", "--strengths", help="img2img strengths of the seeded method."),
    seeds: int = typer.Option(2, "--seeds", min=1, help="Classifier seeds per arm."),
    adapt_steps: int = typer.Option(300, "--adapt-steps", min=1, help="Steps learning each novel row."),
    tune_steps: int = typer.Option(200, "--tune-steps", min=1, help="Fine-tuning steps of the tuned method."),
    classifier_steps: int = ClassifierStepsOpt,
    open_set: bool = typer.Option(False, "--open-set", help="Also enroll novel people in a gallery."),
    architectures: str = ArchitecturesOpt,
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda or cuda:N."),
    resume: bool = typer.Option(False, "--resume", help="Continue OUT: finished (fold, k) cells are kept."),
    report_only: Path = ReportOnlyOpt,
    quiet: bool = QuietOpt,
) -> None:
    """Novel walkers from k windows: adapt a generator trained on the other people, score classifier arms."""
    from dopplerdiff.fewshot.experiment import (
        FewshotOptions,
        architecture_list,
        float_list,
        int_list,
        method_list,
        name_list,
        run_fewshot,
    )
    from dopplerdiff.fewshot.report import render_fewshot_report, render_results_file, text_summary
    from dopplerdiff.utils.io import check_out_dir

    setup_logging(quiet)
    if report_only is not None:
        typer.echo(f"wrote {render_results_file(report_only, out)}")
        return
    if data is None or out is None:
        raise DopplerDiffError("fewshot needs --data DIR and --out DIR (or --report-only RESULTS.json)")
    existing_dir(data, "--data")
    opts = FewshotOptions(
        data=str(data), runs=out, results=out / RESULTS_NAME, strips=out / STRIPS_NAME, profile=profile,
        overrides=list(overrides or []), folds=folds, only_folds=only_folds, novel=name_list(novel),
        ks=int_list(k, "--k"), ns=int_list(n, "--n"), methods=method_list(methods),
        strengths=float_list(strengths, "--strengths"), seeds=seeds, adapt_steps=adapt_steps,
        tune_steps=tune_steps, classifier_steps=classifier_steps, open_set=open_set,
        architectures=architecture_list(architectures), device=device, resume=resume)
    check_out_dir(out, overwrite=resume, what="--out",
                  hint="choose another path, or pass --resume to continue the experiment there")
    result = run_fewshot(opts, on_update=lambda r: render_fewshot_report(r, out / REPORT_NAME, out))
    render_fewshot_report(result, out / REPORT_NAME, out)  # also when --resume found every cell done
    typer.echo(text_summary(result))
    typer.echo(f"wrote {out / RESULTS_NAME} and {out / REPORT_NAME}")
