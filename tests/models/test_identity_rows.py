"""Few-shot identities: growing the identity tables keeps every old identity and the null row intact;
learning the new row changes nothing else and lowers its denoising loss."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from conftest import build_tiny_pipeline

from dopplerdiff.errors import DopplerDiffError
from dopplerdiff.models.identity_rows import add_identity_row
from dopplerdiff.pipelines.pipeline_dopplerdiff import DopplerDiffPipeline
from dopplerdiff.train.identity import learn_identity

CASES = [("unet", "embedding"), ("unet", "tokens"), ("unet", "onehot_mlp"), ("dit", "label")]


def make(smoke_config, backbone, kind):
    cfg = dataclasses.replace(
        smoke_config,
        diffusion=dataclasses.replace(
            smoke_config.diffusion, condition=dataclasses.replace(smoke_config.diffusion.condition, kind=kind)
        ),
    )
    pipe = build_tiny_pipeline(cfg, backbone=backbone, names=["ID_1", "ID_2", "ID_3"])
    pipe.set_scheduler("ddim")
    return pipe, cfg


def sample(pipe, ids):
    return pipe(ids, num_inference_steps=2, guidance_scale=2.0, seed=0, output_type="latent").images


@pytest.mark.parametrize(("backbone", "kind"), CASES)
def test_growing_keeps_old_identities_and_null(smoke_config, tmp_path, backbone, kind):
    pipe, _ = make(smoke_config, backbone, kind)
    before = sample(pipe, ["ID_1", "ID_3"])
    uncond = pipe(["ID_1"], num_inference_steps=2, guidance_scale=0.0, seed=0, output_type="latent").images
    row = add_identity_row(pipe.condition_encoder, pipe.denoiser)
    pipe.register_to_config(identities=[*pipe.identities, "NEW"])
    assert row == 3 and pipe.condition_encoder.null_id == 4
    assert torch.allclose(sample(pipe, ["ID_1", "ID_3"]), before, atol=1e-6)
    assert torch.allclose(
        pipe(["ID_1"], num_inference_steps=2, guidance_scale=0.0, seed=0, output_type="latent").images,
        uncond,
        atol=1e-6,
    )
    new = sample(pipe, ["NEW"])
    pipe.save_pretrained(tmp_path / "p")
    loaded = DopplerDiffPipeline.from_pretrained(tmp_path / "p")
    loaded.set_progress_bar_config(disable=True)
    assert loaded.identities == ["ID_1", "ID_2", "ID_3", "NEW"]
    assert torch.allclose(sample(loaded, ["NEW"]), new, rtol=1e-4, atol=1e-4)  # float summation order


@pytest.mark.parametrize(("backbone", "kind"), [CASES[0], CASES[3]])
def test_learning_changes_only_the_new_row(smoke_config, backbone, kind):
    pipe, cfg = make(smoke_config, backbone, kind)
    old = {
        k: v.clone()
        for k, v in {
            **pipe.denoiser.state_dict(),
            **{f"c.{k}": v for k, v in pipe.condition_encoder.state_dict().items()},
        }.items()
    }
    images = (torch.rand(4, 1, 16, 16, generator=torch.Generator().manual_seed(0)) * 2 - 1).numpy()
    info = learn_identity(pipe, images, "NEW", cfg, steps=40, lr=0.05, batch_size=4, progress=False)
    assert info["loss_last"] < info["loss_first"]
    new = {
        **pipe.denoiser.state_dict(),
        **{f"c.{k}": v for k, v in pipe.condition_encoder.state_dict().items()},
    }
    for name, value in new.items():
        if name == "c.null_label":  # the DiT's null id moves to K+1 with the table
            assert int(value) == 4
        elif value.shape == old[name].shape:
            assert torch.equal(value, old[name]), name
        else:  # a grown table: old rows 0..2 and the null row are untouched
            axis = int(np.argmax(np.array(value.shape) != np.array(old[name].shape)))
            keep = torch.tensor([0, 1, 2, 4])
            assert torch.equal(value.index_select(axis, keep), old[name]), name


def test_learning_refuses_bad_requests(smoke_config):
    pipe, cfg = make(smoke_config, "unet", "embedding")
    images = (torch.rand(4, 1, 16, 16, generator=torch.Generator().manual_seed(0)) * 2 - 1).numpy()
    with pytest.raises(DopplerDiffError, match="already exists"):
        learn_identity(pipe, images, "ID_2", cfg, steps=1, progress=False)
    with pytest.raises(DopplerDiffError, match="at least 3 windows"):
        learn_identity(pipe, images[:2], "NEW", cfg, steps=1, progress=False)
    assert pipe.identities == ["ID_1", "ID_2", "ID_3"]
    learn_identity(pipe, images, "NEW", cfg, steps=2, progress=False)  # leaves no gradient mask behind
    table = pipe.condition_encoder.table.weight.detach().clone()
    info = learn_identity(pipe, images, "ID_2", cfg, replace=True, steps=3, progress=False)
    after = pipe.condition_encoder.table.weight.detach()
    assert info["row"] == 1 and pipe.identities == ["ID_1", "ID_2", "ID_3", "NEW"]
    reset = table[[0, 2, 3]].mean(0)
    assert not torch.allclose(after[1], table[1]) and not torch.allclose(after[1], reset)
    assert torch.equal(after[[0, 2, 3, 4]], table[[0, 2, 3, 4]])
