"""Shared pieces of the hostile-input tests of the edit commands: a tiny run, error and snapshot checks."""

from __future__ import annotations

import json
from pathlib import Path

from dopplerdiff.pipelines.pipeline_dopplerdiff import DopplerDiffPipeline

NAMES = ["ID_1", "ID_2", "ID_3"]


def save_run(run: Path, pipe, smoke_config) -> Path:
    """RUN/pipeline (``pipe``), RUN/config.yaml and a data.json without a split."""
    pipe.save_pretrained(run / "pipeline")
    smoke_config.save(run / "config.yaml")
    meta = {"colormap": "jet", "native_size": None}
    data = {"data_root": "x", "identities": NAMES, "split": {}, "meta": meta}
    (run / "data.json").write_text(json.dumps(data))
    return run


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` with its bytes: equal snapshots = nothing changed."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def one_error(code: int, err: str, *needles: str) -> bool:
    """Exit 2 with one ``error:`` line that contains every needle."""
    return code == 2 and err.startswith("error:") and len(err.strip().splitlines()) == 1 and all(
        n in err for n in needles)


def forbid_sampling(monkeypatch) -> None:
    """Any call of the pipeline fails the test: the command must stop before sampling."""
    def refuse(self, *args, **kwargs):
        raise AssertionError("sampled before the bad argument was refused")

    monkeypatch.setattr(DopplerDiffPipeline, "__call__", refuse)
