"""Embedding index storage and exact search backends (plain vectors; no encoder needed)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from dopplerdiff.embed.index import VECTORS_FILE, EmbeddingIndex, IndexFormatError, meta_digest, normalize
from dopplerdiff.embed.search import NumpySearch, TorchSearch, faiss_available, make_backend
from dopplerdiff.errors import DopplerDiffError


def _rand(n: int, d: int, seed: int = 0) -> np.ndarray:
    return normalize(np.random.default_rng(seed).standard_normal((n, d)))


def _index(n: int = 40, d: int = 8) -> EmbeddingIndex:
    ids = [f"ID_{i % 4 + 1}" for i in range(n)]
    split = ["train", "train", "val", "test"] * (n // 4)
    return EmbeddingIndex(
        _rand(n, d), ids, [f"{p}/f{i}.png" for i, p in enumerate(ids)], [f"{p}/case1_1" for p in ids],
        list(range(n)), split, {"fingerprint": "abc", "dim": d},
    )


def _brute(gallery: np.ndarray, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    sims = queries.astype(np.float64) @ gallery.T.astype(np.float64)
    idx = np.argsort(-sims, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(sims, idx, axis=1), idx


@pytest.mark.parametrize("cls", [NumpySearch, TorchSearch])
@pytest.mark.parametrize("k", [1, 5, 300])
def test_exact_search_matches_brute_force(cls, k):
    gallery, queries = _rand(257, 16, 1), _rand(33, 16, 2)
    scores, idx = cls(gallery).search(queries, k)
    ref_s, ref_i = _brute(gallery, queries, min(k, 257))
    assert idx.shape == (33, min(k, 257))
    np.testing.assert_array_equal(idx, ref_i)
    np.testing.assert_allclose(scores, ref_s, atol=1e-5)
    assert np.all(np.diff(scores, axis=1) <= 1e-7)  # descending


def test_search_chunking_gives_same_result(monkeypatch):
    import dopplerdiff.embed.search as search

    gallery, queries = _rand(300, 8, 3), _rand(50, 8, 4)
    full = NumpySearch(gallery).search(queries, 7)
    monkeypatch.setattr(search, "_BLOCK_FLOATS", 300 * 3)  # 3 queries per chunk
    for cls in (NumpySearch, TorchSearch):
        chunked = cls(gallery).search(queries, 7)
        np.testing.assert_array_equal(chunked[1], full[1])


@pytest.mark.skipif(not faiss_available(), reason="faiss-cpu not installed")
def test_faiss_equals_numpy():
    gallery, queries = _rand(500, 32, 5), _rand(40, 32, 6)
    s_np, i_np = make_backend(gallery, "numpy").search(queries, 10)
    s_fa, i_fa = make_backend(gallery, "faiss").search(queries, 10)
    np.testing.assert_array_equal(i_fa, i_np)
    np.testing.assert_allclose(s_fa, s_np, atol=1e-5)


def test_search_errors():
    b = NumpySearch(_rand(5, 4))
    with pytest.raises(DopplerDiffError, match="dimension 3"):
        b.search(_rand(2, 3), 2)
    with pytest.raises(DopplerDiffError, match="unknown search backend"):
        make_backend(_rand(5, 4), "annoy")
    with pytest.raises(DopplerDiffError, match="no gallery"):
        NumpySearch(np.zeros((0, 4), np.float32)).search(_rand(1, 4), 1)


def test_round_trip(tmp_path):
    idx = _index()
    idx.calibration = {"threshold": 0.5}
    idx.save(tmp_path / "ix")
    back = EmbeddingIndex.load(tmp_path / "ix")
    np.testing.assert_array_equal(back.vectors, idx.vectors)
    for col in ("identity", "file", "recording", "window", "split"):
        assert getattr(back, col) == getattr(idx, col)
    assert back.encoder == idx.encoder and back.calibration == {"threshold": 0.5}
    assert back.identities == ["ID_1", "ID_2", "ID_3", "ID_4"]
    # Existing index is never silently overwritten.
    with pytest.raises(DopplerDiffError, match="already exists"):
        idx.save(tmp_path / "ix")


def test_vectors_are_normalised_and_gallery_excludes_held_out():
    idx = EmbeddingIndex(np.array([[3.0, 4.0], [0.0, 2.0]]), ["a", "b"], split=["train", "val"])
    np.testing.assert_allclose(np.linalg.norm(idx.vectors, axis=1), 1.0, atol=1e-6)
    assert idx.gallery_mask().tolist() == [True, False]


def test_add_and_remove():
    idx = _index()
    new = idx.add(_rand(3, 8, 9), "alice", file=["a1", "a2", "a3"])
    assert len(new) == len(idx) + 3 and new.identity[-3:] == ["alice"] * 3
    assert new.split[-3:] == ["enrolled"] * 3 and "alice" in new.identities
    gone = new.remove("ID_2")
    assert "ID_2" not in gone.identities and len(gone) == len(new) - 10
    with pytest.raises(DopplerDiffError, match="not in the index"):
        gone.remove("ID_2")
    with pytest.raises(DopplerDiffError, match="4-d vectors"):
        idx.add(_rand(2, 4), "bob")


def test_missing_and_foreign_and_corrupt(tmp_path):
    with pytest.raises(IndexFormatError, match="not a directory"):
        EmbeddingIndex.load(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(IndexFormatError, match="meta.json is missing"):
        EmbeddingIndex.load(tmp_path / "empty")

    path = _index().save(tmp_path / "ix")
    meta = json.loads((path / "meta.json").read_text())

    (path / "meta.json").write_text("{not json")
    with pytest.raises(IndexFormatError, match="not valid JSON"):
        EmbeddingIndex.load(path)

    (path / "meta.json").write_text(json.dumps({**meta, "format": "something-else"}))
    with pytest.raises(IndexFormatError, match="not a dopplerdiff embedding index"):
        EmbeddingIndex.load(path)

    (path / "meta.json").write_text(json.dumps({**meta, "version": 99}))
    with pytest.raises(IndexFormatError, match="version 99"):
        EmbeddingIndex.load(path)

    (path / "meta.json").write_text(json.dumps(meta))
    data = bytearray((path / VECTORS_FILE).read_bytes())
    data[-5] ^= 0xFF
    (path / VECTORS_FILE).write_bytes(bytes(data))
    with pytest.raises(IndexFormatError, match="checksum"):
        EmbeddingIndex.load(path)

    (path / VECTORS_FILE).write_bytes(b"garbage")
    import hashlib

    meta["vectors_sha256"] = hashlib.sha256(b"garbage").hexdigest()
    meta["meta_sha256"] = meta_digest(meta)
    (path / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(IndexFormatError, match="corrupt"):
        EmbeddingIndex.load(path)


def test_a_flipped_byte_in_meta_json_is_detected(tmp_path):
    path = _index().save(tmp_path / "ix")
    raw = (path / "meta.json").read_bytes()
    pos = raw.index(b'"ID_2"') + 4  # relabel one row: ID_2 -> ID_3, still valid JSON
    (path / "meta.json").write_bytes(raw[:pos] + b"3" + raw[pos + 1:])
    with pytest.raises(IndexFormatError, match="meta.json does not match its checksum"):
        EmbeddingIndex.load(path)


def test_meta_checksum_covers_the_calibration(tmp_path):
    idx = _index()
    idx.calibration = {"threshold": 0.5}
    path = idx.save(tmp_path / "ix")
    meta = json.loads((path / "meta.json").read_text())
    meta["calibration"]["threshold"] = -1.0  # would accept everyone with score 1.0
    (path / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(IndexFormatError, match="checksum"):
        EmbeddingIndex.load(path)


def test_update_killed_between_renames_is_recovered_on_open(tmp_path, monkeypatch):
    from pathlib import Path

    path = _index().save(tmp_path / "ix")
    real_rename = Path.rename

    def dies_after_moving_the_old_index_away(self, target):
        if self.name.startswith(".ix.tmp-"):
            raise KeyboardInterrupt  # the process is killed before the new index is renamed in
        return real_rename(self, target)

    monkeypatch.setattr(Path, "rename", dies_after_moving_the_old_index_away)
    with pytest.raises(KeyboardInterrupt):
        _index().add(_rand(2, 8), "alice").save(path, overwrite=True)
    monkeypatch.undo()
    assert not path.exists()
    back = EmbeddingIndex.load(path)
    assert len(back) == 40 and "alice" not in back.identities


@pytest.mark.parametrize("name", ["../../x", "a/b", "..", ".hidden", "a\\b", "tab\there", ""])
def test_unsafe_identity_names_in_an_index_are_refused(tmp_path, name):
    idx = _index(8)
    path = idx.save(tmp_path / "ix")
    meta = json.loads((path / "meta.json").read_text())
    meta["columns"]["identity"][0] = name
    meta["meta_sha256"] = meta_digest(meta)
    (path / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(IndexFormatError, match="identity name"):
        EmbeddingIndex.load(path)


def test_concurrent_enrolls_keep_both_people(tmp_path, monkeypatch, smoke_config):
    import threading
    import time

    from dopplerdiff.embed import ops

    path = _index().save(tmp_path / "ix")

    def slow_embed(index, files, *args, **kwargs):
        time.sleep(0.3)  # both writers have read the index before either writes, without a lock
        return _rand(3, 8, seed=len(files)), [f"{f}" for f in files]

    monkeypatch.setattr(ops, "embed_files", slow_embed)
    errors = []

    def enroll(name, files):
        try:
            ops.enroll_files(path, name, files, smoke_config)
        except Exception as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=enroll, args=(n, [f"{n}{i}.png" for i in range(3)]))
               for n in ("alice", "bob")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert {"alice", "bob"} <= set(EmbeddingIndex.load(path).identities)
