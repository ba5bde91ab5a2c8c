"""Denoiser builders: UNet2DConditionModel / DiT from config sizes, one call API, save/load."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from diffusers import DiTTransformer2DModel, UNet2DConditionModel

from dopplerdiff.errors import ConfigError, DopplerDiffError
from dopplerdiff.models.condition import build_condition_encoder
from dopplerdiff.models.denoiser import build_denoiser, count_parameters, denoise, load_denoiser


def _cfg(smoke_config, **kw):
    return dataclasses.replace(smoke_config.diffusion, **kw)


@pytest.mark.parametrize("backbone", ["unet", "dit"])
def test_build_forward_and_roundtrip(smoke_config, backbone, tmp_path):
    cfg = _cfg(smoke_config, backbone=backbone)
    torch.manual_seed(0)
    model = build_denoiser(cfg, 4, 8, 3).eval()
    enc = build_condition_encoder(cfg, 3, backbone)
    assert isinstance(model, UNet2DConditionModel if backbone == "unet" else DiTTransformer2DModel)
    assert count_parameters(model) > 0
    x, t = torch.randn(2, 4, 8, 8), torch.tensor([10, 900])
    with torch.no_grad():
        out = denoise(model, x, t, enc.encode(torch.tensor([0, 3])))
        out_other = denoise(model, x, t, enc.encode(torch.tensor([1, 3])))
    assert out.shape == x.shape
    # The identity reaches the output (sample 0 changed identity, sample 1 kept the null).
    assert not torch.allclose(out[0], out_other[0]) and torch.allclose(out[1], out_other[1], atol=1e-5)
    model.save_pretrained(tmp_path / "den")
    back = load_denoiser(tmp_path / "den").eval()
    with torch.no_grad():
        assert torch.equal(denoise(back, x, t, enc.encode(torch.tensor([0, 3]))), out)


def test_unet_block_layout_and_time_conditioning(smoke_config):
    model = build_denoiser(_cfg(smoke_config, block_out_channels=[16, 32, 32]), 4, 8, 3)
    assert list(model.config.down_block_types) == [
        "CrossAttnDownBlock2D",
        "CrossAttnDownBlock2D",
        "DownBlock2D",
    ]
    assert model.config.up_block_types[0] == "UpBlock2D"
    assert model.config.class_embed_type == "projection"
    plain = build_denoiser(_cfg(smoke_config, time_conditioning=False), 4, 8, 3)
    assert plain.config.class_embed_type is None
    assert denoise(plain, torch.randn(1, 4, 8, 8), torch.tensor(5), torch.randn(1, 1, 16)).shape == (
        1,
        4,
        8,
        8,
    )


def test_bad_sizes_are_config_errors(smoke_config):
    with pytest.raises(ConfigError, match="not divisible"):
        build_denoiser(_cfg(smoke_config, block_out_channels=[16, 32, 32, 32]), 4, 4, 3)
    with pytest.raises(ConfigError, match="dit_patch_size"):
        build_denoiser(_cfg(smoke_config, backbone="dit", dit_patch_size=3), 4, 8, 3)


def test_load_denoiser_missing_dir(tmp_path):
    with pytest.raises(DopplerDiffError, match="config.json"):
        load_denoiser(tmp_path)


def test_attention_levels_choose_where_attention_blocks_go(smoke_config):
    cfg = dataclasses.replace(smoke_config.diffusion, attention_levels=[False, True])
    unet = build_denoiser(cfg, 4, 8, 3)
    assert unet.config.down_block_types == ("DownBlock2D", "CrossAttnDownBlock2D")
    assert unet.config.up_block_types == ("CrossAttnUpBlock2D", "UpBlock2D")
    default = build_denoiser(smoke_config.diffusion, 4, 8, 3)
    assert default.config.down_block_types == ("CrossAttnDownBlock2D", "DownBlock2D")
    with pytest.raises(ConfigError, match="attention_levels"):
        build_denoiser(dataclasses.replace(cfg, attention_levels=[True]), 4, 8, 3)


def test_paper_unet_has_the_design_attention_layout_and_stable_diffusion_size():
    from accelerate import init_empty_weights

    from dopplerdiff.config import load_config

    cfg = load_config("paper").diffusion
    with init_empty_weights():  # meta tensors: the 860M-parameter layout without allocating it
        unet = build_denoiser(cfg, 4, 32, 31)
        plain = build_denoiser(dataclasses.replace(cfg, time_conditioning=False), 4, 32, 31)
    attn = [b.attentions[0].transformer_blocks[0].attn1 for b in unet.down_blocks if hasattr(b, "attentions")]
    assert [a.heads for a in attn] == [5, 10, 20]
    assert all(a.inner_dim // a.heads == 64 for a in attn)  # 64-wide heads
    assert isinstance(unet.down_blocks[0].attentions[0].proj_in, torch.nn.Linear)
    # Stable Diffusion 1.x/2.x UNet (4 latent channels, 768-d cross-attention) has 859,520,964 parameters;
    # the identity projection into the timestep embedding adds 768x1280 + 1280x1280 weights and biases
    assert count_parameters(plain) == 859_520_964
    assert count_parameters(unet) - count_parameters(plain) == 768 * 1280 + 1280 + 1280 * 1280 + 1280
    with pytest.raises(ConfigError, match="num_attention_heads"):
        build_denoiser(dataclasses.replace(cfg, num_attention_heads=[5, 10, 20]), 4, 32, 31)
