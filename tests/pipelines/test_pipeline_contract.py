"""One contract, every pipeline class: the continuous-latent pipeline (UNet and DiT denoisers) and the
discrete VQ-diffusion pipeline answer the same calls the same way (seeds, output types, identities by name or
index, argument checks, save/load through the auto-loader)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import build_tiny_pipeline, build_tiny_vq_pipeline

from dopplerdiff.errors import DopplerDiffError
from dopplerdiff.pipelines import DopplerDiffPipeline, load_pipeline
from dopplerdiff.pipelines.pipeline_vq_diffusion import DopplerVQDiffusionPipeline

NAMES = ["ID_1", "ID_2", "ID_3"]
KINDS = {"unet": DopplerDiffPipeline, "dit": DopplerDiffPipeline, "vq": DopplerVQDiffusionPipeline}


@pytest.fixture(scope="module", params=list(KINDS))
def pipe(request, smoke_config):
    if request.param == "vq":
        return build_tiny_vq_pipeline()
    return build_tiny_pipeline(smoke_config, backbone=request.param, names=NAMES)


def _draw(pipe, ids=("ID_1", "ID_3"), seed=0, **kw):
    return pipe(list(ids), num_inference_steps=2, guidance_scale=2.0, seed=seed, **kw).images


def test_the_pipeline_is_its_class(pipe, request):
    assert type(pipe) is KINDS[request.node.callspec.params["pipe"]]
    assert list(pipe.identities) == NAMES


def test_a_seed_fixes_the_samples_and_another_seed_changes_them(pipe):
    a, b, c = _draw(pipe, seed=3), _draw(pipe, seed=3), _draw(pipe, seed=4)
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)


def test_output_types_agree(pipe):
    x = _draw(pipe, output_type="np")
    t = _draw(pipe, output_type="pt")
    pil = _draw(pipe, output_type="pil")
    assert x.shape == (2, 16, 16, 1)
    assert x.min() >= 0.0 and x.max() <= 1.0
    assert tuple(t.shape) == (2, 1, 16, 16)
    assert np.allclose(t.permute(0, 2, 3, 1).numpy(), x, atol=1e-6)
    assert len(pil) == 2 and pil[0].size == (16, 16)


def test_identities_by_name_or_index_are_the_same(pipe):
    assert np.array_equal(_draw(pipe, ids=["ID_3"]), _draw(pipe, ids=[2]))


def test_return_dict_false_gives_a_tuple(pipe):
    out = pipe(["ID_2"], num_inference_steps=2, seed=1, return_dict=False)
    assert isinstance(out, tuple) and np.array_equal(out[0], _draw(pipe, ids=["ID_2"], seed=1))


@pytest.mark.parametrize("kwargs, match", [
    ({"num_inference_steps": 0}, "num_inference_steps"),
    ({"identities": ["ID_9"]}, "ID_1, ID_2, ID_3"),
    ({"output_type": "jpeg"}, "output_type"),
])
def test_bad_arguments_are_one_clear_error(pipe, kwargs, match):
    call = {"identities": ["ID_1"], "num_inference_steps": 2, **kwargs}
    with pytest.raises(DopplerDiffError, match=match):
        pipe(**call)


def test_save_and_auto_load_give_the_same_samples(pipe, tmp_path):
    pipe.save_pretrained(tmp_path / "p")
    back = load_pipeline(tmp_path / "p")
    back.set_progress_bar_config(disable=True)
    assert type(back) is type(pipe) and list(back.identities) == NAMES
    assert torch.equal(torch.from_numpy(_draw(back)), torch.from_numpy(_draw(pipe)))
