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
memorisation, augmentation, guidance_sweep [{guidance, accuracy, fd, num}]. NaN is written as null.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dopplerdiff.config import Config
from dopplerdiff.config.base import from_dict
from dopplerdiff.config.data import DataConfig
from dopplerdiff.errors import DopplerDiffError
from dopplerdiff.evaluate import plots
from dopplerdiff.evaluate.c2st import disjoint_pair
from dopplerdiff.evaluate.independent import IndependentEval
from dopplerdiff.evaluate.metrics import MIN_SAMPLES_FD, frechet_distance, identity_accuracy
from dopplerdiff.evaluate.parts import Part, distribution, first_per_identity, make_part, reconstruct
from dopplerdiff.evaluate.report import ExampleRow, MemorisationPair, render_report
from dopplerdiff.utils.io import atomic_dir, atomic_write_bytes, write_json, write_manifest

log = logging.getLogger(__name__)

EXAMPLES_PER_IDENTITY = 6
MEMORISATION_PAIRS = 8


@dataclass
class EvalState:
    """Everything computed so far; the report and metrics.json are built from it."""

    metrics: dict[str, Any]
    missing: list[str] = field(default_factory=list)
    plots: dict[str, bytes] = field(default_factory=dict)
    examples: list[ExampleRow] = field(default_factory=list)
    pairs: list[MemorisationPair] = field(default_factory=list)


# ------------------------------------------------------------------------------------------- helpers
def _device(name: str | None) -> torch.device:
    if name in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


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


def _run_data_config(run: Path, cfg: DataConfig) -> DataConfig:
    """The data config recorded with the run wins: the encoder and autoencoder were trained on it."""
    from dopplerdiff.data.run_data import read_run_data

    if not (run / "data.json").is_file():
        return cfg
    recorded = read_run_data(run).get("data_config")
    if not recorded:
        return cfg
    rec = from_dict(DataConfig, recorded, prefix="data.json:data_config.")
    if (rec.size, rec.channels, rec.colormap) != (cfg.size, cfg.channels, cfg.colormap):
        log.warning("using the run's recorded data settings (size %d, channels %d, colormap %s)",
                    rec.size, rec.channels, rec.colormap)
    return rec


Arrays = tuple[np.ndarray, np.ndarray]


def _load_encoder(run: Path, cfg: Config, train: Arrays, val: Arrays,
                  identities: list[str], st: EvalState, progress: bool) -> Any:
    """RUN/encoder (trained on real train only); without one, an in-memory classifier on real train."""
    from dopplerdiff.models.encoder import load_encoder

    path = run / "encoder"
    if path.is_dir():
        enc = load_encoder(path)
        names = enc.config.identities
        if names is not None and list(names) != list(identities):
            raise DopplerDiffError(f"encoder '{path}' was trained on {len(names)} identities "
                                   f"({', '.join(names[:5])}...) but the run's data has {len(identities)} "
                                   f"({', '.join(identities[:5])}...); retrain the encoder")
        if enc.config.in_channels != train[0].shape[1]:
            raise DopplerDiffError(f"encoder '{path}' expects {enc.config.in_channels} channel(s), the data "
                                   f"has {train[0].shape[1]}")
        return enc
    from dopplerdiff.classifier import fit_classifier

    steps = cfg.encoder.train.steps
    st.missing.append(f"no encoder at '{path}': metrics use an in-memory classifier trained on real train "
                      f"for {steps} steps (train one with `dopplerdiff train-encoder`)")
    return fit_classifier(train[0], train[1], len(identities), cfg.encoder, steps=steps, seed=cfg.seed,
                          augment=cfg.data.augment, val=val if len(val[1]) else None, progress=progress,
                          identities=identities, colormap=cfg.data.colormap).eval()


def _load_pipeline(run: Path, identities: list[str], st: EvalState, device: torch.device) -> Any | None:
    path = run / "pipeline"
    if not (path / "model_index.json").is_file():
        st.missing.append(
            f"no diffusion pipeline at '{path}' (train one with `dopplerdiff train-diffusion`): "
            "no generated samples, so no generated accuracy, Fréchet distance of samples, "
            "physics, memorisation, augmentation experiment or guidance sweep"
        )
        return None
    from dopplerdiff.pipeline import DopplerDiffPipeline

    pipe = DopplerDiffPipeline.from_pretrained(path)
    if list(pipe.identities) != list(identities):
        raise DopplerDiffError(
            f"pipeline '{path}' has {len(pipe.identities)} identities but the run's data has "
            f"{len(identities)}; they must be the same label map"
        )
    pipe.set_progress_bar_config(disable=True)
    return pipe.to(device)


def _generate(pipe: Any, k: int, n: int, ecfg: Any, guidance: float, seed: int, progress: bool,
              data_shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    from dopplerdiff.generate import generate_samples

    imgs01, labels = generate_samples(pipe, list(range(k)), n, steps=ecfg.steps, guidance=guidance,
                                      scheduler=ecfg.scheduler, seed=seed, progress=progress)
    imgs = np.asarray(imgs01, np.float32) * 2.0 - 1.0
    if imgs.shape[1:] != data_shape:
        raise DopplerDiffError(f"the pipeline generates images of shape {imgs.shape[1:]} but the run's data "
                               f"is {data_shape}; the pipeline does not belong to this run's data settings")
    return imgs, np.asarray(labels, np.int64)


def _memorisation(gen: Part, train: Part, test: Part, ids: list[str], st: EvalState) -> None:
    """Nearest-training-window check in encoder-feature and pixel space; closest pairs for the report."""
    from dopplerdiff.evaluate.memorisation import memorisation

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
        st.pairs.append(MemorisationPair((gen.x[gi] + 1) / 2, (train.x[ti] + 1) / 2, d, ids[gen.y[gi]],
                                         train.files[ti] if train.files else ""))


def _physics(real01: np.ndarray, real_y: np.ndarray, gen01: np.ndarray, gen_y: np.ndarray, ids: list[str],
             st: EvalState) -> None:
    from dopplerdiff.evaluate.physics import compare_physics, physics_stats

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


def check_sample_sizes(n_test: int, k: int, num_per_identity: int) -> None:
    """Fréchet distance needs a covariance: at least MIN_SAMPLES_FD windows in each set."""
    if n_test < MIN_SAMPLES_FD:
        raise DopplerDiffError(f"the run's real test split has {n_test} window(s); the Fréchet distance "
                               f"needs at least {MIN_SAMPLES_FD} (use more data or a larger data.split.test)")
    if k * num_per_identity < MIN_SAMPLES_FD:
        raise DopplerDiffError(f"--num-per-identity {num_per_identity} x {k} identities gives fewer than "
                               f"{MIN_SAMPLES_FD} samples; the Fréchet distance needs at least "
                               f"{MIN_SAMPLES_FD}")


def _load_vae(run: Path, device: torch.device) -> Any | None:
    from dopplerdiff.models.autoencoder import load_autoencoder

    path = run / "autoencoder"
    return load_autoencoder(path).to(device).eval() if (path / "config.json").is_file() else None


def _sample_pool(pipe: Any, encoder: Any, cfg: Config, k: int, n: int, shape: tuple[int, ...],
                 progress: bool) -> Part:
    ecfg = cfg.evaluate
    log.info("generating %d samples per identity (%s, %d steps, guidance %g)", n, ecfg.scheduler, ecfg.steps,
             ecfg.guidance)
    gx, gy = _generate(pipe, k, n, ecfg, ecfg.guidance, ecfg.seed, progress, shape)
    return make_part(encoder, gx, gy)


def _generated_metrics(gen: Part, cfg: Config, train: Part, test: Part, ids: list[str],
                       st: EvalState) -> None:
    """Accuracy, distribution, physics and memorisation of the scored samples."""
    ecfg, k = cfg.evaluate, len(ids)
    acc = st.metrics["accuracy"]
    acc["generated"] = identity_accuracy(gen.logits, gen.y, k, bootstrap=ecfg.bootstrap, seed=ecfg.seed)
    real = acc["real_test"]["overall"]
    acc["ratio"] = acc["generated"]["overall"] / real if real > 0 else None
    st.metrics["distribution"]["gen_vs_test"] = distribution(gen.f, test.f, ecfg.knn_k, ecfg.seed)
    _physics((test.x + 1) / 2, test.y, (gen.x + 1) / 2, gen.y, ids, st)
    _memorisation(gen, train, test, ids, st)


def _guidance_sweep(
    pipe: Any, encoder: Any, cfg: Config, pool: Part, test: Part, k: int, progress: bool, st: EvalState
) -> None:
    ecfg = cfg.evaluate
    n = ecfg.sweep_num_per_identity
    rows = []
    for g in ecfg.guidance_sweep:
        if g == ecfg.guidance and n <= np.bincount(pool.y, minlength=k).min():
            part = first_per_identity(pool, n, k)  # already generated: same seeds, same guidance
        else:
            x, y = _generate(pipe, k, n, ecfg, float(g), ecfg.seed, progress, test.x.shape[1:])
            part = make_part(encoder, x, y)
        fd = frechet_distance(part.f, test.f) if len(part.f) >= MIN_SAMPLES_FD else None
        acc = float((part.logits.argmax(1) == part.y).mean())
        rows.append({"guidance": float(g), "accuracy": acc, "fd": fd, "num": len(part.y)})
        log.info("guidance %g: accuracy %.3f, Fréchet distance %s", g, acc, fd)
    st.metrics["guidance_sweep"] = rows
    st.plots["guidance"] = plots.guidance_sweep_plot(rows, st.metrics["accuracy"]["real_test"]["overall"])


def _augmentation(synthetic: Part, cfg: Config, train: Part, val: Arrays, test: Part, k: int,
                  progress: bool, st: EvalState, ind: IndependentEval | None, device: Any) -> None:
    from dopplerdiff.evaluate.augmentation import run_augmentation_experiment

    ecfg = cfg.evaluate
    enc_cfg = cfg.encoder
    if ecfg.augment_channels:  # a lighter classifier for every arm alike: the experiment is a comparison
        enc_cfg = replace(enc_cfg, channels=list(ecfg.augment_channels))
    res = run_augmentation_experiment(
        (train.x, train.y), (test.x, test.y), (synthetic.x, synthetic.y), k, enc_cfg,
        steps=ecfg.augment_steps, seeds=[ecfg.seed + i for i in range(ecfg.augment_seeds)],
        augment=cfg.data.augment, val=val if len(val[1]) else None, progress=progress, device=device)
    res["synthetic_seed"] = ecfg.seed
    res["classifier_channels"] = list(enc_cfg.channels) if enc_cfg.kind == "cnn" else None
    st.metrics["augmentation"] = res
    st.plots["augmentation"] = plots.augmentation_plot(res["arms"])
    if ind is not None and ecfg.judge_augmentation:
        seeds = [ecfg.seed + i for i in range(ecfg.augment_seeds)]
        st.metrics["augmentation_judge"] = ind.augmentation(
            run_augmentation_experiment, (synthetic.x, synthetic.y), seeds=seeds,
            val=val if len(val[1]) else None, progress=progress)


def evaluate_run(
    run: Path, cfg: Config, *, data_root: Path | None = None, out: Path | None = None,
    overwrite: bool = False, device: str | None = None, progress: bool = True,
) -> dict[str, Any]:
    """Evaluate what the run has; write ``out`` (default RUN/eval) atomically; return the metrics dict."""
    from dopplerdiff.data.run_data import prepare_run_data

    run = Path(run)
    if not run.is_dir():
        raise DopplerDiffError(f"run directory '{run}' does not exist")
    out = Path(out) if out is not None else run / "eval"
    if out.exists() and any(out.iterdir()) and not overwrite:  # fail before minutes of work, not after
        raise DopplerDiffError(f"output '{out}' already exists; pass --overwrite or choose --out")
    ecfg, dev, t0 = cfg.evaluate, _device(device), time.time()
    cfg.data = _run_data_config(run, cfg.data)
    ds, split = prepare_run_data(run, data_root, cfg.data, progress=progress)
    ids, k = list(ds.identities), len(ds.identities)
    tr, va, te = (ds.subset(split[p]) for p in ("train", "val", "test"))
    check_sample_sizes(len(te), k, ecfg.num_per_identity)
    settings = {name: getattr(ecfg, name) for name in
                ("num_per_identity", "steps", "scheduler", "guidance", "seed", "bootstrap", "knn_k")}
    settings.update(data_size=cfg.data.size, channels=cfg.data.channels, device=str(dev))
    st = EvalState(metrics={
        "run": str(run.resolve()), "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "identities": ids,
        "settings": settings, "counts": {"train": len(tr), "val": len(va), "test": len(te)},
        "accuracy": {}, "distribution": {},
    })
    encoder = _load_encoder(run, cfg, (tr.images, tr.labels), (va.images, va.labels), ids, st, progress)
    encoder = encoder.to(dev)
    train = make_part(encoder, tr.images, tr.labels, tr.files)
    test = make_part(encoder, te.images, te.labels, te.files)
    acc, dist = st.metrics["accuracy"], st.metrics["distribution"]
    acc["real_test"] = identity_accuracy(test.logits, test.y, k, bootstrap=ecfg.bootstrap, seed=ecfg.seed)
    dist["train_vs_test"] = distribution(train.f, test.f, ecfg.knn_k, ecfg.seed)
    confusions = {"real test": acc["real_test"]["confusion"]}
    ind = None
    if ecfg.judge_steps > 0:
        ind = IndependentEval(ecfg, (train.x, train.y), (va.images, va.labels), (test.x, test.y), k, dev)
    else:
        st.missing.append("independent judge, C2ST and texture statistics disabled "
                          "(evaluate.judge_steps = 0)")

    vae = _load_vae(run, dev)
    if vae is None:
        st.missing.append(f"no autoencoder at '{run / 'autoencoder'}': no reconstruction floor")
    else:
        rec = make_part(encoder, reconstruct(vae, te.images), te.labels)
        acc["reconstruction"] = identity_accuracy(rec.logits, rec.y, k, ecfg.bootstrap, ecfg.seed)
        dist["recon_vs_test"] = distribution(rec.f, test.f, ecfg.knn_k, ecfg.seed)
        confusions["test reconstructions"] = acc["reconstruction"]["confusion"]
        if ind is not None:  # C2ST: real train windows vs reconstructions of OTHER train windows
            pair = disjoint_pair(train.x, reconstruct(vae, train.x), seed=ecfg.seed)
            ind.add_set("reconstruction", rec.x, rec.y, pair)
        del vae

    pipe = _load_pipeline(run, ids, st, dev)
    gen = None
    if pipe is not None:
        augment_on = ecfg.augment_seeds > 0 and ecfg.augment_synthetic_per_identity > 0
        n_pool = max(ecfg.num_per_identity, ecfg.augment_synthetic_per_identity if augment_on else 0)
        pool = _sample_pool(pipe, encoder, cfg, k, n_pool, test.x.shape[1:], progress)
        gen = first_per_identity(pool, ecfg.num_per_identity, k)
        _generated_metrics(gen, cfg, train, test, ids, st)
        confusions["generated"] = acc["generated"]["confusion"]
        if ind is not None:
            ind.add_set("generated", gen.x, gen.y, (train.x, gen.x))
        _guidance_sweep(pipe, encoder, cfg, pool, test, k, progress, st)
        if augment_on:
            synthetic = first_per_identity(pool, ecfg.augment_synthetic_per_identity, k)
            _augmentation(synthetic, cfg, train, (va.images, va.labels), test, k, progress, st, ind, dev)
        else:
            st.missing.append("augmentation experiment disabled (evaluate.augment_seeds or "
                              "evaluate.augment_synthetic_per_identity is 0)")
    if ind is not None:
        ind.write(st.metrics, st.plots)
    st.plots["confusion"] = plots.confusion_plot(confusions, ids)
    st.examples = _examples((test.x + 1) / 2, test.y, None if gen is None else (gen.x + 1) / 2,
                            None if gen is None else gen.y, ids)
    st.metrics["missing"] = st.missing
    st.metrics["seconds"] = round(time.time() - t0, 1)
    metrics = _sanitize(st.metrics)
    html_text = render_report(metrics, examples=st.examples, memorisation_pairs=st.pairs, plots=st.plots,
                              colormap=cfg.data.colormap)
    with atomic_dir(out, overwrite=overwrite) as tmp:
        write_json(tmp / "metrics.json", metrics)
        atomic_write_bytes(tmp / "report.html", html_text.encode("utf-8"))
        cfg.save(tmp / "config.yaml")
        write_manifest(tmp, command="evaluate", run=str(run.resolve()),
                       data_root=str(ds.meta.get("root", "")), seed=ecfg.seed, identities=ids,
                       missing=st.missing)
    log.info("wrote %s and %s (%.0f s)", out / "metrics.json", out / "report.html", time.time() - t0)
    return metrics
