"""bench/throughput.py: settings parsing, and one run of two settings on a tiny trained run."""

from __future__ import annotations

import json
import shutil
import sys

import pytest
from conftest import load_bench

from dopplerdiff.config import load_config
from dopplerdiff.train.diffusion import train_diffusion


def _bench():
    return load_bench("throughput")


def test_settings_are_parsed_or_refused():
    mod = _bench()
    got = mod.parse_settings("dpmpp:10:32,unipc:5:64:cl")
    assert got == [{"scheduler": "dpmpp", "steps": 10, "batch": 32, "channels_last": False},
                   {"scheduler": "unipc", "steps": 5, "batch": 64, "channels_last": True}]
    for bad in ("dpmpp:10", "dpmpp:0:32", "dpmpp:10:32:xx", "nosuch:10:32"):
        with pytest.raises((SystemExit, Exception)):
            mod.parse_settings(bad)


def test_two_settings_on_a_tiny_run(ae_run, tmp_path, monkeypatch):
    run = tmp_path / "run"
    shutil.copytree(ae_run, run)
    train_diffusion(run, load_config("smoke", ["diffusion.train.steps=2"]), progress=False)
    out = tmp_path / "t.json"
    argv = ["--run", str(run), "--settings", "dpmpp:2:4,unipc:2:8:cl", "--num", "2", "--out", str(out)]
    monkeypatch.setattr(sys, "argv", ["throughput.py", *argv])
    _bench().main()
    rows = json.loads(out.read_text())["rows"]
    assert [r["scheduler"] for r in rows] == ["dpmpp", "unipc"] and rows[0]["speed_vs_reference"] == 1.0
    assert all(r["samples"] == 6 and r["samples_per_s"] > 0 for r in rows)
    assert all(0 <= r["identity_accuracy"] <= 1 for r in rows)
    assert rows[0]["agreement_with_reference"] == 1.0
    assert all(r["hf_energy_vs_real"] > 0 and r["histogram_distance"] >= 0 for r in rows)
