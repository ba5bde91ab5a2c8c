"""`dopplerdiff inspect`: summary table, contact sheet placement, clear errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import run_cli
from PIL import Image

from dopplerdiff.data.images import write_image


def _run(args: list[str], monkeypatch, capsys) -> tuple[int, str, str]:
    return run_cli(monkeypatch, capsys, "inspect", *args)


def _tree(root: Path, ids: dict[str, int]) -> None:
    for ident, n in ids.items():
        for i in range(1, n + 1):
            write_image(root / ident / f"{ident.replace('_', '')}_case1_1_Doppler{i}.png",
                        np.full((24, 24), i / n), "jet")


def test_inspect_prints_summary_and_writes_sheet(tmp_path, monkeypatch, capsys):
    data = tmp_path / "mydata"
    _tree(data, {"ID_1": 12, "ID_2": 10, "ID_10": 11})
    sheet = tmp_path / "out" / "sheet.png"
    code, out, err = _run([str(data), "-c", "smoke", "--sheet", str(sheet), "--per-identity", "3", "-q",
                           "data.split.gap_windows=1"], monkeypatch, capsys)
    assert code == 0, err
    for text in ("33 windows, 3 identities", "ID_1 ", "ID_10", "24x24 x33", ".png x33",
                 "window index source: filename", "gap 1", "16x16"):
        assert text in out, text
    assert out.index("ID_2 ") < out.index("ID_10")  # natural order
    total = next(line for line in out.splitlines() if "total" in line).split("│")
    cells = [c.strip() for c in total if c.strip()]
    assert cells[1] == "33" and int(cells[-4]) + int(cells[-3]) + int(cells[-2]) + int(cells[-1]) == 33
    assert int(cells[-1]) == 3 * 2  # one dropped window per gap, two gaps per recording
    with Image.open(sheet) as im:
        assert im.mode == "RGB" and im.height >= 3 * 64 and im.width >= 3 * 64
    assert not list(data.rglob("*inspect*"))


def test_inspect_writes_nothing_without_sheet_and_runs_twice(tmp_path, monkeypatch, capsys):
    data = tmp_path / "solo"
    _tree(data, {"ID_1": 6})
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    (work / "inspect_solo.png").write_bytes(b"an earlier default output")
    for _ in range(2):  # a look at the data never fails on the second look
        code, out, err = _run([str(data), "-c", "smoke", "-q"], monkeypatch, capsys)
        assert code == 0, err
        assert "conditioning needs >= 2" in out and "contact sheet" not in out
    assert sorted(p.name for p in work.iterdir()) == ["inspect_solo.png"]
    assert (work / "inspect_solo.png").read_bytes() == b"an earlier default output"
    assert len(list(data.rglob("*"))) == 1 + 6  # the folder and its files only


def test_inspect_sheet_never_inside_data_nor_over_an_existing_file(tmp_path, monkeypatch, capsys):
    data = tmp_path / "solo"
    _tree(data, {"ID_1": 6})
    args = [str(data), "-c", "smoke", "-q", "--sheet", str(data / "s.png")]
    code, out, err = _run(args, monkeypatch, capsys)
    assert code == 2 and "inside DATA" in err and not (data / "s.png").exists()
    sheet = tmp_path / "s.png"
    sheet.write_bytes(b"mine")
    code, out, err = _run([str(data), "-c", "smoke", "-q", "--sheet", str(sheet)], monkeypatch, capsys)
    assert code == 2 and "--force" in err and sheet.read_bytes() == b"mine"
    code, out, err = _run([str(data), "-c", "smoke", "-q", "--sheet", str(sheet), "--force"], monkeypatch,
                          capsys)
    assert code == 0 and sheet.read_bytes()[:4] == b"\x89PNG"


def test_inspect_reports_user_errors_in_one_line(tmp_path, monkeypatch, capsys):
    code, _, err = _run([str(tmp_path / "missing"), "-c", "smoke", "-q"], monkeypatch, capsys)
    assert code == 2 and err.startswith("error: data root") and "does not exist" in err
    assert len(err.strip().splitlines()) == 1
    data = tmp_path / "d"
    _tree(data, {"A": 3, "B": 3})
    code, _, err = _run([str(data), "-c", "smoke", "-q", "data.colormap=nosuchmap",
                         "--sheet", str(tmp_path / "x.png")], monkeypatch, capsys)
    assert code == 2 and "unknown colormap 'nosuchmap'" in err
    code, _, err = _run([str(data), "-c", "smoke", "-q", "data.nope=1"], monkeypatch, capsys)
    assert code == 2 and "data.nope" in err


def test_inspect_simulated_dataset(sim_data, tmp_path, monkeypatch, capsys):
    code, out, err = _run([str(sim_data), "-c", "smoke", "-q", "--sheet", str(tmp_path / "s.png")],
                          monkeypatch, capsys)
    assert code == 0, err
    assert "3 identities" in out and (tmp_path / "s.png").is_file()


@pytest.mark.parametrize("fmt", ["npy", "mat"])
def test_inspect_array_folders(tmp_path, monkeypatch, capsys, fmt):
    data = tmp_path / "arr"
    for k in (1, 2):
        for i in range(1, 6):
            write_image(data / f"P{k}" / f"frame_{i}.{fmt}", np.random.default_rng(i).random((20, 30)), "jet")
    code, out, err = _run([str(data), "-c", "smoke", "-q", "--sheet", str(tmp_path / "s.png")],
                          monkeypatch, capsys)
    assert code == 0, err
    assert f".{fmt} x10" in out and "20x30 x10" in out and "10 windows, 2 identities" in out


def test_inspect_does_not_overwrite_a_sheet_without_force(tmp_path, monkeypatch, capsys):
    data = tmp_path / "mydata"
    _tree(data, {"ID_1": 6, "ID_2": 6})
    sheet = tmp_path / "sheet.png"
    sheet.write_bytes(b"my own picture")
    code, _, err = _run([str(data), "-c", "smoke", "--sheet", str(sheet), "-q"], monkeypatch, capsys)
    assert code == 2 and "--force" in err and err.startswith("error:")
    assert sheet.read_bytes() == b"my own picture"
    args = [str(data), "-c", "smoke", "--sheet", str(sheet), "-q", "--force"]
    code, _, err = _run(args, monkeypatch, capsys)
    assert code == 0, err
    with Image.open(sheet) as im:
        assert im.mode == "RGB"
