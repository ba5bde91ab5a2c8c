"""bench/convergence.py: the diffusion stage trained cumulatively through budgets (each point resumes the
previous one's checkpoint), a rerun that trains nothing, the JSON's points and the stopping rule."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import load_bench

from dopplerdiff.errors import DopplerDiffError
from dopplerdiff.workflow import run_all

# the smoke evaluation with every section on, made cheaper (a single sweep guidance, fewer classifier steps)
CHEAP = ["evaluate.bootstrap=10", "evaluate.guidance_sweep=[2.0]", "evaluate.augment_steps=2",
         "evaluate.judge_steps=2", "evaluate.c2st_steps=2"]


@pytest.fixture(scope="module")
def bench():
    return load_bench("convergence")


def _args(tmp: Path, budgets: str, *extra: str) -> list[str]:
    return ["--profile", "smoke", "--budgets", budgets, "--ae-steps", "2", "--name", "t", "--quiet",
            "--out", str(tmp / "runs"), "--results", str(tmp / "results"), "--extra", *CHEAP, *extra]


@pytest.fixture(scope="module")
def curve(bench, tmp_path_factory):
    """Budget 2, then budgets 2,4 (a second invocation), then 2,4 again; the diffusion loop's calls and the
    evaluations of each invocation are recorded."""
    import dopplerdiff.train.diffusion as diffusion

    tmp, mp = tmp_path_factory.mktemp("convergence"), pytest.MonkeyPatch()
    loops: list[dict] = []
    evals: list[Path] = []
    real_loop, real_eval = diffusion.train_loop, bench.evaluate_run

    def loop(*a, **kw):
        res = real_loop(*a, **kw)
        loops.append({"resume": kw.get("resume"), "steps_run": len(res.history), "step": res.step})
        return res

    def evaluate(*a, **kw):
        evals.append(kw["out"])
        return real_eval(*a, **kw)

    mp.setattr(diffusion, "train_loop", loop)
    mp.setattr(bench, "evaluate_run", evaluate)
    out, log = {}, tmp / "runs" / "t" / "train" / "diffusion" / "log.jsonl"
    json_path = tmp / "results" / "convergence_t.json"
    try:
        for key, budgets in (("first", "2"), ("second", "2,4"), ("rerun", "2,4")):
            loops.clear()
            evals.clear()
            bench.main(_args(tmp, budgets))
            out[key] = {"loops": list(loops), "evals": list(evals), "log": log.read_text().splitlines(),
                        "json": json_path.read_bytes()}
    finally:
        mp.undo()
    return out


def test_second_budget_resumes_the_first_ones_checkpoint(curve):
    first, second = curve["first"], curve["second"]
    assert first["loops"] == [{"resume": None, "steps_run": 2, "step": 2}]
    # 2 more steps from checkpoint-2 (4 in all), not 4 from scratch; budget 2 is not evaluated again
    assert [(c["steps_run"], c["step"]) for c in second["loops"]] == [(2, 4)]
    assert str(second["loops"][0]["resume"]).endswith("checkpoint-2")
    assert [p.name for p in second["evals"]] == ["steps_000004"]
    # the training records of steps 1-2 are the first run's, byte for byte (a fresh start rewrites them)
    assert second["log"][:len(first["log"])] == first["log"]
    steps = [json.loads(line)["step"] for line in second["log"] if "kind" not in json.loads(line)]
    assert steps == [1, 2, 3, 4]
    rows = json.loads(second["json"])["rows"]
    assert [(r["budget"], r["resumed_from"], r["trained_steps"]) for r in rows] == [(2, 0, 2), (4, 2, 2)]


def test_rerun_after_completion_trains_and_evaluates_nothing(curve):
    assert curve["rerun"]["loops"] == [] and curve["rerun"]["evals"] == []
    assert curve["rerun"]["json"] == curve["second"]["json"]


def test_json_has_both_points_with_every_metric(bench, curve):
    result = json.loads(curve["second"]["json"])
    names = {m.name for m in bench.METRICS}
    assert [r["status"] for r in result["rows"]] == ["done", "done"]
    for row in result["rows"]:
        assert set(row["metrics"]) == names and set(row["ci95"]) == names
        for name in ("judge_accuracy", "fd", "precision", "c2st_accuracy", "texture_hf_ratio",
                     "augmentation_gain_encoder", "augmentation_gain_judge"):
            assert row["metrics"][name] is not None, name
        assert row["reference"]["fd_floor_train_vs_test"] is not None
        assert Path(row["eval_dir"], "metrics.json").is_file()
        assert row["device"] == "cpu" and row["eval_s"] > 0
    assert set(result["stopping"]) == names
    assert result["lr_schedule"].startswith("constant") and result["threads"] >= 1
    assert (Path(result["run"]).parents[1] / "results" / "convergence_t.png").is_file()


def _rows(name: str, values: list[float], half_width: float | None = None) -> list[dict]:
    return [{"budget": b, "metrics": {name: v}, "ci95": {name: None if half_width is None else
                                                          [v - half_width, v + half_width]}}
            for b, v in zip((650, 2000, 6000, 15000), values, strict=False)]


def test_stopping_rule(bench):
    spec = {m.name: m for m in bench.METRICS}
    # FD: 2000 -> 6000 improves by 2% (< 5% of the value): stops at 2000
    assert bench.stopping(spec["fd"], _rows("fd", [10.0, 5.0, 4.9]))["plateau_at"] == 2000
    # judge accuracy: a dip, then a gain beyond the CIs: no budget before the last is unbeaten
    s = bench.stopping(spec["judge_accuracy"], _rows("judge_accuracy", [0.5, 0.49, 0.8], 0.02))
    assert s["plateau_at"] is None
    assert s["statement"].startswith("still improving at the largest budget (6000")
    # the same gain inside wide CIs is noise
    wide = bench.stopping(spec["judge_accuracy"], _rows("judge_accuracy", [0.5, 0.49, 0.55], 0.1))
    assert wide["plateau_at"] == 650 and "CIs" in wide["noise"]
    assert bench.stopping(spec["fd"], _rows("fd", [3.0]))["plateau_at"] is None


def test_bad_arguments_exit_2_before_anything_is_written(bench, tmp_path, capsys):
    for argv in (["--budgets", "0,5"], _args(tmp_path, "2", "diffusion.train.lr_schedule=cosine")):
        with pytest.raises(SystemExit) as exc:
            bench.main(argv)
        assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "--budgets" in err and "lr_schedule must stay 'constant'" in err
    assert not (tmp_path / "runs").exists() and not (tmp_path / "results").exists()


def test_run_all_refuses_an_unknown_stage_to_skip(smoke_config, tmp_path):
    with pytest.raises(DopplerDiffError, match="unknown stage.*train diffuson"):
        run_all(tmp_path / "run", smoke_config, None, progress=False, skip=["train diffuson"])
    assert not (tmp_path / "run").exists()
