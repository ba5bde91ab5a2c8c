"""Raw FMCW recordings in: DCA1000 layouts, IQ arrays, radar config checks, processing physics, the
simulator round trip (raw -> spectrogram vs the simulator's own spectrogram) and the CLI's bad inputs."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from conftest import run_cli
from scipy.io import savemat

from dopplerdiff.config.radar import ProcessingConfig, RadarConfig, load_radar_config
from dopplerdiff.config.simulate import SimulateConfig
from dopplerdiff.data import rangedoppler, raw, simulate_raw
from dopplerdiff.errors import ConfigError, DataError

# 24 GHz, 1 GHz sweep: 0.23 m range bins out to 7.5 m (32 complex samples); PRF 1000 Hz = +-3.1 m/s.
RADAR = dict(carrier_ghz=24.0, bandwidth_mhz=1000.0, chirp_time_us=50.0, adc_samples=32,
             sample_rate_ksps=1000.0, chirps_per_frame=50, frame_period_ms=50.0, rx=2, complex=True, bits=16,
             lane_layout="2lane")
PROC = dict(time_bins=24, size=32, gate="fixed", range_m=[0.5, 4.5], clutter="none")
SIM = SimulateConfig(identities=1, per_identity=2, recordings_per_identity=1, size=32, seed=3,
                     scatterers_per_segment=2, workers=1)


def radar_cfg(**kw) -> RadarConfig:
    proc = ProcessingConfig(**{**PROC, **kw.pop("processing", {})})
    return RadarConfig(**{**RADAR, **kw}, processing=proc)


@pytest.fixture(scope="module")
def walk():
    """(codes, reference) of one simulated walk, 2 windows: the raw capture and the simulator's images."""
    return simulate_raw.simulate_raw_recording(SIM, radar_cfg(), 0, 0, 2)


def small(layout: str, complex_: bool, rx: int, bits: int = 16, n: int = 4) -> RadarConfig:
    return radar_cfg(lane_layout=layout, complex=complex_, rx=rx, bits=bits, adc_samples=n,
                     chirps_per_frame=1, sample_rate_ksps=1000.0, chirp_time_us=n * 1.0, frame_period_ms=0.01)


def test_2lane_complex_follows_ti_layout():
    # SWRA581: "2I is followed by 2Q"; within a chirp all samples of rx0, then rx1.
    cfg = small("2lane", True, rx=2, n=2)
    words = np.array([1, 2, 10, 20, 3, 4, 30, 40], np.int16)  # rx0: 1+10j, 2+20j; rx1: 3+30j, 4+40j
    cube = raw.decode_dca1000(words, cfg)
    assert cube.shape == (1, 2, 2)
    np.testing.assert_array_equal(cube[0, :, 0], [1 + 10j, 2 + 20j])
    np.testing.assert_array_equal(cube[0, :, 1], [3 + 30j, 4 + 40j])


def test_4lane_complex_and_real_follow_ti_layout():
    # xWR14xx: one lane per receiver; each sample instant is I(rx0..) then Q(rx0..).
    words = np.array([1, 3, 10, 30, 2, 4, 20, 40], np.int16)
    cube = raw.decode_dca1000(words, small("4lane", True, rx=2, n=2))
    np.testing.assert_array_equal(cube[0, :, 0], [1 + 10j, 2 + 20j])
    np.testing.assert_array_equal(cube[0, :, 1], [3 + 30j, 4 + 40j])
    real = raw.decode_dca1000(np.array([1, 3, 2, 4], np.int16), small("4lane", False, rx=2, n=2))
    np.testing.assert_array_equal(real[0].real, [[1, 3], [2, 4]])
    real2 = raw.decode_dca1000(np.array([1, 2, 3, 4], np.int16), small("2lane", False, rx=2, n=2))
    np.testing.assert_array_equal(real2[0].real, [[1, 3], [2, 4]])


@pytest.mark.parametrize("layout", ["2lane", "4lane"])
@pytest.mark.parametrize("complex_", [True, False])
@pytest.mark.parametrize("rx", [1, 3, 4])
def test_encode_decode_round_trip(layout, complex_, rx):
    cfg = small(layout, complex_, rx=rx, n=6)
    rng = np.random.default_rng(rx)
    codes = rng.integers(-3000, 3000, (5, 6, rx))
    if complex_:
        codes = codes + 1j * rng.integers(-3000, 3000, (5, 6, rx))
    np.testing.assert_array_equal(raw.decode_dca1000(raw.encode_dca1000(codes, cfg), cfg), codes)


def test_12_and_14_bit_codes_are_sign_extended():
    words = np.array([0x0FFF, 0x0800, 0x07FF, -1, 5], np.int16)
    np.testing.assert_array_equal(raw.sign_extend(words, 12), [-1, -2048, 2047, -1, 5])
    np.testing.assert_array_equal(raw.sign_extend(np.array([0x3FFF, 0x2000], np.int16), 14), [-1, -8192])
    np.testing.assert_array_equal(raw.sign_extend(words, 16), [4095, 2048, 2047, -1, 5])


def test_round_trip_reproduces_the_simulator_spectrogram(walk, tmp_path):
    codes, reference = walk
    cfg = radar_cfg()
    path = tmp_path / "walk.bin"
    simulate_raw.write_raw_recording(path, codes, cfg)
    images = rangedoppler.cube_to_windows(raw.read_recording(path, cfg), cfg, str(path))
    assert images.shape == reference.shape == (2, 32, 32)
    corr = np.corrcoef(images.ravel(), reference.ravel())[0, 1]
    mad = float(np.abs(images - reference).mean())
    # Measured: correlation 0.989, mean |difference| 0.019 of the [0, 1] range (range bins separate the
    # scatterers, so their cross terms differ from the single CW channel's).
    assert corr > 0.97 and mad < 0.035, (corr, mad)
    # The Doppler sign matters: mirrored images are far off.
    flipped = rangedoppler.cube_to_windows(codes, radar_cfg(processing={"flip_doppler": True}), "x")
    assert np.corrcoef(flipped.ravel(), reference.ravel())[0, 1] < 0.8


def test_real_adc_tracked_gate_and_clutter_removal(walk):
    codes, reference = walk
    # A wall 1 m behind the walker, 10x the amplitude: removed by mean subtraction, dominant without it.
    cfg = radar_cfg()
    n = np.arange(cfg.adc_samples) / cfg.fs_hz
    wall = 10 * np.abs(codes).max() * np.exp(2j * np.pi * 2 * 4.0 * cfg.slope_hz_per_s / 299_792_458.0 * n)
    cluttered = codes + wall[None, :, None]
    tracked = radar_cfg(processing={"clutter": "mean", "gate": "track"})
    kept = rangedoppler.cube_to_windows(cluttered, tracked, "x")
    raw_ = rangedoppler.cube_to_windows(cluttered, radar_cfg(processing={"clutter": "none"}), "x")
    assert np.corrcoef(kept.ravel(), reference.ravel())[0, 1] > 0.97
    assert np.corrcoef(raw_.ravel(), reference.ravel())[0, 1] < 0.9
    real_cfg = radar_cfg(complex=False)
    real_codes, _ = simulate_raw.simulate_raw_recording(SIM, real_cfg, 0, 0, 2)
    real = rangedoppler.cube_to_windows(real_codes, real_cfg, "x")
    assert np.corrcoef(real.ravel(), reference.ravel())[0, 1] > 0.97


def test_point_target_lands_at_its_velocity_and_the_gate_tracks_it():
    cfg = radar_cfg(rx=1, processing={"gate": "track", "track_bins": 3, "range_m": [0.3, 4.5]})
    v = 1.0  # m/s towards the radar
    m = np.arange(4500)
    rng = 4.0 - v * m / cfg.prf_hz
    tracks = [(rng[None], np.ones((1, m.size)))]
    cube = simulate_raw.fmcw_cube(tracks, cfg)
    images = rangedoppler.cube_to_windows(cube, cfg, "x")
    ax = rangedoppler.axes(cfg)
    row = float(np.argmax(images[0].mean(axis=1)))
    step = ax["velocity_mps_per_row"]
    assert abs((ax["velocity_mps_top"] - (row + 0.5) * step) - v) < step
    idx = rangedoppler.gate_indices(rangedoppler.range_profiles(cube, cfg), cfg)
    centre = cfg.range_of_bin(idx[:, 1])
    inside = rng > 1.0  # the gate stops at the edge of range_m
    assert np.all(np.abs(centre - rng)[inside] < 2 * cfg.range_of_bin(1))


def test_npy_and_mat_arrays_match_the_bin(walk, tmp_path):
    codes, _ = walk
    cfg = radar_cfg()
    np.save(tmp_path / "a.npy", codes.astype(np.complex64))
    savemat(tmp_path / "a.mat", {"iq": codes.astype(np.complex64)})
    simulate_raw.write_raw_recording(tmp_path / "a.bin", codes, cfg)
    ref = raw.read_recording(tmp_path / "a.bin", cfg)
    for name in ("a.npy", "a.mat"):
        np.testing.assert_array_equal(raw.read_recording(tmp_path / name, cfg), ref)
    np.save(tmp_path / "bad.npy", codes[:, :16])
    with pytest.raises(DataError, match=r"bad\.npy.*adc_samples=32"):
        raw.read_recording(tmp_path / "bad.npy", cfg)
    savemat(tmp_path / "two.mat", {"a": codes[:4, :, 0], "b": codes[:4, :, 0]})
    with pytest.raises(DataError, match=r"two\.mat.*exactly one"):
        raw.read_recording(tmp_path / "two.mat", cfg)


def write_config(path: Path, **changes) -> Path:
    data = {**RADAR, "processing": PROC, **changes}
    path.write_text(yaml.safe_dump({k: v for k, v in data.items() if v is not None}))
    return path


def test_radar_config_errors_name_file_and_field(tmp_path):
    assert load_radar_config(write_config(tmp_path / "ok.yaml")).prf_hz == pytest.approx(1000.0)
    (tmp_path / "ok.json").write_text(json.dumps(RADAR))
    assert load_radar_config(tmp_path / "ok.json").rx == 2
    assert load_radar_config(write_config(tmp_path / "slope.yaml", slope_mhz_per_us=20.0)).rx == 2
    cases = {"missing.yaml": ({"bits": None}, "'bits'"), "bits.yaml": ({"bits": 10}, "bits must be one of"),
             "rx.yaml": ({"rx": 5}, "rx must be 1-4"),
             "layout.yaml": ({"lane_layout": "8lane"}, "lane_layout"),
             "adc.yaml": ({"adc_samples": 256}, "longer than chirp_time_us"),
             "slope.yaml": ({"slope_mhz_per_us": 30.0}, "slope_mhz_per_us"),
             "gate.yaml": ({"processing": {"gate": "auto"}}, "processing.gate")}
    for name, (change, field) in cases.items():
        with pytest.raises(ConfigError) as exc:
            load_radar_config(write_config(tmp_path / name, **change))
        assert name in str(exc.value) and field in str(exc.value), str(exc.value)


def test_file_size_that_does_not_match_the_config(tmp_path):
    cfg = radar_cfg()
    (tmp_path / "odd.bin").write_bytes(b"\0" * (12800 + 6))
    with pytest.raises(DataError, match=r"odd\.bin.*12806 bytes.*12800 bytes per frame"):
        raw.read_recording(tmp_path / "odd.bin", cfg)


def _one_error(code: int, err: str) -> str:
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error: "), err
    return lines[0]


def test_cli_writes_windows_and_metadata_and_refuses_bad_input(walk, tmp_path, monkeypatch, capsys):
    cfg_path = write_config(tmp_path / "radar.yaml")
    bin_path = tmp_path / "walk.bin"
    simulate_raw.write_raw_recording(bin_path, walk[0], radar_cfg())
    out = tmp_path / "DATA" / "ID_4"
    code, _, err = run_cli(monkeypatch, capsys, "spectrogram", "--raw", bin_path, bin_path,
                           "--radar", cfg_path, "--out", out, "--clutter", "mean", "-q")
    assert code == 0, err
    names = sorted(p.name for p in out.iterdir())
    assert names == ["ID4_case1_1_Doppler1.png", "ID4_case1_1_Doppler2.png", "ID4_case1_2_Doppler1.png",
                     "ID4_case1_2_Doppler2.png", "metadata.json"]
    meta = json.loads((out / "metadata.json").read_text())
    assert meta["radar"]["bits"] == 16 and meta["processing"]["clutter"] == "mean"
    assert meta["image"]["velocity_mps_top"] == pytest.approx(500 * 299_792_458.0 / 24e9 / 2)
    before = {p.name: p.read_bytes() for p in out.iterdir()}

    (tmp_path / "short.bin").write_bytes(bin_path.read_bytes()[:1000])
    write_config(tmp_path / "bits.yaml", bits=10)
    write_config(tmp_path / "nofield.yaml", carrier_ghz=None)
    bad = [
        (["--raw", bin_path, "--radar", cfg_path, "--out", out], "already exists"),
        (["--raw", tmp_path / "short.bin", "--radar", cfg_path, "--out", tmp_path / "ID_5"], "short.bin"),
        (["--raw", bin_path, "--radar", tmp_path / "bits.yaml", "--out", tmp_path / "ID_6"], "bits"),
        (["--raw", bin_path, "--radar", tmp_path / "nofield.yaml", "--out", tmp_path / "ID_7"],
         "carrier_ghz"),
        (["--raw", bin_path, "--radar", cfg_path, "--out", tmp_path / "ID_8", "--range", "9:12"], "range_m"),
    ]
    for args, expected in bad:
        code, _, err = run_cli(monkeypatch, capsys, "spectrogram", *args)
        assert expected in _one_error(code, err)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(("ID_", ".ID_"))) == []


def test_simulate_raw_cli_writes_a_capture_the_reader_accepts(tmp_path, monkeypatch, capsys):
    cfg_path = write_config(tmp_path / "radar.yaml")
    out = tmp_path / "sim.bin"
    code, _, err = run_cli(monkeypatch, capsys, "simulate-raw", "--radar", cfg_path, "--out", out,
                           "--windows", "1")
    assert code == 0, err
    cube = raw.read_recording(out, load_radar_config(cfg_path))
    assert cube.shape[1:] == (32, 2) and cube.shape[0] % 50 == 0 and np.abs(cube).max() > 0
    code, _, err = run_cli(monkeypatch, capsys, "simulate-raw", "--radar", cfg_path, "--out", out)
    assert "already exists" in _one_error(code, err)


def test_processing_config_checks():
    with pytest.raises(ValueError, match="whole number of columns"):
        dataclasses.replace(ProcessingConfig(), hop_s=0.71)
