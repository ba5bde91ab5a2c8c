"""Latent cache: contents per split, scale/shift convention, LatentDataset sampling, errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from dopplerdiff.config import load_config
from dopplerdiff.data.latents import LatentDataset, load_latents, read_latent_info
from dopplerdiff.data.run_data import prepare_run_data
from dopplerdiff.errors import DataError, DopplerDiffError
from dopplerdiff.models.autoencoder import decode, latent_scale, load_autoencoder, reconstruct
from dopplerdiff.train.autoencoder import train_autoencoder
from dopplerdiff.train.latents import cache_latents


@pytest.fixture(scope="module", params=["kl", "vq"])
def cached_run(request, tmp_path_factory, sim_data) -> tuple[Path, str]:
    cfg = load_config("smoke", [f"autoencoder.kind={request.param}"])
    run = tmp_path_factory.mktemp(f"latents-{request.param}") / "run"
    train_autoencoder(run, cfg, data_root=sim_data, progress=False)
    cache_latents(run, progress=False)
    return run, request.param


def test_cache_contents_match_the_run(cached_run):
    run, kind = cached_run
    info = read_latent_info(run)
    data = json.loads((run / "data.json").read_text())
    vae = load_autoencoder(run / "autoencoder")
    assert info["kind"] == kind and info["identities"] == data["identities"]
    assert (info["scaling_factor"], info["shift_factor"]) == pytest.approx(latent_scale(vae))
    assert info["latent_shape"] == [4, 8, 8]
    for split in ("train", "val", "test"):
        t = load_latents(run, split)
        assert info["files"][split] == data["split"][split]
        assert t["mean"].shape == (len(data["split"][split]), 4, 8, 8) and t["mean"].dtype == torch.float32
        assert t["labels"].dtype == torch.int64
        expected = [data["identities"].index(f.split("/")[0]) for f in data["split"][split]]
        assert t["labels"].tolist() == expected
        if kind == "vq":
            assert torch.count_nonzero(t["std"]) == 0
        else:
            assert bool((t["std"] > 0).all())


def test_latent_dataset_convention_and_unit_scale(cached_run):
    run, kind = cached_run
    info = read_latent_info(run)
    raw = load_latents(run, "train")
    det = LatentDataset(run, "train", sample=False)
    item = det[0]
    scale, shift = info["scaling_factor"], info["shift_factor"]
    torch.testing.assert_close(item["latents"], (raw["mean"][0] - shift) * scale)
    assert int(item["labels"]) == int(raw["labels"][0])
    torch.manual_seed(0)
    samp = LatentDataset(run, "train", sample=True)
    z = torch.stack([samp[i]["latents"] for i in range(len(samp))])
    # the scale was measured on the (sampled) training latents: they are standardised
    assert abs(float(z.mean())) < 0.15 and float(z.std()) == pytest.approx(1.0, abs=0.15)
    if kind == "kl":
        assert not torch.equal(samp[0]["latents"], samp[0]["latents"])  # a fresh posterior sample each time
    # decoding cached latents equals reconstructing the images they came from
    cfg = load_config("smoke")
    ds, split = prepare_run_data(run, None, cfg.data)
    vae = load_autoencoder(run / "autoencoder").eval()
    x = torch.from_numpy(np.ascontiguousarray(ds.images[split["train"][:4]]))
    with torch.no_grad():
        zs = torch.stack([det[i]["latents"] for i in range(4)])
        torch.testing.assert_close(decode(vae, zs), reconstruct(vae, x), atol=1e-4, rtol=1e-4)


def test_latent_time_shift_rolls_items_along_time(cached_run):
    run, _ = cached_run
    base = LatentDataset(run, "train", sample=False)[0]["latents"]
    shifted = LatentDataset(run, "train", sample=False, time_shift=True)
    torch.manual_seed(0)
    draws = [shifted[0]["latents"] for _ in range(12)]
    # every draw is the cached latent rolled along time (the last axis, never Doppler), by varying amounts
    w = base.shape[-1]
    rolls = [[s for s in range(w) if torch.equal(torch.roll(base, s, dims=-1), d)] for d in draws]
    assert all(len(r) >= 1 for r in rolls) and len({r[0] for r in rolls}) > 1


def test_cache_errors(cached_run, tmp_path: Path):
    run, _ = cached_run
    with pytest.raises(DopplerDiffError, match="already exists"):
        cache_latents(run, progress=False)
    info = cache_latents(run, progress=False, overwrite=True)
    assert info["files"]["train"]
    with pytest.raises(DataError, match="cache-latents"):
        LatentDataset(tmp_path, "train")
    with pytest.raises(DataError, match="unknown latent split"):
        load_latents(run, "bogus")
    with pytest.raises(DopplerDiffError, match="train the autoencoder first"):
        cache_latents(tmp_path, progress=False)
