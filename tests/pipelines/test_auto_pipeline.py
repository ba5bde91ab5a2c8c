"""The auto-loader: ``model_index.json``'s ``_class_name`` picks the pipeline class, also for pipelines saved
before the pipelines/ package existed (then ``dopplerdiff/pipeline.py`` and ``pipeline_vq.py``)."""

from __future__ import annotations

import json

import pytest
import torch

from dopplerdiff.config import load_config
from dopplerdiff.errors import DopplerDiffError
from dopplerdiff.models.autoencoder import build_autoencoder
from dopplerdiff.models.condition import build_condition_encoder
from dopplerdiff.models.vq_transformer import build_vq_transformer
from dopplerdiff.pipelines import DopplerDiffPipeline, DopplerVQDiffusionPipeline, load_pipeline
from dopplerdiff.pipelines.pipeline_vq_diffusion import vq_scheduler

# model_index.json exactly as the old layout (dopplerdiff.pipeline, diffusers 0.42.1) wrote it for the
# tiny pipeline of conftest.build_tiny_pipeline: only the class names and the components' libraries
OLD_INDEX = """{
  "_class_name": "DopplerDiffPipeline",
  "_diffusers_version": "0.42.1",
  "autoencoder": ["diffusers", "AutoencoderKL"],
  "channels": 1,
  "colormap": "jet",
  "condition_encoder": ["dopplerdiff.models.condition", "IdentityConditionEncoder"],
  "conditions": null,
  "decoder": [null, null],
  "denoiser": ["diffusers", "UNet2DConditionModel"],
  "identities": ["ID_1", "ID_2", "ID_3"],
  "native_size": null,
  "scheduler": ["diffusers", "DDIMScheduler"]
}
"""
OLD_VQ_INDEX = """{
  "_class_name": "DopplerVQDiffusionPipeline",
  "_diffusers_version": "0.42.1",
  "autoencoder": ["diffusers", "VQModel"],
  "channels": 1,
  "colormap": "jet",
  "condition_encoder": ["dopplerdiff.models.condition", "IdentityConditionEncoder"],
  "denoiser": ["diffusers", "Transformer2DModel"],
  "identities": ["ID_1", "ID_2", "ID_3"],
  "native_size": null,
  "scheduler": ["diffusers", "VQDiffusionScheduler"],
  "truncation_rate": 1.0
}
"""


def tiny_vq_pipeline() -> DopplerVQDiffusionPipeline:
    cfg = load_config("smoke", ["autoencoder.kind=vq", "diffusion.backbone=vq-diffusion",
                                "diffusion.scheduler=vq-diffusion", "evaluate.scheduler=vq-diffusion"])
    torch.manual_seed(0)
    vae = build_autoencoder(cfg.autoencoder, cfg.data)
    codes = int(vae.config.num_vq_embeddings)
    side = cfg.data.size // 2 ** (len(vae.config.block_out_channels) - 1)
    pipe = DopplerVQDiffusionPipeline(
        vae, build_vq_transformer(cfg.diffusion, codes, side),
        build_condition_encoder(cfg.diffusion, 3, cfg.diffusion.backbone),
        vq_scheduler(codes, cfg.diffusion.vq.num_train_timesteps), identities=["ID_1", "ID_2", "ID_3"],
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _samples(pipe, output_type: str = "pt") -> torch.Tensor:
    return pipe(["ID_1", "ID_3"], num_inference_steps=2, seed=3, output_type=output_type).images


def test_a_pipeline_saved_by_the_old_layout_loads(tiny_pipeline_factory, tmp_path):
    pipe = tiny_pipeline_factory()
    pipe.save_pretrained(tmp_path / "p")
    (tmp_path / "p" / "model_index.json").write_text(OLD_INDEX)
    back = load_pipeline(tmp_path / "p")
    back.set_progress_bar_config(disable=True)
    assert type(back) is DopplerDiffPipeline and back.identities == ["ID_1", "ID_2", "ID_3"]
    assert torch.equal(_samples(pipe), _samples(back))


def test_a_vq_pipeline_saved_by_the_old_layout_loads(tmp_path):
    pipe = tiny_vq_pipeline()
    pipe.save_pretrained(tmp_path / "p")
    (tmp_path / "p" / "model_index.json").write_text(OLD_VQ_INDEX)
    back = load_pipeline(tmp_path / "p")
    back.set_progress_bar_config(disable=True)
    assert type(back) is DopplerVQDiffusionPipeline
    assert torch.equal(_samples(pipe, "latent"), _samples(back, "latent"))


@pytest.mark.parametrize("name", ["StableDiffusionPipeline", None])
def test_a_foreign_class_is_one_error(tiny_pipeline_factory, tmp_path, name):
    tiny_pipeline_factory().save_pretrained(tmp_path / "p")
    index = tmp_path / "p" / "model_index.json"
    config = json.loads(index.read_text())
    config["_class_name"] = name
    index.write_text(json.dumps(config))
    with pytest.raises(DopplerDiffError, match=r"model_index.json.*not a pipeline of this project "
                                               r"\(DopplerDiffPipeline, DopplerVQDiffusionPipeline\)"):
        load_pipeline(tmp_path / "p")
