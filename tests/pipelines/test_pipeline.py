"""DopplerDiffPipeline: samplers, output types, guidance checks, latent convention, save/load."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from conftest import build_tiny_pipeline

from dopplerdiff.errors import DopplerDiffError
from dopplerdiff.pipelines.pipeline_dopplerdiff import DopplerDiffPipeline
from dopplerdiff.schedulers import SCHEDULER_NAMES

NAMES = ["ID_1", "ID_2", "ID_10"]


def tiny_pipeline(smoke_config, backbone: str = "unet") -> DopplerDiffPipeline:
    return build_tiny_pipeline(smoke_config, backbone=backbone, scaling_factor=1.7, shift_factor=0.3,
                               prediction_type="v_prediction", names=NAMES, native_size=32)


@pytest.fixture(scope="module")
def pipe(smoke_config):
    return tiny_pipeline(smoke_config)


@pytest.mark.parametrize("name", SCHEDULER_NAMES)
def test_every_scheduler_samples(pipe, name):
    pipe.set_scheduler(name)
    assert pipe.scheduler_name == name
    assert pipe.scheduler.config.prediction_type == "v_prediction"  # training schedule kept
    out = pipe(["ID_1", 2], num_inference_steps=2, generator=torch.Generator().manual_seed(0)).images
    assert out.shape == (2, 16, 16, 1) and np.isfinite(out).all()
    assert out.min() >= 0 and out.max() <= 1


def test_output_types_and_latent_convention(pipe):
    pipe.set_scheduler("ddim")

    def run(kind):
        return pipe(
            ["ID_10"], num_inference_steps=2, generator=torch.Generator().manual_seed(1), output_type=kind
        )

    z = run("latent").images
    assert z.shape == (1, 4, 8, 8)
    pt = run("pt").images
    with torch.no_grad():
        manual = (pipe.autoencoder.eval().decode(z / 1.7 + 0.3).sample.clamp(-1, 1) + 1) / 2
    assert torch.allclose(pt, manual, atol=1e-6)
    assert np.allclose(run("np").images[0, ..., 0], pt[0, 0].numpy(), atol=1e-6)
    pil = run("pil").images[0]
    assert pil.mode == "RGB" and pil.size == (16, 16)


def test_invalid_arguments(pipe):
    with pytest.raises(DopplerDiffError, match="num_inference_steps"):
        pipe([0], num_inference_steps=0)
    with pytest.raises(DopplerDiffError, match="guidance_scale"):
        pipe([0], guidance_scale=-1.0)
    with pytest.raises(DopplerDiffError, match="ID_1, ID_2, ID_10"):
        pipe(["ID_7"])
    with pytest.raises(DopplerDiffError, match="valid: ddpm"):
        pipe.set_scheduler("plms")
    with pytest.raises(DopplerDiffError, match="output_type"):
        pipe([0], output_type="jpeg")
    with pytest.raises(DopplerDiffError, match="latents must have shape"):
        pipe([0], latents=torch.zeros(1, 4, 4, 4))


def test_guidance_changes_samples(pipe):
    pipe.set_scheduler("ddim")
    a = pipe(
        [0],
        num_inference_steps=2,
        guidance_scale=1.0,
        generator=torch.Generator().manual_seed(0),
        output_type="latent",
    ).images
    b = pipe(
        [0],
        num_inference_steps=2,
        guidance_scale=3.0,
        generator=torch.Generator().manual_seed(0),
        output_type="latent",
    ).images
    assert not torch.allclose(a, b)


@pytest.mark.parametrize("backbone", ["unet", "dit"])
def test_save_load_bit_identical(smoke_config, tmp_path, backbone):
    pipe = tiny_pipeline(smoke_config, backbone)
    pipe.set_scheduler("dpmpp")
    pipe.save_pretrained(tmp_path / "p")
    back = DopplerDiffPipeline.from_pretrained(tmp_path / "p")
    back.set_progress_bar_config(disable=True)
    assert back.identities == NAMES and back.scheduler_name == "dpmpp" and back.config.native_size == 32

    def run(p):
        return p(
            NAMES, num_inference_steps=3, generator=torch.Generator().manual_seed(5), output_type="pt"
        ).images

    assert torch.equal(run(pipe), run(back))
    index = json.loads((tmp_path / "p" / "model_index.json").read_text())
    assert index["identities"] == NAMES


def test_missing_component_is_clear_error(pipe, tmp_path):
    pipe.save_pretrained(tmp_path / "p")
    shutil.rmtree(tmp_path / "p" / "condition_encoder")
    with pytest.raises(DopplerDiffError, match="missing its 'condition_encoder'"):
        DopplerDiffPipeline.from_pretrained(tmp_path / "p")
    with pytest.raises(DopplerDiffError, match="not a saved pipeline"):
        DopplerDiffPipeline.from_pretrained(tmp_path / "nothing")
