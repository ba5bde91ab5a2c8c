"""CLI of the embedding index: embed -> search -> identify -> enroll -> identify -> remove, and errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import run_cli

from dopplerdiff.data.images import write_image

N_WIN = 12


def _pattern(person: int, window: int, rng: np.random.Generator, size: int = 32) -> np.ndarray:
    """A toy walk: a Doppler band whose centre row and modulation period depend on the person."""
    t = np.arange(size)
    rows = np.arange(size)[:, None]
    centre = 6 + 5 * person + 2 * np.sin(2 * np.pi * (t + window) / (4 + 2 * person))
    img = np.exp(-((rows - centre) ** 2) / 4.0)
    return np.clip(img + 0.05 * rng.standard_normal(img.shape), 0, 1)


def _write_person(folder: Path, person: int, prefix: str, n: int, seed: int) -> list[Path]:
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        p = folder / f"{prefix}_case1_1_Doppler{i + 1}.png"
        write_image(p, _pattern(person, i, rng), "jet")
        paths.append(p)
    return paths


@pytest.fixture(scope="module")
def setup(tmp_path_factory) -> dict[str, Path]:
    """Three people in ID_k/ folders and an untrained (deterministic) smoke-sized encoder."""
    import torch

    from dopplerdiff.models.encoder import SpectrogramEncoder

    root = tmp_path_factory.mktemp("embed_cli")
    data = root / "data"
    for p in range(3):
        _write_person(data / f"ID_{p + 1}", p, f"ID{p + 1}", N_WIN, seed=p)
    torch.manual_seed(0)
    enc = SpectrogramEncoder(kind="cnn", in_channels=1, image_size=16, num_classes=3, embed_dim=16,
                             cnn_channels=[8, 16], doppler_bins=8, identities=["ID_1", "ID_2", "ID_3"],
                             data_size=16, channels=1, colormap="jet")
    enc.save_pretrained(root / "run" / "encoder")
    alice = root / "alice"
    return {"root": root, "data": data, "encoder": root / "run" / "encoder",
            "alice_enroll": alice / "enroll", "alice_walk": alice / "walk"}

def test_cli_session(setup, monkeypatch, capsys, tmp_path):
    index = tmp_path / "index"
    code, out, err = run_cli(monkeypatch, capsys, "embed", "--encoder", setup["encoder"], "--data",
                             setup["data"], "--index", index, "-c", "smoke", "--quiet")
    assert code == 0, err
    meta = json.loads((index / "meta.json").read_text())
    assert meta["count"] > 0 and meta["dim"] == 16 and set(meta["identities"]) == {"ID_1", "ID_2", "ID_3"}
    assert {"train", "val", "test"} <= set(meta["columns"]["split"])
    assert (index / "config.yaml").is_file() and (index / "manifest.json").is_file()
    assert meta["calibration"] is not None and meta["calibration"]["far"] <= 0.05

    # Search: a gallery file's nearest neighbour is itself with cosine ~1.
    probe = setup["data"] / "ID_2" / "ID2_case1_1_Doppler1.png"
    code, out, err = run_cli(monkeypatch, capsys, "search", "--index", index, probe, "-k", "3", "--json")
    assert code == 0, err
    res = json.loads(out)
    top = res[0]["neighbours"][0]
    assert top["file"] == "ID_2/ID2_case1_1_Doppler1.png" and top["score"] == pytest.approx(1.0, abs=1e-4)
    assert len(res[0]["neighbours"]) == 3

    # Enroll a new person, then a fresh walk of that person is identified by name (fused, fixed threshold).
    enroll = _write_person(setup["alice_enroll"], 4, "alice", 6, seed=10)
    walk = _write_person(setup["alice_walk"], 4, "alice", 3, seed=11)
    code, out, err = run_cli(monkeypatch, capsys, "enroll", "--index", index, "--identity", "alice",
                             *enroll, "--quiet")
    assert code == 0, err
    code, out, err = run_cli(monkeypatch, capsys, "identify", "--index", index, *walk, "--threshold", "auto",
                             "--json")
    assert code == 0, err
    res = json.loads(out)
    assert [r["identity"] for r in res["results"]] == ["alice"] * 3
    assert res["threshold"] is not None and res["calibration"]["target_far"] == 0.05
    code, out, err = run_cli(monkeypatch, capsys, "identify", "--index", index, setup["alice_walk"], "--fuse",
                             "--method", "knn", "--json")
    res = json.loads(out)
    assert code == 0 and len(res["results"]) == 1 and res["results"][0]["identity"] == "alice"
    assert res["results"][0]["files"] == [str(p) for p in walk]

    # Enrolling the same name twice needs --append.
    code, out, err = run_cli(monkeypatch, capsys, "enroll", "--index", index, "--identity", "alice", *enroll)
    assert code == 2 and "--append" in err

    # A stranger (an all-background window) is rejected at a strict threshold, a known window is not.
    # (The encoder here is untrained, so all cosines are high; the calibrated case is in test_identify.)
    stranger = tmp_path / "stranger.png"
    write_image(stranger, np.zeros((32, 32)), "jet")
    code, out, err = run_cli(monkeypatch, capsys, "identify", "--index", index, stranger, probe, "--json",
                             "--threshold", "0.98")
    assert code == 0, err
    assert [r["identity"] for r in json.loads(out)["results"]] == ["unknown", "ID_2"]

    # Remove: the walk is no longer called alice.
    code, out, err = run_cli(monkeypatch, capsys, "remove", "--index", index, "--identity", "alice", "-q")
    assert code == 0, err
    assert "alice" not in json.loads((index / "meta.json").read_text())["identities"]
    code, out, err = run_cli(monkeypatch, capsys, "identify", "--index", index, *walk, "--json",
                             "--threshold", "none")
    assert all(r["identity"] != "alice" for r in json.loads(out)["results"])
    history = json.loads((index / "manifest.json").read_text())["history"]
    assert [h["op"] for h in history] == ["embed", "enroll", "remove"]

    # Table output (no --json) mentions the decision.
    code, out, err = run_cli(monkeypatch, capsys, "identify", "--index", index, probe)
    assert code == 0 and "ID_2" in out


def test_cli_errors(setup, monkeypatch, capsys, tmp_path):
    code, _, err = run_cli(monkeypatch, capsys, "identify", "--index", tmp_path / "none", setup["data"])
    assert code == 2 and "not a directory" in err
    bogus = tmp_path / "bogus"
    bogus.mkdir()
    (bogus / "meta.json").write_text(json.dumps({"format": "other"}))
    code, _, err = run_cli(monkeypatch, capsys, "search", "--index", bogus, setup["data"])
    assert code == 2 and "not a dopplerdiff embedding index" in err

    index = tmp_path / "ix"
    embed = ("embed", "--encoder", setup["encoder"], "--data", setup["data"], "--index", index, "-c", "smoke")
    code, _, err = run_cli(monkeypatch, capsys, *embed, "--split", "train", "-q")
    assert code == 0, err
    code, _, err = run_cli(monkeypatch, capsys, "identify", "--index", index, setup["data"] / "ID_1")
    assert code == 2 and "no 'val' vectors" in err  # auto threshold needs val rows
    code, _, err = run_cli(monkeypatch, capsys, "identify", "--index", index, tmp_path / "missing.png")
    assert code == 2 and "does not exist" in err
    code, _, err = run_cli(monkeypatch, capsys, *embed, "-q")
    assert code == 2 and "already exists" in err
    code, _, err = run_cli(monkeypatch, capsys, *embed, "--overwrite", "--strangers", "ID_3", "-q")
    assert code == 0, err
    meta = json.loads((index / "meta.json").read_text())
    assert {s for n, s in zip(meta["columns"]["identity"], meta["columns"]["split"], strict=True)
            if n == "ID_3"} == {"stranger"}
    assert meta["columns"]["identity"].count("ID_3") == N_WIN  # all windows, no guard gaps needed
    cal = meta["calibration"]
    assert cal["impostors"] == "strangers" and cal["impostors_seen_by_encoder"] == ["ID_3"]
    code, _, err = run_cli(monkeypatch, capsys, *embed, "--overwrite", "--strangers", "ID_9", "-q")
    assert code == 2 and "ID_9" in err

    # An index is tied to its encoder: another encoder's weights are refused.
    import torch

    from dopplerdiff.models.encoder import load_encoder

    other = tmp_path / "other_encoder"
    enc = load_encoder(setup["encoder"])
    with torch.no_grad():
        next(enc.parameters()).add_(1.0)
    enc.save_pretrained(other)
    code, _, err = run_cli(monkeypatch, capsys, "search", "--index", index, "--encoder", other,
                           setup["data"] / "ID_1")
    assert code == 2 and "not the one this index was built with" in err
