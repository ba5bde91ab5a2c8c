"""Data roots laid out as DATA/<condition>/ID_k/... are read as walking conditions; a flat root is one
condition; a half-nested root is one error naming the folder."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from conftest import run_cli

from dopplerdiff.config import load_config
from dopplerdiff.data.images import SpectrogramSet, load_spectrograms, scan_tree, write_image
from dopplerdiff.data.run_data import prepare_run_data, read_run_data
from dopplerdiff.data.split import SPLITS, make_split, split_summary
from dopplerdiff.errors import DataError

SMOKE = load_config("smoke").data


def _write(root: Path, rels: list[str]) -> None:
    for i, rel in enumerate(rels, 1):
        write_image(root / rel, np.full((16, 16), i / (len(rels) + 1)), "jet")


def _nested(root: Path, n: int = 6) -> Path:
    """Normal_line: ID_1, ID_2; Backpack_line: ID_1, ID_10 (one recording of n windows each)."""
    _write(root, [f"{cond}/{ident}/{ident.replace('_', '')}_case1_1_Doppler{i}.png"
                  for cond, ids in (("Normal_line", ("ID_1", "ID_2")), ("Backpack_line", ("ID_1", "ID_10")))
                  for ident in ids for i in range(1, n + 1)])
    return root


def test_condition_folders_are_read_as_conditions(tmp_path):
    ds = load_spectrograms(_nested(tmp_path / "data"), SMOKE)
    assert ds.condition_names == ["Backpack_line", "Normal_line"]  # natural order of the folders
    assert ds.identities == ["ID_1", "ID_2", "ID_10"]  # ID_1 walks in both: one person
    assert len(ds) == 24 and ds.conditions.shape == (24,)
    pairs = {(ds.identities[lab], ds.condition_names[c])
             for lab, c in zip(ds.labels, ds.conditions, strict=True)}
    assert pairs == {("ID_1", "Normal_line"), ("ID_1", "Backpack_line"), ("ID_2", "Normal_line"),
                     ("ID_10", "Backpack_line")}
    for f, c, rec in zip(ds.files, ds.conditions, ds.recordings, strict=True):
        assert f.startswith(ds.condition_names[c] + "/") and rec.startswith(ds.condition_names[c] + "/")
    assert "Normal_line/ID_1/case1_1" in ds.recordings and "Backpack_line/ID_1/case1_1" in ds.recordings
    sub = ds.subset([0, 23])
    assert sub.conditions.tolist() == ds.conditions[[0, 23]].tolist()
    assert sub.condition_names == ds.condition_names
    names, files, _ = scan_tree(tmp_path / "data")
    assert names == ds.identities and len(files["ID_1"]) == 12


def test_flat_root_is_one_default_condition(tmp_path):
    _write(tmp_path / "d", [f"ID_{k}/ID{k}_case1_1_Doppler{i}.png" for k in (1, 2) for i in range(1, 4)])
    ds = load_spectrograms(tmp_path / "d", SMOKE)
    assert ds.condition_names == ["default"] and ds.conditions.tolist() == [0] * 6
    assert ds.recordings[0] == "ID_1/case1_1" and ds.files[0] == "ID_1/ID1_case1_1_Doppler1.png"


def test_split_gives_every_identity_and_condition_later_test_windows(tmp_path):
    ds = load_spectrograms(_nested(tmp_path / "data", n=12), SMOKE)
    split = make_split(ds, load_config("smoke", ["data.split.gap_windows=1"]).data)
    for lab, c in {(int(a), int(b)) for a, b in zip(ds.labels, ds.conditions, strict=True)}:
        group = (ds.labels == lab) & (ds.conditions == c)
        train, test = (np.flatnonzero(group[split[p]]) for p in ("train", "test"))
        assert len(train) and len(test)
        assert ds.windows[split["test"][test]].min() > ds.windows[split["train"][train]].max() + 1
    rows = {r["condition"]: r for r in split_summary(ds, split)["conditions"]}
    assert rows["Normal_line"]["files"] == 24 and rows["Normal_line"]["identities"] == 2
    assert sum(r["test"] for r in rows.values()) == len(split["test"])


def test_short_recordings_keep_a_training_window_per_condition():
    """Whole short recordings are assigned per (identity, condition): each condition stays trainable."""
    ds = SpectrogramSet(
        images=np.zeros((2, 1, 8, 8), np.float32), labels=np.zeros(2, np.int64), identities=["ID_1"],
        files=["a.png", "b.png"], recordings=["normal/a", "backpack/b"], windows=np.ones(2, np.int64),
        conditions=np.asarray([0, 1]), condition_names=["normal", "backpack"],
    )
    cfg = load_config("smoke", ["data.split.train=0.5", "data.split.val=0.25", "data.split.test=0.25"]).data
    for seed in range(4):  # whichever recording the seed takes first
        split = make_split(ds, replace(cfg, split=replace(cfg.split, seed=seed)))
        assert sorted(ds.conditions[split["train"]].tolist()) == [0, 1]


def test_data_json_records_conditions_and_old_files_still_read(tmp_path):
    run, data = tmp_path / "run", _nested(tmp_path / "data", n=12)
    ds, split = prepare_run_data(run, data, SMOKE)
    assert read_run_data(run)["conditions"] == ["Backpack_line", "Normal_line"]
    ds2, split2 = prepare_run_data(run, None, SMOKE)
    assert all(np.array_equal(split[p], split2[p]) for p in SPLITS)
    # A flat root under the same identities does not match the recorded conditions.
    flat = tmp_path / "flat"
    _write(flat, [f"{i}/{i.replace('_', '')}_case1_1_Doppler{w}.png"
                  for i in ds.identities for w in range(1, 13)])
    with pytest.raises(DataError, match="walking conditions in .* do not match .*Backpack_line, Normal_line"):
        prepare_run_data(run, flat, SMOKE)
    # data.json written before conditions: read as one default condition, and reused with a flat root.
    old = tmp_path / "old"
    prepare_run_data(old, flat, SMOKE)
    recorded = json.loads((old / "data.json").read_text())
    del recorded["conditions"]
    (old / "data.json").write_text(json.dumps(recorded))
    assert read_run_data(old)["conditions"] == ["default"]
    prepare_run_data(old, None, SMOKE)
    (old / "data.json").write_text(json.dumps({**recorded, "conditions": "normal"}))
    with pytest.raises(DataError, match="'conditions' is not a list"):
        read_run_data(old)


def test_mixed_layout_is_one_error_naming_the_folder(tmp_path):
    root = _nested(tmp_path / "data")
    _write(root, ["ID_7/ID7_case1_1_Doppler1.png"])
    with pytest.raises(DataError, match=r"mixes identity folders \('ID_7'\) with condition folders"):
        scan_tree(root)


def test_condition_folder_without_identity_folders_is_one_error(tmp_path):
    root = _nested(tmp_path / "data")
    (root / "Free_walk").mkdir()
    with pytest.raises(DataError, match=r"condition folder '.*Free_walk' has no identity folders"):
        load_spectrograms(root, SMOKE)
    (root / "Free_walk").rmdir()
    _write(root, ["Normal_line/stray_1.png"])
    with pytest.raises(DataError, match=r"condition folder '.*Normal_line' holds data files directly"):
        load_spectrograms(root, SMOKE)


def test_inspect_shows_counts_per_condition(tmp_path, monkeypatch, capsys):
    data = _nested(tmp_path / "data", n=12)
    code, out, err = run_cli(monkeypatch, capsys, "inspect", data, "-c", "smoke", "-q")
    assert code == 0, err
    assert "48 windows, 3 identities, 2 conditions" in out
    row = next(line for line in out.splitlines() if "Normal_line" in line)
    cells = [c.strip() for c in row.split("│") if c.strip()]
    assert cells[:3] == ["Normal_line", "24", "2"]


@pytest.mark.parametrize("command", ["inspect", "run"])
def test_commands_refuse_a_mixed_root_in_one_error(tmp_path, monkeypatch, capsys, command):
    data = _nested(tmp_path / "data")
    _write(data, ["ID_7/ID7_case1_1_Doppler1.png"])
    args = [data, "-c", "smoke", "-q"] if command == "inspect" else [
        "--data", data, "--out", tmp_path / "run", "--profile", "smoke", "-q"]
    code, _, err = run_cli(monkeypatch, capsys, command, *args)
    assert code == 2 and err.count("error:") == 1 and "'ID_7'" in err, err
    assert not (tmp_path / "run" / "train").exists() and not (tmp_path / "run" / "data.json").exists()


def test_identity_folders_with_subfolders_still_load(tmp_path):
    """Recordings in subfolders of a person (ID_1/walk1/...) and double-wrapped IDs stay valid."""
    root = tmp_path / "data"
    _write(root, [f"ID_{k}/walk{w}/img_{i}.png" for k in (1, 2) for w in (1, 2) for i in range(3)]
           + ["ID_3/ID_3/img_1.png"])
    names, files, _ = scan_tree(root)
    assert names == ["ID_1", "ID_2", "ID_3"] and len(files["ID_1"]) == 6
