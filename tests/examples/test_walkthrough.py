"""examples/walkthrough.py: one sample's path in one script runs end to end on a tiny dataset, writes one
image per sample in the ID_k/ layout and scores real test windows and samples."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from PIL import Image

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "examples" / "walkthrough.py"


def test_walkthrough_runs_from_folder_to_metric(sim_data, tmp_path):
    out = tmp_path / "samples"
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--data", str(sim_data), "--out", str(out), "--profile", "smoke",
         "--ae-steps", "4", "--steps", "4", "--per-identity", "2"],
        capture_output=True, text=True, timeout=600, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "36 windows of 3 people" in proc.stdout
    scores = re.findall(r"identity accuracy of (real test windows|samples): ([0-9.]+) \[", proc.stdout)
    assert [name for name, _ in scores] == ["real test windows", "samples"]
    files = sorted(p.relative_to(out).as_posix() for p in out.rglob("*.png"))
    assert [f.split("/")[0] for f in files] == ["ID_1", "ID_1", "ID_2", "ID_2", "ID_3", "ID_3"]
    with Image.open(out / files[0]) as im:  # the smoke profile's model size, in the data's colormap
        assert im.size == (16, 16) and im.mode == "RGB"


def test_walkthrough_names_only_the_modules_it_imports():
    """The docstring's file list is the script's imports (config aside): the path stays ≤ 10 files."""
    text = SCRIPT.read_text()
    imported = set(re.findall(r"^from dopplerdiff\.([\w.]+) import", text, re.M)) - {"config"}
    listed = {m.replace("/", ".").removesuffix(".py") for m in re.findall(r"^    ([\w/]+\.py) ", text, re.M)}
    assert imported == listed and len(listed) + 1 <= 10
