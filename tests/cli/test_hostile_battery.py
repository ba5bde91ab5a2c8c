"""Findings of bench/hostile.py: each is refused with one clear error before any work."""

from __future__ import annotations

import re

import pytest

from dopplerdiff.config import load_config
from dopplerdiff.config.data import MAX_SIZE
from dopplerdiff.errors import ConfigError


def test_simulate_size_has_an_upper_bound():
    """--size 10000000 allocated a 26 GiB resampling matrix and died with a MemoryError traceback."""
    with pytest.raises(ConfigError, match=re.escape(f"simulate.size must be in [16, {MAX_SIZE}]")):
        load_config("smoke", [f"simulate.size={MAX_SIZE + 1}"])
    assert load_config("smoke", [f"simulate.size={MAX_SIZE}"]).simulate.size == MAX_SIZE


@pytest.mark.parametrize("name", ["tpu", "cuda:x", ""])
def test_evaluate_device_is_checked(name):
    """--device tpu was a raw RuntimeError from torch.device."""
    from dopplerdiff.errors import DopplerDiffError
    from dopplerdiff.evaluate.loading import eval_device

    with pytest.raises(DopplerDiffError, match="--device"):
        eval_device(name)
    assert eval_device("cpu").type == "cpu"


def test_an_output_that_is_a_file_is_one_error(tmp_path, smoke_config):
    """evaluate --out FILE, train-encoder --out FILE, embed -i FILE were NotADirectoryError tracebacks."""
    from dopplerdiff.embed.ops import _create_index
    from dopplerdiff.errors import DopplerDiffError
    from dopplerdiff.evaluate.evaluate import evaluate_run
    from dopplerdiff.train.encoder import train_encoder

    file = tmp_path / "notes.txt"
    file.write_text("keep")
    (tmp_path / "run").mkdir()
    calls = [lambda: evaluate_run(tmp_path / "run", smoke_config, out=file, overwrite=True),
             lambda: train_encoder(None, file, smoke_config),
             lambda: _create_index(tmp_path / "enc", tmp_path, file, smoke_config, "all", True, None, False)]
    for call in calls:
        with pytest.raises(DopplerDiffError, match="is an existing file"):
            call()
    assert file.read_text() == "keep"


def test_run_on_an_unreadable_data_root_writes_nothing(tmp_path, sim_data, smoke_config):
    """`run --data` on a root the reader refuses (here identity folders mixed with condition folders) left RUN
    (config.yaml, a lock) behind."""
    import shutil

    from dopplerdiff.errors import DataError
    from dopplerdiff.workflow import run_all

    nested = tmp_path / "nested"
    shutil.copytree(sim_data / "ID_1", nested / "Normal_line" / "ID_1")
    shutil.copytree(sim_data / "ID_2", nested / "ID_2")
    run = tmp_path / "run"
    with pytest.raises(DataError, match="mixes identity folders"):
        run_all(run, smoke_config, nested, progress=False)
    assert not run.exists()


def _truncate(path):
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def test_truncated_weights_are_one_error_naming_the_part(tmp_path, tiny_pipeline_factory):
    """A truncated *.safetensors in RUN/autoencoder or RUN/pipeline was diffusers' OSError traceback."""
    from dopplerdiff.errors import DopplerDiffError
    from dopplerdiff.models.autoencoder import load_autoencoder
    from dopplerdiff.models.denoiser import load_denoiser
    from dopplerdiff.pipelines.auto_pipeline import load_pipeline

    pipe = tiny_pipeline_factory()
    pipe.save_pretrained(tmp_path / "pipeline")
    pipe.autoencoder.save_pretrained(tmp_path / "autoencoder")
    _truncate(next((tmp_path / "pipeline" / "denoiser").glob("*.safetensors")))
    _truncate(next((tmp_path / "autoencoder").glob("*.safetensors")))
    with pytest.raises(DopplerDiffError, match="denoiser '.*pipeline/denoiser' cannot be loaded"):
        load_pipeline(tmp_path / "pipeline")
    with pytest.raises(DopplerDiffError, match="autoencoder .* cannot be loaded"):
        load_autoencoder(tmp_path / "autoencoder")
    # the part loaders outside a pipeline (train-diffusion reads RUN/decoder, e.g.) say the same
    with pytest.raises(DopplerDiffError, match="denoiser .* cannot be loaded"):
        load_denoiser(tmp_path / "pipeline" / "denoiser")


def test_truncated_decoder_and_transformer_weights_are_one_error(tmp_path, smoke_config):
    from dopplerdiff.config import load_config
    from dopplerdiff.errors import DopplerDiffError
    from dopplerdiff.models.decoder import build_decoder, load_decoder
    from dopplerdiff.models.vq_transformer import build_vq_transformer, load_vq_transformer

    build_decoder(smoke_config.decoder, 1, 4, 8, 16).save_pretrained(tmp_path / "decoder")
    vq = ["autoencoder.kind=vq", "diffusion.backbone=vq-diffusion", "diffusion.scheduler=vq-diffusion",
          "evaluate.scheduler=vq-diffusion"]
    vq_cfg = load_config("smoke", vq).diffusion
    build_vq_transformer(vq_cfg, 16, 4).save_pretrained(tmp_path / "transformer")
    for part, load, name in ((tmp_path / "decoder", load_decoder, "diffusion decoder"),
                             (tmp_path / "transformer", load_vq_transformer, "transformer")):
        load(part)  # loads while intact
        _truncate(next(part.glob("*.safetensors")))
        with pytest.raises(DopplerDiffError, match=f"{name} .* cannot be loaded"):
            load(part)
