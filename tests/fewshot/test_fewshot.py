"""Novel walkers from k windows: folds, shots and test windows, a fold run that never sees a novel person,
adaptation, sampling and the scored arms (tiny simulated data, smoke profile)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import load_bench

from dopplerdiff.config import load_config
from dopplerdiff.data.images import load_spectrograms
from dopplerdiff.data.run_data import prepare_run_data
from dopplerdiff.errors import DopplerDiffError
from dopplerdiff.fewshot import protocol as fs
from dopplerdiff.fewshot.arms import arm_table, fewshot_set, fitters, score_arms, scored_sets, summarise
from dopplerdiff.fewshot.openset import open_set, summarise_open_set
from dopplerdiff.pipelines.auto_pipeline import load_run_pipeline

BASE, NOVEL = ["ID_1", "ID_2"], ["ID_3"]


@pytest.fixture(scope="module")
def full(sim_data, smoke_config):
    return load_spectrograms(sim_data, smoke_config.data)


@pytest.fixture(scope="module")
def fold_run(tmp_path_factory, sim_data, smoke_config):
    """A fold's run trained on the base people only; (run, stages that ran)."""
    out = tmp_path_factory.mktemp("fold")
    data = fs.base_data_folder(sim_data, BASE, out / "data")
    return out / "run", fs.train_base(out / "run", smoke_config, data)


def test_folds_make_every_person_novel_once_deterministically():
    ids = [f"ID_{i}" for i in range(1, 11)]
    folds = fs.make_folds(ids, 3, seed=0)
    novel = [n for f in folds for n in f.novel]
    assert sorted(novel) == sorted(ids) and len(folds) == 3
    for f in folds:
        assert sorted(f.base + f.novel) == sorted(ids) and not set(f.base) & set(f.novel)
    assert [f.novel for f in fs.make_folds(ids, 3, seed=0)] == [f.novel for f in folds]
    assert [f.novel for f in fs.make_folds(ids, 3, seed=1)] != [f.novel for f in folds]
    assert fs.make_folds(ids, 3, novel=["ID_4", "ID_2"])[0].novel == ["ID_2", "ID_4"]


def test_bad_folds_and_unknown_novel_people_are_one_clear_error():
    ids = ["ID_1", "ID_2", "ID_3"]
    with pytest.raises(DopplerDiffError, match="ID_9, P_x are not identities"):
        fs.make_folds(ids, 3, novel=["ID_9", "ID_1", "P_x"])
    with pytest.raises(DopplerDiffError, match=">= 2 base people"):
        fs.make_folds(ids, 2)  # a fold with 2 novel people keeps 1 base person


def test_shots_are_the_first_k_windows_and_test_windows_lie_beyond_the_gap(full):
    got = fs.split_novel(full, ["ID_2"], 3, gap=2)
    shots, test = got["ID_2"]
    mine = np.flatnonzero(full.labels == full.identities.index("ID_2"))
    assert sorted(full.windows[shots].tolist()) == sorted(full.windows[mine].tolist())[:3]
    assert full.windows[test].min() > full.windows[shots].max() + 2
    assert len(shots) + 2 + len(test) == len(mine)  # nothing else is dropped


def test_k_beyond_the_data_is_one_clear_error(full):
    with pytest.raises(DopplerDiffError, match="k=13 is larger than what novel person 'ID_1' has"):
        fs.split_novel(full, ["ID_1"], 13, gap=2)
    with pytest.raises(DopplerDiffError, match="'ID_1' has no window after its k=10 shots"):
        fs.split_novel(full, ["ID_1"], 10, gap=2)  # 10 shots + 2 gap = all 12 windows
    with pytest.raises(DopplerDiffError, match="'ID_7' is not an identity"):
        fs.split_novel(full, ["ID_7"], 1, gap=2)


def test_no_window_of_a_novel_person_reaches_any_stage(fold_run, sim_data):
    run, ran = fold_run
    assert ran == ["prepare data", "train autoencoder", "cache latents", "train diffusion"]
    data = json.loads((run / "data.json").read_text())
    assert data["identities"] == BASE
    files = [f for part in data["split"].values() for f in part]
    assert files and all(f.split("/")[0] in BASE for f in files)
    assert sorted(p.name for p in Path(data["data_root"]).iterdir()) == BASE  # the stages read only these
    assert "ID_3" not in (run / "data.json").read_text()
    assert list(load_run_pipeline(run, "cpu").identities) == BASE
    assert not (run / "samples").exists() and not (run / "eval").exists()
    # resuming with another config, or a second fold with other people, is refused
    other = load_config("smoke", ["diffusion.train.steps=5"])
    with pytest.raises(DopplerDiffError, match="made with another config"):
        fs.train_base(run, other, Path(data["data_root"]))
    assert fs.train_base(run, load_config("smoke"), Path(data["data_root"])) == []  # complete: nothing reruns
    with pytest.raises(DopplerDiffError, match="not this fold's base people"):
        fs.base_data_folder(sim_data, ["ID_1", "ID_3"], Path(data["data_root"]))


def test_adapted_generator_feeds_every_arm(fold_run, full, smoke_config):
    run, _ = fold_run
    cfg = smoke_config
    base, split = prepare_run_data(run, None, cfg.data)
    novel = fs.split_novel(full, NOVEL, 1, cfg.data.split.gap_windows)
    shots = {n: full.images[s] for n, (s, _) in novel.items()}
    pipe = load_run_pipeline(run, "cpu")
    rec = fs.adapt(pipe, shots, cfg, steps=2)
    assert rec["ID_3"]["topped_up_to"] == 3 and pipe.identities == [*BASE, "ID_3"]  # k=1 < 3: shifted copies
    syn = fs.synthetic_sets(pipe, shots, 2, cfg, ns=[2, 3], methods=["row", "seeded"], strengths=[0.5])
    assert sorted(syn) == ["row/n2", "row/n3", "seeded0.5/n2", "seeded0.5/n3"]
    x, y = syn["seeded0.5/n3"]
    assert x.shape == (3, 1, 16, 16) and x.min() >= -1 and x.max() <= 1 and set(y) == {2}
    np.testing.assert_array_equal(syn["row/n2"][0], syn["row/n3"][0][:2])  # prefixes of one draw
    data = fewshot_set(base, split, full, novel)
    assert data.names == [*BASE, "ID_3"] and set(data.shots[1]) == {2} and set(data.base_test[1]) <= {0, 1}
    arms = arm_table(data, {"row/n2": syn["row/n2"]})
    assert {a: c for a, (_, c) in arms.items()} == {"real": False, "classic": True, "real+row/n2": False,
                                                   "classic+row/n2": True}
    cells = score_arms(len(data.names), arms, fitters(cfg, steps=2), [0, 1], scored_sets(data))
    out = summarise([cells, cells])
    row = out["judge"]["real+row/n2"]
    assert len(row["novel"]["runs"]) == 4 and len(row["novel_gain_vs_real"]["ci95"]) == 2
    assert all(0 <= v <= 1 for arch in cells.values() for c in arch.values() for v in c["novel"] + c["base"])
    assert "novel_gain_vs_real" not in out["encoder"]["real"]
    opened = open_set(data, {"row/n2": syn["row/n2"]}, cfg, steps=2, seeds=[0])
    assert sorted(opened) == ["real", "real+row/n2"]
    for m in opened.values():
        assert 0 <= m["dir"][0] <= m["rank1"][0] <= 1 and 0 <= m["eer"][0] <= 1
    assert len(summarise_open_set([opened, opened])["real+row/n2"]["eer_gain_vs_real"]["runs"]) == 2


def test_driver_refuses_k_beyond_the_data_before_writing(sim_data, tmp_path, monkeypatch, capsys):
    mod = load_bench("fewshot")
    monkeypatch.setattr(mod, "RESULTS", tmp_path / "results")
    monkeypatch.setattr(sys, "argv", ["fewshot", "--data", str(sim_data), "--profile", "smoke", "--k", "1,20",
                                      "--out", str(tmp_path / "runs")])
    with pytest.raises(SystemExit, match="k=20 is larger than what novel person"):
        mod.main()
    assert not (tmp_path / "runs").exists() and not (tmp_path / "results").exists()


def test_top_up_adds_distinct_time_shifted_windows():
    from dopplerdiff.fewshot.protocol import top_up

    x = np.random.default_rng(0).random((1, 1, 8, 12)).astype(np.float32)
    out = top_up(x, 3)
    assert out.shape == (3, 1, 8, 12) and np.array_equal(out[0], x[0])
    assert len({w.tobytes() for w in out}) == 3  # distinct: learn_identity counts distinct windows
    for w in out[1:]:  # each a circular time shift of the shot: same Doppler rows, same values
        assert any(np.array_equal(w, np.roll(x[0], s, axis=-1)) for s in range(1, 12))
    assert top_up(np.concatenate([x, x, x]), 3).shape[0] == 3


def test_tuned_method_changes_only_cross_attention_kv_and_the_novel_rows(fold_run, full, smoke_config):
    from dopplerdiff.fewshot.finetune import KV_NAMES, finetune_attention
    from dopplerdiff.models.identity_rows import identity_tables

    run, _ = fold_run
    novel = fs.split_novel(full, NOVEL, 3, smoke_config.data.split.gap_windows)
    shots = {n: full.images[s] for n, (s, _) in novel.items()}
    pipe = load_run_pipeline(run, "cpu")
    fs.adapt(pipe, shots, smoke_config, steps=2)
    before = {k: v.clone() for k, v in pipe.denoiser.state_dict().items()}
    table = identity_tables(pipe.condition_encoder, pipe.denoiser)[0]
    rows_before = getattr(table[0], table[1]).detach().clone()
    base = full.subset(np.flatnonzero(np.isin(full.labels, [0, 1])))
    rec = finetune_attention(pipe, shots, (base.images, base.labels), smoke_config, steps=3, lr=1e-2,
                             batch_size=4)
    after = pipe.denoiser.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed and all(any(f"{n}." in k for n in KV_NAMES) for k in changed)
    assert rec["tuned_weights"] > 0 and np.isfinite(rec["loss_last"])
    rows_after = getattr(table[0], table[1]).detach()
    row = pipe.identities.index("ID_3")
    others = [i for i in range(rows_after.shape[0]) if i != row]
    assert torch.equal(rows_after[others], rows_before[others]) and not torch.equal(rows_after[row],
                                                                                     rows_before[row])
    with pytest.raises(DopplerDiffError, match="ID_9 have no identity row"):
        finetune_attention(pipe, {"ID_9": shots["ID_3"]}, (base.images, base.labels), smoke_config, steps=1)


def test_copies_balance_the_shots_without_a_generator():
    """The class-balance baseline: each person's k shots, time-shifted up to N, and nothing else."""
    rng = np.random.default_rng(0)
    shots = {"ID_7": rng.uniform(-1, 1, (2, 1, 16, 16)).astype(np.float32),
             "ID_8": rng.uniform(-1, 1, (3, 1, 16, 16)).astype(np.float32)}
    syn = fs.synthetic_sets(None, shots, 5, None, ns=[2, 6], methods=["copies"], strengths=[])
    assert sorted(syn) == ["copies/n2", "copies/n6"]
    x, y = syn["copies/n6"]
    assert x.shape == (12, 1, 16, 16) and list(y) == [5] * 6 + [6] * 6
    np.testing.assert_array_equal(x[:2], shots["ID_7"])  # the shots first, then shifted copies of them
    np.testing.assert_array_equal(x[2], np.roll(shots["ID_7"][0], 16 // 7, axis=-1))
    assert len({v.tobytes() for v in x[:6]}) == 6
    np.testing.assert_array_equal(syn["copies/n2"][0], np.concatenate([shots["ID_7"], shots["ID_8"][:2]]))
