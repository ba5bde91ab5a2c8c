"""bench/hostile.py runs: a few of its fast cases against simulated data (no trained run needed)."""

from __future__ import annotations

import pytest
from conftest import load_bench


@pytest.fixture(scope="module")
def hostile():
    return load_bench("hostile")


@pytest.fixture()
def ws(hostile, tmp_path, sim_data):
    paths = hostile.fixtures(tmp_path, sim_data)
    return dict(paths, run=tmp_path / "no-run", idx=tmp_path / "no-index")


@pytest.mark.parametrize("name", ["simulate identities 0", "simulate -o file",
                                  "mixed identity/condition folders: inspect"])
def test_case_passes(hostile, ws, name):
    case = next(c for c in hostile.one_command_cases() if c.name == name)
    res = hostile.run_case(case, ws)
    assert res["exit"] == 2 and not res["traceback"] and res["unchanged"], res
    assert res["passed"], res


def test_judge_flags_a_traceback_and_a_changed_run(hostile):
    tb = "Traceback (most recent call last):\n  ...\nValueError: x"
    assert hostile.judge("error", 1, tb, True, True) == (False, "traceback")
    assert not hostile.judge("error", 2, "error: bad --x", False, True)[0]
    assert not hostile.judge("error", 2, "error: bad --x", True, False)[0]  # left --out behind
    assert hostile.judge("error", 2, "error: bad --x", True, True)[0]
    assert not hostile.judge("error", 0, "", True, True)[0]
    assert hostile.judge("clean", 0, "", True, True)[0]
