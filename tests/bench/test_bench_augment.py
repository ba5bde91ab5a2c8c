"""bench/augment.py's bookkeeping: budgets, collecting a run's arms, joining result files, the plot."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import load_bench


@pytest.fixture(scope="module")
def bench():
    return load_bench("augment")


def _strategies(gains: dict[str, list[float]], base: list[float]) -> dict:
    arms = {}
    for name, g in gains.items():
        mean = sum(g) / len(g)
        arms[name] = {"accuracy": {"mean": base[0] + mean}, "gain": {"mean": mean, "runs": g,
                                                                      "ci95": [mean - 0.01, mean + 0.01]},
                      "synthetic_per_identity": 4, "synthetic_to_real": 0.5, "synthetic_weight": 1.0}
    return {"baseline": {"mean": sum(base) / len(base), "runs": base}, "seeds": [0, 1], "steps": 5,
            "arms": arms}


def _run(tmp_path: Path, name: str, gains: dict[str, list[float]]) -> Path:
    run = tmp_path / name
    (run / "eval").mkdir(parents=True)
    m = {"counts": {"train": 6}, "accuracy": {"real_test": {"overall": 0.5}},
         "augmentation_strategies": {n: {"source_windows": ["a", "b"]} for n in gains},
         "augmentation": {"strategies": _strategies(gains, [0.5, 0.6])},
         "augmentation_judge": {"strategies": _strategies(gains, [0.4, 0.5])}}
    (run / "eval" / "metrics.json").write_text(json.dumps(m))
    return run


def test_budgets_parse_and_bad_ones_exit(bench):
    assert bench.parse_budgets("10, 30,full") == [10, 30, None]
    for bad in ("0", "ten", ""):
        with pytest.raises(SystemExit, match="--budgets"):
            bench.parse_budgets(bad)


def test_collect_reads_arms_and_recommends_only_a_significant_gain(bench, tmp_path):
    run = _run(tmp_path, "b10", {"prior": [0.05, 0.07], "real:0.5": [-0.02, 0.0]})
    row = bench.collect({"budget": "10", "run": str(run), "eval": "eval"})
    assert row["encoder"]["arms"]["prior"]["gain"] == pytest.approx(0.06)
    recipe = row["recipes"]["prior"]
    assert recipe["n_source_windows"] == 2 and "source_windows" not in recipe
    assert row["recommendation"]["strategy"] == "prior"
    missing = bench.collect({"budget": "10", "run": str(tmp_path / "nothing"), "eval": "eval"})
    assert "missing" in missing


def test_merge_joins_the_arms_of_one_budget_and_plots(bench, tmp_path):
    rows = [bench.collect({"budget": "30", "run": str(_run(tmp_path, a, g)), "eval": "eval"})
            for a, g in (("x", {"prior": [-0.05, -0.03]}), ("y", {"real:0.5+w:0.3": [0.02, 0.04]}))]
    rows.append(bench.collect({"budget": "full", "run": str(_run(tmp_path, "z", {"prior": [0.0, 0.01]})),
                               "eval": "eval"}))
    files = []
    for i, row in enumerate(rows):
        files.append(tmp_path / f"r{i}.json")
        files[-1].write_text(json.dumps({"rows": [row]}))
    merged = bench.merge_rows(files)
    assert [r["budget"] for r in merged] == ["30", "full"]
    assert set(merged[0]["encoder"]["arms"]) == {"prior", "real:0.5+w:0.3"}
    assert merged[0]["recommendation"]["strategy"] == "real:0.5+w:0.3"  # remade over the joined arms
    png = tmp_path / "gains.png"
    bench.plot_gains(merged, ["prior", "real:0.5+w:0.3"], png)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
