"""Corner/border giveaways: the statistics that find them; the spectral loss that no longer rewards one."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dopplerdiff.evaluate.borders import border_values, compare_borders, difference_maps
from dopplerdiff.train import losses as L


def _windows(n: int = 40, size: int = 32, seed: int = 0) -> np.ndarray:
    """Dark background (-1 plus speckle) with a bright horizontal torso line and random limb dots."""
    rng = np.random.default_rng(seed)
    x = -1.0 + 0.02 * rng.random((n, 1, size, size))
    x[:, :, size // 2, :] = 0.6
    for i in range(n):
        r, c = rng.integers(4, size - 4, 12), rng.integers(0, size, 12)
        x[i, 0, r, c] = rng.uniform(-0.2, 0.8, 12)
    return x.astype(np.float32)


def test_border_values_read_each_corner_and_edge():
    x = np.zeros((2, 1, 4, 5))
    x[:, 0, 0, -1] = 1.0  # top-right pixel
    x[:, 0, -1, :] = -1.0  # bottom edge line
    v = border_values(x)
    assert v["corner_top_right"].tolist() == [1.0, 1.0] and v["corner_top_left"].tolist() == [0.0, 0.0]
    assert v["edge_bottom"].tolist() == [-1.0, -1.0] and v["edge_top"].tolist() == pytest.approx([0.2, 0.2])
    with pytest.raises(ValueError, match="border statistics"):
        border_values(np.zeros((3, 1)))


def test_compare_borders_flags_a_bright_corner_only():
    real = _windows()
    assert compare_borders(real, _windows(seed=1))["ok"]
    fake = _windows(seed=2)
    fake[:, :, 0, -1] = 0.33  # the decoder artefact: bright top-right pixel, real windows about -0.99
    out = compare_borders(real, fake)
    assert not out["ok"] and "corner_top_right" in out["outside"]
    assert set(out["outside"]) <= {"corner_top_right", "edge_top", "edge_right"}  # lines through that pixel
    assert out["stats"]["corner_top_right"]["mean"] == pytest.approx(0.33)


def test_difference_maps_locate_the_defect():
    real, fake = _windows(), _windows(seed=3)
    fake[:, :, 0, -1] = 0.33
    maps = difference_maps(real, fake)
    assert maps["mean"].shape == (32, 32) and maps["std"].shape == (32, 32)
    assert np.unravel_index(np.abs(maps["mean"]).argmax(), (32, 32)) == (0, 31)
    with pytest.raises(ValueError, match="one image size"):
        difference_maps(real, fake[:, :, :16, :16])


def test_whole_image_spectral_loss_rewards_a_corner_spike_and_tiled_loss_does_not():
    """The cause of the bright corner: a blurry reconstruction lacks high-frequency energy, and the
    whole-image FFT magnitude cannot tell where energy is, so one bright corner pixel lowers the loss."""
    target = torch.from_numpy(_windows(8))
    blurred = torch.nn.functional.avg_pool2d(target, 3, 1, 1, count_include_pad=False)
    spiked = blurred.clone()
    spiked[:, :, 0, -1] = 0.33
    assert float(L.spectral_loss(spiked, target)) < float(L.spectral_loss(blurred, target))
    tiled = [float(L.spectral_loss(v, target, patch=16)) for v in (spiked, blurred)]
    assert tiled[0] >= tiled[1]
    # the tiled loss still measures lost fine structure
    assert float(L.spectral_loss(target, target, patch=16)) == 0.0
    assert float(L.spectral_loss(blurred, target, patch=16)) > 0.1


def test_hann_patches_shape_and_window():
    x = torch.ones(2, 1, 32, 32)
    tiles = L.hann_patches(x, 16)
    assert tiles.shape == (2 * 9, 16, 16)  # 3 x 3 tiles at stride 8
    assert float(tiles[:, 0, :].abs().max()) == 0.0 and float(tiles[:, :, -1].abs().max()) == 0.0
    assert L.hann_patches(torch.ones(1, 1, 8, 8), 16).shape == (1, 8, 8)  # tile clipped to the image


@pytest.mark.slow
def test_tiny_autoencoder_reconstructs_corners_and_edges_like_real_windows(tmp_path, sim_data):
    """A 200-step first stage at 16x16 with the default losses and padding: every corner pixel and edge line
    of its reconstructions within the real windows' range. (With zero padding and the whole-image spectral
    loss, the same run lifted the top-left corner to about -0.2 where real windows are below -0.54.)"""
    from dopplerdiff.config import load_config
    from dopplerdiff.data.run_data import prepare_run_data
    from dopplerdiff.evaluate.loading import load_run_autoencoder
    from dopplerdiff.evaluate.windows import reconstruct
    from dopplerdiff.train.autoencoder import train_autoencoder

    steps = ("steps=200", "batch_size=8", "val_every=1000", "checkpoint_every=1000", "ema=false")
    cfg = load_config("smoke", [f"autoencoder.train.{s}" for s in steps])
    assert cfg.autoencoder.padding_mode == "replicate" and cfg.autoencoder.loss.spectral_patch > 0
    train_autoencoder(tmp_path / "run", cfg, data_root=sim_data, progress=False)
    ds, split = prepare_run_data(tmp_path / "run", None, cfg.data)
    real = ds.images[split["train"]]
    rec = reconstruct(load_run_autoencoder(tmp_path / "run", torch.device("cpu")), real)
    out = compare_borders(real, rec)
    assert out["ok"], out["outside"]
