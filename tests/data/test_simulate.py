"""Simulator: determinism, layout, window overlap, Doppler physics, RCS formula, argument checks."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import numpy as np
import pytest

from dopplerdiff.config import SimulateConfig, load_config
from dopplerdiff.data import radar, simulate, spectrogram
from dopplerdiff.data.kinematics import Walker, cycle_duration
from dopplerdiff.errors import ConfigError, DopplerDiffError

NAME = re.compile(r"ID(\d+)_case1_(\d+)_Doppler(\d+)\.(png|npy)")


def tiny(**kw) -> SimulateConfig:
    base = dict(identities=2, per_identity=5, recordings_per_identity=2, size=16, seed=3, workers=1)
    base.update(kw)
    return SimulateConfig(**base)


def files_bytes(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
            and p.name != "manifest.json"}  # the manifest holds wall-clock timings


def test_same_seed_gives_identical_bytes_and_other_seeds_differ(tmp_path):
    a = simulate.simulate_dataset(tiny(), tmp_path / "a", progress=False)
    b = simulate.simulate_dataset(tiny(), tmp_path / "b", progress=False)
    c = simulate.simulate_dataset(tiny(seed=4), tmp_path / "c", progress=False)
    fa, fb, fc = files_bytes(a), files_bytes(b), files_bytes(c)
    assert fa == fb
    assert fa.keys() == fc.keys()
    images = [k for k in fa if k.endswith(".png")]
    assert sum(fa[k] != fc[k] for k in images) == len(images)


def test_output_does_not_depend_on_worker_count(tmp_path):
    one = simulate.simulate_dataset(tiny(identities=3, per_identity=2), tmp_path / "one", progress=False)
    two = simulate.simulate_dataset(tiny(identities=3, per_identity=2, workers=2), tmp_path / "two",
                                    progress=False)
    assert files_bytes(one) == files_bytes(two)


def test_layout_names_and_metadata(tmp_path):
    cfg = tiny(identities=3, per_identity=5, recordings_per_identity=2)
    out = simulate.simulate_dataset(cfg, tmp_path / "data", progress=False)
    assert sorted(p.name for p in out.iterdir()) == ["ID_1", "ID_2", "ID_3", "manifest.json", "metadata.json"]
    for k in (1, 2, 3):
        names = sorted(p.name for p in (out / f"ID_{k}").iterdir())
        parsed = sorted((int(m[2]), int(m[3])) for m in map(NAME.fullmatch, names) if m and int(m[1]) == k)
        assert len(parsed) == len(names) == 5
        assert parsed == [(1, 1), (1, 2), (1, 3), (2, 1), (2, 2)]  # 5 windows over 2 recordings: 3 + 2
    meta = json.loads((out / "metadata.json").read_text())
    assert meta["seed"] == 3 and meta["version"] == simulate.VERSION
    assert meta["counts"]["total"] == 15 and meta["counts"]["windows_per_recording"] == [3, 2]
    assert [i["name"] for i in meta["identities"]] == ["ID_1", "ID_2", "ID_3"]
    assert meta["radar"]["carrier_ghz"] == 77.0
    assert meta["radar"]["hz_per_mps"] == pytest.approx(513.7, abs=0.5)
    heights = {i["params"]["walker"]["height"] for i in meta["identities"]}
    assert len(heights) == 3  # distinct people
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["windows"] == 15 and manifest["identities"] == ["ID_1", "ID_2", "ID_3"]
    from PIL import Image

    img = Image.open(out / "ID_1" / "ID1_case1_1_Doppler1.png")
    assert img.size == (16, 16) and img.mode == "RGB"


def test_npy_and_gray_formats(tmp_path):
    out = simulate.simulate_dataset(tiny(format="npy", identities=1, per_identity=2), tmp_path / "n",
                                    progress=False)
    arr = np.load(out / "ID_1" / "ID1_case1_1_Doppler1.npy")
    assert arr.shape == (16, 16) and arr.dtype == np.float32
    assert arr.min() >= 0.0 and arr.max() <= 1.0 and arr.max() > 0.9
    from PIL import Image

    out = simulate.simulate_dataset(tiny(colormap="gray", identities=1, per_identity=2), tmp_path / "g",
                                    progress=False)
    assert Image.open(out / "ID_1" / "ID1_case1_1_Doppler1.png").mode == "L"


def test_consecutive_windows_share_columns(tmp_path):
    # 3 s windows every 1 s with 24 columns: window i+1 starts 8 columns after window i.
    cfg = tiny(identities=1, per_identity=4, recordings_per_identity=1, size=24, time_bins=24,
               format="npy", normalize="recording")
    out = simulate.simulate_dataset(cfg, tmp_path / "d", progress=False)
    w = [np.load(out / "ID_1" / f"ID1_case1_1_Doppler{i}.npy") for i in range(1, 5)]
    for i in range(3):
        np.testing.assert_array_equal(w[i][:, 8:], w[i + 1][:, :16])
        assert not np.array_equal(w[i][:, :8], w[i + 1][:, :8])
    # Per-window scaling shifts the dB reference but the shared columns still agree closely.
    person = simulate.draw_person(cfg, 0)
    rec = simulate.draw_recording(cfg, person, 0, 0)
    imgs = simulate.simulate_recording(dataclasses.replace(cfg, normalize="window"), person, rec, 4)
    corr = np.corrcoef(imgs[0][:, 8:].ravel(), imgs[1][:, :16].ravel())[0, 1]
    assert corr > 0.9


def _physics_cfg(**kw) -> SimulateConfig:
    base = dict(identities=1, per_identity=1, recordings_per_identity=1, size=128, time_bins=60,
                snr_db=(45.0, 45.0), fading=0.0, burst_prob=0.0, clutter_db=-80.0, normalize="recording",
                scatterers_per_segment=2)
    base.update(kw)
    return SimulateConfig(**base)


def _walk(speed: float, aspect: float = 0.0, range_m: float = 3.0):
    person = simulate.Person(walker=Walker(height=1.75), speed=speed, cadence=1.0, rcs_scale=1.0, girth=1.0)
    rec = simulate.Recording(speed=speed, cadence=1.0, start_phase=0.0, aspect_deg=aspect, range_m=range_m,
                             snr_db=45.0, burst_rate_hz=0.0, drift=())
    return person, rec


def _row_freqs(cfg: SimulateConfig) -> np.ndarray:
    n = int(round(cfg.stft_window_s * cfg.prf_hz))
    return spectrogram.resample_matrix(n, cfg.size) @ spectrogram.doppler_axis(n, cfg.prf_hz)


@pytest.mark.parametrize(("speed", "aspect"), [(1.0, 0.0), (1.3, 0.0), (1.0, 50.0)])
def test_torso_doppler_matches_2v_fc_over_c(speed, aspect):
    cfg = _physics_cfg(scene="overground")
    # Far away the line of sight hardly turns during the window, so the radial speed is v cos(aspect).
    person, rec = _walk(speed, aspect, range_m=3.0 if aspect == 0 else 200.0)
    img = simulate.simulate_recording(cfg, person, rec, 1)[0]
    torso_hz = float(np.median(_row_freqs(cfg)[np.argmax(img, axis=0)]))
    expected = 2 * speed * np.cos(np.deg2rad(aspect)) * 77e9 / radar.SPEED_OF_LIGHT
    assert torso_hz == pytest.approx(expected, rel=0.06)
    # On a treadmill the torso stays near zero Doppler (the middle row), limbs spread both ways.
    tread = simulate.simulate_recording(_physics_cfg(), person, rec, 1)[0]
    assert abs(float(np.median(_row_freqs(cfg)[np.argmax(tread, axis=0)]))) < 40.0


def test_limb_spikes_repeat_at_the_boulic_step_rate():
    cfg = _physics_cfg(window_s=8.0, time_bins=160, size=64)
    person, rec = _walk(1.0)
    img = simulate.simulate_recording(cfg, person, rec, 1)[0]
    upper = img[_row_freqs(cfg) > 500.0].mean(axis=0)  # energy of fast-moving limbs per column
    spec = np.abs(np.fft.rfft(upper - upper.mean(), n=4096))
    freqs = np.fft.rfftfreq(4096, d=cfg.window_s / cfg.size)
    band = (freqs > 0.8) & (freqs < 5.0)
    measured = freqs[band][np.argmax(spec[band])]
    rv = 1.0 / person.walker.leg_length
    steps_per_s = 2.0 / float(cycle_duration(rv))  # one swing of each leg per gait cycle
    assert measured == pytest.approx(steps_per_s, rel=0.1)


def test_ellipsoid_rcs_values():
    rng = np.random.default_rng(0)
    theta, phi = rng.uniform(0, np.pi, 20), rng.uniform(0, 2 * np.pi, 20)
    np.testing.assert_allclose(radar.ellipsoid_rcs(0.3, 0.3, 0.3, theta, phi), np.pi * 0.09, rtol=1e-12)
    # Prolate spheroid a = b = 1, c = 2: end-on pi a^2 b^2 / c^2... = pi / 4, broadside pi c^2 = 4 pi.
    assert radar.ellipsoid_rcs(1.0, 1.0, 2.0, 0.0) == pytest.approx(np.pi / 4)
    assert radar.ellipsoid_rcs(1.0, 1.0, 2.0, np.pi / 2) == pytest.approx(4 * np.pi)
    assert radar.wavelength(77.0) == pytest.approx(3.893e-3, rel=1e-3)
    assert radar.doppler_hz(1.0, 77.0) == pytest.approx(513.7, abs=0.5)


def test_cubic_upsampling_matches_direct_evaluation():
    person, rec = _walk(1.1, 10.0)
    cfg = _physics_cfg(size=32, time_bins=30)
    direct = simulate.simulate_recording(dataclasses.replace(cfg, kinematics_upsample=1), person, rec, 2)
    fast = simulate.simulate_recording(cfg, person, rec, 2)
    assert np.abs(direct - fast).mean() < 0.01


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("simulate.identities=0", "identities must be >= 1"),
        ("simulate.size=8", "size must be in [16, 4096]"),
        ("simulate.per_identity=1", "per_identity (1) must be >= recordings_per_identity"),
        ("simulate.hop_s=0.33", "integer number of columns"),
        ("simulate.format=gif", "must be one of"),
    ],
)
def test_bad_arguments_are_rejected(override, message):
    extra = ["simulate.recordings_per_identity=2"] if "per_identity=1" in override else []
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_config("smoke", [override, *extra])


def test_existing_output_and_bad_colormap_rejected_and_failures_leave_nothing(tmp_path, monkeypatch):
    out = tmp_path / "data"
    out.mkdir()
    (out / "keep.txt").write_text("x")
    with pytest.raises(DopplerDiffError, match="already exists"):
        simulate.simulate_dataset(tiny(), out, progress=False)
    assert (out / "keep.txt").read_text() == "x"
    with pytest.raises(DopplerDiffError, match="not a matplotlib colormap"):
        simulate.simulate_dataset(tiny(colormap="nope"), tmp_path / "cm", progress=False)

    calls = {"n": 0}
    real_save = simulate.save_window

    def failing_save(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] > 3:
            raise OSError("disk full")
        real_save(*args, **kwargs)

    monkeypatch.setattr(simulate, "save_window", failing_save)
    with pytest.raises(OSError):
        simulate.simulate_dataset(tiny(), tmp_path / "partial", progress=False)
    assert not (tmp_path / "partial").exists()
    assert not any(p.name.startswith(".partial") for p in tmp_path.iterdir())


def test_cli_flags_override_config(tmp_path):
    from typer.testing import CliRunner

    from dopplerdiff.cli import app

    out = tmp_path / "cli"
    res = CliRunner().invoke(app, ["simulate", "--out", str(out), "-c", "smoke", "--identities", "2",
                                   "--per-identity", "3", "--size", "16", "--format", "npy",
                                   "simulate.identities=5", "--quiet"])
    assert res.exit_code == 0, res.output
    assert sorted(p.name for p in out.iterdir() if p.is_dir()) == ["ID_1", "ID_2"]
    assert np.load(out / "ID_2" / "ID2_case1_1_Doppler3.npy").shape == (16, 16)


def test_sim_data_fixture_layout(sim_data):
    idents = sorted(p.name for p in sim_data.iterdir() if p.is_dir())
    assert idents == ["ID_1", "ID_2", "ID_3"]
    assert all(len(list((sim_data / i).glob("*.png"))) == 12 for i in idents)


def test_random_walk_is_stationary_with_the_requested_std_and_correlation_time():
    t = np.arange(0.0, 4000.0, 0.5)
    x = simulate.random_walk(np.random.default_rng(0), t, tau=5.0, std=2.0)
    assert x.std() == pytest.approx(2.0, rel=0.1)
    assert abs(x.mean()) < 0.3
    lag = 10  # 5 s = one correlation time: correlation exp(-1)
    assert np.corrcoef(x[:-lag], x[lag:])[0, 1] == pytest.approx(np.exp(-1), abs=0.06)
    assert not simulate.random_walk(np.random.default_rng(0), t, 5.0, 0.0).any()


def test_time_varying_swing_gains_scale_limb_excursions():
    from dopplerdiff.data.kinematics import body_points, trajectory_tables

    walker, tables = Walker(), trajectory_tables(1.0)
    phase = np.linspace(0, 4, 400)
    base = body_points(walker, tables, phase)
    same = body_points(walker, tables, phase, arm_mod=np.ones_like(phase), leg_mod=np.ones_like(phase))
    np.testing.assert_allclose(same["hand_r"], base["hand_r"], atol=1e-12)
    big = body_points(walker, tables, phase, arm_mod=1.5)
    forward = base["hand_r"][:, 0] - base["shoulder_r"][:, 0]
    forward_big = big["hand_r"][:, 0] - big["shoulder_r"][:, 0]
    assert np.ptp(forward_big) > 1.3 * np.ptp(forward)
    np.testing.assert_allclose(big["ankle_r"], base["ankle_r"], atol=1e-12)  # legs untouched


def test_conditions_drift_within_a_recording():
    # Overground, far away: the torso Doppler follows v cos(aspect); an aspect walk makes it wander.
    cfg = _physics_cfg(scene="overground", time_bins=60, window_s=3.0)
    person, rec = _walk(1.0, 45.0, range_m=200.0)
    steady = simulate.simulate_recording(cfg, person, rec, 6)
    drifting = simulate.simulate_recording(
        dataclasses.replace(cfg, drift_tau_s=1.0), person, dataclasses.replace(rec, aspect_walk_deg=20.0), 6
    )
    freqs = _row_freqs(cfg)

    def torso(imgs: np.ndarray) -> np.ndarray:
        return np.array([np.median(freqs[np.argmax(im, axis=0)]) for im in imgs])

    assert np.ptp(torso(steady)) < 30.0
    assert np.ptp(torso(drifting)) > 60.0
    # Defaults draw non-zero walks for every recording.
    rec0 = simulate.draw_recording(SimulateConfig(), simulate.draw_person(SimulateConfig(), 0), 0, 0)
    assert min(rec0.aspect_walk_deg, rec0.speed_walk, rec0.snr_walk_db, rec0.cadence_jitter,
               rec0.swing_jitter) > 0
