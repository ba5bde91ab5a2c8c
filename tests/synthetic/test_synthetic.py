"""Sampling strategies (real-seeded, guidance interval) and filtering with oversampling."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch
from synthetic_helpers import make_run

from dopplerdiff.data.physics import physics_stats
from dopplerdiff.errors import DopplerDiffError
from dopplerdiff.generate import GenerationPlan, render, sample
from dopplerdiff.models.encoder import encoder_from_config
from dopplerdiff.pipelines.auto_pipeline import load_run_pipeline
from dopplerdiff.synthetic.filtering import SampleFilter, build_filter
from dopplerdiff.synthetic.sources import folder_sources, train_sources


@pytest.fixture(scope="module")
def setup(tmp_path_factory, sim_data, smoke_config):
    run, split = make_run(tmp_path_factory.mktemp("syn"), sim_data, smoke_config)
    pipe = load_run_pipeline(run, "cpu")
    pipe.set_scheduler("ddim")
    pipe.set_progress_bar_config(disable=True)
    cfg = dataclasses.replace(smoke_config.data, colormap="jet")
    return run, split, pipe, cfg


def test_real_seeded_sample_stays_near_its_source_at_low_strength(setup):
    run, _, pipe, cfg = setup
    src = train_sources(run, pipe.identities, cfg)
    jobs = [(0, i) for i in range(8)]
    with torch.no_grad():
        z = pipe.encode_images(torch.from_numpy(src.images[0])).numpy()

    def nearest_is_own(strength):
        out = render(pipe, jobs, steps=10, guidance=2.0, seed=0, sources=src, strength=strength,
                     output_type="latent")
        d = ((out[:, None] - z[None]) ** 2).mean(axis=(2, 3, 4))
        return (d.argmin(1) == np.arange(8)).mean()

    assert nearest_is_own(0.1) == 1.0
    assert nearest_is_own(1.0) < 0.5  # from pure noise the source is forgotten


def test_split_sources_are_train_windows_cycled_in_order(setup):
    run, split, pipe, cfg = setup
    src = train_sources(run, pipe.identities, cfg)
    held_out = set(split["val"]) | set(split["test"])
    for k in range(3):
        names = [src.name(k, i) for i in range(20)]
        assert not held_out & set(names)
        assert names[:8] == [f for f in split["train"] if f.startswith(pipe.identities[k] + "/")]
        assert names[8:16] == names[:8]


def test_folder_source_copying_a_test_window_is_refused(setup, tmp_path):
    run, split, pipe, cfg = setup
    root = Path(__import__("json").loads((run / "data.json").read_text())["data_root"])
    test_file = split["test"][0]
    (tmp_path / "src" / "ID_1").mkdir(parents=True)
    (tmp_path / "src" / "ID_1" / "renamed.png").write_bytes((root / test_file).read_bytes())
    with pytest.raises(DopplerDiffError, match="only training windows"):
        folder_sources(tmp_path / "src", run, pipe.identities, cfg)
    train_file = split["train"][0]
    (tmp_path / "src" / "ID_1" / "renamed.png").write_bytes((root / train_file).read_bytes())
    assert folder_sources(tmp_path / "src", run, pipe.identities, cfg).count(0) == 1


def test_real_seeded_samples_reproducible_alone(setup):
    run, _, pipe, cfg = setup
    src = train_sources(run, pipe.identities, cfg)
    kw = {"steps": 4, "guidance": 2.0, "seed": 3, "sources": src, "strength": 0.5}
    batch = render(pipe, [(1, i) for i in range(5)], batch_size=5, **kw)
    alone = render(pipe, [(1, 3)], batch_size=1, **kw)
    assert np.allclose(batch[3], alone[0], atol=1e-5)
    assert not np.allclose(batch[3], batch[2], atol=1e-3)


def _bright_half_filter(pipe):
    """Physics filter: mean intensity above the median of 16 unfiltered samples of identity 0."""
    imgs = render(pipe, [(0, i) for i in range(16)], steps=2, guidance=1.0, seed=0)
    v = physics_stats(imgs)["mean_intensity"]
    return SampleFilter(ranges={0: {"mean_intensity": (float(np.median(v)), 1.0)}}), imgs, v


def test_filter_oversamples_and_every_output_passes(setup):
    _, _, pipe, _ = setup
    filt, unfiltered, v = _bright_half_filter(pipe)
    plan = GenerationPlan(identities=[0], count=4, filter=filt, batch_size=3, steps=2, guidance=1.0)
    got = sample(pipe, plan, progress=False)
    assert filt.accept(got.images, got.labels).all()
    assert list(got.indices) == list(np.flatnonzero(v >= np.median(v))[:4])  # first passing indices, in order
    assert np.allclose(got.images, unfiltered[got.indices], atol=1e-5)  # sample i is still sample i
    acc = got.acceptance[0]
    assert 0 < acc["rate"] < 1 and acc["passed"] >= 4


def test_filter_cap_names_the_identity(setup):
    _, _, pipe, _ = setup
    never = SampleFilter(ranges={0: {"mean_intensity": (2.0, 3.0)}})
    with pytest.raises(DopplerDiffError, match="identity 'ID_1'.*within 6 attempts"):
        sample(pipe, GenerationPlan(identities=[0], count=2, filter=never, attempts=3, steps=2, guidance=1.0),
               progress=False)


def test_allow_short_keeps_what_passed_per_identity_and_fails_only_when_nothing_did(setup):
    """Filtered evaluation arms: a person whose samples rarely pass gets fewer windows, not a lost arm."""
    _, _, pipe, _ = setup
    filt, _, v = _bright_half_filter(pipe)  # ranges for identity 0 only: identity 1 passes everything
    filt.ranges[0] = {"mean_intensity": (float(np.sort(v)[-2]), 1.0)}  # 2 of the first 16 pass
    short = GenerationPlan(identities=[0, 1], count=4, filter=filt, attempts=4, allow_short=True, steps=2,
                           guidance=1.0)
    got = sample(pipe, short, progress=False)
    assert got.acceptance[0]["kept"] == 2 and got.acceptance[1]["kept"] == 4
    assert list(got.labels) == [0, 0, 1, 1, 1, 1]
    never = SampleFilter(ranges={0: {"mean_intensity": (2.0, 3.0)}})
    with pytest.raises(DopplerDiffError, match="no sample passed the filter"):
        sample(pipe, short.replace(identities=[0], count=2, filter=never, attempts=3), progress=False)


def test_physics_filter_from_real_windows_accepts_real_rejects_blank(setup):
    run, _, pipe, cfg = setup
    src = train_sources(run, pipe.identities, cfg)
    real01 = (src.images[0] + 1) / 2
    filt = build_filter(None, real01, np.zeros(8, int), min_confidence=0.5, stats=("background", "occupancy"),
                        quantiles=(0.0, 1.0))
    assert filt.accept(real01, np.zeros(8, int)).all()  # the full range holds every training window
    assert not filt.accept(np.ones((2, 1, 16, 16), np.float32), np.zeros(2, int)).any()


def test_confidence_filter_accepts_at_most_one_identity_above_half(smoke_config):
    torch.manual_seed(0)
    enc = encoder_from_config(smoke_config.encoder, num_classes=3, image_size=16, in_channels=1).eval()
    imgs = np.random.default_rng(0).random((6, 1, 16, 16)).astype(np.float32)
    per_label = [SampleFilter(encoder=enc, min_confidence=0.5).accept(imgs, np.full(6, k)) for k in range(3)]
    assert (np.sum(per_label, axis=0) <= 1).all()
    assert SampleFilter(encoder=enc, min_confidence=0.0).accept(imgs, np.zeros(6, int)).all()
    assert not SampleFilter(encoder=enc, min_confidence=1.0).accept(imgs, np.zeros(6, int)).any()


def test_a_nearly_constant_identity_range_is_widened_by_the_tolerance():
    """A short recording's background can be nearly one value: with tolerance 0 every sample of that
    person fails; the default widens the range by a quarter of the all-identity range, no more."""
    rng = np.random.default_rng(0)
    flat = 0.2 + 0.001 * rng.random((10, 1, 16, 16))  # identity 0: one level
    varied = np.linspace(0.2, 0.8, 10)[:, None, None, None] + 0.001 * rng.random((10, 1, 16, 16))
    real, labels = np.concatenate([flat, varied]), np.repeat([0, 1], 10)
    near, far = np.full((1, 1, 16, 16), 0.26), np.full((1, 1, 16, 16), 0.5)

    def accepts(x, tolerance):
        kw = {} if tolerance is None else {"tolerance": tolerance}
        f = build_filter(None, real, labels, min_confidence=0.0, stats=("mean_intensity",),
                         quantiles=(0.025, 0.975), **kw)
        return bool(f.accept(x, np.zeros(1, int))[0])

    assert not accepts(near, 0.0) and accepts(near, None) and not accepts(far, None)
    assert accepts(far, 1.0)


@pytest.mark.parametrize("kwargs,match", [
    ({"min_confidence": 0.5, "stats": ("extent",), "quantiles": (0.1, 0.9), "tolerance": -1.0}, "tolerance"),
    ({"min_confidence": 1.5, "stats": ("extent",), "quantiles": (0.1, 0.9)}, "min-confidence"),
    ({"min_confidence": 0.5, "stats": ("nope",), "quantiles": (0.1, 0.9)}, "unknown physics"),
    ({"min_confidence": 0.5, "stats": ("extent",), "quantiles": (0.9, 0.1)}, "quantiles"),
])
def test_build_filter_errors(kwargs, match):
    real = np.random.default_rng(0).random((4, 1, 16, 16))
    with pytest.raises(DopplerDiffError, match=match):
        build_filter(None, real, np.zeros(4, int), **kwargs)
