"""A data root laid out as DATA/<condition>/ID_k/... is refused with one error naming the layout."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import run_cli

from dopplerdiff.config import load_config
from dopplerdiff.data.images import load_spectrograms, scan_tree, write_image
from dopplerdiff.errors import DataError


def _write(root: Path, rels: list[str]) -> None:
    for i, rel in enumerate(rels, 1):
        write_image(root / rel, np.full((16, 16), i / (len(rels) + 1)), "jet")


def _nested(root: Path) -> Path:
    _write(root, [f"{cond}/{ident}/{ident.replace('_', '')}_case1_1_Doppler{i}.png"
                  for cond, ids in (("Normal_line", ("ID_1", "ID_2")), ("Backpack_line", ("ID_1",)))
                  for ident in ids for i in range(1, 7)])
    return root


def test_scan_tree_refuses_condition_folders(tmp_path):
    with pytest.raises(DataError, match=r"nested layout DATA/<condition>/<identity>/ \('Backpack_line/ID_1'"):
        scan_tree(_nested(tmp_path / "data"))


def test_loading_refuses_condition_folders(tmp_path):
    with pytest.raises(DataError, match="condition folders are not supported"):
        load_spectrograms(_nested(tmp_path / "data"), load_config("smoke").data)


@pytest.mark.parametrize("command", ["inspect", "run"])
def test_commands_refuse_condition_folders_in_one_error(tmp_path, monkeypatch, capsys, command):
    data = _nested(tmp_path / "data")
    args = [data, "-c", "smoke", "-q"] if command == "inspect" else [
        "--data", data, "--out", tmp_path / "run", "--profile", "smoke", "-q"]
    code, _, err = run_cli(monkeypatch, capsys, command, *args)
    assert code == 2 and err.count("error:") == 1 and "Normal_line" not in err.split("(")[0], err
    assert "nested layout" in err and "'Backpack_line/ID_1'" in err
    assert not (tmp_path / "run" / "train").exists()


def test_identity_folders_with_subfolders_still_load(tmp_path):
    """Recordings in subfolders of a person (ID_1/walk1/...) and double-wrapped IDs stay valid."""
    root = tmp_path / "data"
    _write(root, [f"ID_{k}/walk{w}/img_{i}.png" for k in (1, 2) for w in (1, 2) for i in range(3)]
           + ["ID_3/ID_3/img_1.png"])
    names, files, _ = scan_tree(root)
    assert names == ["ID_1", "ID_2", "ID_3"] and len(files["ID_1"]) == 6
