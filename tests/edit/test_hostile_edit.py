"""Hostile input to `edit`, `enroll-generator`, `generate` and `augment`: one clear error (exit 2) before any
work, nothing already written lost, no name or row saved that a later command cannot load."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import build_tiny_pipeline
from edit_helpers import NAMES, one_error, save_run, snapshot
from synthetic_helpers import make_run

from dopplerdiff.data.images import write_image
from dopplerdiff.errors import DopplerDiffError
from dopplerdiff.pipelines.pipeline_dopplerdiff import DopplerDiffPipeline


@pytest.fixture()
def run(tmp_path, smoke_config):
    """A run with a tiny pipeline, its config and data.json, and five different 16x16 jet inputs in IN/."""
    rng = np.random.default_rng(0)
    for i in range(5):
        write_image(tmp_path / "in" / f"w{i}.png", rng.random((16, 16)), "jet")
    return save_run(tmp_path / "run", build_tiny_pipeline(smoke_config, names=NAMES), smoke_config)




# -- item 1: one name check where a name enters and where it is loaded ------------------------------------
@pytest.mark.parametrize("name", ["bob\t", "x" * 256, "unknown", "Unknown", "../evil", "", "a/b"])
def test_enroll_generator_refuses_names_the_loader_refuses(run, tmp_path, cli, name):
    before = snapshot(run / "pipeline")
    code, _, err = cli("enroll-generator", "--run", run, "--identity", name, tmp_path / "in", "--steps", "1")
    assert one_error(code, err, "--identity"), err
    assert snapshot(run / "pipeline") == before
    assert DopplerDiffPipeline.from_pretrained(run / "pipeline").identities == NAMES


# -- item 2: no NaN or diverged row replaces the pipeline ---------------------------------------------------
@pytest.mark.parametrize("lr", ["inf", "nan", "-1", "0"])
def test_enroll_generator_refuses_bad_lr_up_front(run, tmp_path, cli, no_sampling, lr):
    before = snapshot(run / "pipeline")
    code, _, err = cli("enroll-generator", "--run", run, "--identity", "NEW", tmp_path / "in", "--lr", lr,
                       "--steps", "2")
    assert one_error(code, err, "--lr"), err
    assert snapshot(run / "pipeline") == before


def poison_row(pipe, z, row, cfg, **kwargs):
    """What `--lr 1e30` does to a row: NaN everywhere."""
    import torch

    with torch.no_grad():
        pipe.condition_encoder.table.weight[row] = float("nan")
    return [float("nan")]


def test_enroll_generator_does_not_save_a_nan_row(run, tmp_path, cli, monkeypatch):
    """A diverged relearn of a trained person leaves the saved pipeline as it was."""
    from dopplerdiff.train import identity

    monkeypatch.setattr(identity, "_optimise_row", poison_row)
    before = snapshot(run / "pipeline")
    code, _, err = cli("enroll-generator", "--run", run, "--identity", "ID_2", "--replace", tmp_path / "in",
                       "--steps", "5", "-q")
    assert one_error(code, err, "diverged", "--lr"), err
    assert snapshot(run / "pipeline") == before


def test_learn_identity_refuses_a_loss_that_rose(smoke_config, monkeypatch):
    import torch

    from dopplerdiff.train import identity

    pipe = build_tiny_pipeline(smoke_config, names=NAMES)
    images = (torch.rand(4, 1, 16, 16, generator=torch.Generator().manual_seed(0)) * 2 - 1).numpy()
    losses = iter([0.5, 0.7])  # on the fixed draws: before, after
    monkeypatch.setattr(identity, "_fixed_loss", lambda *a, **k: next(losses))
    with pytest.raises(DopplerDiffError, match=r"diverged \(loss 0.5 -> 0.7\)"):
        identity.learn_identity(pipe, images, "NEW", smoke_config, steps=1, progress=False)
    monkeypatch.setattr(identity, "_fixed_loss", lambda *a, **k: 0.5)
    monkeypatch.setattr(identity, "_optimise_row", poison_row)
    with pytest.raises(DopplerDiffError, match="non-finite"):
        identity.learn_identity(pipe, images, "NEW2", smoke_config, steps=1, progress=False)


# -- items 7 and 8: non-finite guidance, negative or huge seeds ---------------------------------------------
@pytest.mark.parametrize("value", ["nan", "inf", "-1"])
def test_edit_refuses_bad_guidance(run, tmp_path, cli, no_sampling, value):
    code, _, err = cli("edit", "transfer", "--run", run, "--input", tmp_path / "in", "--identity", "ID_2",
                       "--guidance", value, "--steps", "2", "--format", "npy", "--out", tmp_path / "o")
    assert one_error(code, err, "--guidance"), err
    assert not (tmp_path / "o").exists()


def test_pipeline_refuses_non_finite_guidance(smoke_config):
    pipe = build_tiny_pipeline(smoke_config, names=NAMES)
    for g in (float("nan"), float("inf")):
        with pytest.raises(DopplerDiffError, match="guidance_scale must be a finite number"):
            pipe(["ID_1"], num_inference_steps=2, guidance_scale=g, seed=0)


@pytest.mark.parametrize("seed", ["-1", str(2**63)])
@pytest.mark.parametrize("command", [
    ["edit", "transfer", "--identity", "ID_2", "--input", "IN"],
    ["edit", "interpolate", "--from", "ID_1", "--to", "ID_2"],
    ["generate", "--identity", "ID_1", "--num", "1"],
])
def test_sampling_commands_refuse_bad_seeds(run, tmp_path, cli, command, seed):
    args = [tmp_path / "in" if a == "IN" else a for a in command]
    code, _, err = cli(*args, "--run", run, "--seed", seed, "--steps", "2", "--out", tmp_path / "o")
    assert one_error(code, err, "--seed"), err
    assert not (tmp_path / "o").exists()


def test_augment_and_enroll_refuse_a_negative_seed(tmp_path, sim_data, smoke_config, cli):
    run, _ = make_run(tmp_path, sim_data, smoke_config)
    for bad in (["--steps", "2", "--seed", "-3"], ["--steps", "0"]):  # --steps 0 used to mean "the default"
        code, _, err = cli("augment", "--run", run, "--out", tmp_path / "a", "-n", "1", *bad)
        assert one_error(code, err, bad[-2]), err
        assert not (tmp_path / "a").exists()
    code, _, err = cli("enroll-generator", "--run", run, "-i", "NEW", sim_data / "ID_1", "--seed", "-3")
    assert one_error(code, err, "--seed"), err


def test_sample_seed_refuses_negative_seeds():
    from dopplerdiff.generate import sample_seed

    with pytest.raises(DopplerDiffError, match="seed must be an integer in"):
        sample_seed(-1, 0, 0)
    assert sample_seed(2**63 - 1, 0, 0) >= 0
