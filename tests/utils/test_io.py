"""Atomic outputs: nothing partial on failure, nothing overwritten silently, normal permissions."""

from __future__ import annotations

import os
import stat

import pytest

from dopplerdiff.errors import DopplerDiffError
from dopplerdiff.utils.io import atomic_dir, atomic_write_bytes


def test_atomic_dir_failure_leaves_nothing(tmp_path):
    target = tmp_path / "out"
    with pytest.raises(RuntimeError), atomic_dir(target) as tmp:
        (tmp / "half.txt").write_text("partial")
        raise RuntimeError("boom")
    assert not target.exists()
    assert list(tmp_path.iterdir()) == []


def test_atomic_dir_refuses_existing_and_keeps_it(tmp_path):
    target = tmp_path / "out"
    target.mkdir()
    (target / "keep.txt").write_text("precious")
    with pytest.raises(DopplerDiffError, match="already exists"), atomic_dir(target):
        pass
    assert (target / "keep.txt").read_text() == "precious"
    with atomic_dir(target, overwrite=True) as tmp:
        (tmp / "new.txt").write_text("new")
    assert sorted(p.name for p in target.iterdir()) == ["new.txt"]


def test_outputs_get_umask_permissions(tmp_path):
    old = os.umask(0o022)
    try:
        with atomic_dir(tmp_path / "d") as tmp:
            (tmp / "f").write_text("x")
        atomic_write_bytes(tmp_path / "file.bin", b"x")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "d").stat().st_mode) == 0o755
    assert stat.S_IMODE((tmp_path / "file.bin").stat().st_mode) == 0o644


def test_pretrained_config_missing_or_damaged_is_one_error_naming_it(tmp_path):
    from dopplerdiff.models.denoiser import load_denoiser
    from dopplerdiff.utils.io import pretrained_config

    with pytest.raises(DopplerDiffError, match=r"is not a saved denoiser \(no config.json\)"):
        load_denoiser(tmp_path)
    (tmp_path / "config.json").write_text('{"_class_name": "UNet2D')
    with pytest.raises(DopplerDiffError, match="config.json' is damaged"):
        load_denoiser(tmp_path)
    (tmp_path / "config.json").write_text('{"_class_name": "VQModel"}')
    assert pretrained_config(tmp_path, "autoencoder") == {"_class_name": "VQModel"}
