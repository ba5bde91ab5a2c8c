"""`dopplerdiff run`: every stage once, then a re-run skips completed stages; bad resumes are refused."""

from __future__ import annotations

import inspect
import json
import shutil

import pytest
from typer.testing import CliRunner

from dopplerdiff.cli.app import app
from dopplerdiff.errors import DopplerDiffError
from dopplerdiff.utils.rundir import RunDir
from dopplerdiff.workflow import Stage, check_run_dir, resolve_run_config, run_stage, stages

# Smallest end-to-end settings: the smoke profile with a couple of generated images per identity.
FAST = ["diffusion.samples_per_identity=2", "evaluate.num_per_identity=2", "evaluate.guidance_sweep=[2.0]",
        "evaluate.augment_seeds=1", "evaluate.sweep_num_per_identity=1"]


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory, sim_data):
    run = tmp_path_factory.mktemp("wf") / "run"
    res = CliRunner().invoke(app, ["run", "--profile", "smoke", "--data", str(sim_data), "--out", str(run),
                                   "--quiet", *FAST])
    assert res.exit_code == 0, res.output
    return run


def test_run_produces_every_stage_output(smoke_run):
    for stage in stages(simulated=False):
        assert (smoke_run / stage.marker).exists(), stage.name
    assert len(list((smoke_run / "samples").glob("ID_*/*.png"))) == 3 * 2
    metrics = json.loads((smoke_run / "eval" / "metrics.json").read_text())
    assert metrics  # evaluate wrote something to read
    assert (smoke_run / "config.yaml").is_file()


def test_rerun_with_resume_skips_completed_stages_and_redoes_a_removed_one(smoke_run):
    shutil.rmtree(smoke_run / "samples")
    res = CliRunner().invoke(app, ["run", "--out", str(smoke_run), "--data", str(smoke_run.parent / "none"),
                                   "--resume", "--quiet"])
    assert res.exit_code != 0  # a --data that does not exist is refused before anything runs
    assert not (smoke_run / "samples").exists()
    data = json.loads((smoke_run / "data.json").read_text())["data_root"]
    res = CliRunner().invoke(app, ["run", "--out", str(smoke_run), "--data", data, "--resume"])
    assert res.exit_code == 0, res.output
    assert res.output.count("already complete, skipped") == len(stages(simulated=False)) - 1
    assert (smoke_run / "samples" / "manifest.json").is_file()
    timings = json.loads((smoke_run / "timings.json").read_text())["invocations"]
    assert len(timings) == 2  # the refused invocation ran nothing and recorded nothing
    first, second = ({r["stage"]: r for r in t["stages"]} for t in timings)
    assert list(first) == [s.name for s in stages(simulated=False)]
    assert all(r["status"] == "ran" and r["seconds"] > 0 for r in first.values())
    assert {n for n, r in second.items() if r["status"] == "ran"} == {"generate"}


def test_existing_run_without_resume_is_refused(smoke_run):
    with pytest.raises(DopplerDiffError, match="--resume"):
        check_run_dir(smoke_run, resume=False)
    check_run_dir(smoke_run, resume=True)


def test_resume_keeps_the_stored_profile(smoke_run):
    cfg = resolve_run_config(smoke_run, None, ["evaluate.num_per_identity=3"], resume=True)
    assert cfg.profile == "smoke" and cfg.evaluate.num_per_identity == 3
    with pytest.raises(DopplerDiffError, match="profile"):
        resolve_run_config(smoke_run, "quick", [], resume=True)


def _cli(monkeypatch, capsys, *args):
    from conftest import run_cli

    return run_cli(monkeypatch, capsys, *args)


def test_single_identity_is_refused_before_any_training(sim_data, tmp_path, monkeypatch, capsys):
    data = tmp_path / "one"
    shutil.copytree(sim_data / "ID_1", data / "ID_1")
    run = tmp_path / "run"
    code, _, err = _cli(monkeypatch, capsys, "run", "--profile", "smoke", "--data", data, "--out", run, "-q")
    assert code == 2 and err.startswith("error:") and "at least 2" in err
    assert not (run / "autoencoder").exists() and not (run / "train").exists()


def test_empty_test_split_is_refused_before_any_training(sim_data, tmp_path, monkeypatch, capsys):
    run = tmp_path / "run"
    code, _, err = _cli(monkeypatch, capsys, "run", "--profile", "smoke", "--data", sim_data, "--out", run,
                        "-q", "data.split.train=0.8", "data.split.test=0.0")
    assert code == 2 and "test" in err and "empty" in err
    assert not (run / "autoencoder").exists() and not (run / "train").exists()


def test_overrides_of_a_finished_run_are_reported(smoke_run, monkeypatch, capsys):
    data = json.loads((smoke_run / "data.json").read_text())["data_root"]
    code, out, err = _cli(monkeypatch, capsys, "run", "--out", smoke_run, "--data", data, "--resume", "-q",
                          "diffusion.guidance_scale=7.5")
    assert code == 0, err
    assert "diffusion.guidance_scale" in err and "already complete" in err
    code, out, err = _cli(monkeypatch, capsys, "run", "--out", smoke_run, "--data", data, "--resume", "-q")
    assert code == 0 and "overrides" not in err


def test_a_second_run_on_the_same_directory_is_refused(smoke_run, monkeypatch, capsys):
    from filelock import FileLock

    data = json.loads((smoke_run / "data.json").read_text())["data_root"]
    other = FileLock(str(smoke_run / ".lock"))  # `dopplerdiff run` in another process
    other.acquire()
    try:
        code, _, err = _cli(monkeypatch, capsys, "run", "--out", smoke_run, "--data", data, "--resume", "-q")
    finally:
        other.release()
    assert code == 2 and "in use by another" in err


def test_damaged_run_summary_is_reported_not_ignored(smoke_run, monkeypatch, capsys):
    metrics = smoke_run / "encoder" / "metrics.json"
    good = metrics.read_bytes()
    metrics.write_bytes(good[: len(good) // 2])
    try:
        data = json.loads((smoke_run / "data.json").read_text())["data_root"]
        code, _, err = _cli(monkeypatch, capsys, "run", "--out", smoke_run, "--data", data, "--resume", "-q")
    finally:
        metrics.write_bytes(good)
    assert code == 2 and "metrics.json" in err and "damaged" in err


def test_feature_loss_runs_the_encoder_first_and_uses_it(tmp_path, sim_data, monkeypatch, capsys):
    from conftest import run_cli

    names = [s.name for s in stages(simulated=False, encoder_first=True)]
    assert names.index("train encoder") < names.index("train autoencoder")
    run = tmp_path / "run"
    # train-autoencoder alone: a feature loss without a trained encoder is one clear error, nothing trained
    code, _, err = run_cli(monkeypatch, capsys, "train-autoencoder", "-c", "smoke", "-d", sim_data, "-r", run,
                           "-q", "autoencoder.loss.feature=0.5")
    assert code == 2 and "needs a trained encoder" in err and not (run / "autoencoder").exists()
    res = CliRunner().invoke(app, ["run", "--profile", "smoke", "--data", str(sim_data), "--out", str(run),
                                   "--quiet", "--resume", "autoencoder.loss.feature=0.5", *FAST])
    assert res.exit_code == 0, res.output
    log = [json.loads(line) for line in (run / "train/autoencoder/log.jsonl").read_text().splitlines()]
    assert any("feature" in row for row in log)  # the loss term was computed from RUN/encoder
    order = [r["stage"] for r in json.loads((run / "timings.json").read_text())["invocations"][-1]["stages"]]
    assert order.index("train encoder") < order.index("train autoencoder")


def test_every_stage_has_the_common_signature():
    """stage(run, cfg, *, resume=None, progress=True): the table calls every stage the same way."""
    for stage in stages(simulated=True, decoder=True):
        params = list(inspect.signature(stage.run).parameters.values())
        assert [p.kind for p in params[:2]] == [inspect.Parameter.POSITIONAL_OR_KEYWORD] * 2, stage.name
        named = {p.name: p for p in params}
        for name, default in (("resume", None), ("progress", True)):
            assert named[name].kind == inspect.Parameter.KEYWORD_ONLY and named[name].default == default
        assert ("data_root" in named) == stage.data, stage.name
        assert set(stage.options) <= set(named), stage.name


def test_a_stage_resumes_from_the_checkpoints_of_its_work_dir(tmp_path, smoke_config):
    calls = []

    def stage_fn(run, cfg, *, resume=None, progress=True, **kw):
        calls.append((run, cfg, resume, progress, kw))
        return "result"

    run, data = RunDir(tmp_path / "run"), tmp_path / "data"
    after = []
    first = Stage("a", "diffusion", stage_fn, after=lambda *args: after.append(args))
    run_stage(first, run, smoke_config, data, progress=False)
    (run.work("autoencoder") / "checkpoint-3").mkdir(parents=True)
    run_stage(Stage("b", "autoencoder", stage_fn, data=True, options={"overwrite": True}), run, smoke_config,
              data, progress=True)
    assert calls == [(run.root, smoke_config, None, False, {}),
                     (run.root, smoke_config, "latest", True, {"data_root": data, "overwrite": True})]
    assert after == [(run, smoke_config, "result")]
