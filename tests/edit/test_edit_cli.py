"""`dopplerdiff edit ...` and `enroll-generator` on a tiny run: outputs, manifests, seeds, bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import build_tiny_pipeline
from PIL import Image

from dopplerdiff.data.images import write_image
from dopplerdiff.edit.ops import span_mask
from dopplerdiff.errors import DopplerDiffError
from dopplerdiff.pipelines.pipeline_dopplerdiff import DopplerDiffPipeline

NAMES = ["ID_1", "ID_2", "ID_3"]


@pytest.fixture()
def run(tmp_path, smoke_config):
    """A run directory with a tiny pipeline, its config and data.json, plus five 24x24 jet inputs."""
    run = tmp_path / "run"
    pipe = build_tiny_pipeline(smoke_config, names=NAMES, native_size=None)
    pipe.save_pretrained(run / "pipeline")
    smoke_config.save(run / "config.yaml")
    meta = {"colormap": "jet", "native_size": None}
    data = {"data_root": "x", "identities": NAMES, "split": {}, "meta": meta}
    (run / "data.json").write_text(json.dumps(data))
    rng = np.random.default_rng(0)
    (tmp_path / "npy").mkdir()
    for i in range(5):
        write_image(tmp_path / "in" / f"w{i}.png", rng.random((24, 24)), "jet")
        np.save(tmp_path / "npy" / f"w{i}.npy", rng.random((16, 16)).astype(np.float32))
    return run



def test_transfer_writes_reproducible_outputs(run, tmp_path, cli):
    args = ["edit", "transfer", "--run", run, "--input", tmp_path / "in", "--identity", "ID_2",
            "--strength", "0.5", "--steps", "4", "--format", "npy", "--quiet"]
    assert cli(*args, "--out", tmp_path / "a")[0] == 0
    assert cli(*args, "--out", tmp_path / "b")[0] == 0
    man = json.loads((tmp_path / "a" / "manifest.json").read_text())
    assert man["kind"] == "edit-transfer" and man["strength"] == 0.5 and len(man["files"]) == 5
    assert man["inputs"][0]["resized"] and man["inputs"][0]["native_size"] == [24, 24]
    for f in man["files"]:
        assert np.array_equal(np.load(tmp_path / "a" / f), np.load(tmp_path / "b" / f))


def test_inpaint_keeps_known_pixels(run, tmp_path, cli):
    code, _, err = cli("edit", "inpaint", "--run", run, "--input", tmp_path / "npy" / "w0.npy",
                       "--mask-time", "0.25:0.5", "--identity", "ID_1", "--resample", "1", "--steps", "3",
                       "--format", "npy", "--out", tmp_path / "p", "--quiet")
    assert code == 0, err
    src, out = np.load(tmp_path / "npy" / "w0.npy"), np.load(tmp_path / "p" / "w0_inpainted.npy")
    mask = span_mask((16, 16), (0.25, 0.5), None).astype(bool)
    assert np.allclose(out[~mask], src[~mask], atol=1e-6)
    assert not np.allclose(out[mask], src[mask], atol=1e-2)
    assert json.loads((tmp_path / "p" / "manifest.json").read_text())["scheduler"] == "ddim"


def test_interpolate_modes(run, tmp_path, cli):
    base = ["edit", "interpolate", "--run", run, "--num", "3", "--steps", "2", "--quiet"]
    assert cli(*base, "--from", "ID_1", "--to", "ID_3", "--out", tmp_path / "s")[0] == 0
    names = sorted(p.name for p in (tmp_path / "s").glob("*.png"))
    assert names == [f"ID_1_to_ID_3_{i}.png" for i in range(3)]
    assert cli(*base, "--identity", "ID_2", "--seeds", "0:1", "--out", tmp_path / "n")[0] == 0
    assert cli(*base, "--identity", "ID_1:0.5,ID_2:0.5", "--out", tmp_path / "m")[0] == 0
    assert json.loads((tmp_path / "m" / "manifest.json").read_text())["mix"] == {"ID_1": 0.5, "ID_2": 0.5}


def test_enroll_generator_then_generate(run, tmp_path, cli):
    def enroll(*extra):
        return cli("enroll-generator", "--run", run, "--identity", "NEW", tmp_path / "in", *extra)

    code, _, err = enroll("--steps", "3", "--quiet")
    assert code == 0, err
    pipe = DopplerDiffPipeline.from_pretrained(run / "pipeline")
    assert pipe.identities == [*NAMES, "NEW"]
    assert json.loads((run / "pipeline" / "enrolled.json").read_text())["enrolled"][0]["windows"] == 5
    code, _, err = cli("generate", "--run", run, "--identity", "NEW", "--num", "1", "--out", tmp_path / "g",
                       "--quiet")
    assert code == 0, err
    assert Image.open(tmp_path / "g" / "NEW" / "NEW_gen_0.png").size == (16, 16)
    code, _, err = enroll("--steps", "1")
    assert code == 2 and "--replace" in err
    assert enroll("--steps", "1", "--replace", "--quiet")[0] == 0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["edit", "transfer", "--identity", "ID_2", "--strength", "0"], "strength"),
        (["edit", "transfer", "--identity", "ID_2", "--strength", "1.5"], "strength"),
        (["edit", "transfer", "--identity", "ID_9"], "unknown identity"),
        (["edit", "inpaint", "--mask-time", "0.8:0.2"], "--mask-time"),
        (["edit", "inpaint", "--mask-time", "1.2:1.5"], "--mask-time"),
        (["edit", "inpaint", "--mask-doppler", "a:b"], "--mask-doppler"),
        (["edit", "inpaint"], "--mask-time and/or --mask-doppler"),
        (
            ["edit", "inpaint", "--mask-time", "0.2:0.4", "--resample", "1", "--scheduler", "dpmpp"],
            "ddim or ddpm",
        ),
    ],
)
def test_bad_input_is_one_error_line(run, tmp_path, cli, args, message):
    inputs = ["--input", tmp_path / "in", "--out", tmp_path / "o", "--steps", "4"]
    code, _, err = cli(*args, "--run", run, *inputs)
    assert code == 2 and err.startswith("error:") and message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize(("name", "files", "message"), [
    ("../evil", "in", "--identity"), ("", "in", "--identity"), ("NEW", "few", "at least 3"),
])
def test_enroll_generator_bad_input(run, tmp_path, cli, name, files, message):
    (tmp_path / "few").mkdir()
    for i in range(2):
        write_image(tmp_path / "few" / f"x{i}.png", np.zeros((16, 16)), "jet")
    before = (run / "pipeline" / "model_index.json").read_text()
    code, _, err = cli("enroll-generator", "--run", run, "--identity", name, tmp_path / files, "--steps", "1")
    assert code == 2 and message in err
    assert (run / "pipeline" / "model_index.json").read_text() == before


def test_span_mask():
    m = span_mask((4, 8), (0.25, 0.5), None)
    assert m.sum() == 8 and m[:, 2:4].all()
    m = span_mask((4, 8), (0.25, 0.5), (0.5, 1.0))
    assert m.sum() == 4 and m[2:, 2:4].all()
    with pytest.raises(DopplerDiffError):
        span_mask((4, 8), None, None)


def test_read_inputs_reports_size_and_colormap(tmp_path, smoke_config, caplog):
    from dopplerdiff.edit.io import read_inputs

    img = np.tile(np.linspace(0, 1, 24), (24, 1))
    write_image(tmp_path / "jet.png", img, "jet")
    write_image(tmp_path / "viridis.png", img, "viridis")
    with caplog.at_level("WARNING"):
        images, notes = read_inputs([tmp_path / "jet.png", tmp_path / "viridis.png"], smoke_config.data)
    assert images.shape == (2, 1, 16, 16) and images.min() >= -1 and images.max() <= 1
    assert [n["resized"] for n in notes] == [True, True] and notes[0]["native_size"] == [24, 24]
    assert notes[0]["colormap_residual"] < 5 < 40 < notes[1]["colormap_residual"]
    assert "viridis.png: colours fit the 'jet' colormap poorly" in caplog.text
    assert "jet.png: colours" not in caplog.text.replace("viridis.png", "")
