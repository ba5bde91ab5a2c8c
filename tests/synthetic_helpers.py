"""A tiny trained-looking run over the simulated data: pipeline, config, data.json with a fixed split."""

from __future__ import annotations

import json
from pathlib import Path

from conftest import build_tiny_pipeline

from dopplerdiff.data.images import scan_tree


def make_run(tmp: Path, sim_data: Path, smoke_config) -> tuple[Path, dict[str, list[str]]]:
    """RUN with RUN/pipeline (untrained, 16x16), config.yaml and data.json: per identity, the first 8
    windows train, the next 2 val, the last 2 test. Returns (run, split)."""
    names, files, _ = scan_tree(sim_data)
    split = {"train": [], "val": [], "test": []}
    for n in names:
        fs = files[n]
        split["train"] += fs[:8]
        split["val"] += fs[8:10]
        split["test"] += fs[10:]
    run = tmp / "run"
    build_tiny_pipeline(smoke_config, names=names, native_size=32).save_pretrained(run / "pipeline")
    smoke_config.save(run / "config.yaml")
    data = {"data_root": str(sim_data), "identities": names, "split": split,
            "meta": {"colormap": "jet", "native_size": 32}}
    (run / "data.json").write_text(json.dumps(data))
    return run, split
