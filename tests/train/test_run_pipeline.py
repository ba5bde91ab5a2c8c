"""Every writer of RUN/pipeline (enroll-generator, train-decoder, train-diffusion) re-saves it under the
run's lock from what is on disk: concurrent enrolments keep both people, and no stage drops what another
one added (enrolled identities, enrolled.json, the diffusion decoder)."""

from __future__ import annotations

import json
import shutil
import threading

import pytest
import torch
from conftest import build_tiny_pipeline
from filelock import FileLock

from dopplerdiff.config import config_for, load_config
from dopplerdiff.errors import DopplerDiffError
from dopplerdiff.pipelines.auto_pipeline import load_pipeline
from dopplerdiff.train.identity import learn_identity, save_pipeline

IMAGES = (torch.rand(4, 1, 16, 16, generator=torch.Generator().manual_seed(0)) * 2 - 1).numpy()


@pytest.fixture
def tiny_run(tmp_path, smoke_config):
    run = tmp_path / "run"
    build_tiny_pipeline(smoke_config, names=["ID_1", "ID_2", "ID_3"]).save_pretrained(run / "pipeline")
    (run / "pipeline" / "manifest.json").write_text('{"kind": "pipeline"}')
    return run


def _learn(run, name, cfg, seed=0):
    """What one `enroll-generator` does before saving: load RUN/pipeline, learn a row for ``name``."""
    pipe = load_pipeline(run / "pipeline")
    pipe.set_progress_bar_config(disable=True)
    info = learn_identity(pipe, IMAGES, name, cfg, steps=2, seed=seed, progress=False)
    return pipe, info


def _row(pipe, name):
    return pipe.condition_encoder.table.weight[pipe.identities.index(name)].detach()


def _enrolled(run):
    return [e["identity"] for e in json.loads((run / "pipeline" / "enrolled.json").read_text())["enrolled"]]


# ---------------------------------------------------------------- item 3: concurrent enrolments
def test_two_enrolments_started_from_the_same_pipeline_keep_both_people(tiny_run, smoke_config):
    alice, info_a = _learn(tiny_run, "alice", smoke_config)
    bob, info_b = _learn(tiny_run, "bob", smoke_config, seed=1)  # loaded before alice was saved
    save_pipeline(alice, tiny_run, info_a)
    save_pipeline(bob, tiny_run, info_b)
    saved = load_pipeline(tiny_run / "pipeline")
    assert saved.identities == ["ID_1", "ID_2", "ID_3", "alice", "bob"]
    assert torch.equal(_row(saved, "alice"), _row(alice, "alice"))
    assert torch.equal(_row(saved, "bob"), _row(bob, "bob"))
    assert _enrolled(tiny_run) == ["alice", "bob"]
    assert json.loads((tiny_run / "pipeline" / "manifest.json").read_text()) == {"kind": "pipeline"}


def test_concurrent_saves_wait_for_each_other(tiny_run, smoke_config):
    learned = [_learn(tiny_run, name, smoke_config, seed=i) for i, name in enumerate(["alice", "bob"])]
    start, errors = threading.Barrier(2), []

    def save(pipe, info):
        start.wait()
        try:
            save_pipeline(pipe, tiny_run, info)
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=save, args=item) for item in learned]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert sorted(load_pipeline(tiny_run / "pipeline").identities[3:]) == ["alice", "bob"]
    assert sorted(_enrolled(tiny_run)) == ["alice", "bob"]


def test_a_writer_that_cannot_get_the_lock_fails_clearly_and_changes_nothing(tiny_run, smoke_config,
                                                                             monkeypatch):
    from dopplerdiff.train import run_pipeline

    pipe, info = _learn(tiny_run, "alice", smoke_config)
    monkeypatch.setattr(run_pipeline, "LOCK_WAIT_S", 0.0, raising=False)
    before = (tiny_run / "pipeline" / "model_index.json").read_text()
    # `dopplerdiff run` or another writer in another process holds the run
    with FileLock(str(tiny_run / ".lock")), pytest.raises(DopplerDiffError, match="in use by another"):
        save_pipeline(pipe, tiny_run, info)
    assert (tiny_run / "pipeline" / "model_index.json").read_text() == before


def test_an_enrolment_onto_a_retrained_denoiser_is_refused(tiny_run, smoke_config):
    pipe, info = _learn(tiny_run, "alice", smoke_config)
    other = build_tiny_pipeline(smoke_config, names=["ID_1", "ID_2", "ID_3"])
    with torch.no_grad():
        next(other.denoiser.parameters()).add_(1.0)  # train-diffusion --resume replaced the denoiser
    shutil.rmtree(tiny_run / "pipeline")
    other.save_pretrained(tiny_run / "pipeline")
    with pytest.raises(DopplerDiffError, match="enroll again"):
        save_pipeline(pipe, tiny_run, info)
    assert load_pipeline(tiny_run / "pipeline").identities == ["ID_1", "ID_2", "ID_3"]


# ---------------------------------------------------------------- item 4: no stage drops another's part
ON = ["decoder.kind=diffusion"]


@pytest.fixture
def run(ae_run, tmp_path):
    dst = tmp_path / "run"
    shutil.copytree(ae_run, dst)
    return dst


def test_decoder_trained_first_joins_train_diffusion_on_the_run_config(run):
    from dopplerdiff.train.decoder import train_decoder
    from dopplerdiff.train.diffusion import train_diffusion

    train_decoder(run, load_config("smoke", ON), progress=False)  # `train-decoder`: kind only an override
    train_diffusion(run, config_for(run, None, []), progress=False)  # `train-diffusion`: the run's config
    assert load_pipeline(run / "pipeline").decoder is not None


def test_decoder_and_resumed_diffusion_keep_enrolled_identities(run, smoke_config):
    from dopplerdiff.train.decoder import train_decoder
    from dopplerdiff.train.diffusion import train_diffusion

    train_diffusion(run, load_config("smoke"), progress=False)
    pipe, info = _learn(run, "alice", smoke_config)
    save_pipeline(pipe, run, info)
    alice = _row(pipe, "alice")
    train_decoder(run, load_config("smoke", ON), progress=False)  # re-saves RUN/pipeline with the decoder
    after_decoder = load_pipeline(run / "pipeline")
    assert after_decoder.decoder is not None and after_decoder.identities[-1] == "alice"
    assert torch.equal(_row(after_decoder, "alice"), alice) and _enrolled(run) == ["alice"]
    # a profile whose decoder.kind is vae: the pipeline's decoder is kept all the same
    train_diffusion(run, load_config("smoke", ["diffusion.train.steps=6"]), resume="latest", progress=False)
    resumed = load_pipeline(run / "pipeline")
    assert resumed.identities == ["ID_1", "ID_2", "ID_3", "alice"]
    assert torch.equal(_row(resumed, "alice"), alice)
    assert resumed.decoder is not None and _enrolled(run) == ["alice"]
    assert json.loads((run / "pipeline" / "manifest.json").read_text())["step"] == 6
