"""Typed configs: profiles load, overrides apply with types, unknown keys and bad values are errors."""

from __future__ import annotations

import pytest
import yaml

from dopplerdiff.config import PROFILES, config_from_dict, load_config
from dopplerdiff.errors import ConfigError


@pytest.mark.parametrize("profile", PROFILES)
def test_profiles_load_and_round_trip(profile, tmp_path):
    cfg = load_config(profile)
    assert cfg.profile == profile
    path = tmp_path / "config.yaml"
    cfg.save(path)
    assert config_from_dict(yaml.safe_load(path.read_text())) == cfg


def test_paper_profile_has_the_original_design_sizes():
    cfg = load_config("paper")
    assert cfg.data.size == 256
    assert cfg.autoencoder.block_out_channels == [128, 256, 512, 512]
    assert cfg.autoencoder.downsample_factor == 8
    assert cfg.diffusion.block_out_channels == [320, 640, 1280, 1280]
    assert cfg.diffusion.cross_attention_dim == 768
    assert (cfg.diffusion.train.batch_size, cfg.diffusion.train.grad_accum) == (8, 4)
    assert cfg.diffusion.train.lr == pytest.approx(1e-4)
    assert cfg.diffusion.condition.dropout == pytest.approx(0.1)


def test_overrides_are_typed():
    cfg = load_config("smoke", ["autoencoder.train.steps=7", "diffusion.train.lr=3e-4", "data.size=32",
                                "autoencoder.block_out_channels=[4, 8]", "diffusion.backbone=dit"])
    assert cfg.autoencoder.train.steps == 7
    assert cfg.diffusion.train.lr == pytest.approx(3e-4)
    assert cfg.data.size == 32
    assert cfg.autoencoder.block_out_channels == [4, 8]
    assert cfg.diffusion.backbone == "dit"
    # an int given where a float is expected is accepted as float
    assert isinstance(load_config("smoke", ["diffusion.train.lr=1"]).diffusion.train.lr, float)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("autoencoder.nonsense=1", "unknown config key 'autoencoder.nonsense'"),
        ("nonsense.key=1", "unknown config key 'nonsense'"),
        ("autoencoder.train.steps=ten", "must be an integer"),
        ("autoencoder.train.steps=2.5", "must be an integer"),
        ("diffusion.backbone=transformer", "must be one of"),
        ("data.channels=2", "must be one of"),
        ("data.split.train=0.9", "sum to 1"),
        ("autoencoder.train.ema=maybe", "true/false"),
        ("evaluate.augment_channels=[16,0]", "augment_channels must be positive"),
        ("evaluate.augment_channels=[]", "augment_channels must be positive"),
        # ranges and finite numbers, checked when the config is built (not after training nothing)
        ("autoencoder.train.steps=-1", "steps must be >= 1"),
        ("diffusion.train.steps=0", "steps must be >= 1"),
        ("diffusion.train.grad_accum=0", "grad_accum must be >= 1"),
        ("encoder.train.batch_size=0", "batch_size must be >= 1"),
        ("diffusion.train.lr=.nan", "finite"),
        ("autoencoder.train.lr=.inf", "finite"),
        ("diffusion.train.lr=-0.1", "lr must be > 0"),
        ("data.size=100000", "data.size must be in"),
        ("diffusion.guidance_scale=.nan", "finite"),
        ("diffusion.num_inference_steps=0", "num_inference_steps"),
        ("evaluate.guidance=-1", "evaluate.guidance"),
        ("embed.k=0", "embed.k"),
        ("steps", "key=value"),
    ],
)
def test_bad_overrides_are_rejected_with_the_key_named(override, message):
    with pytest.raises(ConfigError, match=message):
        load_config("smoke", [override])


def test_missing_and_invalid_config_files(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("- a list\n- not a mapping\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_config(bad)
    with pytest.raises(ConfigError, match="neither a profile"):
        load_config("turbo")


def test_yaml_file_with_unknown_section(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("data:\n  size: 32\n  colour: red\n")
    with pytest.raises(ConfigError, match="data.colour"):
        load_config(path)


def test_saved_config_errors_name_the_file(tmp_path):
    from dopplerdiff.config import config_for
    from dopplerdiff.errors import ConfigError

    (tmp_path / "config.yaml").write_text("data: {size: 100000}\n")
    with pytest.raises(ConfigError, match="config.yaml"):
        config_for(tmp_path, None)
