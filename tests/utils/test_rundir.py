"""RunDir: the one place naming a run's parts, and stage completion read from the marker files."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from dopplerdiff.errors import DopplerDiffError
from dopplerdiff.utils.rundir import MARKERS, RunDir
from dopplerdiff.workflow import stages


def test_parts_are_the_files_and_folders_a_run_holds(tmp_path):
    run = RunDir(tmp_path / "run")
    assert run.root == tmp_path / "run"
    expected = {
        "config": "config.yaml", "data_record": "data.json", "manifest": "manifest.json",
        "timings": "timings.json", "data": "data", "encoder": "encoder", "autoencoder": "autoencoder",
        "latents": "latents", "diffusion": "diffusion", "decoder": "decoder", "pipeline": "pipeline",
        "samples": "samples", "eval": "eval", "tensorboard": "tensorboard",
    }
    assert {name: getattr(run, name) for name in expected} == {
        name: tmp_path / "run" / rel for name, rel in expected.items()
    }
    assert run.work("diffusion") == tmp_path / "run" / "train" / "diffusion"


def test_a_run_dir_reads_as_its_path():
    run = RunDir("some/run")
    assert str(run) == "some/run" and f"'{run}'" == "'some/run'"
    assert Path(run) == Path("some/run") and os.fspath(run) == "some/run"
    assert RunDir(run) == run and RunDir(Path("some/run")) == run
    with pytest.raises(AttributeError):
        run.root = Path("elsewhere")  # frozen


def test_a_stage_is_complete_once_its_marker_exists(tmp_path):
    run = RunDir(tmp_path)
    assert not any(run.is_complete(stage) for stage in MARKERS)
    (tmp_path / "pipeline").mkdir()
    assert not run.is_complete("diffusion")  # the folder alone is no finished pipeline
    (tmp_path / "pipeline" / "model_index.json").write_text("{}")
    assert [s for s in MARKERS if run.is_complete(s)] == ["diffusion"]
    assert run.marker("decoder") == tmp_path / "pipeline" / "decoder" / "config.json"
    with pytest.raises(DopplerDiffError, match="unknown run stage 'sampling'"):
        run.marker("sampling")


def test_checkpoints_of_an_interrupted_stage_are_found(tmp_path):
    run = RunDir(tmp_path)
    assert not run.has_checkpoints("autoencoder")
    (run.work("autoencoder") / "checkpoint-20").mkdir(parents=True)
    assert run.has_checkpoints("autoencoder") and not run.has_checkpoints("diffusion")


def test_every_workflow_stage_has_a_marker():
    table = stages(simulated=True, decoder=True)
    assert sorted(s.marker for s in table) == sorted(MARKERS.values())
