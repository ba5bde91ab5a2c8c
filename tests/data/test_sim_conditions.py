"""Simulator walking conditions: layout, same people across conditions, physics of each condition, and a
flat output that stays byte-identical to the simulator before conditions."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import run_cli

from dopplerdiff.config import SimulateConfig
from dopplerdiff.config.simulate import walk_condition
from dopplerdiff.data import simulate
from dopplerdiff.errors import ConfigError

KIN_HZ = 3500.0 / 8  # the simulator's kinematics grid (prf / kinematics_upsample)


def tiny(**kw) -> SimulateConfig:
    base = dict(identities=2, per_identity=5, recordings_per_identity=2, size=16, seed=3, workers=1)
    base.update(kw)
    return SimulateConfig(**base)


def tree_hash(root: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(root.rglob("*")):
        if p.is_file() and p.name != "manifest.json":  # the manifest holds wall-clock timings
            h.update(p.relative_to(root).as_posix().encode())
            h.update(p.read_bytes())
    return h.hexdigest()


# Output of the simulator before walking conditions existed (same config, this environment's numpy/PIL):
# without conditions nothing may change, not a window, not a byte of metadata.json.
BEFORE = {"png": "34e596ee88eb3618af486f819e007f666c17da917eb4b61d723510afcbb6f9cf",
          "npy": "123409c4caf72d76a6e6e91fe73c10c052198640756734be6ba1708f5a5e5f37"}


@pytest.mark.parametrize("fmt", ["png", "npy"])
def test_without_conditions_output_is_byte_identical_to_before(tmp_path, fmt):
    # The hashes were made with one BLAS thread; float output (npy) changes in its last bits with the thread
    # count, so the simulation runs in a child process pinned to one thread, whatever the suite's setting.
    code = ("import sys; from pathlib import Path; from test_sim_conditions import tiny; "
            "from dopplerdiff.data import simulate; "
            "simulate.simulate_dataset(tiny(format=sys.argv[1]), Path(sys.argv[2]), progress=False)")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join([str(Path(__file__).parent), *sys.path])}
    subprocess.run([sys.executable, "-c", code, fmt, str(tmp_path / "d")], env=env, check=True)
    assert tree_hash(tmp_path / "d") == BEFORE[fmt]


def test_conditions_layout_same_people_new_windows(tmp_path):
    cfg = tiny(per_identity=3, recordings_per_identity=1, conditions=("normal", "backpack"))
    out = simulate.simulate_dataset(cfg, tmp_path / "d", progress=False)
    assert sorted(p.name for p in out.iterdir()) == ["backpack", "manifest.json", "metadata.json", "normal"]
    for case, cond in enumerate(("normal", "backpack"), 1):
        for k in (1, 2):
            names = sorted(p.name for p in (out / cond / f"ID_{k}").iterdir())
            assert names == [f"ID{k}_case{case}_1_Doppler{i}.png" for i in (1, 2, 3)]
    normal = (out / "normal/ID_1/ID1_case1_1_Doppler1.png").read_bytes()
    assert normal != (out / "backpack/ID_1/ID1_case2_1_Doppler1.png").read_bytes()
    meta = json.loads((out / "metadata.json").read_text())
    flat = simulate.metadata(tiny(per_identity=3, recordings_per_identity=1))
    # The same seed-derived people; each condition walks its own recordings.
    assert [i["params"] for i in meta["identities"]] == [i["params"] for i in flat["identities"]]
    recs = meta["identities"][0]["recordings"]
    assert [(r["condition"], r["name"]) for r in recs] == [("normal", "case1_1"), ("backpack", "case2_1")]
    assert recs[0]["params"]["start_phase"] != recs[1]["params"]["start_phase"]
    assert [c["name"] for c in meta["conditions"]] == ["normal", "backpack"]
    assert meta["counts"]["total"] == 12 and meta["config"]["conditions"] == ["normal", "backpack"]
    assert json.loads((out / "manifest.json").read_text())["conditions"] == ["normal", "backpack"]


def test_conditions_output_does_not_depend_on_worker_count(tmp_path):
    kw = dict(identities=2, per_identity=2, recordings_per_identity=1, conditions=("slow", "aspect_40"))
    one = simulate.simulate_dataset(tiny(**kw), tmp_path / "one", progress=False)
    two = simulate.simulate_dataset(tiny(workers=2, **kw), tmp_path / "two", progress=False)
    assert tree_hash(one) == tree_hash(two)


@pytest.mark.parametrize("names, match", [
    (("normal", "skipping"), "unknown condition 'skipping'"),
    (("aspect_95",), "unknown condition 'aspect_95'"),
    (("fast", "fast"), "names a condition twice"),
])
def test_bad_conditions_are_one_config_error(names, match):
    with pytest.raises(ConfigError, match=match):
        tiny(conditions=names)


def test_cli_conditions(tmp_path, monkeypatch, capsys):
    bad = tmp_path / "bad"
    code, _, err = run_cli(monkeypatch, capsys, "simulate", "--out", bad, "-c", "smoke", "-q",
                           "--conditions", "normal,limping")
    assert code == 2 and err.count("error:") == 1 and "'limping'" in err and not bad.exists()
    out = tmp_path / "ok"
    code, _, err = run_cli(monkeypatch, capsys, "simulate", "--out", out, "-c", "smoke", "-q",
                           "--identities", "2", "--per-identity", "2", "simulate.recordings_per_identity=1",
                           "--conditions", "normal, hands_in_pockets")
    assert code == 0, err
    assert sorted(p.name for p in out.iterdir() if p.is_dir()) == ["hands_in_pockets", "normal"]
    assert (out / "hands_in_pockets" / "ID_2" / "ID2_case2_1_Doppler2.png").is_file()


# ---------------------------------------------------------------- physics of the conditions
def _velocities(cfg: SimulateConfig, seconds: float, conds: list[str | None], k: int = 0) -> list[dict]:
    """Radial velocities of the body points of person k's first recording, walked in each condition (the
    same person, recording and random streams, so only the condition differs)."""
    person = simulate.draw_person(cfg, k)
    rec = simulate.draw_recording(cfg, person, k, 0)
    t = np.arange(int(seconds * KIN_HZ)) / KIN_HZ
    return [simulate.point_radial_velocities(cfg, person, rec, t, c and walk_condition(c)) for c in conds]


def _extent(v: np.ndarray) -> float:
    """Doppler extent of one point's micro-Doppler line (robust peak to peak, m/s)."""
    return float(np.percentile(v, 99) - np.percentile(v, 1))


@pytest.mark.parametrize("k", [0, 1])
def test_carried_arms_shrink_the_arm_micro_doppler(k):
    normal, backpack, pockets, phone = _velocities(
        SimulateConfig(seed=1), 12.0, [None, "backpack", "hands_in_pockets", "phone_in_hand"], k)

    def ratio(v: dict, point: str) -> float:
        return _extent(v[point]) / _extent(normal[point])

    for hand in ("hand_r", "hand_l"):
        assert ratio(backpack, hand) < 0.7 and ratio(pockets, hand) < 0.25
    assert ratio(backpack, "hand_l") < ratio(backpack, "hand_r")  # asymmetric: the strap side swings less
    assert ratio(phone, "hand_r") < 0.25 and ratio(phone, "hand_l") > 0.85  # only the phone arm is frozen
    for v in (pockets, phone):  # the legs keep walking
        assert ratio(v, "toe_r") > 0.9


def _cadence(v: np.ndarray) -> float:
    """Dominant frequency (Hz) of a point's radial velocity: the gait cycle rate."""
    amp = np.abs(np.fft.rfft(v - v.mean()))
    return float(np.fft.rfftfreq(len(v), 1 / KIN_HZ)[1 + np.argmax(amp[1:])])


def test_walking_speed_sets_the_cadence_by_boulic():
    cfg = SimulateConfig(seed=1, recording_jitter=0.0)
    normal, fast, slow = _velocities(cfg, 40.0, [None, "fast", "slow"])
    base = _cadence(normal["hand_r"])
    # Cycle length 1.346 sqrt(rv) H_t at speed rv H_t: cycles per second grow as sqrt(speed).
    for v, factor in ((fast, 1.35), (slow, 0.7)):
        assert _cadence(v["hand_r"]) / base == pytest.approx(np.sqrt(factor), rel=0.05)
        assert _cadence(v["toe_r"]) / base == pytest.approx(np.sqrt(factor), rel=0.05)
    assert _cadence(fast["hand_r"]) > base > _cadence(slow["hand_r"])


@pytest.mark.parametrize("cond, factor", [
    ("aspect_60", np.cos(np.deg2rad(60))), ("aspect_30", np.cos(np.deg2rad(30))),
    ("fast", 1.35), ("slow", 0.7), ("backpack", 0.9),
])
def test_torso_doppler_offset_scales_with_aspect_cos_and_speed(cond, factor):
    # Walking over ground towards a far radar: the torso's Doppler offset is its radial speed.
    cfg = SimulateConfig(seed=1, recording_jitter=0.0, scene="overground", range_m=(1000.0, 1000.0))
    normal, other = _velocities(cfg, 6.0, [None, cond])
    assert normal["spine"].mean() > 0.4  # walking towards the radar
    assert other["spine"].mean() / normal["spine"].mean() == pytest.approx(factor, rel=0.02)


@pytest.mark.parametrize("deg", [30, 60])
def test_aspect_scales_the_feet_envelope_by_cos(deg):
    """The feet draw the spectrogram's envelope and move almost only forwards: turned by the aspect angle,
    their Doppler extent is seen at cos(aspect) (sideways sway of the torso adds sin terms there)."""
    cfg = SimulateConfig(seed=1, recording_jitter=0.0, range_m=(1000.0, 1000.0))  # treadmill, far field
    normal, turned = _velocities(cfg, 12.0, [None, f"aspect_{deg}"])
    cos = np.cos(np.deg2rad(deg))
    for point in ("toe_r", "toe_l", "ankle_r"):
        assert _extent(turned[point]) / _extent(normal[point]) == pytest.approx(cos, abs=0.05)
