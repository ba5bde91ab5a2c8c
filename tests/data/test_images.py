"""Reading/writing spectrogram folders: colormap inversion, formats, sizes, names, errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.io import savemat

from dopplerdiff.config import load_config
from dopplerdiff.data.colormap import apply_colormap
from dopplerdiff.data.contact import identity_rows, save_grid
from dopplerdiff.data.dataset import ImageDataset
from dopplerdiff.data.images import (
    from_unit,
    load_spectrograms,
    parse_name,
    to_unit,
    write_image,
)
from dopplerdiff.errors import DataError


def _cfg(*overrides: str):
    return load_config("smoke", list(overrides)).data


def _smooth(rng: np.random.Generator, size: int = 32) -> np.ndarray:
    """Spectrogram-like [0, 1] image: dark background, a horizontal line and a few blobs."""
    y, x = np.mgrid[0:size, 0:size] / size
    img = 0.1 + 0.6 * np.exp(-((y - 0.5) ** 2) / 0.002)
    for _ in range(3):
        cy, cx = rng.random(2)
        img += 0.3 * np.exp(-((y - cy) ** 2 + (x - cx) ** 2) / 0.01)
    return np.clip(img, 0, 1).astype(np.float32)


def _write_tree(root: Path, n_id: int, n_win: int, ext: str = ".png", colormap: str = "jet", size: int = 32,
                name: str = "ID{k}_case1_1_Doppler{i}", seed: int = 0) -> dict[tuple[int, int], np.ndarray]:
    rng = np.random.default_rng(seed)
    truth = {}
    for k in range(1, n_id + 1):
        for i in range(1, n_win + 1):
            img = _smooth(rng, size)
            truth[(k, i)] = img
            write_image(root / f"ID_{k}" / (name.format(k=k, i=i) + ext), img, colormap)
    return truth


def _max_err(ds, truth) -> float:
    keys = [(int(lab) + 1, int(w)) for lab, w in zip(ds.labels, ds.windows, strict=True)]
    return max(float(np.abs(to_unit(ds.images[j, 0]) - truth[k]).max()) for j, k in enumerate(keys))


def test_jet_png_round_trip_is_accurate(tmp_path):
    truth = _write_tree(tmp_path / "d", 2, 5)
    ds = load_spectrograms(tmp_path / "d", _cfg("data.size=32"))
    assert ds.images.shape == (10, 1, 32, 32) and ds.images.dtype == np.float32
    assert ds.images.min() >= -1 and ds.images.max() <= 1
    # 6-bit colour quantisation of the inverse table: within a couple of LUT steps.
    assert _max_err(ds, truth) < 0.03
    assert ds.meta["colormap_residual"] < 5
    assert ds.meta["window_index_source"] == "filename"
    assert ds.meta["native_size"] == 32 and ds.meta["format"] == "png"


def test_jpeg_artefacts_and_other_colormaps(tmp_path):
    truth = _write_tree(tmp_path / "jpg", 1, 4, ext=".jpg")
    ds = load_spectrograms(tmp_path / "jpg", _cfg("data.size=32"))
    errs = [np.abs(to_unit(ds.images[j, 0]) - truth[(1, int(w))]).mean() for j, w in enumerate(ds.windows)]
    err = float(np.mean(errs))
    assert err < 0.03
    truth = _write_tree(tmp_path / "vir", 1, 3, colormap="viridis")
    ds = load_spectrograms(tmp_path / "vir", _cfg("data.size=32", "data.colormap=viridis"))
    assert _max_err(ds, truth) < 0.03
    # Reading viridis images as jet is visibly wrong: the residual says so.
    wrong = load_spectrograms(tmp_path / "vir", _cfg("data.size=32"))
    assert wrong.meta["colormap_residual"] > 3 * ds.meta["colormap_residual"] + 10


def test_grayscale_and_rgb_channels(tmp_path):
    rng = np.random.default_rng(1)
    img = _smooth(rng)
    write_image(tmp_path / "g" / "A" / "w1.png", img, "gray")
    rgb_gray = np.repeat(np.round(img * 255).astype(np.uint8)[..., None], 3, -1)
    from PIL import Image

    Image.fromarray(rgb_gray, "RGB").save(tmp_path / "g" / "A" / "w2.png")
    ds = load_spectrograms(tmp_path / "g", _cfg("data.size=32"))  # colormap jet, but files are gray
    for j in range(2):
        assert np.abs(to_unit(ds.images[j, 0]) - img).max() < 1 / 255 + 1e-6
    assert ds.meta["modes"] == {"gray": 2}
    # channels 3 keeps the RGB colours of a jet image.
    write_image(tmp_path / "c" / "A" / "w1.png", img, "jet")
    ds3 = load_spectrograms(tmp_path / "c", _cfg("data.size=32", "data.channels=3"))
    assert ds3.images.shape == (1, 3, 32, 32)
    expected = apply_colormap(img, "jet").astype(np.float32) / 255
    assert np.abs(np.moveaxis(to_unit(ds3.images[0]), 0, -1) - expected).max() < 1e-5


def test_npy_and_mat_arrays(tmp_path):
    rng = np.random.default_rng(2)
    img = _smooth(rng)
    d = tmp_path / "arr" / "P1"
    d.mkdir(parents=True)
    np.save(d / "w_1.npy", img)
    np.save(d / "w_2.npy", 40.0 * img - 60.0)  # dB-like values: min-max scaled
    np.save(d / "w_3.npy", np.stack([img] * 3))  # C x H x W gray
    np.save(d / "w_4.npy", img[..., None])  # H x W x 1
    savemat(d / "w_5.mat", {"S": img.astype(np.float64), "fs": np.array([[2000.0]])})
    ds = load_spectrograms(tmp_path / "arr", _cfg("data.size=32"))
    assert len(ds) == 5 and list(ds.windows) == [1, 2, 3, 4, 5]
    lo, hi = img.min(), img.max()
    for j in range(5):
        target = (img - lo) / (hi - lo) if j == 1 else img
        assert np.abs(to_unit(ds.images[j, 0]) - target).max() < 0.01, ds.files[j]
    assert ds.meta["value_scaling"]["minmax"] == 1
    # round trip through write_image's array formats
    write_image(tmp_path / "out" / "x.npy", img, "jet")
    write_image(tmp_path / "out" / "x.mat", img, "jet")
    assert np.allclose(np.load(tmp_path / "out" / "x.npy"), img)


@pytest.mark.parametrize("variables, needle", [
    ({"a": np.ones((4, 4)), "b": np.zeros((5, 5))}, "found 2"),
    ({"v": np.ones(7)}, "found 0"),
])
def test_mat_with_wrong_variables_is_a_clear_error(tmp_path, variables, needle):
    d = tmp_path / "m" / "ID_1"
    d.mkdir(parents=True)
    savemat(d / "bad_1.mat", variables)
    with pytest.raises(DataError) as exc:
        load_spectrograms(tmp_path / "m", _cfg())
    msg = str(exc.value)
    assert "bad_1.mat" in msg and needle in msg and all(k in msg for k in variables)


def test_mixed_sizes_natural_order_and_subset(tmp_path):
    for k, size in ((10, 48), (2, 32), (1, 32)):
        for i in range(1, 4):
            write_image(tmp_path / "d" / f"ID_{k}" / f"img_{i:03d}.png", np.full((size, size), 0.5), "jet")
    ds = load_spectrograms(tmp_path / "d", _cfg())
    assert ds.identities == ["ID_1", "ID_2", "ID_10"]
    assert ds.images.shape == (9, 1, 16, 16)
    assert ds.meta["native_sizes"] == {"32x32": 6, "48x48": 3} and ds.meta["native_size"] == 32
    assert ds.recordings[0] == "ID_1/img" and list(ds.windows[:3]) == [1, 2, 3]
    sub = ds.subset([8, 0])
    assert sub.files == [ds.files[8], ds.files[0]] and list(sub.labels) == [2, 0] and len(sub) == 2
    assert sub.identities == ds.identities


def test_filename_parsing_and_sorted_fallback(tmp_path):
    assert parse_name("ID_3", "ID3_case2_4_Doppler17.jpg") == ("ID_3/case2_4", 17)
    assert parse_name("A", "sub/walk-0009.png") == ("A/sub/walk", 9)
    assert parse_name("A", "front.png") is None
    for name in ("zeta.png", "alpha.png", "mid.png"):
        write_image(tmp_path / "d" / "A" / name, np.zeros((16, 16)), "jet")
        write_image(tmp_path / "d" / "B" / f"B_case1_1_Doppler{len(name)}.png", np.zeros((16, 16)), "jet")
    ds = load_spectrograms(tmp_path / "d", _cfg())
    assert ds.meta["window_index_source"] == "mixed" and ds.meta["sorted_identities"] == ["A"]
    a = [(f, int(w)) for f, w, lab in zip(ds.files, ds.windows, ds.labels, strict=True) if lab == 0]
    assert a == [("A/alpha.png", 0), ("A/mid.png", 1), ("A/zeta.png", 2)]


def test_bad_inputs_give_one_clear_error(tmp_path):
    cfg = _cfg()
    with pytest.raises(DataError, match="does not exist"):
        load_spectrograms(tmp_path / "nope", cfg)
    loose = tmp_path / "loose"
    write_image(loose / "ID1_case1_1_Doppler1.png", np.zeros((8, 8)), "jet")
    with pytest.raises(DataError, match="no identity subfolders; found 1 data files"):
        load_spectrograms(loose, cfg)
    empty = tmp_path / "empty"
    write_image(empty / "ID_1" / "a_1.png", np.zeros((8, 8)), "jet")
    (empty / "ID_2").mkdir()
    (empty / "ID_2" / "notes.txt").write_text("x")
    with pytest.raises(DataError, match=r"ID_2' contains no supported files"):
        load_spectrograms(empty, cfg)
    corrupt = tmp_path / "corrupt"
    write_image(corrupt / "ID_1" / "ok_1.png", np.zeros((8, 8)), "jet")
    for i in range(7):
        (corrupt / "ID_1" / f"bad_{i + 2}.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(DataError) as exc:
        load_spectrograms(corrupt, cfg)
    msg = str(exc.value)
    assert "7 unreadable file(s)" in msg and "ID_1/bad_2.jpg" in msg and "and 2 more" in msg
    with pytest.raises(DataError, match="unknown colormap 'jett'.*data.colormap="):
        load_spectrograms(tmp_path / "empty", _cfg("data.colormap=jett"))


def test_write_image_resizes_and_rejects_unknown_suffix(tmp_path):
    img = np.linspace(0, 1, 16 * 16).reshape(16, 16)
    write_image(tmp_path / "a" / "ID_1" / "x_1.jpg", img, "jet", size=40)
    ds = load_spectrograms(tmp_path / "a", _cfg("data.size=40"))
    assert ds.meta["native_size"] == 40 and ds.meta["format"] == "jpg"
    with pytest.raises(DataError, match="unsupported suffix"):
        write_image(tmp_path / "x.gif", img, "jet")
    assert np.allclose(to_unit(from_unit(img)), img)


def test_image_dataset_and_grid(tmp_path):
    _write_tree(tmp_path / "d", 3, 4)
    ds = load_spectrograms(tmp_path / "d", _cfg())
    data = ImageDataset(ds, [0, 5, 11])
    item = data[1]
    assert item["pixel_values"].shape == (1, 16, 16) and item["pixel_values"].dtype == torch.float32
    assert item["labels"].dtype == torch.int64 and item["labels"].ndim == 0 and int(item["labels"]) == 1
    assert torch.equal(item["pixel_values"], torch.from_numpy(ds.images[5]))
    batch = next(iter(torch.utils.data.DataLoader(data, batch_size=3)))
    assert batch["pixel_values"].shape == (3, 1, 16, 16) and batch["labels"].tolist() == [0, 1, 2]
    rows, labels = identity_rows(ds, per_identity=2)
    assert len(rows) == 3 and rows[0].shape == (2, 1, 16, 16) and labels[0] == "ID_1 (4)"
    from PIL import Image

    path = save_grid(tmp_path / "grid.png", rows, "jet", labels)
    with Image.open(path) as im:
        assert im.mode == "RGB" and im.height >= 3 * 64 and im.width >= 2 * 64
