"""A run stays loadable and keeps every part when its writers meet: atomic directories (two writers, a
kill between the two renames, a reused PID), recovery on open under the directory's lock, and
config files written atomically."""

from __future__ import annotations

import os
import threading

import numpy as np
import pytest
from conftest import build_tiny_pipeline

from dopplerdiff.config import load_config
from dopplerdiff.embed import index as index_mod
from dopplerdiff.embed.index import EmbeddingIndex, index_lock
from dopplerdiff.errors import DopplerDiffError
from dopplerdiff.utils.io import atomic_dir


def _kill_between_renames(target, pid: int = 99999):
    """The state a replacement killed between its two renames leaves: the old copy under its backup name,
    the new one half-written under its temporary name, nothing at ``target``."""
    backup = target.with_name(f".{target.name}.old-{pid}")
    target.rename(backup)
    (target.parent / f".{target.name}.tmp-dead").mkdir()
    return backup


# ---------------------------------------------------------------- atomic_dir (item 5)
def test_of_two_concurrent_writers_the_later_fails_and_the_earlier_output_stays(tmp_path):
    target = tmp_path / "out"
    # both writers checked `target` before either finished
    with pytest.raises(DopplerDiffError, match="another process"), atomic_dir(target) as first:
        (first / "f.txt").write_text("first")
        with atomic_dir(target) as second:
            (second / "f.txt").write_text("second")
    assert (target / "f.txt").read_text() == "second"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # the failed commit left no temp dir


def test_a_backup_name_of_a_reused_pid_does_not_block_a_replacement(tmp_path):
    target = tmp_path / "part"
    with atomic_dir(target) as tmp:
        (tmp / "v").write_text("1")
    stale = tmp_path / f".part.old-{os.getpid()}"  # left by a killed process that had this PID
    stale.mkdir()
    (stale / "v").write_text("0")
    with atomic_dir(target, overwrite=True) as tmp:
        (tmp / "v").write_text("2")
    assert (target / "v").read_text() == "2"
    assert not stale.exists()  # the replacement is complete: leftovers of interrupted ones are removed


def test_a_run_part_left_missing_by_a_kill_is_restored_on_open(tmp_path, smoke_config, monkeypatch):
    from dopplerdiff.cli.common import existing_dir
    from dopplerdiff.models.autoencoder import load_autoencoder
    from dopplerdiff.pipelines.auto_pipeline import load_run_pipeline

    run = tmp_path / "run"
    pipe = build_tiny_pipeline(smoke_config)
    pipe.save_pretrained(run / "pipeline")
    pipe.autoencoder.save_pretrained(run / "autoencoder")
    (run / "latents").mkdir()
    (run / "latents" / "info.json").write_text("{}")
    for part in ("pipeline", "autoencoder", "latents"):
        _kill_between_renames(run / part)
    assert load_run_pipeline(run, device="cpu").identities == pipe.identities  # generate, edit, augment
    assert load_autoencoder(run / "autoencoder").config.latent_channels == 4  # any save_pretrained loader
    existing_dir(run, "--run")  # every command given --run RUN
    assert (run / "latents" / "info.json").read_text() == "{}"
    assert not list(run.glob(".*.old-*"))


# ---------------------------------------------------------------- index recovery under its lock (item 15)
def test_loading_an_index_never_undoes_an_update_between_its_renames(tmp_path, monkeypatch):
    path = tmp_path / "index"
    EmbeddingIndex(np.eye(3, dtype=np.float32), ["a", "b", "c"]).save(path)
    monkeypatch.setattr(index_mod, "LOCK_WAIT_S", 0.0)  # the reader gives up at once instead of waiting
    errors = []

    def identify():
        try:
            EmbeddingIndex.load(path)
        except DopplerDiffError as exc:
            errors.append(str(exc))

    with index_lock(path):  # an enrolment, between moving the old index away and the new one in
        backup = tmp_path / ".index.old-1"
        path.rename(backup)
        reader = threading.Thread(target=identify)
        reader.start()
        reader.join()
        assert backup.is_dir() and not path.exists()  # the reader did not put the old index back
        EmbeddingIndex(np.eye(4, dtype=np.float32), list("abcd")).save(tmp_path / "new")
        (tmp_path / "new").rename(path)  # so the update's second rename succeeds
    assert errors and "in use by another" in errors[0]
    assert len(EmbeddingIndex.load(path)) == 4


# ---------------------------------------------------------------- config files (item 16)
def test_config_yaml_is_replaced_not_rewritten_in_place(tmp_path):
    path = tmp_path / "config.yaml"
    load_config("smoke").save(path)
    before = path.read_bytes()
    os.link(path, tmp_path / "reader-view")  # what a reader that opened the file before the write sees
    load_config("smoke", ["seed=7"]).save(path)
    assert (tmp_path / "reader-view").read_bytes() == before  # never truncated under a reader
    assert load_config(path).seed == 7
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.yaml", "reader-view"]


def test_damaged_latent_info_is_one_error(tmp_path):
    """A damaged RUN/latents/info.json is one error naming it, not a raw JSONDecodeError."""
    from dopplerdiff.data.latents import read_latent_info
    from dopplerdiff.errors import DopplerDiffError

    (tmp_path / "latents").mkdir()
    (tmp_path / "latents" / "info.json").write_text('{"files": ')
    with pytest.raises(DopplerDiffError, match="info.json' is damaged"):
        read_latent_info(tmp_path)
    (tmp_path / "latents" / "info.json").write_text("[1, 2]")
    with pytest.raises(DopplerDiffError, match="not a JSON object"):
        read_latent_info(tmp_path)
