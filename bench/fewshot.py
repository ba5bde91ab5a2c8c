"""Novel walkers from k windows: does a generator trained on other people help identify a new person?

Leave-people-out folds (``dopplerdiff.fewshot.protocol``): per fold the run's stages (autoencoder, latents,
diffusion) train on the base people only, from a folder of symlinks to their identity folders; each novel
person gives its first k windows, the generator learns its identity row from them (method a: sampled from
noise; method c: img2img variations of the k windows at each strength), and classifiers over base + novel
people are trained on real / classic-augmented / +synthetic windows (``fewshot.arms``), scored on
the novel people's later windows and on the base people's test split, under the project's classifier and
the independent judge architecture, with paired seeds. ``--open-set`` also enrolls each novel person in an
embedding gallery of an encoder trained on the base people (``fewshot.openset``).

    python bench/fewshot.py --data DIR|sim [--profile quick] [--folds 3] [--only-folds F] [--novel A,B]
        [--k 1,3,5,10] [--n 16,64] [--methods row,seeded] [--strengths 0.5,0.8] [--seeds 2]
        [--adapt-steps 300] [--classifier-steps S] [--open-set] [--device auto] [--name NAME] [--out DIR]
        [--extra key=value ...]

Fold runs are kept under --out (default runs/bench-fewshot/NAME/fold<i>; a rerun resumes them), sample
strips under --out/strips; results go to bench/results/fewshot_NAME.json, rewritten after every (fold, k), and
a table is printed. ``dopplerdiff fewshot --report-only bench/results/fewshot_NAME.json`` renders its report.
The experiment itself is ``dopplerdiff.fewshot.experiment.run_fewshot`` (also ``dopplerdiff fewshot``).
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from dopplerdiff.errors import DopplerDiffError
from dopplerdiff.fewshot.experiment import (
    FewshotOptions,
    architecture_list,
    default_name,
    float_list,
    int_list,
    method_list,
    name_list,
    run_fewshot,
)
from dopplerdiff.fewshot.report import text_summary

RESULTS = Path(__file__).parent / "results"


def parse() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default="sim", help="'sim' (the profile's simulated people) or a data folder")
    ap.add_argument("--profile", default="quick")
    ap.add_argument("--extra", nargs="*", default=[], help="config overrides key=value")
    ap.add_argument("--folds", type=int, default=3, help="leave-people-out folds (every person novel once)")
    ap.add_argument("--only-folds", type=int, default=None, metavar="F", help="run only the first F folds")
    ap.add_argument("--novel", default=None, help="comma-separated novel people: one fold instead of --folds")
    ap.add_argument("--k", default="5", help="windows per novel person, e.g. 1,3,5,10")
    ap.add_argument("--n", default="16,64", help="synthetic windows per novel person, e.g. 16,64")
    ap.add_argument("--methods", default="row,seeded",
                    help="row (identity row only), seeded (img2img), tuned (rows + cross-attention K/V with "
                         "prior preservation), copies (the shots time-shifted up to N: class balance)")
    ap.add_argument("--tune-steps", type=int, default=200, help="fine-tuning steps of the tuned method")
    ap.add_argument("--strengths", default="0.5,0.8", help="img2img strengths of the seeded method")
    ap.add_argument("--seeds", type=int, default=2, help="classifier seeds per arm")
    ap.add_argument("--adapt-steps", type=int, default=300, help="steps learning each novel identity row")
    ap.add_argument("--classifier-steps", type=int, default=None, help="default: evaluate.augment_steps")
    ap.add_argument("--open-set", action="store_true",
                    help="also enroll novel people in an embedding gallery: rank-1, EER, DIR at target FAR")
    ap.add_argument("--architectures", default="encoder,judge", help="classifier architectures of the arms")
    ap.add_argument("--device", default="auto", help="auto (CUDA if present), cpu, cuda, ...")
    ap.add_argument("--name", default=None)
    ap.add_argument("--out", default=None, help="where fold runs are kept")
    return ap.parse_args()


def options(a: argparse.Namespace) -> FewshotOptions:
    """The experiment's options from the bench's flags (a bad flag raises before anything is written)."""
    name = a.name or default_name(a.data)
    out = Path(a.out or f"runs/bench-fewshot/{name}")
    return FewshotOptions(
        data=a.data, runs=out, results=RESULTS / f"fewshot_{name}.json", strips=out / "strips",
        profile=a.profile, overrides=list(a.extra), folds=a.folds, only_folds=a.only_folds,
        novel=name_list(a.novel), ks=int_list(a.k, "--k"), ns=int_list(a.n, "--n"),
        methods=method_list(a.methods), strengths=float_list(a.strengths, "--strengths"), seeds=a.seeds,
        adapt_steps=a.adapt_steps, tune_steps=a.tune_steps,
        classifier_steps=a.classifier_steps, open_set=a.open_set,
        architectures=architecture_list(a.architectures), device=a.device, name=name)


def main() -> None:
    a = parse()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    try:
        opts = options(a)
        result = run_fewshot(opts)
    except DopplerDiffError as exc:
        sys.exit(f"error: {exc}")
    print("\n" + text_summary(result))
    print(f"\n{opts.results}")


if __name__ == "__main__":
    main()
