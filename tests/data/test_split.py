"""Leak-free split: no temporal overlap between parts, every identity trainable, deterministic;
RUN/data.json records and reuses it."""

from __future__ import annotations

import json

import numpy as np
import pytest

from dopplerdiff.config import SplitConfig, load_config
from dopplerdiff.data.images import SpectrogramSet, write_image
from dopplerdiff.data.run_data import prepare_run_data, read_run_data
from dopplerdiff.data.split import SPLITS, leak_free_split, limit_train, make_split, split_summary
from dopplerdiff.errors import ConfigError, DataError


def _ds(spec: dict[str, dict[str, list[int]]], shuffle_seed: int | None = None) -> SpectrogramSet:
    """SpectrogramSet from {identity: {recording: [window indices]}} (images are irrelevant here)."""
    rows = [(ident, f"{ident}/{rec}", w) for ident in spec for rec in spec[ident] for w in spec[ident][rec]]
    if shuffle_seed is not None:
        rows = [rows[i] for i in np.random.default_rng(shuffle_seed).permutation(len(rows))]
    identities = list(spec)
    return SpectrogramSet(
        images=np.zeros((len(rows), 1, 8, 8), np.float32),
        labels=np.asarray([identities.index(r[0]) for r in rows], np.int64),
        identities=identities,
        files=[f"{r[1]}_w{r[2]}.png" for r in rows],
        recordings=[r[1] for r in rows],
        windows=np.asarray([r[2] for r in rows], np.int64),
    )


def _assert_leak_free(ds: SpectrogramSet, split: dict[str, np.ndarray], gap: int) -> None:
    part_of = np.full(len(ds), -1)
    for p, name in enumerate(SPLITS):
        assert np.all(np.diff(split[name]) > 0), "indices must be sorted and unique"
        assert np.all(part_of[split[name]] == -1), "a window is in two parts"
        part_of[split[name]] = p
    rec = np.asarray(ds.recordings)
    for i in range(len(ds)):
        if part_of[i] < 0:
            continue
        same = (rec == rec[i]) & (part_of >= 0) & (part_of != part_of[i])
        dist = np.abs(ds.windows[same] - ds.windows[i])
        assert np.all(dist > gap), f"window {ds.files[i]} overlaps a window of another part"
    for lab, ident in enumerate(ds.identities):
        assert np.any(ds.labels[split["train"]] == lab), f"{ident} has no training windows"


def _random_spec(rng: np.random.Generator) -> dict[str, dict[str, list[int]]]:
    spec = {}
    for k in range(int(rng.integers(1, 5))):
        recs = {}
        for r in range(int(rng.integers(1, 4))):
            n = int(rng.integers(1, 40))
            start = int(rng.integers(0, 5))
            wins = np.arange(start, start + 2 * n)
            keep = np.sort(rng.choice(wins, size=n, replace=False))  # holes: missing windows
            recs[f"case1_{r + 1}"] = keep.tolist()
        spec[f"ID_{k + 1}"] = recs
    return spec


@pytest.mark.parametrize("seed", range(25))
def test_random_layouts_never_leak(seed):
    rng = np.random.default_rng(seed)
    ds = _ds(_random_spec(rng))
    fr = [(0.7, 0.15, 0.15), (0.6, 0.2, 0.2), (0.8, 0.2, 0.0), (0.5, 0.0, 0.5), (1.0, 0.0, 0.0)][seed % 5]
    cfg = SplitConfig(train=fr[0], val=fr[1], test=fr[2], gap_windows=int(rng.integers(0, 4)))
    split = leak_free_split(ds, cfg)
    _assert_leak_free(ds, split, cfg.gap_windows)
    for name, frac in zip(SPLITS, fr, strict=True):
        if frac == 0:
            assert len(split[name]) == 0


def test_contiguous_blocks_with_gaps():
    ds = _ds({"ID_1": {"case1_1": list(range(1, 101))}, "ID_2": {"case1_1": list(range(1, 51))}})
    split = leak_free_split(ds, SplitConfig(train=0.7, val=0.15, test=0.15, gap_windows=2))
    _assert_leak_free(ds, split, 2)
    w1 = {p: ds.windows[split[p]][ds.labels[split[p]] == 0] for p in SPLITS}
    # 100 windows, 4 dropped: 96 usable -> 67 | 15 | 14 (largest remainder), in time order.
    assert [len(w1[p]) for p in SPLITS] == [67, 15, 14]
    assert w1["train"].max() < w1["val"].min() and w1["val"].max() < w1["test"].min()
    assert np.all(np.diff(w1["train"]) == 1) and w1["val"].min() - w1["train"].max() == 3
    summary = split_summary(ds, split)
    assert summary["totals"]["gap"] == 8 and summary["identities"][0]["gap"] == 4
    assert sum(summary["totals"][p] for p in (*SPLITS, "gap")) == len(ds)


def test_short_recordings_go_whole_to_one_part():
    spec = {"A": {"long": list(range(30)), "s1": [0, 1, 2], "s2": [0, 1], "s3": [5]},
            "B": {"only": [0, 1, 2]}}
    ds = _ds(spec)
    split = leak_free_split(ds, SplitConfig(gap_windows=2))
    _assert_leak_free(ds, split, 2)
    rec = np.asarray(ds.recordings)
    for short in ("A/s1", "A/s2", "A/s3", "B/only"):
        parts = {p for p in SPLITS if np.any(rec[split[p]] == short)}
        assert len(parts) == 1, f"{short} split across {parts}"
    assert set(rec[split["train"]]) >= {"B/only"}  # a lone short recording trains


def test_deterministic_and_independent_of_file_order():
    spec = _random_spec(np.random.default_rng(7))
    cfg = SplitConfig(gap_windows=2, seed=3)
    a, b = _ds(spec), _ds(spec, shuffle_seed=1)
    sa, sb = leak_free_split(a, cfg), leak_free_split(a, cfg)
    assert all(np.array_equal(sa[p], sb[p]) for p in SPLITS)
    sc = leak_free_split(b, cfg)
    for p in SPLITS:
        assert sorted(a.files[i] for i in sa[p]) == sorted(b.files[i] for i in sc[p])


def _tree(root, identities, n=12):
    for ident in identities:
        for i in range(1, n + 1):
            write_image(root / ident / f"{ident}_case1_1_Doppler{i}.png", np.full((8, 8), i / n), "jet")


def test_prepare_run_data_records_and_reuses_split(tmp_path):
    data, run = tmp_path / "data", tmp_path / "run"
    _tree(data, ["ID_1", "ID_2"])
    cfg = load_config("smoke").data
    ds, split = prepare_run_data(run, data, cfg)
    rec = read_run_data(run)
    assert rec["identities"] == ["ID_1", "ID_2"] and rec["data_root"] == str(data.resolve())
    assert rec["split"]["test"] == [ds.files[i] for i in split["test"]]
    assert rec["data_config"]["size"] == 16 and rec["meta"]["native_size"] == 8
    # Reused from data.json even when the split config changes later; data root comes from the record.
    other = load_config("smoke", ["data.split.gap_windows=0", "data.split.train=0.8", "data.split.val=0.1",
                                  "data.split.test=0.1"]).data
    ds2, split2 = prepare_run_data(run, None, other)
    assert all(np.array_equal(split[p], split2[p]) for p in SPLITS) and ds2.files == ds.files


def test_run_data_errors(tmp_path):
    cfg = load_config("smoke").data
    with pytest.raises(DataError, match="data.json' does not exist"):
        read_run_data(tmp_path / "empty")
    with pytest.raises(DataError, match="pass the data folder"):
        prepare_run_data(tmp_path / "empty", None, cfg)
    _tree(tmp_path / "a", ["ID_1", "ID_2"])
    _tree(tmp_path / "b", ["ID_1", "ID_3"])
    prepare_run_data(tmp_path / "run", tmp_path / "a", cfg)
    with pytest.raises(DataError, match="identities in .* do not match .*ID_1, ID_2"):
        prepare_run_data(tmp_path / "run", tmp_path / "b", cfg)
    # Same identities but a recorded file vanished.
    (tmp_path / "a" / "ID_2" / "ID_2_case1_1_Doppler12.png").unlink()
    with pytest.raises(DataError, match="1 file\\(s\\) of the split recorded"):
        prepare_run_data(tmp_path / "run", None, cfg)
    (tmp_path / "run" / "data.json").write_text(json.dumps({"identities": []}))
    with pytest.raises(DataError, match="lacks the key"):
        read_run_data(tmp_path / "run")


def test_train_budget_keeps_the_first_contiguous_windows_per_identity():
    # ID_1 has two recordings: the budget takes recording r1 in time order, then r2.
    spec = {"ID_1": {"r1": list(range(40)), "r2": list(range(40))}, "ID_2": {"r1": list(range(60))}}
    ds = _ds(spec, shuffle_seed=2)
    cfg = load_config("smoke", ["data.train_per_identity=5"]).data
    full = leak_free_split(ds, cfg.split)
    cut = make_split(ds, cfg)
    assert np.array_equal(cut["val"], full["val"]) and np.array_equal(cut["test"], full["test"])
    assert set(cut["train"]) <= set(full["train"])
    for lab in range(2):
        kept = cut["train"][ds.labels[cut["train"]] == lab]
        assert len(kept) == 5
        assert {ds.recordings[i] for i in kept} == {f"ID_{lab + 1}/r1"}
        assert sorted(ds.windows[kept].tolist()) == list(range(5))  # the earliest stretch, contiguous
    with pytest.raises(DataError, match="identity 'ID_1' has [0-9]+ training"):
        limit_train(ds, full, 200)
    with pytest.raises(DataError, match="train_per_identity must be >= 1"):
        limit_train(ds, full, 0)


def test_train_budget_config_errors():
    with pytest.raises(ConfigError, match="data.train_per_identity must be >= 1"):
        load_config("smoke", ["data.train_per_identity=0"])
    with pytest.raises(ConfigError, match="data.train_per_identity"):
        load_config("smoke", ["data.train_per_identity=many"])
    assert load_config("smoke", ["data.train_per_identity=null"]).data.train_per_identity is None


def test_prepare_run_data_applies_and_records_the_budget(tmp_path):
    data, run = tmp_path / "data", tmp_path / "run"
    _tree(data, ["ID_1", "ID_2"], n=20)
    cfg = load_config("smoke", ["data.train_per_identity=3"]).data
    ds, split = prepare_run_data(run, data, cfg)
    rec = read_run_data(run)
    assert rec["train_per_identity"] == 3 and rec["data_config"]["train_per_identity"] == 3
    assert len(rec["split"]["train"]) == 6
    assert rec["split"]["train"][:3] == [f"ID_1/ID_1_case1_1_Doppler{i}.png" for i in (1, 2, 3)]
    _, again = prepare_run_data(run, None, cfg)
    assert np.array_equal(again["train"], split["train"])
    with pytest.raises(DataError, match="prepared with data.train_per_identity=3 .* asks for None"):
        prepare_run_data(run, None, load_config("smoke").data)
    with pytest.raises(DataError, match="identity 'ID_1' has"):
        prepare_run_data(tmp_path / "run2", data, load_config("smoke", ["data.train_per_identity=50"]).data)
    assert not (tmp_path / "run2" / "data.json").exists()
