"""Seed-indexed generation: reproducible per sample, written in the input layout; the generate CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from dopplerdiff.errors import DopplerDiffError
from dopplerdiff.generate import GenerationPlan, output_name, sample, sample_seed, write_generated

NAMES = ["ID_1", "ID_2", "ID_3"]


@pytest.fixture(scope="module")
def pipe(tiny_pipeline_factory):
    return tiny_pipeline_factory(scaling_factor=1.5, names=NAMES, native_size=32)


@pytest.mark.parametrize("scheduler", ["ddim", "euler_a"])  # deterministic and stochastic samplers
def test_sample_reproducible_alone_regardless_of_batch(pipe, scheduler):
    plan = GenerationPlan(identities=[0, 2], count=3, steps=2, guidance=2.0, scheduler=scheduler, seed=7,
                          batch_size=4, mix_identities=True)
    got = sample(pipe, plan, progress=False)
    imgs, labels = got.images, got.labels
    assert imgs.shape == (6, 1, 16, 16) and labels.tolist() == [0, 0, 0, 2, 2, 2]
    assert imgs.min() >= 0 and imgs.max() <= 1
    # batch size 1 gives the same samples
    single = sample(pipe, plan.replace(batch_size=1), progress=False).images
    np.testing.assert_allclose(single, imgs, atol=1e-5)
    # sample 2 of identity 2 alone: the first 3 of identity 2 computed without identity 0
    alone = sample(pipe, plan.replace(identities=[2], batch_size=2), progress=False).images
    np.testing.assert_allclose(alone, imgs[3:], atol=1e-5)
    # a different seed changes samples; distinct samples differ
    other = sample(pipe, plan.replace(seed=8), progress=False).images
    assert not np.allclose(other, imgs, atol=1e-3)
    assert not np.allclose(imgs[0], imgs[1], atol=1e-3)


def test_sample_seed_distinct():
    seeds = {sample_seed(0, k, i) for k in range(5) for i in range(50)}
    assert len(seeds) == 250 and all(0 <= s < 2**63 for s in seeds)
    assert sample_seed(1, 0, 0) != sample_seed(0, 0, 0)


def test_write_generated_layout(pipe, tmp_path):
    out = write_generated(
        pipe,
        tmp_path / "gen",
        ["ID_3"],
        2,
        steps=2,
        guidance=1.0,
        scheduler="ddim",
        seed=0,
        progress=False,
    )
    files = sorted(p.relative_to(out).as_posix() for p in out.rglob("*.png"))
    assert files == ["ID_3/ID3_gen_0.png", "ID_3/ID3_gen_1.png"]
    im = Image.open(out / files[0])
    assert im.size == (32, 32) and im.mode == "RGB"  # native size, jet colormap
    man = json.loads((out / "manifest.json").read_text())
    assert man["sample_seeds"]["ID_3"] == [sample_seed(0, 2, 0), sample_seed(0, 2, 1)]
    assert man["label_map"] == NAMES and man["scheduler"] == "ddim"
    with pytest.raises(DopplerDiffError, match="already exists"):
        write_generated(
            pipe, out, ["ID_3"], 1, steps=2, guidance=1.0, scheduler="ddim", seed=0, progress=False
        )
    npy = write_generated(
        pipe,
        tmp_path / "npy",
        None,
        1,
        steps=2,
        guidance=1.0,
        scheduler="ddim",
        seed=0,
        fmt="npy",
        native_size=20,
        progress=False,
    )
    arr = np.load(npy / "ID_2" / output_name("ID_2", 0, "npy"))
    assert arr.shape == (20, 20) and arr.dtype == np.float32


def test_errors(pipe, tmp_path):
    with pytest.raises(DopplerDiffError, match="ID_1, ID_2, ID_3"):
        write_generated(pipe, tmp_path / "x", ["ID_9"], 1, steps=2, guidance=1.0, scheduler="ddim", seed=0)
    with pytest.raises(DopplerDiffError, match="valid: ddpm"):
        sample(pipe, GenerationPlan(identities=[0], steps=2, guidance=1.0, scheduler="plms"))
    assert not (tmp_path / "x").exists()


def test_generate_cli(pipe, tmp_path, smoke_config):
    from typer.testing import CliRunner

    from dopplerdiff.cli import app

    run = tmp_path / "run"
    pipe.save_pretrained(run / "pipeline")
    smoke_config.save(run / "config.yaml")
    (run / "data.json").write_text(
        json.dumps(
            {
                "data_root": "x",
                "identities": NAMES,
                "split": {},
                "meta": {"colormap": "jet", "native_size": 24},
            }
        )
    )
    r = CliRunner().invoke(
        app,
        [
            "generate",
            "--run",
            str(run),
            "--identity",
            "ID_2",
            "--num",
            "2",
            "--out",
            str(tmp_path / "g"),
            "--quiet",
        ],
    )
    assert r.exit_code == 0, r.output
    assert Image.open(tmp_path / "g" / "ID_2" / "ID2_gen_1.png").size == (24, 24)
    assert (tmp_path / "g" / "config.yaml").is_file()
    man = json.loads((tmp_path / "g" / "manifest.json").read_text())
    assert man["steps"] == smoke_config.diffusion.num_inference_steps and man["scheduler"] == "ddim"
    r = CliRunner().invoke(
        app, ["generate", "--run", str(run), "--identity", "ID_9", "--out", str(tmp_path / "h")]
    )
    assert r.exit_code != 0 and "ID_1, ID_2, ID_3" in str(r.exception)
