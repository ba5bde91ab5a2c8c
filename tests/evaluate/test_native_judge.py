"""The native-size judge: samples are resized exactly as generate writes them, and scored by a judge trained
on real windows at the data's own size (tiny simulated data)."""

from __future__ import annotations

import dataclasses

import numpy as np
from PIL import Image

from dopplerdiff.config import load_config
from dopplerdiff.data.images import from_unit, load_spectrograms, write_image
from dopplerdiff.evaluate.native import native_judge, native_shape, to_native


def test_to_native_matches_the_written_file(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, (2, 1, 16, 16)).astype(np.float32)
    up = to_native(x, (40, 48))
    assert up.shape == (2, 1, 40, 48) and up.min() >= -1 and up.max() <= 1
    write_image(tmp_path / "a.png", (x[1] + 1) / 2, "gray", size=(40, 48))  # what generate writes
    written = np.asarray(Image.open(tmp_path / "a.png"), np.float32) / 255.0
    np.testing.assert_allclose(from_unit(written), up[1, 0], atol=1.01 * 2 / 255)


def test_native_shape():
    assert native_shape(None) is None and native_shape(64) == (64, 64) and native_shape([32, 48]) == (32, 48)


def test_native_judge_scores_each_set_against_real_windows_at_native_size(sim_data):
    cfg = load_config("smoke", ["evaluate.judge_steps=20"])
    native = load_spectrograms(sim_data, dataclasses.replace(cfg.data, size=32))
    small = load_spectrograms(sim_data, dataclasses.replace(cfg.data, size=16))
    idx = np.arange(len(native))
    tr, te = idx[idx % 3 != 0], idx[idx % 3 == 0]
    k = len(native.identities)
    sets = {"generated": (small.images[te], small.labels[te]), "same": (native.images[te], native.labels[te])}
    out = native_judge((native.images[tr], native.labels[tr]), None, (native.images[te], native.labels[te]),
                       sets, k, cfg.evaluate)
    assert out["size"] == [32, 32] and set(out) >= {"real_test", "generated", "ratio_generated", "same"}
    assert 0 <= out["generated"]["overall"] <= 1 and 0 < out["real_test"]["overall"] <= 1
    assert np.isclose(out["ratio_generated"], out["generated"]["overall"] / out["real_test"]["overall"])
    # windows already at the native size are not resized: scored exactly as the real test windows
    assert out["same"]["overall"] == out["real_test"]["overall"] and out["ratio_same"] == 1.0
