"""bench/compare_runs.py: which metrics, samples and weights of two runs differ (timings apart)."""

from __future__ import annotations

import json
from pathlib import Path

from conftest import load_bench


def _load():
    return load_bench("compare_runs")


def _run(root: Path, acc: float, seconds: float, pixel: bytes) -> Path:
    (root / "eval").mkdir(parents=True)
    (root / "samples" / "ID_1").mkdir(parents=True)
    metrics = {"seconds": seconds, "identity": {"accuracy": acc, "per_id": [0.5, acc]}, "run": str(root)}
    (root / "eval" / "metrics.json").write_text(json.dumps(metrics))
    (root / "samples" / "ID_1" / "a.png").write_bytes(pixel)
    (root / "samples" / "ID_1" / "b.png").write_bytes(b"same")
    return root


def test_only_real_differences_are_reported(tmp_path):
    cr = _load()
    a = _run(tmp_path / "a", 0.9, 1.0, b"x")
    b = _run(tmp_path / "b", 0.8, 2.0, b"y")
    m = cr.metric_diffs(a, b)
    assert m["differ"] == {"/identity/accuracy": [0.9, 0.8], "/identity/per_id[1]": [0.9, 0.8]}
    assert set(m["volatile"]) == {"/seconds", "/run"}
    files = cr.file_diffs(a / "samples", b / "samples", "*.png")
    assert files["compared"] == 2 and files["differ"] == ["ID_1/a.png"]
    same = cr.metric_diffs(a, _run(tmp_path / "c", 0.9, 5.0, b"x"))
    assert same["differ"] == {} and same["compared"] == 5
