"""Pipeline editing API: img2img, inpainting (+ RePaint), guidance interval, identity mixtures, slerp."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import build_tiny_pipeline
from diffusers import DDIMScheduler

from dopplerdiff.errors import DopplerDiffError
from dopplerdiff.pipelines.sampling import img2img_timesteps, parse_identity_mix, slerp, soft_labels


@pytest.fixture(scope="module")
def pipe(smoke_config):
    return build_tiny_pipeline(smoke_config, names=["ID_1", "ID_2", "ID_3"])


@pytest.fixture(scope="module")
def dit(smoke_config):
    return build_tiny_pipeline(smoke_config, backbone="dit", names=["ID_1", "ID_2", "ID_3"])


def source(seed: int = 0) -> torch.Tensor:
    return torch.rand(1, 1, 16, 16, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def oracle(pipe, monkeypatch, target: torch.Tensor) -> None:
    """Replace the denoiser by the exact epsilon that leads every x_t to ``target`` (an ideal model), with
    DDIM ending at alpha = 1 (the project's DDIM stops at t = 0's alpha, a hair of noise away from x0)."""
    pipe.scheduler = DDIMScheduler.from_config(pipe.scheduler.config, set_alpha_to_one=True)
    ac = pipe.scheduler.alphas_cumprod

    def forward(x, t, cond, soft):
        a = ac[int(t)]
        return (x - a.sqrt() * target.expand_as(x)) / (1 - a).sqrt()

    monkeypatch.setattr(pipe, "_forward", forward)


def test_img2img_schedule_is_diffusers_truncation(pipe):
    pipe.set_scheduler("dpmpp")
    pipe.scheduler.set_timesteps(10)
    full = pipe.scheduler.timesteps.clone()
    ts, start = img2img_timesteps(pipe.scheduler, 10, 0.3)
    assert start == 7 and torch.equal(ts, full[7:])  # the last int(10 * 0.3) steps
    assert pipe.scheduler.begin_index == 7  # multistep solvers start their history there


def test_oracle_img2img_returns_source(pipe, monkeypatch):
    """With an ideal denoiser, img2img at any strength lands exactly on the source latent."""
    pipe.set_scheduler("ddim")
    x = source()
    z0 = pipe.encode_images(x)
    oracle(pipe, monkeypatch, z0)
    for strength in (0.25, 0.5, 1.0):
        z = pipe(["ID_2"], num_inference_steps=4, guidance_scale=1.0, seed=1, image=x, strength=strength,
                 output_type="latent").images
        assert torch.allclose(z, z0, atol=1e-4), strength


def test_oracle_inpaint_blends_exactly(pipe, monkeypatch):
    """Ideal denoiser aiming at z1: the result is z1 inside the latent mask and the source outside,
    with and without RePaint resampling."""
    pipe.set_scheduler("ddim")
    x = source()
    z0 = pipe.encode_images(x)
    z1 = torch.full_like(z0, 0.5)
    oracle(pipe, monkeypatch, z1)
    mask = torch.zeros(16, 16)
    mask[:, 4:8] = 1  # pixel columns 4..7 -> latent columns 2..3
    lm = torch.zeros(1, 1, 8, 8)
    lm[..., 2:4] = 1
    for resample in (0, 2):
        z = pipe(["ID_1"], num_inference_steps=4, guidance_scale=1.0, seed=0, image=x, mask=mask,
                 resample_steps=resample, output_type="latent").images
        assert torch.allclose(z, lm * z1 + (1 - lm) * z0, atol=1e-4), resample


def test_strength_one_ignores_source_and_equals_sampling(pipe):
    pipe.set_scheduler("ddim")
    noise = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(3))
    plain = pipe(["ID_3"], num_inference_steps=3, latents=noise, output_type="latent").images
    edit = pipe(
        ["ID_3"], num_inference_steps=3, latents=noise, image=source(), strength=1.0, output_type="latent"
    ).images
    assert torch.equal(plain, edit)


def test_lower_strength_stays_closer_to_source(pipe):
    pipe.set_scheduler("ddim")
    x = source(5)
    z0 = pipe.encode_images(x)
    dist = [
        (pipe(["ID_1"], num_inference_steps=8, seed=2, image=x, strength=s, output_type="latent").images - z0)
        .norm()
        .item()
        for s in (0.125, 0.5, 1.0)
    ]
    assert dist[0] < dist[1] < dist[2]


def test_guidance_interval(pipe, monkeypatch):
    pipe.set_scheduler("ddim")
    args = {"num_inference_steps": 4, "guidance_scale": 3.0, "seed": 4, "output_type": "latent"}
    base = pipe(["ID_1"], **args).images
    assert torch.equal(pipe(["ID_1"], guidance_interval=(0.0, 1.0), **args).images, base)
    none = pipe(["ID_1"], guidance_interval=(0.0, 0.0), **args).images  # guidance never applies
    assert torch.equal(none, pipe(["ID_1"], **{**args, "guidance_scale": 1.0}).images)
    seen = []
    real = pipe.predict
    monkeypatch.setattr(
        pipe, "predict", lambda x, t, i, g, w=None: (seen.append((int(t), g)), real(x, t, i, g, w))[1]
    )
    pipe(["ID_1"], guidance_interval=(0.5, 1.0), **args)
    assert seen == [(999, 3.0), (749, 3.0), (499, 1.0), (249, 1.0)]  # trailing 4-step schedule


@pytest.mark.parametrize("backbone", ["unet", "dit"])
def test_one_hot_mixture_equals_plain_identity(pipe, dit, backbone):
    p = pipe if backbone == "unet" else dit
    p.set_scheduler("ddim")
    args = {"num_inference_steps": 2, "guidance_scale": 2.0, "seed": 0, "output_type": "latent"}
    plain = p(["ID_2"], **args).images
    assert torch.allclose(p([{"ID_2": 1.0}], **args).images, plain, atol=1e-5)
    w = np.array([[0.0, 3.0, 0.0]])  # un-normalised weights are made convex
    assert torch.allclose(p(identity_weights=w, **args).images, plain, atol=1e-5)
    mixed = p([{"ID_1": 0.5, "ID_3": 0.5}], **args).images
    assert not torch.allclose(mixed, plain, atol=1e-3)


def test_mixture_is_mean_of_condition_rows(pipe, dit):
    enc = pipe.condition_encoder
    _, w = pipe.identity_condition([{"ID_1": 1, "ID_3": 3}])
    from dopplerdiff.pipelines.sampling import mixed_tokens

    tokens = mixed_tokens(enc, w)
    expect = 0.25 * enc.table.weight[0] + 0.75 * enc.table.weight[2]  # nn.Embedding rows
    assert torch.allclose(tokens[0, 0], expect, atol=1e-6)
    block = dit.denoiser.transformer_blocks[0].norm1.emb.class_embedder
    with soft_labels(dit.denoiser, w):
        out = block(torch.tensor([0]))
    assert torch.allclose(
        out[0], 0.25 * block.embedding_table.weight[0] + 0.75 * block.embedding_table.weight[2]
    )
    assert torch.equal(block(torch.tensor([1]))[0], block.embedding_table.weight[1])  # restored


def test_slerp():
    a, b = torch.zeros(4), torch.zeros(4)
    a[0], b[1] = 2.0, 2.0
    assert torch.allclose(slerp(a, b, 0.0), a) and torch.allclose(slerp(a, b, 1.0), b)
    assert torch.allclose(slerp(a, b, 0.5), (a + b) / 2**0.5)  # on the circle, not the chord
    assert torch.allclose(slerp(a, a, 0.3), a)


def test_parse_identity_mix():
    assert parse_identity_mix("ID_3:0.5, ID_7:0.5") == {"ID_3": 0.5, "ID_7": 0.5}
    assert parse_identity_mix("ID_3") == {"ID_3": 1.0}
    for bad in ("ID_3:x", "ID_3:-1", ","):
        with pytest.raises(DopplerDiffError):
            parse_identity_mix(bad)


def test_bad_arguments(pipe):
    pipe.set_scheduler("ddim")
    x = source()
    cases = [
        ({"image": x, "strength": 0.0}, "strength"),
        ({"image": x, "strength": 1.5}, "strength"),
        ({"image": x, "strength": 0.1, "num_inference_steps": 4}, "no denoising step"),
        ({"image": x, "mask": torch.zeros(16, 16)}, "mask is empty"),
        ({"image": x, "mask": torch.ones(8, 8)}, "mask must have"),
        ({"image": x, "mask": torch.full((16, 16), 0.5)}, "0 \\(keep\\) or 1"),
        ({"mask": torch.ones(16, 16)}, "needs the source image"),
        ({"image": torch.zeros(1, 1, 8, 8)}, "image must have shape"),
        ({"image": x * 3}, r"\[-1, 1\]"),
        ({"guidance_interval": (0.8, 0.2)}, "guidance_interval"),
        ({"identity_weights": np.array([[-1.0, 1.0, 0.0]])}, "identity_weights"),
        ({"identity_weights": np.zeros((1, 2))}, "shape"),
        ({"resample_steps": -1}, "resample_steps"),
    ]
    for kwargs, match in cases:
        with pytest.raises(DopplerDiffError, match=match):
            pipe(["ID_1"], **{"num_inference_steps": 2, **kwargs})
    pipe.set_scheduler("dpmpp")
    with pytest.raises(DopplerDiffError, match="ddim or ddpm"):
        pipe(["ID_1"], num_inference_steps=2, image=x, mask=torch.ones(16, 16), resample_steps=1)


def test_call_restores_modes_and_sample_keeps_them(smoke_config):
    p = build_tiny_pipeline(smoke_config)
    p.denoiser.train()
    seen = []
    real = p._forward
    p._forward = lambda *a: (seen.append(p.denoiser.training), real(*a))[1]
    p([0], num_inference_steps=1, seed=0)
    p.sample([0], num_inference_steps=1, seed=0)
    assert seen == [False, True] and p.denoiser.training
