"""Expected-output regression: a fixed seed on the tiny seeded pipeline gives stored values.

The numbers were computed once (CPU, float32) with dpmpp sampling and a strength-0.5 img2img; a change in
sampling behaviour (noise order, schedule, guidance, latent convention, img2img noising) moves them.
"""

from __future__ import annotations

import pytest
import torch
from conftest import build_tiny_pipeline

EXPECTED = {
    # backbone: (pixel (5,5) of both samples, mean, std, img2img mean, std, pixel (3,12))
    "unet": ([0.659216, 0.430881], 0.592962, 0.173111, 0.574013, 0.167246, 0.533154),
    "dit": ([0.792349, 0.557863], 0.598097, 0.169079, 0.578947, 0.161108, 0.449732),
}


@pytest.mark.parametrize("backbone", ["unet", "dit"])
def test_fixed_seed_outputs(smoke_config, backbone):
    pipe = build_tiny_pipeline(smoke_config, backbone=backbone, names=["ID_1", "ID_2", "ID_3"])
    pipe.set_scheduler("dpmpp")
    x = pipe(["ID_1", "ID_3"], num_inference_steps=2, guidance_scale=2.0, seed=0, output_type="pt").images
    src = torch.linspace(-1, 1, 256).reshape(1, 1, 16, 16)
    y = pipe(
        ["ID_2"], num_inference_steps=4, guidance_scale=2.0, seed=1, image=src, strength=0.5, output_type="pt"
    ).images
    pix, mean, std, ymean, ystd, ypix = EXPECTED[backbone]
    got = [
        *x[:, 0, 5, 5].tolist(),
        x.mean().item(),
        x.std().item(),
        y.mean().item(),
        y.std().item(),
        y[0, 0, 3, 12].item(),
    ]
    assert got == pytest.approx([*pix, mean, std, ymean, ystd, ypix], abs=2e-4)


def _tiny_vq_pipeline():
    """An untrained, seeded DopplerVQDiffusionPipeline at smoke sizes (16x16 images, 8x8 codes of 16)."""
    from dopplerdiff.config import load_config
    from dopplerdiff.models.autoencoder import build_autoencoder
    from dopplerdiff.models.condition import build_condition_encoder
    from dopplerdiff.models.vq_transformer import build_vq_transformer
    from dopplerdiff.pipelines.pipeline_vq_diffusion import DopplerVQDiffusionPipeline, vq_scheduler

    cfg = load_config("smoke", ["autoencoder.kind=vq", "autoencoder.num_vq_embeddings=16",
                                "diffusion.backbone=vq-diffusion", "diffusion.scheduler=vq-diffusion",
                                "evaluate.scheduler=vq-diffusion"])
    torch.manual_seed(0)
    vae = build_autoencoder(cfg.autoencoder, cfg.data)
    latent = cfg.data.size // cfg.autoencoder.downsample_factor
    d = cfg.diffusion
    pipe = DopplerVQDiffusionPipeline(vae, build_vq_transformer(d, 16, latent),
                                      build_condition_encoder(d, 3, d.backbone),
                                      vq_scheduler(16, d.vq.num_train_timesteps),
                                      identities=["ID_1", "ID_2", "ID_3"])
    pipe.set_progress_bar_config(disable=True)
    return pipe


# pixel (5,5) of both samples, mean, std: computed once (CPU, float32, 4 steps, guidance 2); a change in the
# discrete sampler (mask-and-replace steps, truncation, guidance on log-probabilities, code lookup) moves them
EXPECTED_VQ = [0.328868, 0.482142, 0.516380, 0.171878]


def test_fixed_seed_outputs_vq_diffusion():
    pipe = _tiny_vq_pipeline()
    out = pipe(["ID_1", "ID_3"], num_inference_steps=4, guidance_scale=2.0, seed=0, output_type="pt").images
    got = [*out[:, 0, 5, 5].tolist(), out.mean().item(), out.std().item()]
    assert got == pytest.approx(EXPECTED_VQ, abs=2e-4)
