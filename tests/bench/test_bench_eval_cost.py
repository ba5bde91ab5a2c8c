"""bench/eval_cost.py: the stage timer evaluates the run once per mode, with the classifiers one after
another and then together, into folders of its own (the run's eval/ untouched)."""

from __future__ import annotations

import pytest
from conftest import load_bench


@pytest.fixture(scope="module")
def bench():
    return load_bench("eval_cost")


def test_stage_times_both_modes_without_touching_the_run(bench, tmp_path, monkeypatch):
    calls = []

    def fake_evaluate(run, cfg, *, out, progress):
        calls.append((cfg.evaluate.augment_together, out))
        return {"augmentation": {"arms": {}}, "augmentation_judge": None}

    monkeypatch.setattr(bench, "evaluate_run", fake_evaluate)
    res = bench.stage(tmp_path, ["sequential", "together"], 6)
    assert [c[0] for c in calls] == [1, 6]
    assert all(tmp_path not in out.parents for _, out in calls)
    assert res["sequential"]["augment_together"] == 1 and res["together"]["augment_together"] == 6
    assert res["ratio"] > 0
