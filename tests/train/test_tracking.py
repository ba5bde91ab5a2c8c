"""--report-to: stages mirror log.jsonl to TensorBoard through accelerate's trackers; without the optional
extra the option is one clear error."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import run_cli
from test_loop import Toy, _cfg, _data

from dopplerdiff.config import load_config
from dopplerdiff.errors import ConfigError
from dopplerdiff.evaluate.summary import headline_scalars
from dopplerdiff.train import tracking
from dopplerdiff.train.loop import train_loop


def _events(folder: Path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(folder), size_guidance={"images": 0, "scalars": 0})
    acc.Reload()
    return acc


def _scalar_steps(acc, tag: str) -> list[int]:
    return sorted(e.step for e in acc.Scalars(tag))


def test_train_autoencoder_reports_scalars_and_val_grid(tmp_path, monkeypatch, capsys, sim_data):
    pytest.importorskip("tensorboard", reason="tracking extra not installed: pip install -e '.[tracking]'")
    run = tmp_path / "run"
    code, _, err = run_cli(monkeypatch, capsys, "train-autoencoder", "--data", sim_data, "--out", run,
                           "-c", "smoke", "-q", "--report-to", "tensorboard")
    assert code == 0, err
    ev = _events(run / "tensorboard" / "autoencoder")  # one run per stage under RUN/tensorboard
    tags = ev.Tags()
    assert {"train/loss", "train/lr", "train/grad_norm", "val/psnr"} <= set(tags["scalars"])
    assert "val/reconstructions" in tags["images"]
    logged = [json.loads(ln) for ln in (run / "train/autoencoder/log.jsonl").read_text().splitlines()]
    train_steps = [r["step"] for r in logged if r.get("kind") != "val"]
    assert _scalar_steps(ev, "train/loss") == train_steps  # the dashboard mirrors log.jsonl
    loss = {e.step: e.value for e in ev.Scalars("train/loss")}
    assert all(loss[r["step"]] == pytest.approx(r["loss"], rel=1e-6) for r in logged if "loss" in r)


def test_resume_may_switch_reporting_on_and_logs_only_new_steps(tmp_path):
    pytest.importorskip("tensorboard", reason="tracking extra not installed: pip install -e '.[tracking]'")
    work = tmp_path / "run" / "train" / "toy"
    train_loop(Toy(), _data(), _cfg(steps=4), work, progress=False)
    res = train_loop(Toy(), _data(), _cfg(steps=8, report_to="tensorboard"), work, resume="latest",
                     progress=False)
    assert res.step == 8
    ev = _events(tmp_path / "run" / "tensorboard" / "toy")
    assert _scalar_steps(ev, "train/loss") == [5, 6, 7, 8]
    assert _scalar_steps(ev, "val/w0") == [8]
    assert len((work / "log.jsonl").read_text().splitlines()) == 8 + 2  # 8 steps + 2 validations


def test_resume_drops_the_steps_logged_after_the_checkpoint(tmp_path):
    pytest.importorskip("tensorboard", reason="tracking extra not installed: pip install -e '.[tracking]'")
    work = tmp_path / "run" / "train" / "toy"
    cfg = _cfg(steps=8, report_to="tensorboard")
    with pytest.raises(KeyboardInterrupt):  # killed at step 7, after checkpoint-4 (steps 5-6 logged)
        train_loop(Toy(fail_at=6), _data(), cfg, work, progress=False)
    train_loop(Toy(), _data(), cfg, work, resume="latest", progress=False)
    ev = _events(tmp_path / "run" / "tensorboard" / "toy")
    assert _scalar_steps(ev, "train/loss") == list(range(1, 9))  # once each, as in log.jsonl


def test_missing_tensorboard_is_one_clear_error(tmp_path, monkeypatch, capsys, sim_data):
    monkeypatch.setattr(tracking, "_installed", lambda module: module != "tensorboard")
    run = tmp_path / "run"
    code, _, err = run_cli(monkeypatch, capsys, "train-autoencoder", "--data", sim_data, "--out", run,
                           "-c", "smoke", "--report-to", "tensorboard")
    assert code == 2
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and "pip install -e '.[tracking]'" in lines[0] and "--report-to" in lines[0]
    assert not run.exists()  # refused before any work


def test_missing_package_set_in_config_is_refused_by_the_loop(tmp_path, monkeypatch):
    monkeypatch.setattr(tracking, "_installed", lambda module: False)
    with pytest.raises(ConfigError, match="wandb"):
        train_loop(Toy(), _data(), _cfg(report_to="wandb"), tmp_path / "w", progress=False)


def test_unknown_tracker_is_refused(tmp_path, monkeypatch, capsys):
    code, _, err = run_cli(monkeypatch, capsys, "run", "--out", tmp_path / "r", "--report-to", "mlflow")
    assert code == 2 and "--report-to" in err and "mlflow" in err
    with pytest.raises(ConfigError, match="diffusion.train.report_to|train.report_to"):
        load_config("smoke", ["diffusion.train.report_to=bogus"])


def test_run_trackers_is_the_union_of_the_stages():
    cfg = load_config("smoke", ["encoder.train.report_to=tensorboard", "diffusion.train.report_to=none"])
    assert tracking.run_trackers(cfg) == ["tensorboard"]
    assert tracking.run_trackers(load_config("smoke")) == []


def test_evaluation_headline_metrics_are_logged(tmp_path):
    pytest.importorskip("tensorboard", reason="tracking extra not installed: pip install -e '.[tracking]'")
    metrics = {
        "accuracy": {"real_test": {"overall": 0.9, "ci95": [0.8, 1.0]}, "generated": {"overall": 0.6},
                     "ratio": 0.666},
        "distribution": {"gen_vs_test": {"fd": 12.5, "kid_mean": 0.01, "precision": 0.7, "recall": 0.4}},
        "c2st": {"gen_vs_real": {"accuracy": 0.55}, "note": "text"},
        "memorisation": {"flagged": 1, "total": 4, "expected_fraction": 0.05},
    }
    scalars = headline_scalars(metrics)
    assert scalars["accuracy/generated"] == 0.6 and scalars["distribution/gen_vs_test/fd"] == 12.5
    assert scalars["c2st/gen_vs_real"] == 0.55 and scalars["memorisation/flagged_fraction"] == 0.25
    tracking.log_once(["tensorboard"], tmp_path / "tensorboard", "evaluate", scalars)
    ev = _events(tmp_path / "tensorboard" / "evaluate")
    assert ev.Scalars("accuracy/real_test")[0].value == pytest.approx(0.9)
