"""Paths named by run files (RUN/data.json split entries, output manifests) never leave their folder."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from synthetic_helpers import make_run

from dopplerdiff.errors import DataError
from dopplerdiff.utils.paths import check_relpath, path_inside

BAD = ["ID_1/../../../../x", "/etc/passwd", "ID_1/./a.png", "ID_1//a.png", "..", "", "ID_1\\..\\x",
       "ID_1/a\n.png", "ID_1/"]


@pytest.mark.parametrize("rel", BAD)
def test_check_relpath_refuses(rel):
    with pytest.raises(DataError, match="not a plain relative path"):
        check_relpath(rel, "'f.json'")


def test_check_relpath_accepts_nested_files():
    assert check_relpath("ID_1/rec 1/a.png", "x") == "ID_1/rec 1/a.png"


def test_path_inside_refuses_a_link_out_of_the_root(tmp_path):
    (tmp_path / "root" / "ID_1").mkdir(parents=True)
    (tmp_path / "secret.txt").write_text("s")
    (tmp_path / "root" / "ID_1" / "a.png").symlink_to(tmp_path / "secret.txt")
    with pytest.raises(DataError, match="leads outside"):
        path_inside(tmp_path / "root", "ID_1/a.png", "'data.json'")
    assert path_inside(tmp_path / "root", "ID_1/b.png", "x") == tmp_path / "root" / "ID_1" / "b.png"



def _plant(run: Path, entry: str) -> None:
    data = json.loads((run / "data.json").read_text())
    data["split"]["train"].append(entry)
    (run / "data.json").write_text(json.dumps(data))


@pytest.mark.parametrize("how", ["dotdot", "absolute"])
def test_augment_refuses_a_traversing_split_entry_and_writes_nothing(tmp_path, sim_data, smoke_config,
                                                                     cli, how):
    work = tmp_path / "deep" / "er" / "still"
    run, _ = make_run(work, sim_data, smoke_config)
    victim = tmp_path / "victim.png"
    victim.write_bytes((sim_data / "ID_1").iterdir().__next__().read_bytes())
    # ID_1/../../../../victim.png from the data root, or an absolute path: both name a file outside it
    rel = "ID_1/" + "../" * (len(sim_data.relative_to(sim_data.anchor).parts) + 1) + str(victim)[1:]
    _plant(run, rel if how == "dotdot" else str(victim))
    out = work / "aug"
    before = sorted(p for p in tmp_path.rglob("*"))
    code, _, err = cli("augment", "--run", run, "--out", out, "--per-identity", "1", "--steps", "2",
                       "--from-real", "split", "-q")
    assert code == 2 and err.count("error:") == 1 and "data.json" in err and "relative path" in err, err
    assert sorted(p for p in tmp_path.rglob("*")) == before  # nothing written, inside --out or outside


def test_read_synthetic_refuses_a_traversing_manifest_entry(tmp_path, smoke_config):
    from dopplerdiff.evaluate.synthetic_gain import read_synthetic

    folder = tmp_path / "gen"
    folder.mkdir()
    (folder / "manifest.json").write_text(json.dumps(
        {"kind": "generate", "files": {"ID_1": ["../../outside.png"]}}))
    with pytest.raises(DataError, match="manifest.json"):
        read_synthetic(folder, ["ID_1"], smoke_config.data)
