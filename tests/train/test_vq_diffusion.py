"""Discrete diffusion over VQModel codes (``diffusion.backbone: vq-diffusion``) at smoke sizes.

16x16 images, a VQModel with 32 codes on 8x8 grids, a 2-layer transformer, a chain of 8 timesteps.
"""

from __future__ import annotations

import json
import re
import shutil

import numpy as np
import pytest
import torch
from conftest import latent_run

from dopplerdiff.config import load_config
from dopplerdiff.errors import ConfigError, DopplerDiffError
from dopplerdiff.pipelines.auto_pipeline import load_pipeline
from dopplerdiff.pipelines.pipeline_vq_diffusion import (
    DopplerVQDiffusionPipeline,
    model_timesteps,
    vq_scheduler,
)
from dopplerdiff.train.diffusion import train_diffusion
from dopplerdiff.train.vq_diffusion import corrupt, vq_diffusion_loss

VQ = ["autoencoder.kind=vq", "diffusion.backbone=vq-diffusion", "diffusion.scheduler=vq-diffusion",
      "evaluate.scheduler=vq-diffusion"]


def _cfg(*overrides):
    return load_config("smoke", [*VQ, "diffusion.train.val_every=100", *overrides])


@pytest.fixture(scope="module")
def vq_run(tmp_path_factory, sim_data):
    """A smoke run with a trained VQModel and cached latents + code indices (built once, copied per test)."""
    return latent_run(tmp_path_factory.mktemp("vq") / "run", _cfg(), sim_data)


@pytest.fixture
def run(vq_run, tmp_path):
    dst = tmp_path / "run"
    shutil.copytree(vq_run, dst)
    return dst


def test_cache_holds_valid_code_indices(vq_run):
    from dopplerdiff.data.latents import CodeDataset, load_latents
    from dopplerdiff.models.autoencoder import code_indices, load_autoencoder

    ds = CodeDataset(vq_run, "train")
    assert ds.shape == (8, 8) and ds.codes.dtype == torch.long
    assert int(ds.codes.min()) >= 0 and int(ds.codes.max()) < 32
    # the cached indices are the codes the VQModel itself picks for the cached pre-quantisation latents
    vae = load_autoencoder(vq_run / "autoencoder")
    mean = load_latents(vq_run, "train")["mean"][:4]
    assert torch.equal(code_indices(vae, mean).flatten(1), ds.codes[:4])


def test_train_sample_decode(run):
    out = train_diffusion(run, _cfg(), progress=False)
    assert (out / "model_index.json").is_file()
    index = json.loads((out / "model_index.json").read_text())
    assert index["_class_name"] == "DopplerVQDiffusionPipeline"
    assert index["scheduler"][1] == "VQDiffusionScheduler"
    metrics = json.loads((run / "train" / "diffusion" / "metrics.json").read_text())
    assert np.isfinite(metrics["final_loss"]) and np.isfinite(metrics["val"]["val_loss"])
    assert (run / "train" / "diffusion" / "val").is_dir()

    pipe = load_pipeline(out)
    assert isinstance(pipe, DopplerVQDiffusionPipeline)
    codes = pipe(["ID_1", 2], num_inference_steps=2, guidance_scale=2.0, seed=0, output_type="latent").images
    assert codes.shape == (2, 8, 8) and codes.dtype == torch.long
    assert int(codes.min()) >= 0 and int(codes.max()) < 32  # no mask token left, every index a real code
    imgs = pipe([0, 1], num_inference_steps=2, guidance_scale=2.0, seed=0, output_type="pt").images
    assert imgs.shape == (2, 1, 16, 16) and float(imgs.min()) >= 0 and float(imgs.max()) <= 1


def test_save_load_round_trip_gives_identical_samples(run, tmp_path):
    train_diffusion(run, _cfg(), progress=False)
    pipe = load_pipeline(run / "pipeline")
    pipe.save_pretrained(tmp_path / "copy")
    again = DopplerVQDiffusionPipeline.from_pretrained(tmp_path / "copy")
    gens = [torch.Generator().manual_seed(i) for i in range(3)]
    a = pipe([0, 1, 2], num_inference_steps=3, guidance_scale=3.0, generator=gens, output_type="np").images
    gens = [torch.Generator().manual_seed(i) for i in range(3)]
    b = again([0, 1, 2], num_inference_steps=3, guidance_scale=3.0, generator=gens, output_type="np").images
    np.testing.assert_array_equal(a, b)
    # per-sample generators: a sample's codes do not depend on what else is in the batch
    gens = [torch.Generator().manual_seed(i) for i in range(3)]
    codes = again([0, 1, 2], num_inference_steps=3, guidance_scale=3.0, generator=gens, output_type="latent")
    one = again([1], num_inference_steps=3, guidance_scale=3.0, generator=[torch.Generator().manual_seed(1)],
                output_type="latent")
    assert torch.equal(codes.images[1:2], one.images)


def test_resume_latest_continues(run):
    train_diffusion(run, _cfg("diffusion.train.steps=2"), progress=False)
    shutil.rmtree(run / "pipeline")
    shutil.rmtree(run / "diffusion")
    train_diffusion(run, _cfg("diffusion.train.steps=4"), resume="latest", progress=False)
    log = [json.loads(line) for line in (run / "train" / "diffusion" / "log.jsonl").read_text().splitlines()]
    steps = [r["step"] for r in log if r.get("kind") != "val"]
    assert steps == [1, 2, 3, 4]
    assert json.loads((run / "pipeline" / "manifest.json").read_text())["step"] == 4
    with pytest.raises(DopplerDiffError, match="--resume latest"):
        train_diffusion(run, _cfg(), progress=False)


def test_loss_decreases_on_a_tiny_set(vq_run):
    """Full-batch training of a fresh transformer on 8 training windows lowers the fixed-noise loss."""
    from dopplerdiff.data.latents import CodeDataset
    from dopplerdiff.models.condition import build_condition_encoder
    from dopplerdiff.models.vq_transformer import build_vq_transformer

    cfg = _cfg().diffusion
    ds = CodeDataset(vq_run, "train")
    x0, y = ds.codes[:8], ds.labels[:8]
    torch.manual_seed(0)
    model, enc = build_vq_transformer(cfg, 32, 8), build_condition_encoder(cfg, 3)
    sched = vq_scheduler(32, cfg.vq.num_train_timesteps)
    opt = torch.optim.Adam([*model.parameters(), *enc.parameters()], lr=3e-3)

    def fixed_loss() -> float:
        with torch.no_grad():
            gen = torch.Generator().manual_seed(7)
            return float(np.mean([float(vq_diffusion_loss(model, enc, sched, x0, y, 1.0, gen)[0])
                                  for _ in range(4)]))

    before = fixed_loss()
    for _ in range(40):
        loss, _ = vq_diffusion_loss(model, enc, sched, x0, y, 1.0)
        assert torch.isfinite(loss)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert fixed_loss() < 0.8 * before


def test_forward_process_follows_the_scheduler():
    sched = vq_scheduler(32, 8)
    x0 = torch.randint(0, 32, (2, 20000))
    gen = torch.Generator().manual_seed(0)
    for step in (0, 4, 7):
        t = torch.full((2,), step)
        xt, corrupted = corrupt(x0, t, sched, gen)
        ctt = float(sched.log_cumprod_ct[step].exp())
        att = float(sched.log_cumprod_at[step].exp())
        assert abs(float((xt == 32).float().mean()) - ctt) < 0.01
        assert abs(float((~corrupted).float().mean()) - att) < 0.01
        assert torch.equal(xt[~corrupted], x0[~corrupted])
    assert float((corrupt(x0, torch.full((2,), 7), sched, gen)[0] == 32).float().mean()) > 0.99


def test_few_step_sampling_maps_to_training_levels():
    assert model_timesteps(8, 8) == [(s, s) for s in range(7, -1, -1)]
    assert model_timesteps(2, 100) == [(1, 99), (0, 0)]
    assert model_timesteps(1, 100) == [(0, 99)]
    # the cumulative mask probability of a 4-step chain's levels equals the training chain's at the mapped t
    short, full = vq_scheduler(32, 4), vq_scheduler(32, 100)
    for level, t in model_timesteps(4, 100):
        assert abs(float(short.log_cumprod_ct[level].exp()) - float(full.log_cumprod_ct[t].exp())) < 1e-6


def test_null_row_is_trained_by_dropout(vq_run):
    from dopplerdiff.data.latents import CodeDataset
    from dopplerdiff.models.condition import build_condition_encoder
    from dopplerdiff.models.vq_transformer import build_vq_transformer

    cfg = _cfg().diffusion
    ds = CodeDataset(vq_run, "train")
    torch.manual_seed(0)
    model, enc = build_vq_transformer(cfg, 32, 8), build_condition_encoder(cfg, 3)
    sched = vq_scheduler(32, cfg.vq.num_train_timesteps)
    ids = enc.drop(ds.labels[:8], 0.5, generator=torch.Generator().manual_seed(0))
    assert (ids == enc.null_id).any()
    vq_diffusion_loss(model, enc, sched, ds.codes[:8], ids, 1.0)[0].backward()
    assert float(enc.null_row_grads()[0].abs().sum()) > 0


def test_edit_paths_are_refused(run):
    train_diffusion(run, _cfg(), progress=False)
    pipe = load_pipeline(run / "pipeline")
    x = torch.zeros(1, 1, 16, 16)
    for kwargs in ({"image": x, "strength": 0.5}, {"image": x, "mask": torch.ones(1, 1, 16, 16)},
                   {"identity_weights": torch.ones(1, 3)}):
        with pytest.raises(DopplerDiffError, match="vq-diffusion pipeline samples code indices"):
            pipe([0], num_inference_steps=2, **kwargs)
    with pytest.raises(DopplerDiffError, match="vq-diffusion pipeline samples code indices"):
        pipe([{"ID_1": 0.5, "ID_2": 0.5}], num_inference_steps=2)
    with pytest.raises(DopplerDiffError, match="does not apply to a vq-diffusion pipeline"):
        pipe.set_scheduler("dpmpp")
    with pytest.raises(DopplerDiffError, match=r"num_inference_steps must be in \[1, 8\]"):
        pipe([0], num_inference_steps=9)


def test_generate_and_evaluate_run(run, tmp_path):
    from dopplerdiff.evaluate.evaluate import evaluate_run
    from dopplerdiff.generate import write_generated
    from dopplerdiff.pipelines.auto_pipeline import load_run_pipeline

    cfg = _cfg()
    train_diffusion(run, cfg, progress=False)
    pipe = load_run_pipeline(run, "cpu")
    out = write_generated(pipe, tmp_path / "gen", ["ID_2"], 2, steps=2, guidance=2.0,
                          scheduler="vq-diffusion", seed=0, progress=False)
    assert len(list((out / "ID_2").glob("*.png"))) == 2
    metrics = evaluate_run(run, cfg, overwrite=True, progress=False)
    assert metrics["accuracy"]["generated"]["overall"] is not None


@pytest.mark.parametrize("overrides, match", [
    (VQ[1:], "diffusion.backbone: vq-diffusion .* needs autoencoder.kind: vq \\(got autoencoder.kind: kl\\)"),
    (["autoencoder.kind=vq", "diffusion.backbone=vq-diffusion"], "set diffusion.scheduler=vq-diffusion"),
    (["autoencoder.kind=vq", "diffusion.backbone=vq-diffusion", "diffusion.scheduler=vq-diffusion"],
     "set evaluate.scheduler=vq-diffusion"),
    (["diffusion.scheduler=vq-diffusion"], "needs diffusion.backbone: vq-diffusion"),
    ([*VQ, "diffusion.num_inference_steps=9"],
     "diffusion.num_inference_steps=9 exceeds .* diffusion.vq.num_train_timesteps=8"),
    ([*VQ, "diffusion.vq.num_train_timesteps=1"], "num_train_timesteps must be >= 2"),
    ([*VQ, "decoder.kind=diffusion"], "decoder.kind: diffusion decodes continuous latents"),
])
def test_bad_combinations_are_rejected(overrides, match):
    with pytest.raises(ConfigError, match=match):
        load_config("smoke", overrides)


def test_kl_latents_are_refused_at_training(tmp_path, sim_data):
    """A run whose cache came from an AutoencoderKL cannot train vq-diffusion, even with a forged config."""
    from dopplerdiff.train.autoencoder import train_autoencoder
    from dopplerdiff.train.latents import cache_latents

    run = tmp_path / "run"
    train_autoencoder(run, load_config("smoke"), data_root=sim_data, progress=False)
    cache_latents(run, progress=False)
    with pytest.raises(DopplerDiffError, match="come from a 'kl' autoencoder"):
        train_diffusion(run, _cfg(), progress=False)


def test_whole_job_and_edit_refusal_through_the_cli(sim_data, tmp_path, monkeypatch, capsys):
    """`dopplerdiff run` with the VQ route end to end; `edit transfer` on it fails with one clear line."""
    from conftest import run_cli

    run = tmp_path / "run"
    fast = ["diffusion.samples_per_identity=2", "evaluate.num_per_identity=2",
            "evaluate.guidance_sweep=[2.0]", "evaluate.augment_seeds=1", "evaluate.sweep_num_per_identity=1"]
    code, out, err = run_cli(monkeypatch, capsys, "run", "--profile", "smoke", "--data", sim_data,
                             "--out", run, "--quiet", *VQ, *fast)
    assert code == 0, err
    assert json.loads((run / "pipeline" / "model_index.json").read_text())["_class_name"] == (
        "DopplerVQDiffusionPipeline")
    assert len(list((run / "samples").glob("ID_*/*.png"))) == 3 * 2
    metrics = json.loads((run / "eval" / "metrics.json").read_text())
    assert metrics["accuracy"]["generated"]["overall"] is not None
    window = next((run / "samples" / "ID_1").glob("*.png"))
    code, out, err = run_cli(monkeypatch, capsys, "edit", "transfer", "--run", run, "--input", window,
                             "--identity", "ID_2", "--out", tmp_path / "moved")
    assert code != 0 and "vq-diffusion pipeline samples code indices" in err
    assert not (tmp_path / "moved").exists()


def test_resume_with_another_objective_is_refused(run):
    train_diffusion(run, _cfg("diffusion.train.steps=2"), progress=False)
    shutil.rmtree(run / "pipeline")
    shutil.rmtree(run / "diffusion")
    state = json.loads((run / "train/diffusion/checkpoint-2/loop_state.json").read_text())
    assert state["stage"] == "vq-diffusion"
    for key, value in (("diffusion.vq.aux_weight", 0.5), ("diffusion.condition.dropout", 0.3),
                       ("diffusion.train.batch_size", 2)):
        with pytest.raises(DopplerDiffError, match=re.escape(key)):
            train_diffusion(run, _cfg(f"{key}={value}"), resume="latest", progress=False)
    assert not (run / "pipeline").exists()
