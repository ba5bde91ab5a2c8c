"""Findings of bench/hostile.py: each is refused with one clear error before any work."""

from __future__ import annotations

import re

import pytest

from dopplerdiff.config import load_config
from dopplerdiff.config.data import MAX_SIZE
from dopplerdiff.errors import ConfigError


def test_simulate_size_has_an_upper_bound():
    """--size 10000000 allocated a 26 GiB resampling matrix and died with a MemoryError traceback."""
    with pytest.raises(ConfigError, match=re.escape(f"simulate.size must be in [16, {MAX_SIZE}]")):
        load_config("smoke", [f"simulate.size={MAX_SIZE + 1}"])
    assert load_config("smoke", [f"simulate.size={MAX_SIZE}"]).simulate.size == MAX_SIZE


@pytest.mark.parametrize("name", ["tpu", "cuda:x", ""])
def test_evaluate_device_is_checked(name):
    """--device tpu was a raw RuntimeError from torch.device."""
    from dopplerdiff.errors import DopplerDiffError
    from dopplerdiff.evaluate.loading import eval_device

    with pytest.raises(DopplerDiffError, match="--device"):
        eval_device(name)
    assert eval_device("cpu").type == "cpu"
