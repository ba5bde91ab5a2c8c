"""`evaluate` end to end on tiny runs: without diffusion (says what is missing) and with a tiny pipeline."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from dopplerdiff.errors import DopplerDiffError
from dopplerdiff.evaluate.context import check_sample_sizes
from dopplerdiff.evaluate.evaluate import evaluate_run


def _make_run(root: Path, data: Path, cfg) -> Path:
    """RUN with data.json, config.yaml and a briefly trained encoder (real train split only)."""
    from dopplerdiff.data.run_data import prepare_run_data
    from dopplerdiff.train.encoder import fit_classifier

    run = root / "run"
    ds, split = prepare_run_data(run, data, cfg.data)
    tr = split["train"]
    enc = fit_classifier(ds.images[tr], ds.labels[tr], len(ds.identities), cfg.encoder, steps=4, seed=0,
                         identities=list(ds.identities), colormap=cfg.data.colormap)
    enc.save_pretrained(run / "encoder")
    cfg.save(run / "config.yaml")
    return run


def _add_pipeline(run: Path, cfg, identities: list[str]) -> None:
    """A tiny randomly initialised pipeline + autoencoder (sizes of the smoke profile)."""
    from diffusers import AutoencoderKL

    from dopplerdiff.models.condition import build_condition_encoder
    from dopplerdiff.models.denoiser import build_denoiser
    from dopplerdiff.pipelines.pipeline_dopplerdiff import DopplerDiffPipeline
    from dopplerdiff.schedulers import make_scheduler, training_scheduler

    torch.manual_seed(0)
    k, ae = len(identities), cfg.autoencoder
    vae = AutoencoderKL(in_channels=1, out_channels=1, down_block_types=("DownEncoderBlock2D",) * 2,
                        up_block_types=("UpDecoderBlock2D",) * 2,
                        block_out_channels=tuple(ae.block_out_channels),
                        latent_channels=ae.latent_channels, norm_num_groups=ae.norm_num_groups,
                        sample_size=cfg.data.size, scaling_factor=1.0, shift_factor=0.0)
    latent = cfg.data.size // ae.downsample_factor
    pipe = DopplerDiffPipeline(vae, build_denoiser(cfg.diffusion, ae.latent_channels, latent, k),
                               build_condition_encoder(cfg.diffusion, k, cfg.diffusion.backbone),
                               make_scheduler("ddim", training_scheduler().config), identities=identities,
                               colormap="jet", channels=1, native_size=32)
    pipe.save_pretrained(run / "pipeline")
    vae.save_pretrained(run / "autoencoder")


@pytest.fixture(scope="module")
def base_run(tmp_path_factory, sim_data, smoke_config) -> Path:
    return _make_run(tmp_path_factory.mktemp("eval"), sim_data, smoke_config)


def _report_ok(html: str) -> None:
    assert html.startswith("<!DOCTYPE html>") and html.rstrip().endswith("</html>")
    assert not re.search(r"(src|href)\s*=\s*['\"]?https?:", html)
    for sid in ("headline", "examples", "identity", "distribution", "missing"):
        assert f'id="{sid}"' in html


def test_run_without_diffusion_reports_what_is_missing(base_run, smoke_config, tmp_path):
    out = tmp_path / "eval"
    m = evaluate_run(base_run, smoke_config, out=out, progress=False)
    assert (out / "metrics.json").is_file() and (out / "report.html").is_file()
    assert (out / "config.yaml").is_file() and (out / "manifest.json").is_file()
    saved = json.loads((out / "metrics.json").read_text())
    assert saved["identities"] == ["ID_1", "ID_2", "ID_3"]
    real = saved["accuracy"]["real_test"]
    assert 0.0 <= real["overall"] <= 1.0 and len(real["ci95"]) == 2 and len(real["confusion"]) == 3
    assert saved["distribution"]["train_vs_test"]["fd"] >= 0.0
    assert "generated" not in saved["accuracy"] and "gen_vs_test" not in saved["distribution"]
    assert any("pipeline" in s for s in m["missing"]) and any("autoencoder" in s for s in m["missing"])
    html = (out / "report.html").read_text()
    _report_ok(html)
    assert "What is missing" in html and "no diffusion pipeline" in html
    # existing output is never overwritten silently
    with pytest.raises(DopplerDiffError, match="already exists"):
        evaluate_run(base_run, smoke_config, out=out, progress=False)


def test_full_evaluation_with_a_tiny_pipeline(base_run, smoke_config, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(base_run, run)
    ids = json.loads((run / "data.json").read_text())["identities"]
    _add_pipeline(run, smoke_config, ids)
    ecfg = smoke_config.evaluate
    m = evaluate_run(run, smoke_config, progress=False)
    assert (run / "eval" / "report.html").is_file()
    acc = m["accuracy"]
    assert acc["generated"]["n"] == ecfg.num_per_identity * len(ids)
    assert {"real_test", "reconstruction", "generated", "ratio"} <= set(acc)
    assert {"gen_vs_test", "train_vs_test", "recon_vs_test"} <= set(m["distribution"])
    assert m["memorisation"]["total"] == ecfg.num_per_identity * len(ids)
    assert set(m["physics"]["overall"]) >= {"torso_doppler", "extent", "cadence"}
    assert [r["guidance"] for r in m["guidance_sweep"]] == ecfg.guidance_sweep
    assert all(r["num"] == ecfg.sweep_num_per_identity * len(ids) for r in m["guidance_sweep"])
    arms = m["augmentation"]["arms"]
    assert set(arms) == {"real", "real+synthetic", "synthetic"}
    assert all(len(a["runs"]) == ecfg.augment_seeds for a in arms.values())
    assert m["missing"] == []
    parts = m["seconds_by_part"]  # where the stage's time goes, part by part, within the stage's wall time
    assert {"data, encoder, real features", "sample pool", "guidance sweep", "augmentation experiment",
            "judge, C2ST, texture"} <= set(parts)
    assert all(v >= 0 for v in parts.values()) and sum(parts.values()) <= m["seconds"] + 0.5
    judge = m["judge"]  # the independent judge scores every set; its ratios are to its own real accuracy
    assert {"real_test", "reconstruction", "generated"} <= set(judge)
    assert judge["seed"] != smoke_config.seed and judge["steps"] == ecfg.judge_steps
    assert {"real_train_vs_test", "reconstruction", "generated"} <= set(m["c2st"])
    assert set(m["texture"]) == {"real_test", "reconstruction", "generated"}
    assert set(m["augmentation_judge"]["arms"]) == set(arms)
    html = (run / "eval" / "report.html").read_text()
    _report_ok(html)
    assert "Nothing is missing" in html and "Guidance sweep" in html
    assert "Independent judge" in html and "Texture" in html


def test_samples_are_drawn_once_and_shared_by_scoring_sweep_and_augmentation(
    base_run, smoke_config, tmp_path, monkeypatch
):
    import copy

    from dopplerdiff.evaluate import evaluate as ev

    run = tmp_path / "run"
    shutil.copytree(base_run, run)
    ids = json.loads((run / "data.json").read_text())["identities"]
    _add_pipeline(run, smoke_config, ids)
    cfg = copy.deepcopy(smoke_config)
    cfg.evaluate.num_per_identity, cfg.evaluate.augment_synthetic_per_identity = 4, 6
    cfg.evaluate.guidance_sweep, cfg.evaluate.sweep_num_per_identity = [0.0, 2.0], 3
    cfg.evaluate.augment_channels = [8, 8]
    calls: list[tuple[int, float]] = []
    real_generate = ev._generate

    def counting(pipe, k, n, ecfg, guidance, seed, progress, shape):
        calls.append((n, guidance))
        return real_generate(pipe, k, n, ecfg, guidance, seed, progress, shape)

    monkeypatch.setattr(ev, "_generate", counting)
    m = evaluate_run(run, cfg, progress=False)
    # one pool of max(4, 6) per identity at the evaluation guidance; only guidance 0 is sampled again
    assert calls == [(6, 2.0), (3, 0.0)]
    assert m["accuracy"]["generated"]["n"] == 4 * len(ids)
    assert m["augmentation"]["n_synthetic"] == 6 * len(ids)
    assert m["augmentation"]["classifier_channels"] == [8, 8]
    assert [r["num"] for r in m["guidance_sweep"]] == [3 * len(ids)] * 2


def test_first_per_identity_keeps_generation_order():
    from dopplerdiff.evaluate.windows import WindowSet, first_per_identity

    y = np.array([0, 0, 0, 1, 1, 1])
    x = np.arange(6, dtype=np.float32).reshape(6, 1, 1, 1)
    part = first_per_identity(WindowSet(x, x[:, 0, 0], x[:, 0, 0], y, []), 2, 2)
    assert part.x.ravel().tolist() == [0, 1, 3, 4] and part.y.tolist() == [0, 0, 1, 1]


def test_identity_mismatch_with_data_is_a_clear_error(base_run, smoke_config, sim_data, tmp_path):
    other = tmp_path / "data"
    shutil.copytree(sim_data, other)
    shutil.rmtree(other / "ID_3")
    with pytest.raises(DopplerDiffError, match="identities"):
        evaluate_run(base_run, smoke_config, data_root=other, out=tmp_path / "e", progress=False)


def test_too_few_samples_names_the_minimum():
    with pytest.raises(DopplerDiffError, match="at least 2"):
        check_sample_sizes(1, 3, 4)
    with pytest.raises(DopplerDiffError, match="at least 2"):
        check_sample_sizes(10, 1, 1)
    check_sample_sizes(2, 2, 1)


def test_cli_evaluate(base_run, tmp_path):
    from typer.testing import CliRunner

    from dopplerdiff.cli import app

    out = tmp_path / "cli_eval"
    res = CliRunner().invoke(app, ["evaluate", "--run", str(base_run), "--out", str(out), "--quiet"])
    assert res.exit_code == 0, res.output
    assert "missing" in res.output and (out / "report.html").is_file()
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["settings"]["data_size"] == 16
    assert np.isfinite(metrics["accuracy"]["real_test"]["overall"])


def test_run_without_encoder_uses_an_in_memory_classifier_and_says_so(base_run, smoke_config, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(base_run, run, ignore=shutil.ignore_patterns("encoder"))
    m = evaluate_run(run, smoke_config, progress=False)
    assert any("no encoder" in s and "in-memory classifier" in s for s in m["missing"])
    assert 0.0 <= m["accuracy"]["real_test"]["overall"] <= 1.0
    assert not (run / "encoder").exists()  # evaluation never writes into the run's stage folders


def test_native_size_judge_scores_reconstructions_and_samples(base_run, tmp_path):
    from dopplerdiff.config import load_config

    cfg = load_config("smoke", ["evaluate.native_judge=true", "evaluate.augment_seeds=0"])
    run = tmp_path / "run"
    shutil.copytree(base_run, run)
    _add_pipeline(run, cfg, json.loads((run / "data.json").read_text())["identities"])
    m = evaluate_run(run, cfg, progress=False)
    native = m["judge_native"]  # the simulated windows are 32x32, the model's 16x16
    assert native["size"] == [32, 32] and {"real_test", "reconstruction", "generated"} <= set(native)
    assert native["generated"]["n"] == cfg.evaluate.num_per_identity * 3
    assert "judge at the native size 32×32" in (run / "eval" / "report.html").read_text()
    assert "judge_native" not in evaluate_run(run, load_config("smoke", ["evaluate.augment_seeds=0"]),
                                              out=tmp_path / "e2", progress=False)


def test_time_credited_to_another_part_leaves_the_block_it_was_spent_in(monkeypatch):
    """The judge is trained inside other parts' blocks (context, reconstructions, sample pool); its seconds
    go to its own part and out of the block's, so the parts still add up to the wall time."""
    from dopplerdiff.evaluate import context
    from dopplerdiff.evaluate.context import EvalState

    clock = iter([0.0, 10.0, 20.0, 20.0])  # block "pool" from 0 to 10 s, of which 4 s judge; "sweep" 20-20
    monkeypatch.setattr(context.time, "perf_counter", lambda: next(clock, 20.0))
    st = EvalState(metrics={})
    with st.timed("pool"):
        st.credit("judge", 4.0)
    with st.timed("sweep"):
        pass
    assert st.seconds == {"judge": 4.0, "pool": 6.0, "sweep": 0.0}
