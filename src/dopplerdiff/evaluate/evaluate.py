"""``dopplerdiff evaluate``: honest evaluation of a run, written to RUN/eval/{metrics.json, report.html}.

What is measured (all in the feature space of the run's spectrogram encoder, trained on real train only):

- identity accuracy of real test windows (the reference), of test reconstructions through the
  autoencoder (what the first stage alone allows) and of generated samples (per identity, bootstrap 95% CIs,
  confusion matrices); ``ratio`` = generated / real-test accuracy;
- Fréchet distance and KID of generated vs real test, beside two floors: real train vs real test (different
  windows of the same people) and test reconstructions vs real test (the first stage's cost);
- k-NN precision/recall (and density/coverage), physical statistics (per identity and overall),
  memorisation (nearest training window), the augmentation experiment and a guidance sweep.

Sampling is done once: generation is seed-indexed (sample i of an identity depends only on the seed and i),
so one pool of max(num_per_identity, augment_synthetic_per_identity) samples per identity at the evaluation
guidance serves every use: the first ``num_per_identity`` are scored, the first
``augment_synthetic_per_identity`` train the augmentation arms (no real test window influences them, so the
reuse leaks nothing), and the guidance sweep takes its samples at that guidance from the same pool.

``metrics.json`` schema (top level): run, created, identities, settings, counts, missing (list of what
could not be evaluated and why), accuracy {real_test, reconstruction, generated: identity_accuracy dicts,
ratio}, distribution {gen_vs_test, train_vs_test, recon_vs_test: {fd, kid_mean, kid_std, precision, recall,
density, coverage, n_a, n_b}}, physics {overall: {stat: compare dict}, per_identity: {name: {stat: W}}},
memorisation, augmentation (with ``strategies``: one arm per evaluate.augment_strategies), augmentation_judge,
augmentation_strategies (how each arm's windows were made), guidance_sweep [{guidance, accuracy, fd, num}].
NaN is written as null.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from dopplerdiff.config import Config
from dopplerdiff.data.images import to_unit
from dopplerdiff.data.physics import compare_physics, physics_stats
from dopplerdiff.errors import DopplerDiffError
from dopplerdiff.evaluate import plots
from dopplerdiff.evaluate import strategies as S
from dopplerdiff.evaluate.c2st import disjoint_pair
from dopplerdiff.evaluate.conditions import condition_section
from dopplerdiff.evaluate.context import EvalContext, EvalState, build_context
from dopplerdiff.evaluate.independent import JUDGE_PART, IndependentEval
from dopplerdiff.evaluate.loading import (
    Arrays,
    eval_device,
    load_eval_pipeline,
    load_run_autoencoder,
)
from dopplerdiff.evaluate.memorisation import memorisation
from dopplerdiff.evaluate.metrics import MIN_SAMPLES_FD, frechet_distance, identity_accuracy
from dopplerdiff.evaluate.native import native_section
from dopplerdiff.evaluate.report import ExampleRow, MemorisationPair, render_report
from dopplerdiff.evaluate.synthetic_gain import run_synthetic_gain
from dopplerdiff.evaluate.windows import (
    WindowSet,
    distribution,
    encode_windows,
    encoder_outputs,
    first_per_identity,
    reconstruct,
)
from dopplerdiff.generate import GenerationPlan, sample
from dopplerdiff.utils.io import (
    atomic_dir,
    atomic_write_bytes,
    check_out_dir,
    recover_parts,
    write_json,
    write_manifest,
)
from dopplerdiff.utils.rundir import RunDir

log = logging.getLogger(__name__)

EXAMPLES_PER_IDENTITY = 6
MEMORISATION_PAIRS = 8


# ------------------------------------------------------------------------------------------- helpers


def _sanitize(obj: Any) -> Any:
    """JSON-safe: NaN/inf -> None, numpy -> python."""
    if isinstance(obj, dict):
        return {str(k): _sanitize(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_sanitize(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return _sanitize(obj.tolist())
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def _generate(pipe: Any, k: int, n: int, ecfg: Any, guidance: float, seed: int, progress: bool,
              data_shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """``n`` samples of each of the first ``k`` identity rows (the data's) with the evaluation's sampler
    at ``guidance`` and ``seed``, in [-1, 1] at the data's size."""
    plan = GenerationPlan.from_evaluate(ecfg, identities=range(k), count=n, guidance=guidance, seed=seed)
    got = sample(pipe, plan, progress=progress)
    imgs = to_data_size(np.asarray(got.images, np.float32) * 2.0 - 1.0, data_shape)
    if imgs.shape[1:] != data_shape:
        raise DopplerDiffError(f"the pipeline generates images of shape {imgs.shape[1:]} but the run's data "
                               f"is {data_shape}; the pipeline does not belong to this run's data settings")
    return imgs, np.asarray(got.labels, np.int64)


def to_data_size(imgs: np.ndarray, data_shape: tuple[int, ...]) -> np.ndarray:
    """Samples of a pipeline whose diffusion decoder upsamples (a multiple of the data size), area-averaged
    back to the data size: every metric compares them with real windows at that size."""
    (c, h, w), shape = data_shape, imgs.shape[1:]
    if shape == data_shape or shape[0] != c or shape[1] % h or shape[2] % w or shape[1] < h:
        return imgs  # equal, or a mismatch the caller reports
    return F.adaptive_avg_pool2d(torch.from_numpy(imgs), (h, w)).numpy()


def _memorisation(gen: WindowSet, train: WindowSet, test: WindowSet, ids: list[str], st: EvalState) -> None:
    """Nearest-training-window check in encoder-feature and pixel space; closest pairs for the report."""

    per_sample = ("flags", "gen_nn_index", "gen_nn_distance", "test_nn_distance", "examples")
    res = {"features": memorisation(gen.f, train.f, test.f), "pixels": memorisation(gen.x, train.x, test.x)}
    out = {space: {k: v for k, v in r.items() if k not in per_sample} for space, r in res.items()}
    f, fr = out["features"], res["features"]
    st.metrics["memorisation"] = {
        "rule": f"{f['rule']} (encoder features; pixel space under 'pixels')", "flagged": f["num_flagged"],
        "total": len(gen.x), "fraction": f["fraction_flagged"], "expected_fraction": f["expected_fraction"],
        "threshold": f["threshold"], "pixels_flagged": out["pixels"]["num_flagged"], **out,
    }
    st.plots["memorisation"] = plots.distance_hist_plot(fr["gen_nn_distance"], fr["test_nn_distance"],
                                                        fr["threshold"])
    for gi, ti, d in fr["examples"][:MEMORISATION_PAIRS]:
        st.pairs.append(MemorisationPair(to_unit(gen.x[gi]), to_unit(train.x[ti]), d, ids[gen.y[gi]],
                                         train.files[ti] if train.files else ""))


def _physics(real01: np.ndarray, real_y: np.ndarray, gen01: np.ndarray, gen_y: np.ndarray, ids: list[str],
             st: EvalState) -> None:

    per = {}
    for k, name in enumerate(ids):
        r, g = real01[real_y == k], gen01[gen_y == k]
        if len(r) and len(g):
            per[name] = {s: v["wasserstein"] for s, v in compare_physics(r, g).items()}
    st.metrics["physics"] = {"overall": compare_physics(real01, gen01), "per_identity": per}
    st.plots["physics"] = plots.physics_plot(physics_stats(real01), physics_stats(gen01))


def _examples(test01: np.ndarray, test_y: np.ndarray, gen01: np.ndarray | None, gen_y: np.ndarray | None,
              ids: list[str]) -> list[ExampleRow]:
    rows = []
    n = EXAMPLES_PER_IDENTITY
    for k, name in enumerate(ids):
        real = test01[test_y == k][:n]
        gen = gen01[gen_y == k][:n] if gen01 is not None and gen_y is not None else None
        rows.append(ExampleRow(name, real, gen))
    return rows


def _sample_pool(pipe: Any, encoder: Any, cfg: Config, k: int, n: int, shape: tuple[int, ...],
                 progress: bool) -> WindowSet:
    ecfg = cfg.evaluate
    log.info("generating %d samples per identity (%s, %d steps, guidance %g)", n, ecfg.scheduler, ecfg.steps,
             ecfg.guidance)
    gx, gy = _generate(pipe, k, n, ecfg, ecfg.guidance, ecfg.seed, progress, shape)
    return encode_windows(encoder, gx, gy)


def _generated_metrics(gen: WindowSet, cfg: Config, train: WindowSet, test: WindowSet, ids: list[str],
                       st: EvalState) -> None:
    """Accuracy, distribution, physics and memorisation of the scored samples."""
    ecfg, k = cfg.evaluate, len(ids)
    acc = st.metrics["accuracy"]
    acc["generated"] = identity_accuracy(gen.logits, gen.y, k, bootstrap=ecfg.bootstrap, seed=ecfg.seed)
    real = acc["real_test"]["overall"]
    acc["ratio"] = acc["generated"]["overall"] / real if real > 0 else None
    st.metrics["distribution"]["gen_vs_test"] = distribution(gen.f, test.f, ecfg.knn_k, ecfg.seed)
    _physics(to_unit(test.x), test.y, to_unit(gen.x), gen.y, ids, st)
    _memorisation(gen, train, test, ids, st)


def _guidance_sweep(
    pipe: Any, encoder: Any, cfg: Config, pool: WindowSet, test: WindowSet, k: int, progress: bool,
    st: EvalState,
) -> None:
    ecfg = cfg.evaluate
    n = ecfg.sweep_num_per_identity
    rows = []
    for g in ecfg.guidance_sweep:
        if g == ecfg.guidance and n <= np.bincount(pool.y, minlength=k).min():
            ws = first_per_identity(pool, n, k)  # already generated: same seeds, same guidance
        else:
            x, y = _generate(pipe, k, n, ecfg, float(g), ecfg.seed, progress, test.x.shape[1:])
            ws = encode_windows(encoder, x, y)
        fd = frechet_distance(ws.f, test.f) if len(ws.f) >= MIN_SAMPLES_FD else None
        acc = float((ws.logits.argmax(1) == ws.y).mean())
        rows.append({"guidance": float(g), "accuracy": acc, "fd": fd, "num": len(ws.y)})
        log.info("guidance %g: accuracy %.3f, Fréchet distance %s", g, acc, fd)
    st.metrics["guidance_sweep"] = rows
    st.plots["guidance"] = plots.guidance_sweep_plot(rows, st.metrics["accuracy"]["real_test"]["overall"])


def _synthetic_gain(synthetic: WindowSet, cfg: Config, train: WindowSet, val: Arrays, test: WindowSet, k: int,
                  progress: bool, st: EvalState, ind: IndependentEval | None, device: Any) -> None:

    ecfg = cfg.evaluate
    enc_cfg = cfg.encoder
    if ecfg.augment_channels:  # a lighter classifier for every arm alike: the experiment is a comparison
        enc_cfg = replace(enc_cfg, channels=list(ecfg.augment_channels))
    res = run_synthetic_gain(
        (train.x, train.y), (test.x, test.y), (synthetic.x, synthetic.y), k, enc_cfg,
        steps=ecfg.augment_steps, seeds=[ecfg.seed + i for i in range(ecfg.augment_seeds)],
        augment=cfg.data.augment, val=val if len(val[1]) else None, progress=progress, device=device,
        together=ecfg.augment_together)
    res["synthetic_seed"] = ecfg.seed
    res["classifier_channels"] = list(enc_cfg.channels) if enc_cfg.kind == "cnn" else None
    st.metrics["augmentation"] = res
    st.plots["augmentation"] = plots.synthetic_gain_plot(res["arms"])
    if ind is not None and ecfg.judge_augmentation:
        seeds = [ecfg.seed + i for i in range(ecfg.augment_seeds)]
        st.metrics["augmentation_judge"] = ind.synthetic_gain(
            run_synthetic_gain, (synthetic.x, synthetic.y), seeds=seeds,
            val=val if len(val[1]) else None, progress=progress)


def _strategies(ctx: EvalContext, run: Path, pipe: Any, pool: WindowSet) -> None:
    """Strategy arms (evaluate.augment_strategies) under the encoder's and the judge's architecture; the
    baseline and the 'prior' arm are the main experiment's real and real+synthetic runs (same seeds)."""

    ecfg, st, specs = ctx.cfg.evaluate, ctx.st, ctx.cfg.evaluate.arms()
    arms = S.build_arms(specs, pipe, run, ctx.cfg, ecfg.augment_synthetic_per_identity, pool, st.missing,
                        ctx.progress)
    pretrain = S.simulated_set(ctx.cfg) if any(a.spec.simpre for a in arms) else None
    st.metrics["augmentation_strategies"] = {
        a.spec.name: {**a.recipe, **S.sample_quality(a, lambda x: encoder_outputs(ctx.encoder, x), ctx.test.f,
                                                     ecfg.knn_k)} for a in arms}
    seeds = [ecfg.seed + i for i in range(ecfg.augment_seeds)]
    val = ctx.val if len(ctx.val[1]) else None
    for key, fit, predict, enc_cfg in _strategy_classifiers(ctx):
        main = st.metrics.get(key)
        if not main:
            continue
        reuse = {"prior": main["arms"]["real+synthetic"]["runs"]}
        main["strategies"] = S.run_strategy_arms(
            (ctx.train.x, ctx.train.y), (ctx.test.x, ctx.test.y), arms, ctx.k, enc_cfg,
            steps=ecfg.augment_steps, seeds=seeds, augment=ctx.cfg.data.augment if fit is None else None,
            val=val, pretrain=pretrain, baseline=main["arms"]["real"]["runs"], reuse=reuse, fit_many=fit,
            predict=predict, device=ctx.device, together=ecfg.augment_together)
    st.metrics["augmentation_recommendation"] = S.recommend(
        {arch: (st.metrics.get(key) or {}).get("strategies") for arch, key in S.ARCH_KEYS})


def _strategy_classifiers(ctx: EvalContext) -> list[tuple[str, Any, Any, Any]]:
    """(metrics key, trainer, predict, encoder config) of the experiment's two classifier architectures."""
    ecfg = ctx.cfg.evaluate
    enc_cfg = ctx.cfg.encoder
    if ecfg.augment_channels:
        enc_cfg = replace(enc_cfg, channels=list(ecfg.augment_channels))
    out: list[tuple[str, Any, Any, Any]] = [("augmentation", None, None, enc_cfg)]
    if ctx.ind is not None and ecfg.judge_augmentation:
        out.append(("augmentation_judge", *ctx.ind.experiment_fns(), None))
    return out


def _reconstruction_section(ctx: EvalContext, run: Path) -> None:
    """Test windows through the first stage alone: the floor generated samples can at best reach."""
    ecfg, acc, dist = ctx.cfg.evaluate, ctx.st.metrics["accuracy"], ctx.st.metrics["distribution"]
    vae = load_run_autoencoder(run, ctx.device)
    if vae is None:
        ctx.st.missing.append(f"no autoencoder at '{RunDir(run).autoencoder}': no reconstruction floor")
        return
    rec = encode_windows(ctx.encoder, reconstruct(vae, ctx.test.x), ctx.test.y)
    acc["reconstruction"] = identity_accuracy(rec.logits, rec.y, ctx.k, ecfg.bootstrap, ecfg.seed)
    dist["recon_vs_test"] = distribution(rec.f, ctx.test.f, ecfg.knn_k, ecfg.seed)
    ctx.confusions["test reconstructions"] = acc["reconstruction"]["confusion"]
    ctx.synthetic["reconstruction"] = (rec.x, rec.y)
    if ctx.ind is not None:  # C2ST: real train windows vs reconstructions of OTHER train windows
        pair = disjoint_pair(ctx.train.x, lambda x: reconstruct(vae, x), seed=ecfg.seed)  # only the half used
        ctx.ind.add_set("reconstruction", rec.x, rec.y, pair)


def _generation_section(ctx: EvalContext, run: Path) -> WindowSet | None:
    """One pool of samples: scored, swept over guidance and used by the augmentation experiment."""
    ecfg, st = ctx.cfg.evaluate, ctx.st
    pipe = load_eval_pipeline(run, ctx.ids, st.missing, ctx.device)
    if pipe is None:
        return None
    st.metrics["settings"]["decoder"] = "diffusion" if pipe.decodes_with_diffusion else "vae"
    gain_on = ecfg.augment_seeds > 0 and ecfg.augment_synthetic_per_identity > 0
    n_pool = max(ecfg.num_per_identity, ecfg.augment_synthetic_per_identity if gain_on else 0)
    with st.timed("sample pool"):
        pool = _sample_pool(pipe, ctx.encoder, ctx.cfg, ctx.k, n_pool, ctx.test.x.shape[1:], ctx.progress)
    gen = first_per_identity(pool, ecfg.num_per_identity, ctx.k)
    with st.timed("sample metrics"):
        _generated_metrics(gen, ctx.cfg, ctx.train, ctx.test, ctx.ids, st)
    ctx.confusions["generated"] = st.metrics["accuracy"]["generated"]["confusion"]
    if ctx.ind is not None:
        ctx.ind.add_set("generated", gen.x, gen.y, (ctx.train.x, gen.x))
    ctx.synthetic["generated"] = (gen.x, gen.y)
    with st.timed("walking conditions"):
        condition_section(ctx, pipe)
    with st.timed("guidance sweep"):
        _guidance_sweep(pipe, ctx.encoder, ctx.cfg, pool, ctx.test, ctx.k, ctx.progress, st)
    if gain_on:
        synthetic = first_per_identity(pool, ecfg.augment_synthetic_per_identity, ctx.k)
        with st.timed("augmentation experiment"):
            _synthetic_gain(synthetic, ctx.cfg, ctx.train, ctx.val, ctx.test, ctx.k, ctx.progress, st,
                            ctx.ind, ctx.device)
        with st.timed("strategy arms"):
            _strategies(ctx, run, pipe, pool)
    else:
        st.missing.append("augmentation experiment disabled (evaluate.augment_seeds or "
                          "evaluate.augment_synthetic_per_identity is 0)")
    return gen


def evaluate_run(
    run: Path, cfg: Config, *, data_root: Path | None = None, out: Path | None = None,
    overwrite: bool = False, device: str | None = None, resume: str | None = None, progress: bool = True,
) -> dict[str, Any]:
    """Evaluate what the run has; write ``out`` (default RUN/eval) atomically; return the metrics dict.
    ``resume`` makes the common stage signature (an evaluation is one pass, without checkpoints)."""
    run = Path(run)
    if not run.is_dir():
        raise DopplerDiffError(f"run directory '{run}' does not exist")
    recover_parts(run)  # a part left missing by an interrupted replacement would be reported as absent
    out = Path(out) if out is not None else RunDir(run).eval
    check_out_dir(out, overwrite, "pass --overwrite or choose --out")  # before minutes of work, not after
    t0 = time.time()
    t_context = time.perf_counter()
    ctx, ds = build_context(run, cfg, data_root, eval_device(device), progress)
    st, test = ctx.st, ctx.test
    # less the judge's training, which build_context credited to the judge's part
    st.seconds["data, encoder, real features"] = round(time.perf_counter() - t_context - st.moved, 2)
    with st.timed("reconstructions"):
        _reconstruction_section(ctx, run)
    gen = _generation_section(ctx, run)
    if cfg.evaluate.native_judge:
        with st.timed("native-size judge"):
            native_section(ctx, run, data_root, ds.meta.get("native_size"))
    if ctx.ind is not None:
        with st.timed(JUDGE_PART):
            ctx.ind.write(st.metrics, st.plots)
    st.plots["confusion"] = plots.confusion_plot(ctx.confusions, ctx.ids)
    st.examples = _examples(to_unit(test.x), test.y, None if gen is None else to_unit(gen.x),
                            None if gen is None else gen.y, ctx.ids)
    st.metrics["missing"] = st.missing
    st.metrics["seconds"] = round(time.time() - t0, 1)
    st.metrics["seconds_by_part"] = st.seconds
    metrics = _sanitize(st.metrics)
    html_text = render_report(metrics, examples=st.examples, memorisation_pairs=st.pairs, plots=st.plots,
                              colormap=cfg.data.colormap)
    with atomic_dir(out, overwrite=overwrite) as tmp:
        write_json(tmp / "metrics.json", metrics)
        atomic_write_bytes(tmp / "report.html", html_text.encode("utf-8"))
        cfg.save(tmp / "config.yaml")
        write_manifest(tmp, command="evaluate", run=str(run.resolve()),
                       data_root=str(ds.meta.get("root", "")), seed=cfg.evaluate.seed, identities=ctx.ids,
                       missing=st.missing)
    log.info("wrote %s and %s (%.0f s)", out / "metrics.json", out / "report.html", time.time() - t0)
    return metrics
