"""Shared fixtures: tiny simulated data and the smoke profile (tests never touch measured data)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(scope="session")
def smoke_config():
    from dopplerdiff.config import load_config

    return load_config("smoke")


@pytest.fixture(scope="session")
def sim_data(tmp_path_factory) -> Path:
    """A tiny simulated dataset (3 identities x 12 windows, 32x32 jet PNGs) in the ID_k/ layout."""
    from dopplerdiff.config import load_config
    from dopplerdiff.data.simulate import simulate_dataset

    cfg = load_config("smoke").simulate
    out = tmp_path_factory.mktemp("sim") / "data"
    simulate_dataset(cfg, out, progress=False)
    return out


def latent_run(run: Path, cfg, data: Path) -> Path:
    """A run with a trained autoencoder and cached latents (tests copy it before training into it)."""
    from dopplerdiff.train.autoencoder import train_autoencoder
    from dopplerdiff.train.latents import cache_latents

    train_autoencoder(run, cfg, data_root=data, progress=False)
    cache_latents(run, progress=False)
    return run


@pytest.fixture(scope="session")
def ae_run(tmp_path_factory, sim_data, smoke_config) -> Path:
    """A smoke run with a trained AutoencoderKL and cached latents, built once per session (copy it)."""
    return latent_run(tmp_path_factory.mktemp("ae") / "run", smoke_config, sim_data)


def build_tiny_pipeline(smoke_config, *, backbone: str = "unet", identities: int = 3,
                        scaling_factor: float = 1.7, shift_factor: float = 0.0,
                        prediction_type: str = "epsilon", names: list[str] | None = None,
                        native_size: int | None = None):
    """An untrained, seeded DopplerDiffPipeline at smoke sizes (16x16 images, 4x8x8 latents)."""
    import dataclasses

    import torch
    from diffusers import AutoencoderKL

    from dopplerdiff.models.condition import build_condition_encoder
    from dopplerdiff.models.denoiser import build_denoiser
    from dopplerdiff.pipelines.pipeline_dopplerdiff import DopplerDiffPipeline
    from dopplerdiff.schedulers import make_scheduler, training_scheduler

    torch.manual_seed(0)
    cfg = dataclasses.replace(smoke_config.diffusion, backbone=backbone)
    vae = AutoencoderKL(
        in_channels=1, out_channels=1, down_block_types=("DownEncoderBlock2D",) * 2,
        up_block_types=("UpDecoderBlock2D",) * 2, block_out_channels=(8, 16), latent_channels=4,
        norm_num_groups=4, sample_size=16, scaling_factor=scaling_factor, shift_factor=shift_factor,
    )
    pipe = DopplerDiffPipeline(
        vae,
        build_denoiser(cfg, 4, 8, identities),
        build_condition_encoder(cfg, identities, backbone),
        make_scheduler("ddim", training_scheduler(prediction_type=prediction_type).config),
        identities=names, colormap="jet", channels=1, native_size=native_size,
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe


def build_tiny_vq_pipeline():
    """An untrained, seeded DopplerVQDiffusionPipeline at smoke sizes (16x16 images, 8x8 codes of 16)."""
    import torch

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


@pytest.fixture(scope="session")
def tiny_pipeline_factory(smoke_config):
    """``factory(**kwargs)`` -> a fresh tiny pipeline (see ``build_tiny_pipeline``)."""
    return lambda **kwargs: build_tiny_pipeline(smoke_config, **kwargs)


def load_bench(name: str):
    """``bench/<name>.py`` as a module named ``bench_<name>``; ``bench/`` is on the import path while it
    loads, since scripts import their sibling modules (e.g. ``hostile_cases``) at the top."""
    import importlib.util
    import sys

    bench = Path(__file__).resolve().parents[1] / "bench"
    spec = importlib.util.spec_from_file_location(f"bench_{name}", bench / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    sys.path.insert(0, str(bench))
    try:
        spec.loader.exec_module(mod)
    finally:
        sys.path.remove(str(bench))
    return mod


def run_cli(monkeypatch, capsys, *args) -> tuple[int, str, str]:
    """Run ``dopplerdiff ARGS`` through the real entry point; return (exit code, stdout, stderr)."""
    import sys

    from dopplerdiff.cli import main

    monkeypatch.setattr(sys, "argv", ["dopplerdiff", *map(str, args)])
    monkeypatch.setenv("COLUMNS", "200")  # rich tables unwrapped, so tests can match their rows
    code = 0
    try:
        main()
    except SystemExit as exc:
        code = int(exc.code or 0)
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.fixture()
def cli(monkeypatch, capsys):
    """``cli(*args)`` -> (exit code, stdout, stderr) of ``dopplerdiff ARGS``."""
    return lambda *args: run_cli(monkeypatch, capsys, *args)


@pytest.fixture()
def no_sampling(monkeypatch):
    """Any call of the pipeline fails the test: the command must stop before sampling."""
    from edit_helpers import forbid_sampling

    forbid_sampling(monkeypatch)
