"""A new walking condition from k windows: shots and test windows per person, zero-shot people, a run that
sees no target window beyond the shots, the real and synthetic sets, and the driver's refusals (tiny simulated
data, smoke profile)."""

from __future__ import annotations

import dataclasses
import sys

import numpy as np
import pytest
from conftest import load_bench

from dopplerdiff.config import load_config
from dopplerdiff.data.images import load_spectrograms
from dopplerdiff.data.run_data import prepare_run_data
from dopplerdiff.data.simulate import simulate_dataset
from dopplerdiff.errors import DopplerDiffError
from dopplerdiff.fewshot import crosscondition as cc
from dopplerdiff.fewshot.arms import arm_table, fitters, score_arms
from dopplerdiff.fewshot.protocol import train_base
from dopplerdiff.pipelines import load_run_pipeline

ZERO = ["ID_2"]


@pytest.fixture(scope="module")
def cond_data(tmp_path_factory):
    cfg = load_config("smoke")
    sim = dataclasses.replace(cfg.simulate, conditions=("normal", "backpack"))
    root = simulate_dataset(sim, tmp_path_factory.mktemp("ccsim") / "data", progress=False)
    return root, load_spectrograms(root, cfg.data)


@pytest.fixture(scope="module")
def cc_run(cond_data, tmp_path_factory, smoke_config):
    root, full = cond_data
    plan = cc.plan_shots(full, "backpack", 2, ZERO, smoke_config.data.split.gap_windows)
    out = tmp_path_factory.mktemp("ccrun")
    data = cc.fold_data_folder(root, full, "normal", "backpack", plan, out / "data")
    train_base(out / "run", smoke_config, data)
    return out / "run", data, plan


def test_shots_are_the_first_target_windows_and_zero_shot_people_give_none(cond_data):
    _, full = cond_data
    plan = cc.plan_shots(full, "backpack", 2, ZERO, gap=1)
    b = full.condition_names.index("backpack")
    for person, (shots, test) in plan.items():
        idx = [*shots, *test]
        assert all(full.conditions[i] == b and full.identities[full.labels[i]] == person for i in idx)
        if person in ZERO:
            assert len(shots) == 0 and len(test) == int(np.sum((full.conditions == b) & (full.labels == 1)))
            continue
        rec = full.recordings[shots[0]]
        assert [full.recordings[i] for i in shots] == [rec, rec]
        first = sorted(int(full.windows[i]) for i in range(len(full)) if full.recordings[i] == rec)[:2]
        assert sorted(int(full.windows[i]) for i in shots) == first
        later = [int(full.windows[i]) for i in test if full.recordings[i] == rec]
        assert later and min(later) > max(first) + 1  # beyond the guard gap
    assert sorted(plan) == sorted(full.identities)


def test_the_run_sees_no_target_window_beyond_the_shots(cc_run, cond_data):
    run, data, plan = cc_run
    root, full = cond_data
    shot_files = {full.files[i] for s, _ in plan.values() for i in s}
    linked = {str(p.relative_to(data)) for p in (data / "backpack").rglob("*.png")}
    assert linked == shot_files and len(shot_files) == 2 * 2  # k=2 shots of the two shot people
    run_ds, split = prepare_run_data(run, None, load_config("smoke").data)
    assert {f for f in run_ds.files if f.startswith("backpack/")} == shot_files
    b = run_ds.condition_names.index("backpack")
    assert set(np.flatnonzero(run_ds.conditions == b)) <= set(split["train"])  # shots stay whole in training


def test_real_and_synthetic_sets_and_the_scored_arms(cc_run, cond_data, smoke_config):
    run, _, plan = cc_run
    _, full = cond_data
    run_ds, split = prepare_run_data(run, None, smoke_config.data)
    cs = cc.crosscondition_set(run_ds, split, full, plan, "backpack", ZERO)
    n_src = int(np.sum(run_ds.conditions[split["train"]] != run_ds.condition_names.index("backpack")))
    assert len(cs.source_train[1]) == n_src and len(cs.train[1]) == n_src + 4
    assert set(cs.tests["target_zero"][1]) == {cs.names.index("ID_2")}
    assert set(cs.tests["target_shot"][1]) == {cs.names.index("ID_1"), cs.names.index("ID_3")}
    pipe = load_run_pipeline(run, "cpu")
    syn = cc.synthetic_sets(pipe, cs, "backpack", smoke_config, n=2, strengths=[0.5])
    assert sorted(syn) == ["row/n2", "transfer0.5/n2"]
    x, y = syn["transfer0.5/n2"]
    assert x.shape[0] == 6 and x.min() >= -1 and x.max() <= 1 and list(y) == [0, 0, 1, 1, 2, 2]
    assert not np.allclose(syn["row/n2"][0], x)
    cells = score_arms(len(cs.names), arm_table(cs.train, syn), fitters(smoke_config, steps=2), [0],
                       {**cs.tests, "source": cs.source_test})
    assert set(cells["judge"]["real+row/n2"]) == {"target_shot", "target_zero", "source"}


def test_bad_plans_are_one_clear_error(cond_data):
    _, full = cond_data
    with pytest.raises(DopplerDiffError, match="target condition 'free' is not a condition"):
        cc.plan_shots(full, "free", 2, [], gap=1)
    with pytest.raises(DopplerDiffError, match="ID_9 are not identities"):
        cc.plan_shots(full, "backpack", 2, ["ID_9"], gap=1)
    with pytest.raises(DopplerDiffError, match="every person is zero-shot"):
        cc.plan_shots(full, "backpack", 2, list(full.identities), gap=1)
    with pytest.raises(DopplerDiffError, match="k=5 target windows would be cut"):
        cc.plan_shots(full, "backpack", 5, [], gap=1)


def test_the_fold_folder_refuses_other_shots(cond_data, tmp_path):
    root, full = cond_data
    out = tmp_path / "data"
    cc.fold_data_folder(root, full, "normal", "backpack", cc.plan_shots(full, "backpack", 1, [], 1), out)
    before = sorted(str(p) for p in out.rglob("*"))
    with pytest.raises(DopplerDiffError, match="other backpack shots"):
        cc.fold_data_folder(root, full, "normal", "backpack", cc.plan_shots(full, "backpack", 2, [], 1), out)
    assert sorted(str(p) for p in out.rglob("*")) == before


def test_driver_refuses_an_unknown_target_before_writing(cond_data, tmp_path, monkeypatch, capsys):
    root, _ = cond_data
    mod = load_bench("crosscondition")
    monkeypatch.setattr(mod, "RESULTS", tmp_path / "results")
    argv = ["--data", str(root), "--target", "free", "--zero-shot", "1", "--profile", "smoke",
            "--out", str(tmp_path / "out")]
    monkeypatch.setattr(sys, "argv", ["crosscondition.py", *argv])
    with pytest.raises(SystemExit, match="target condition 'free' is not a condition"):
        mod.main()
    assert not (tmp_path / "out").exists() and not (tmp_path / "results").exists()
