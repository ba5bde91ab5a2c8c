"""Every bad input to the CLI is one `error:` line and exit code 2 (no traceback), whatever its kind."""

from __future__ import annotations

import errno

import pytest
from conftest import run_cli


def _one_error_line(code: int, err: str) -> str:
    assert code == 2, err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert "Traceback" not in err
    return lines[0]


@pytest.mark.parametrize(("args", "expected"), [
    (["generate", "--identity", "ID_1"], "--run"),  # a required option missing
    (["generate", "--run", ".", "--out", "o", "--identity", "ID_1", "--num", "abc"], "--num"),  # not an int
    (["no-such-command"], "no-such-command"),
    (["generate", "--no-such-option"], "--no-such-option"),
    (["generate", "--run", ".", "--out", "o", "--all", "--batch-size", "0"], "--batch-size"),
    (["generate", "--run", ".", "--out", "o", "--all", "--guidance", "nan"], "--guidance"),
    (["generate", "--run", ".", "--out", "o", "--all", "--guidance", "inf"], "--guidance"),
    (["evaluate", "--run", ".", "--guidance", "nan"], "--guidance"),
    (["search", "--index", "ix", "-k", "0", "f.png"], "-k"),
    (["identify", "--index", "ix", "-k", "0", "f.png"], "-k"),
])
def test_usage_errors_are_one_line_with_exit_2(monkeypatch, capsys, args, expected):
    code, _, err = run_cli(monkeypatch, capsys, *args)
    assert expected in _one_error_line(code, err)


def test_non_finite_threshold_is_refused(tmp_path, monkeypatch, capsys):
    from dopplerdiff.config import load_config
    from dopplerdiff.embed.index import EmbeddingIndex
    from dopplerdiff.embed.ops import resolve_threshold
    from dopplerdiff.errors import DopplerDiffError

    index = EmbeddingIndex(__import__("numpy").eye(3, dtype="float32"), ["a", "b", "c"])
    for bad in ("nan", "inf", "-inf", "abc"):
        with pytest.raises(DopplerDiffError, match="--threshold"):
            resolve_threshold(index, load_config("smoke"), bad, 1)


@pytest.mark.parametrize("override", ["autoencoder.train.steps=-5", "diffusion.train.grad_accum=0",
                                      "encoder.train.batch_size=0", "diffusion.train.lr=.nan",
                                      "data.size=100000"])
def test_out_of_range_config_is_one_line(tmp_path, monkeypatch, capsys, override):
    args = ["run", "--profile", "smoke", "--out", tmp_path / "r", override]
    code, _, err = run_cli(monkeypatch, capsys, *args)
    line = _one_error_line(code, err)
    assert override.split("=")[0].split(".")[-1] in line
    assert not (tmp_path / "r").exists()  # refused before anything was written


@pytest.mark.parametrize(("err_no", "reason"), [(errno.ENOSPC, "No space left"), (errno.EROFS, "Read-only")])
def test_disk_full_or_read_only_is_one_line_naming_the_path(tmp_path, monkeypatch, capsys, err_no, reason):
    import os

    import dopplerdiff.data.simulate as simulate

    target = tmp_path / "sim" / "ID_1" / "ID1_case1_1_Doppler0.png"

    def fails(*args, **kwargs):
        raise OSError(err_no, os.strerror(err_no), str(target))

    monkeypatch.setattr(simulate, "simulate_dataset", fails)
    code, _, err = run_cli(monkeypatch, capsys, "simulate", "--out", tmp_path / "sim", "-c", "smoke")
    line = _one_error_line(code, err)
    assert str(target) in line and reason in line


def test_other_os_errors_are_not_hidden(tmp_path, monkeypatch, capsys):
    import dopplerdiff.data.simulate as simulate

    def bug(*args, **kwargs):
        raise OSError(errno.EBADF, "Bad file descriptor")  # a programming error, not the user's input

    monkeypatch.setattr(simulate, "simulate_dataset", bug)
    with pytest.raises(OSError):
        run_cli(monkeypatch, capsys, "simulate", "--out", tmp_path / "sim", "-c", "smoke")


def test_no_arguments_prints_help_and_exits_0(monkeypatch, capsys):
    code, out, _ = run_cli(monkeypatch, capsys)
    assert code == 0 and "Usage" in out and "train-autoencoder" in out
