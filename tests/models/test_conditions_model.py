"""Walking conditions in the generator: latents cache, condition table with a trained null, independent
condition dropout, compositional guidance, `generate --condition`, and flat runs left without a table."""

from __future__ import annotations

import dataclasses
import json
import shutil

import numpy as np
import pytest
import torch
from conftest import latent_run, run_cli
from PIL import Image

from dopplerdiff.config import load_config
from dopplerdiff.data.latents import LatentDataset, load_latents, write_latent_cache
from dopplerdiff.errors import DopplerDiffError
from dopplerdiff.models.condition import IdentityConditionEncoder, build_condition_encoder
from dopplerdiff.models.denoiser import build_denoiser
from dopplerdiff.pipelines.pipeline_dopplerdiff import DopplerDiffPipeline
from dopplerdiff.pipelines.sampling import compose_guidance
from dopplerdiff.train.diffusion import train_diffusion

CONDS = ["backpack", "normal"]  # the run's condition order: the data folders' natural order


def _cfg(*overrides: str):
    return load_config("smoke", ["diffusion.train.val_every=100", "diffusion.train.steps=3", *overrides])


@pytest.fixture(scope="module")
def cond_latents(tmp_path_factory):
    """A smoke run on 3 people x 2 conditions with a trained autoencoder and cached latents."""
    from dopplerdiff.data.simulate import simulate_dataset

    cfg = load_config("smoke")
    sim = dataclasses.replace(cfg.simulate, conditions=("normal", "backpack"))
    data = simulate_dataset(sim, tmp_path_factory.mktemp("csim") / "data", progress=False)
    return latent_run(tmp_path_factory.mktemp("cae") / "run", cfg, data)


@pytest.fixture(scope="module")
def cond_run(cond_latents, tmp_path_factory):
    run = tmp_path_factory.mktemp("cdiff") / "run"
    shutil.copytree(cond_latents, run)
    train_diffusion(run, _cfg(), progress=False)
    return run


def test_latent_cache_records_conditions(cond_latents):
    ds = LatentDataset(cond_latents, "train", sample=False)
    assert ds.condition_names == CONDS
    # every cached window carries the condition of the folder it came from
    assert [CONDS[int(c)] for c in ds.conditions] == [f.split("/")[0] for f in ds.files]
    assert set(ds.conditions.tolist()) == {0, 1} and int(ds[0]["conditions"]) == int(ds.conditions[0])


def test_cache_without_conditions_reads_as_default(tmp_path):
    t = {"mean": torch.zeros(2, 4, 8, 8), "std": torch.zeros(2, 4, 8, 8), "labels": torch.tensor([0, 1])}
    info = {"identities": ["ID_1", "ID_2"], "scaling_factor": 1.0, "shift_factor": 0.0, "kind": "kl",
            "latent_shape": [4, 8, 8]}
    write_latent_cache(tmp_path / "latents", {"train": t}, info)
    assert load_latents(tmp_path, "train")["conditions"].tolist() == [0, 0]
    assert LatentDataset(tmp_path, "train").condition_names == ["default"]


def test_pipeline_has_condition_table_with_null_row(cond_run):
    pipe = DopplerDiffPipeline.from_pretrained(cond_run / "pipeline")
    enc = pipe.condition_encoder
    assert pipe.conditions == CONDS and enc.num_conditions == 2 and enc.null_condition == 2
    assert tuple(enc.condition_table.weight.shape) == (3, enc.config.cross_attention_dim)
    # the condition token joins the identity token(s)
    tokens = enc.encode(torch.tensor([0, 1]), torch.tensor([1, 2]))
    assert tokens.shape[1] == enc.config.num_tokens + 1
    with pytest.raises(DopplerDiffError, match=r"condition id out of range.*\[0, 2\]"):
        enc.encode(torch.tensor([0]), torch.tensor([3]))


def _rows(run):
    enc = IdentityConditionEncoder.from_pretrained(run / "diffusion" / "condition_encoder")
    return enc.table.weight[enc.null_id].detach().clone(), enc.condition_table.weight[2].detach().clone()


def test_condition_dropout_trains_the_condition_null_independently(cond_latents, tmp_path):
    rows = {}
    for name, extra in (("none", []), ("half", ["diffusion.condition.condition_dropout=0.5"])):
        run = tmp_path / name
        shutil.copytree(cond_latents, run)
        cfg = _cfg("diffusion.condition.dropout=0.0", "diffusion.train.ema=false", *extra)
        train_diffusion(run, cfg, progress=False)
        rows[name] = _rows(run)
    cfg = load_config("smoke")
    torch.manual_seed(cfg.seed)
    build_denoiser(cfg.diffusion, 4, 8, 3)
    init = build_condition_encoder(cfg.diffusion, 3, num_conditions=2)
    id_null, cond_null = init.table.weight[3].detach(), init.condition_table.weight[2].detach()
    # default condition dropout = the identity's (0 here): neither null moves
    assert torch.equal(rows["none"][0], id_null) and torch.equal(rows["none"][1], cond_null)
    # condition dropout on its own: the condition null is trained, the identity null is not
    assert torch.equal(rows["half"][0], id_null) and not torch.allclose(rows["half"][1], cond_null)


def test_compositional_guidance():
    nn_, in_, ic = torch.tensor([1.0]), torch.tensor([2.0]), torch.tensor([4.0])
    assert compose_guidance(nn_, in_, ic, 3.0, 0.5).item() == 1.0 + 3.0 * 1.0 + 0.5 * 2.0
    assert compose_guidance(nn_, in_, ic, 1.0, 1.0).item() == 4.0


def test_pipe_conditions(cond_run):
    pipe = DopplerDiffPipeline.from_pretrained(cond_run / "pipeline")
    pipe.set_progress_bar_config(disable=True)
    kw = dict(num_inference_steps=2, guidance_scale=2.0, seed=0, output_type="latent")
    plain = pipe(["ID_1"], **kw).images
    # condition guidance 0 leaves identity guidance with the null condition: the call without conditions
    zero = pipe(["ID_1"], conditions=["backpack"], condition_guidance_scale=0.0, **kw).images
    torch.testing.assert_close(zero, plain, atol=1e-4, rtol=1e-4)
    back = pipe(["ID_1"], conditions="backpack", **kw).images
    normal = pipe(["ID_1"], conditions=[1], **kw).images
    assert not torch.allclose(back, normal) and not torch.allclose(back, plain)
    with pytest.raises(DopplerDiffError, match="unknown condition 'swim'; valid: backpack, normal"):
        pipe(["ID_1"], conditions=["swim"], **kw)


def _error_line(err: str) -> str:
    """The one ``error:`` line of a failed command (log records of earlier commands may precede it)."""
    lines = [ln for ln in err.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1, err
    return lines[0]


def test_generate_condition_cli(cond_run, tmp_path, monkeypatch, capsys):
    out = tmp_path / "g"
    code, _, err = run_cli(monkeypatch, capsys, "generate", "--run", cond_run, "--identity", "ID_2",
                           "--condition", "backpack", "--num", "2", "--out", out, "--quiet")
    assert code == 0, err
    files = sorted(p.relative_to(out).as_posix() for p in out.rglob("*.png"))
    assert files == ["backpack/ID_2/ID2_gen_0.png", "backpack/ID_2/ID2_gen_1.png"]
    assert json.loads((out / "manifest.json").read_text())["condition"] == "backpack"
    code, _, err = run_cli(monkeypatch, capsys, "generate", "--run", cond_run, "--identity", "ID_2",
                           "--condition", "swim", "--out", tmp_path / "h")
    assert code == 2 and "error: unknown condition 'swim'; valid: backpack, normal" in _error_line(err)
    assert not (tmp_path / "h").exists()


def test_flat_run_has_no_condition_table(ae_run, tmp_path, monkeypatch, capsys):
    run = tmp_path / "flat"
    shutil.copytree(ae_run, run)
    train_diffusion(run, _cfg(), progress=False)
    pipe = DopplerDiffPipeline.from_pretrained(run / "pipeline")
    assert pipe.conditions == [] and not hasattr(pipe.condition_encoder, "condition_table")
    assert not any("condition_table" in k for k in pipe.condition_encoder.state_dict())
    with pytest.raises(DopplerDiffError, match="trained without walking conditions"):
        pipe(["ID_1"], conditions=["backpack"], num_inference_steps=1)
    code, _, err = run_cli(monkeypatch, capsys, "generate", "--run", run, "--identity", "ID_1",
                           "--condition", "backpack", "--out", tmp_path / "g")
    assert code == 2 and "trained without walking conditions" in _error_line(err)
    assert not (tmp_path / "g").exists()
    run_cli(monkeypatch, capsys, "generate", "--run", run, "--identity", "ID_1", "--num", "1", "--out",
            tmp_path / "in", "--quiet")
    code, _, err = run_cli(monkeypatch, capsys, "edit", "transfer", "--run", run, "--input", tmp_path / "in",
                           "--identity", "ID_2", "--condition", "backpack", "--out", tmp_path / "e")
    assert code == 2 and "trained without walking conditions" in _error_line(err)
    assert not (tmp_path / "e").exists()


def test_checkpoints_from_before_condition_dropout_still_resume():
    from dopplerdiff.train.resume import config_diff

    old = {"diffusion": {"condition": {"dropout": 0.1}}}
    assert config_diff(old, {"diffusion": {"condition": {"dropout": 0.1, "condition_dropout": None}}}) == []
    assert config_diff(old, {"diffusion": {"condition": {"dropout": 0.1, "condition_dropout": 0.2}}})


def test_edit_transfer_condition_cli(cond_run, tmp_path, monkeypatch, capsys):
    src = tmp_path / "in"
    run_cli(monkeypatch, capsys, "generate", "--run", cond_run, "--identity", "ID_1", "--condition", "normal",
            "--num", "2", "--out", src, "--quiet")
    args = ["edit", "transfer", "--run", cond_run, "--input", src / "normal" / "ID_1", "--identity", "ID_1",
            "--strength", "0.6", "--quiet"]
    code, _, err = run_cli(monkeypatch, capsys, *args, "--condition", "backpack", "--out", tmp_path / "b")
    assert code == 0, err
    assert sorted(p.name for p in (tmp_path / "b").glob("*.png")) == [
        "ID1_gen_0_as_ID_1_backpack.png", "ID1_gen_1_as_ID_1_backpack.png"]
    manifest = json.loads((tmp_path / "b" / "manifest.json").read_text())
    assert manifest["condition"] == "backpack"
    code, _, err = run_cli(monkeypatch, capsys, *args, "--condition", "normal", "--out", tmp_path / "n")
    assert code == 0, err
    a, b = (np.asarray(Image.open(next((tmp_path / d).glob("*gen_0*.png")))) for d in ("b", "n"))
    assert not np.array_equal(a, b)  # the condition token changes the render (same seed, same input)
    code, _, err = run_cli(monkeypatch, capsys, *args, "--condition", "swim", "--out", tmp_path / "s")
    assert code == 2 and "unknown condition 'swim'" in _error_line(err) and not (tmp_path / "s").exists()


def test_condition_metrics_score_each_condition(cond_run):
    from dopplerdiff.classifier import fit_classifier
    from dopplerdiff.data.run_data import prepare_run_data
    from dopplerdiff.evaluate.conditions import condition_metrics

    cfg = load_config("smoke", ["evaluate.judge_steps=2", "evaluate.steps=2"])
    ds, split = prepare_run_data(cond_run, None, cfg.data)
    train, test = ds.subset(split["train"]), ds.subset(split["test"])
    encoder = fit_classifier(train.images, train.labels, len(ds.identities), cfg.encoder, steps=2, seed=0)
    pipe = DopplerDiffPipeline.from_pretrained(cond_run / "pipeline")
    rows = condition_metrics(pipe, encoder, train, test, 2, cfg.evaluate)
    assert [r["condition"] for r in rows] == CONDS
    for c, r in enumerate(rows):
        in_c = test.conditions == c
        assert r["real_test"] == int(in_c.sum()) and r["people"] == len(set(test.labels[in_c].tolist()))
        assert r["samples"] == 2 * r["people"]
        for key in ("identity_accuracy", "condition_accuracy"):
            assert all(0 <= v <= 1 for v in r[key].values())
    flat = dataclasses.replace(test, conditions=np.zeros(len(test), np.int64), condition_names=["default"])
    assert condition_metrics(pipe, encoder, train, flat, 2, cfg.evaluate) is None


def test_evaluate_reports_each_condition(cond_run, tmp_path):
    from dopplerdiff.evaluate.evaluate import evaluate_run

    run = tmp_path / "run"
    shutil.copytree(cond_run, run)
    cfg = load_config("smoke", ["evaluate.augment_seeds=0", "evaluate.condition_samples_per_identity=2"])
    m = evaluate_run(run, cfg, progress=False)
    assert [r["condition"] for r in m["conditions"]] == CONDS
    assert all(r["samples"] == 2 * r["people"] for r in m["conditions"])
    assert 'id="conditions"' in (run / "eval" / "report.html").read_text()
