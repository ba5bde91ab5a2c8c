"""`dopplerdiff generate` strategies and `dopplerdiff augment` on a tiny run: outputs, manifests, errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from synthetic_helpers import make_run

from dopplerdiff.data.images import load_spectrograms, scan_tree


@pytest.fixture(scope="module")
def setup(tmp_path_factory, sim_data, smoke_config):
    run, split = make_run(tmp_path_factory.mktemp("cli"), sim_data, smoke_config)
    return run, split, sim_data



def _manifest(path: Path) -> dict:
    return json.loads((path / "manifest.json").read_text())


def test_generate_from_split_records_train_sources(setup, tmp_path, cli):
    run, split, _ = setup
    code, _, err = cli("generate", "--run", run, "--all", "--num", "3", "--steps", "4", "--from-real",
                       "split", "--strength", "0.5", "--guidance-interval", "0.2", "0.8",
                       "--out", tmp_path / "g", "-q")
    assert code == 0, err
    man = _manifest(tmp_path / "g")
    assert man["strategy"] == {"guidance_interval": [0.2, 0.8], "from_real": "split:train", "strength": 0.5,
                               "filter": None}
    for name, srcs in man["sources"].items():
        assert srcs == [f for f in split["train"] if f.startswith(name + "/")][:3]
    assert not (set(split["val"]) | set(split["test"])) & {s for v in man["sources"].values() for s in v}


def test_guidance_interval_changes_samples(setup, tmp_path, cli):
    run = setup[0]
    base = ["generate", "--run", run, "-i", "ID_2", "--num", "1", "--steps", "4", "--guidance", "4",
            "--format", "npy", "-q"]
    assert cli(*base, "--out", tmp_path / "a")[0] == 0
    assert cli(*base, "--guidance-interval", "0.9", "1.0", "--out", tmp_path / "b")[0] == 0
    assert cli(*base, "--guidance-interval", "0.0", "1.0", "--out", tmp_path / "c")[0] == 0
    import numpy as np

    a, b, c = (np.load(tmp_path / d / "ID_2" / "ID2_gen_0.npy") for d in "abc")
    assert np.allclose(a, c, atol=1e-6) and not np.allclose(a, b, atol=1e-4)


def test_generate_filter_with_run_encoder(setup, tmp_path, cli, smoke_config):
    import shutil

    from dopplerdiff.models.encoder import encoder_from_config

    run = setup[0]
    names = json.loads((run / "data.json").read_text())["identities"]
    enc = encoder_from_config(smoke_config.encoder, num_classes=3, image_size=16, in_channels=1,
                              identities=names)
    enc.save_pretrained(tmp_path / "enc")
    shutil.copytree(tmp_path / "enc", run / "encoder")
    try:
        code, _, err = cli("generate", "--run", run, "--all", "--num", "2", "--steps", "2", "--filter",
                           "--min-confidence", "0.001", "--physics-stats", "", "--out", tmp_path / "f", "-q")
        assert code == 0, err
        man = _manifest(tmp_path / "f")
        assert set(man["acceptance"]) == set(names)
        assert all(a["rate"] == 1.0 for a in man["acceptance"].values())
        assert man["strategy"]["filter"]["min_confidence"] == 0.001
        code, _, err = cli("generate", "--run", run, "-i", "ID_3", "--num", "2", "--steps", "2", "--filter",
                           "--min-confidence", "0.999", "--physics-stats", "", "--max-attempts", "2",
                           "--out", tmp_path / "h", "-q")
        assert code == 2 and "identity 'ID_3'" in err and not (tmp_path / "h").exists()
    finally:
        shutil.rmtree(run / "encoder")


def test_augment_writes_training_ready_folder(setup, tmp_path, cli, smoke_config):
    run, split, data = setup
    out = tmp_path / "aug"
    code, stdout, err = cli("augment", "--run", run, "--out", out, "--per-identity", "2", "--steps", "2",
                            "--from-real", "split", "--strength", "0.5", "--real-per-identity", "3")
    assert code == 0, err
    assert "9 real + 6 synthetic" in stdout
    man = _manifest(out)
    real = [f for f in man["files"] if not f["synthetic"]]
    syn = [f for f in man["files"] if f["synthetic"]]
    for f in real:
        assert f["file"] in split["train"]
        assert (out / f["file"]).read_bytes() == (data / f["file"]).read_bytes()
    allowed = {f["file"] for f in real}
    for f in syn:
        assert Path(f["file"]).name.startswith("synthetic_") and f["source"] in allowed and f["seed"]
        assert (out / f["file"]).is_file()
    names, files, _ = scan_tree(out)
    assert sum(map(len, files.values())) == 15 and len(names) == 3
    ds = load_spectrograms(out, smoke_config.data)  # the folder loads like input data
    assert len(ds) == 15
    assert man["strategy"]["from_real"] == "split:train" and man["real_per_identity"] == {n: 3 for n in names}


def test_augment_ratio_and_overwrite_rules(setup, tmp_path, cli):
    run = setup[0]
    out = tmp_path / "aug"
    args = ["augment", "--run", run, "--out", out, "--ratio", "0.25", "--steps", "2", "-q"]
    assert cli(*args)[0] == 0
    assert set(_manifest(out)["synthetic_per_identity"].values()) == {2}
    code, _, err = cli(*args)
    assert code == 2 and "--overwrite" in err
    assert cli(*args, "--overwrite")[0] == 0
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "keep.txt").write_text("x")
    code, _, err = cli("augment", "--run", run, "--out", foreign, "--per-identity", "1", "--overwrite", "-q")
    assert code == 2 and "not written by" in err and sorted(p.name for p in foreign.iterdir()) == ["keep.txt"]


def _bad_folders(tmp: Path) -> dict[str, Path]:
    (tmp / "empty").mkdir()
    (tmp / "unknown" / "ID_9").mkdir(parents=True)
    (tmp / "unknown" / "ID_9" / "w.png").write_bytes(b"")
    return {"empty": tmp / "empty", "unknown": tmp / "unknown"}


BAD = [
    (["--from-real", "split", "--strength", "0"], "strength must be in (0, 1]"),
    (["--from-real", "split", "--strength", "1.5"], "strength must be in (0, 1]"),
    (["--strength", "0.5"], "--strength needs --from-real"),
    (["--guidance-interval", "0.8", "0.2"], "guidance_interval"),
    (["--guidance-interval", "0.2", "1.5"], "guidance_interval"),
    (["--from-real", "{empty}"], "no identity subfolders"),
    (["--from-real", "{unknown}"], "ID_9"),
    (["--filter", "--physics-quantiles", "0.9:0.1"], "quantiles"),
    (["--filter", "--physics-tolerance", "-1"], "physics tolerance must be in [0, 10]"),
    (["--filter"], "has no encoder"),
]


@pytest.mark.parametrize("command", ["generate", "augment"])
@pytest.mark.parametrize("extra,match", BAD)
def test_bad_input_one_error_nothing_written(setup, tmp_path, cli, command, extra, match):
    run = setup[0]
    folders = _bad_folders(tmp_path)
    extra = [e.format(**folders) for e in extra]
    count = ["--all", "--num", "1"] if command == "generate" else ["--per-identity", "1"]
    code, _, err = cli(command, "--run", run, "--out", tmp_path / "o", "--steps", "2", *count, *extra, "-q")
    assert code == 2 and err.count("error:") == 1 and match in err, err
    assert not (tmp_path / "o").exists()


def test_augment_budget_larger_than_data(setup, tmp_path, cli):
    code, _, err = cli("augment", "--run", setup[0], "--out", tmp_path / "o", "--per-identity", "1",
                       "--real-per-identity", "9", "-q")
    assert code == 2 and "larger than the data" in err and not (tmp_path / "o").exists()
    code, _, err = cli("augment", "--run", setup[0], "--out", tmp_path / "o", "-q")
    assert code == 2 and "exactly one of" in err


def test_read_synthetic_takes_generate_and_augment_outputs(setup, tmp_path, cli, smoke_config):
    from dopplerdiff.evaluate.synthetic_gain import read_synthetic

    run = setup[0]
    names = json.loads((run / "data.json").read_text())["identities"]
    assert cli("generate", "--run", run, "-i", "ID_2", "--num", "2", "--steps", "2", "--out", tmp_path / "g",
               "-q")[0] == 0
    x, y = read_synthetic(tmp_path / "g", names, smoke_config.data)
    assert x.shape == (2, 1, 16, 16) and list(y) == [1, 1] and x.min() >= -1 and x.max() <= 1
    assert cli("augment", "--run", run, "--per-identity", "1", "--steps", "2", "--out", tmp_path / "a",
               "-q")[0] == 0
    x, y = read_synthetic(tmp_path / "a", names, smoke_config.data)
    assert sorted(y) == [0, 1, 2]  # the 24 real windows of the folder are left out
