"""Identity names become folder names: "../../x" and friends are refused wherever names enter."""

from __future__ import annotations

import json

import pytest

from dopplerdiff.errors import DataError
from dopplerdiff.utils.names import check_identity_name

UNSAFE = ["../../x", "a/b", "..", ".", ".hidden", "a\\b", "new\nline", "", " ", "x" * 256]


@pytest.mark.parametrize("name", UNSAFE)
def test_unsafe_names_are_refused(name):
    with pytest.raises(DataError, match="identity name"):
        check_identity_name(name, "test")


@pytest.mark.parametrize("name", ["ID_1", "alice", "Person 3", "ID-7.b", "José"])
def test_plain_names_pass(name):
    assert check_identity_name(name, "test") == name


def test_pipeline_with_a_traversing_identity_is_refused(tiny_pipeline_factory, tmp_path):
    from dopplerdiff.pipelines.pipeline_dopplerdiff import DopplerDiffPipeline

    pipe = tiny_pipeline_factory(names=["ID_1", "ID_2", "ID_3"])
    pipe.save_pretrained(tmp_path / "p")
    index = tmp_path / "p" / "model_index.json"
    cfg = json.loads(index.read_text())
    cfg["identities"][1] = "../../outside"
    index.write_text(json.dumps(cfg))
    with pytest.raises(DataError, match="outside"):
        DopplerDiffPipeline.from_pretrained(tmp_path / "p")


def test_run_data_and_latent_cache_with_a_traversing_identity_are_refused(tmp_path):
    from dopplerdiff.data.latents import read_latent_info
    from dopplerdiff.data.run_data import read_run_data

    (tmp_path / "data.json").write_text(json.dumps(
        {"data_root": "d", "identities": ["ID_1", "../x"], "split": {}}))
    with pytest.raises(DataError, match="data.json"):
        read_run_data(tmp_path)
    (tmp_path / "latents").mkdir()
    (tmp_path / "latents" / "info.json").write_text(json.dumps({"identities": ["/etc"]}))
    with pytest.raises(DataError, match="info.json"):
        read_latent_info(tmp_path)


def test_enroll_refuses_a_traversing_name(tmp_path, smoke_config):
    from dopplerdiff.embed.ops import enroll_files

    with pytest.raises(DataError, match="--identity"):
        enroll_files(tmp_path / "ix", "../../x", [tmp_path], smoke_config)
