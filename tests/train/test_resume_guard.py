"""Resume guards: a checkpoint records its stage and config; a resume that would change the model, the
objective or the data order is refused; no silent restart; a finished stage is left alone; abandoned
checkpoints are removed; checkpoint pickles are only loaded with weights_only (torch >= 2.4)."""

from __future__ import annotations

import json
import logging
import re
import shutil
from pathlib import Path

import pytest
import torch
from test_loop import Toy, _cfg, _data
from torch import nn

from dopplerdiff.config import load_config
from dopplerdiff.errors import DopplerDiffError
from dopplerdiff.train.loop import find_checkpoints, train_loop
from dopplerdiff.train.resume import config_diff

ON = ["decoder.kind=diffusion"]


# ---------------------------------------------------------------- the loop (every stage goes through it)
def _interrupted(work: Path, **kw) -> None:
    """Train a Toy that is killed at step 6 (checkpoints 2 and 4 written)."""
    with pytest.raises(KeyboardInterrupt):
        train_loop(Toy(fail_at=5), _data(), _cfg(checkpoint_every=2, checkpoints_total_limit=0, **kw), work,
                   progress=False)


@pytest.mark.parametrize("change,key", [({"lr": 0.01}, "train.lr"), ({"batch_size": 4}, "train.batch_size"),
                                        ({"seed": 4}, "train.seed"), ({"ema": False}, "train.ema")])
def test_resume_with_another_config_is_refused_naming_the_keys(tmp_path, change, key):
    _interrupted(tmp_path)
    log_before = (tmp_path / "log.jsonl").read_bytes()
    with pytest.raises(DopplerDiffError, match=rf"config differs .*{re.escape(key)}"):
        train_loop(Toy(), _data(), _cfg(**change), tmp_path, resume="latest", progress=False)
    assert (tmp_path / "log.jsonl").read_bytes() == log_before  # nothing rewritten by the refusal
    # bookkeeping (steps, checkpoint and log cadence, workers) may change
    res = train_loop(Toy(), _data(), _cfg(steps=10, log_every=2, checkpoint_every=5), tmp_path,
                     resume="latest", progress=False)
    assert res.step == 10


def test_checkpoint_records_stage_and_config(tmp_path):
    train_loop(Toy(), _data(), _cfg(steps=4), tmp_path, progress=False)
    state = json.loads((tmp_path / "checkpoint-4" / "loop_state.json").read_text())
    assert state["stage"] == "Toy" and state["config"]["train"]["lr"] == 0.05


def test_config_diff_ignores_only_bookkeeping_keys():
    old = {"decoder": {"size": 16, "val_images": 8, "train": {"steps": 4, "lr": 1e-3}}}
    new = {"decoder": {"size": 32, "val_images": 2, "train": {"steps": 9, "lr": 1e-3}}}
    assert config_diff(old, new) == [("decoder.size", 16, 32)]


class Other(Toy):
    """Another stage with a differently shaped model."""

    def __init__(self):
        super().__init__()
        self.net = nn.Linear(4, 2)


def test_another_stages_checkpoint_is_one_clear_error(tmp_path):
    train_loop(Toy(), _data(), _cfg(steps=4), tmp_path / "toy", progress=False)
    with pytest.raises(DopplerDiffError, match="checkpoint of the Toy stage, not of the Other stage"):
        train_loop(Other(), _data(), _cfg(steps=4), tmp_path / "other", resume=tmp_path / "toy/checkpoint-4",
                   progress=False)


def test_checkpoint_without_record_that_does_not_fit_is_one_clear_error(tmp_path):
    train_loop(Toy(), _data(), _cfg(steps=4), tmp_path / "toy", progress=False)
    state = tmp_path / "toy/checkpoint-4/loop_state.json"
    state.write_text(json.dumps({"step": 4, "epoch": 0}))  # as written by an older version
    with pytest.raises(DopplerDiffError, match="does not fit this stage's model"):
        train_loop(Other(), _data(), _cfg(steps=4), tmp_path / "o", resume=state.parent, progress=False)


def test_resume_latest_without_checkpoint_warns_visibly(tmp_path, caplog):
    with caplog.at_level(logging.WARNING):
        res = train_loop(Toy(), _data(), _cfg(steps=2), tmp_path, resume="latest", progress=False)
    assert res.step == 2
    assert any(r.levelno >= logging.WARNING and "no checkpoint" in r.getMessage() for r in caplog.records)


def test_resume_from_an_older_checkpoint_drops_the_newer_abandoned_ones(tmp_path):
    train_loop(Toy(), _data(), _cfg(steps=8, checkpoint_every=2, checkpoints_total_limit=0), tmp_path,
               progress=False)
    with pytest.raises(KeyboardInterrupt):  # resumed from step 4, killed before its next checkpoint
        train_loop(Toy(fail_at=4), _data(), _cfg(steps=8, checkpoint_every=2, checkpoints_total_limit=0),
                   tmp_path, resume=tmp_path / "checkpoint-4", progress=False)
    assert [p.name for p in find_checkpoints(tmp_path)] == ["checkpoint-2", "checkpoint-4"]


# ---------------------------------------------------------------- pickles (item: torch >= 2.4)
def test_pyproject_requires_torch_2_4():
    text = (Path(__file__).resolve().parents[2] / "pyproject.toml").read_text()
    found = re.search(r'"torch>=(\d+)\.(\d+)', text)
    assert found and (int(found.group(1)), int(found.group(2))) >= (2, 4)


def test_resume_refuses_a_torch_without_weights_only_loading(tmp_path, monkeypatch):
    train_loop(Toy(), _data(), _cfg(steps=4), tmp_path, progress=False)
    monkeypatch.setattr(torch, "__version__", "2.3.1")
    with pytest.raises(DopplerDiffError, match=r"torch >= 2\.4"):
        train_loop(Toy(), _data(), _cfg(steps=6), tmp_path, resume="latest", progress=False)


class _Planted:
    def __reduce__(self):
        return (Path.write_text, (Path(MARKER[0]), "ran"))


MARKER = [""]


def test_planted_optimizer_pickle_never_runs(tmp_path):
    train_loop(Toy(), _data(), _cfg(steps=4), tmp_path, progress=False)
    MARKER[0] = str(tmp_path / "pwned")
    torch.save({"x": _Planted()}, tmp_path / "checkpoint-4" / "optimizer.bin")
    with pytest.raises(DopplerDiffError):
        train_loop(Toy(), _data(), _cfg(steps=6), tmp_path, resume="latest", progress=False)
    assert not (tmp_path / "pwned").exists()


# ---------------------------------------------------------------- the stages
@pytest.fixture
def run(ae_run, tmp_path):
    dst = tmp_path / "run"
    shutil.copytree(ae_run, dst)
    return dst


def _decoder_cfg(*extra):
    return load_config("smoke", [*ON, "decoder.train.steps=2", "decoder.train.checkpoint_every=1", *extra])


def test_decoder_resume_with_another_objective_or_size_is_refused(run):
    from dopplerdiff.train.decoder import DecoderStage, train_decoder

    with pytest.raises(KeyboardInterrupt):  # killed during step 2: checkpoint 1 is the latest
        _kill_at(DecoderStage, lambda: train_decoder(run, _decoder_cfg(), progress=False), step=1)
    for extra, key in ((["decoder.prediction_type=epsilon"], "decoder.prediction_type"),
                       (["decoder.size=32"], "decoder.size"), (["decoder.train.lr=0.1"], "decoder.train.lr")):
        with pytest.raises(DopplerDiffError, match=re.escape(key)):
            train_decoder(run, _decoder_cfg(*extra), resume="latest", progress=False)
    assert not (run / "decoder").exists()
    train_decoder(run, _decoder_cfg("decoder.train.steps=3"), resume="latest", progress=False)
    assert json.loads((run / "train/decoder/metrics.json").read_text())["step"] == 3


def _kill_at(stage_cls, fn, step: int):
    """Run ``fn`` with ``stage_cls.loss`` raising KeyboardInterrupt at optimiser step ``step`` (0-based)."""
    orig = stage_cls.loss

    def dying(self, batch, i):
        if i == step:
            raise KeyboardInterrupt
        return orig(self, batch, i)

    stage_cls.loss = dying
    try:
        fn()
    finally:
        stage_cls.loss = orig


def test_resuming_a_finished_decoder_rewrites_nothing(run):
    from dopplerdiff.train.decoder import train_decoder

    train_decoder(run, _decoder_cfg(), progress=False)
    metrics = (run / "train/decoder/metrics.json").read_bytes()
    inode = (run / "decoder").stat().st_ino
    assert train_decoder(run, _decoder_cfg(), resume="latest", progress=False) == run / "decoder"
    assert (run / "train/decoder/metrics.json").read_bytes() == metrics
    assert (run / "decoder").stat().st_ino == inode  # not re-saved


def test_finished_checkpoint_without_export_reports_logged_values(run):
    from dopplerdiff.train.decoder import train_decoder

    train_decoder(run, _decoder_cfg(), progress=False)
    before = json.loads((run / "train/decoder/metrics.json").read_text())
    shutil.rmtree(run / "decoder")  # killed after the last checkpoint, before the export
    train_decoder(run, _decoder_cfg(), resume="latest", progress=False)
    after = json.loads((run / "train/decoder/metrics.json").read_text())
    assert after["val"] == before["val"] and after["final_loss"] == before["final_loss"] is not None


def test_resume_latest_without_checkpoint_never_overwrites_a_trained_stage(run):
    from dopplerdiff.train.autoencoder import train_autoencoder

    shutil.rmtree(run / "train" / "autoencoder")  # checkpoints gone, RUN/autoencoder trained
    weights = {p.name: p.read_bytes() for p in (run / "autoencoder").iterdir()}
    with pytest.raises(DopplerDiffError, match="no checkpoint.*already trained"):
        train_autoencoder(run, load_config("smoke"), resume="latest", progress=False)
    assert {p.name: p.read_bytes() for p in (run / "autoencoder").iterdir()} == weights


def test_resume_dir_of_another_stage_is_one_clear_error(run, monkeypatch, capsys):
    from conftest import run_cli

    ckpt = find_checkpoints(run / "train" / "autoencoder")[-1]
    code, _, err = run_cli(monkeypatch, capsys, "train-decoder", "--run", run, "-c", "smoke", *ON,
                           "--resume", ckpt, "-q")
    assert code == 2 and err.count("error:") == 1 and "autoencoder stage, not of the decoder" in err, err
    assert not (run / "decoder").exists()


def test_every_stage_records_its_config(run, sim_data, tmp_path):
    from dopplerdiff.train.diffusion import train_diffusion
    from dopplerdiff.train.encoder import train_encoder

    ae = json.loads((find_checkpoints(run / "train/autoencoder")[-1] / "loop_state.json").read_text())
    assert ae["stage"] == "autoencoder" and "kind" in ae["config"]["autoencoder"]
    cfg = load_config("smoke", ["diffusion.train.steps=1", "encoder.train.steps=1"])
    train_diffusion(run, cfg, progress=False)
    train_encoder(None, run / "encoder", cfg, progress=False)
    for stage, key in (("diffusion", "diffusion"), ("encoder", "encoder")):
        state = json.loads((find_checkpoints(run / "train" / stage)[-1] / "loop_state.json").read_text())
        assert state["stage"] == stage and key in state["config"]
    with pytest.raises(DopplerDiffError, match=re.escape("diffusion.prediction_type")):
        train_diffusion(run, load_config("smoke", ["diffusion.prediction_type=v_prediction"]),
                        resume="latest", progress=False)
