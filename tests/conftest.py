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
