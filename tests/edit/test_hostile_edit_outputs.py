"""`edit` outputs under hostile input: upsampling decoders, large batches, clashing names, bad paths and
strings, damaged run files, colour inputs on gray runs."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from conftest import build_tiny_pipeline
from edit_helpers import NAMES, one_error, save_run

from dopplerdiff.data.images import write_image
from dopplerdiff.edit import ops
from dopplerdiff.pipelines.pipeline_dopplerdiff import DopplerDiffPipeline


@pytest.fixture()
def run(tmp_path, smoke_config):
    """A tiny run and five different 16x16 npy inputs in IN/."""
    rng = np.random.default_rng(0)
    (tmp_path / "in").mkdir()
    for i in range(5):
        np.save(tmp_path / "in" / f"w{i}.npy", rng.random((16, 16)).astype(np.float32))
    return save_run(tmp_path / "run", build_tiny_pipeline(smoke_config, names=NAMES), smoke_config)




# -- item 9: inpaint with an upsampling diffusion decoder ---------------------------------------------------
def test_inpaint_with_an_upsampling_decoder(tmp_path, smoke_config, cli):
    from dopplerdiff.models.decoder import build_decoder

    pipe = build_tiny_pipeline(smoke_config, names=NAMES)
    pipe.register_modules(decoder=build_decoder(smoke_config.decoder, 1, 4, 8, 32))  # 8x8 latents -> 32x32
    run = save_run(tmp_path / "run", pipe, smoke_config)
    src = np.random.default_rng(1).random((32, 32)).astype(np.float32)
    np.save(tmp_path / "w.npy", src)
    code, _, err = cli("edit", "inpaint", "--run", run, "--input", tmp_path / "w.npy", "--mask-time", "0.5:1",
                       "--steps", "2", "--format", "npy", "--out", tmp_path / "o", "-q")
    assert code == 0, err
    out = np.load(tmp_path / "o" / "w_inpainted.npy")
    assert out.shape == (32, 32)
    assert np.allclose(out[:, :16], src[:, :16], atol=1e-5)  # known half: the 32x32 input itself
    assert not np.allclose(out[:, 16:], src[:, 16:], atol=1e-2)


# -- item 10: bounded batches, generators built once per output ---------------------------------------------
@pytest.fixture(scope="module")
def pipe(smoke_config):
    return build_tiny_pipeline(smoke_config, names=NAMES)


@pytest.fixture()
def calls(pipe, monkeypatch):
    """Batch sizes of every pipeline call, and the number of per-output seeds made."""
    seen = {"batches": [], "seeds": 0}
    call, seed = DopplerDiffPipeline.__call__, ops.sample_seed

    def spy(self, identities=None, *args, **kwargs):
        seen["batches"].append(len(identities))
        return call(self, identities, *args, **kwargs)

    def count(*args):
        seen["seeds"] += 1
        return seed(*args)

    monkeypatch.setattr(DopplerDiffPipeline, "__call__", spy)
    monkeypatch.setattr(ops, "sample_seed", count)
    return seen


def images(n: int) -> np.ndarray:
    return (torch.rand(n, 1, 16, 16, generator=torch.Generator().manual_seed(0)) * 2 - 1).numpy()


EDITS = {
    "transfer": lambda p, b: ops.transfer(p, images(5), "ID_2", strength=0.5, guidance=2.0, steps=2, seed=3,
                                          batch_size=b),
    "inpaint": lambda p, b: ops.inpaint(p, images(5), ops.span_mask((16, 16), (0.25, 0.5), None), "ID_1",
                                        guidance=2.0, steps=2, seed=3, batch_size=b),
    "mix_strip": lambda p, b: ops.mix_strip(p, "ID_1", "ID_3", 5, guidance=2.0, steps=2, batch_size=b)[0],
    "noise_strip": lambda p, b: ops.noise_strip(p, "ID_2", (0, 1), 5, guidance=2.0, steps=2, batch_size=b)[0],
    "mix_samples": lambda p, b: ops.mix_samples(p, {"ID_1": 0.5, "ID_2": 0.5}, 5, guidance=2.0, steps=2,
                                                batch_size=b),
}


@pytest.mark.parametrize("edit", list(EDITS))
def test_edits_run_in_bounded_batches_with_the_same_result(pipe, calls, edit):
    pipe.set_scheduler("ddim")
    one = EDITS[edit](pipe, 16)
    assert calls["batches"] == [5]
    calls["batches"].clear()
    calls["seeds"] = 0
    split = EDITS[edit](pipe, 2)
    assert calls["batches"] == [2, 2, 1]
    assert calls["seeds"] in (0, 5)  # one generator per output, not one per output per batch
    assert split.shape == one.shape and np.allclose(split, one, atol=1e-5)


# -- item 11 ---------------------------------------------------------------------------------------------
def test_out_that_is_a_file_is_refused(run, tmp_path, cli, no_sampling):
    (tmp_path / "f").write_text("keep me")
    code, _, err = cli("edit", "interpolate", "--run", run, "--from", "ID_1", "--to", "ID_2", "--steps", "2",
                       "--out", tmp_path / "f")
    assert one_error(code, err, "--out", "existing file"), err
    assert (tmp_path / "f").read_text() == "keep me"


@pytest.mark.parametrize("seeds", ["nan:1", "1e30:1", "1.9:2.2", "-1:2", "0:18446744073709551616", "3"])
def test_interpolate_refuses_bad_seeds(run, tmp_path, cli, no_sampling, seeds):
    code, _, err = cli("edit", "interpolate", "--run", run, "--identity", "ID_1", "--seeds", seeds,
                       "--steps", "2", "--out", tmp_path / "o")
    assert one_error(code, err, "--seeds"), err


@pytest.mark.parametrize(("args", "needle"), [
    (["edit", "transfer", "--identity", "ID_2", "--input", "IN", "--format", "tif"], "--format"),
    (["edit", "inpaint", "--mask-time", "0.2:0.4", "--input", "IN", "--format", "tif"], "--format"),
    (["edit", "interpolate", "--from", "ID_1", "--to", "ID_1"], "--from and --to"),
    (["edit", "transfer", "--identity", "ID_2", "--input", "IN", "--steps", "0"], "--steps"),
    (["edit", "interpolate", "--from", "ID_1", "--to", "ID_2", "--steps", "0"], "--steps"),
    (["edit", "inpaint", "--mask-time", "0.2:0.4", "--input", "IN", "--batch-size", "0"], "--batch-size"),
])
def test_bad_arguments_are_refused_before_sampling(run, tmp_path, cli, no_sampling, args, needle):
    args = [tmp_path / "in" if a == "IN" else a for a in args]
    code, _, err = cli(*args, "--run", run, "--out", tmp_path / "o")
    assert one_error(code, err, needle), err
    assert not (tmp_path / "o").exists()


def test_inputs_with_one_stem_keep_every_output(run, tmp_path, cli):
    for d in ("a", "b"):
        (tmp_path / d).mkdir()
        np.save(tmp_path / d / "w.npy", np.random.default_rng(len(d)).random((16, 16)).astype(np.float32))
    write_image(tmp_path / "a" / "w.png", np.full((16, 16), 0.3), "jet")
    code, _, err = cli("edit", "transfer", "--run", run, "--identity", "ID_2", "--input", tmp_path / "a",
                       "--input", tmp_path / "b" / "w.npy", "--steps", "2", "--format", "npy",
                       "--out", tmp_path / "o", "-q")
    assert code == 0, err
    man = json.loads((tmp_path / "o" / "manifest.json").read_text())
    assert len(man["files"]) == len(set(man["files"])) == 3
    assert all((tmp_path / "o" / f).is_file() for f in man["files"])


def test_output_names_are_unique():
    from pathlib import Path

    from dopplerdiff.edit.io import output_names

    files = [Path("a/w.png"), Path("b/w.png"), Path("w.npy"), Path("w-2.png")]
    assert output_names(files, "") == ["w", "w-2", "w-3", "w-2-2"]
    assert output_names(files[:2], "_as_ID_1") == ["w_as_ID_1", "w_as_ID_1-2"]


def test_enroll_generator_counts_distinct_windows(run, tmp_path, cli):
    before = (run / "pipeline" / "model_index.json").read_bytes()
    w = tmp_path / "in" / "w0.npy"
    code, _, err = cli("enroll-generator", "--run", run, "-i", "NEW", w, w, w, "--steps", "1")
    assert one_error(code, err, "at least 3 windows", "got 1 distinct of 3"), err
    assert (run / "pipeline" / "model_index.json").read_bytes() == before


@pytest.mark.parametrize("text", ["{", "[]"])
def test_damaged_model_index_is_one_error(run, tmp_path, cli, text):
    (run / "pipeline" / "model_index.json").write_text(text)
    code, _, err = cli("generate", "--run", run, "-i", "ID_1", "--num", "1", "--out", tmp_path / "o")
    assert one_error(code, err, "model_index.json", "damaged"), err


def test_colour_input_on_a_gray_run_warns(tmp_path, smoke_config, caplog):
    import dataclasses

    from dopplerdiff.edit.io import read_inputs

    cfg = dataclasses.replace(smoke_config.data, colormap="gray", channels=1)
    img = np.tile(np.linspace(0, 1, 16), (16, 1))
    write_image(tmp_path / "jet.png", img, "jet")
    write_image(tmp_path / "gray.png", img, "gray")
    np.save(tmp_path / "gray.npy", img.astype(np.float32))
    with caplog.at_level("WARNING"):
        read_inputs([tmp_path / "gray.png", tmp_path / "gray.npy"], cfg)
        assert "gray run" not in caplog.text
        read_inputs([tmp_path / "jet.png"], cfg)
    assert "jet.png: a colour image on a gray run" in caplog.text
