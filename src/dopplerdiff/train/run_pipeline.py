"""Re-saving RUN/pipeline: the one path by which every stage (train-diffusion, train-decoder,
enroll-generator) writes it.

Under the run's lock (a second writer waits for the first) the stage's ``build`` turns the pipeline as it
is now on disk into the new one; that is saved atomically together with every top-level file of the old
one that the stage does not write itself (``enrolled.json``, ``config.yaml``, ``manifest.json``, ...).
So no stage's re-save drops what another stage added, and two concurrent writers cannot lose either
one's change.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from dopplerdiff.errors import DopplerDiffError
from dopplerdiff.models.identity_rows import add_identity_row, copy_identity_row, same_shared_weights
from dopplerdiff.pipelines.components import load_parts
from dopplerdiff.pipelines.pipeline_dopplerdiff import DopplerDiffPipeline
from dopplerdiff.utils.io import atomic_dir, read_json_if_exists, recover_dir, run_lock, write_json
from dopplerdiff.utils.rundir import RunDir

log = logging.getLogger(__name__)

LOCK_WAIT_S = 600.0  # a second writer waits this long for the first (as a second edit of an index does)
ENROLLED = "enrolled.json"

# build(current RUN/pipeline or None) -> None (nothing to save) or (pipeline, write(tmp) of its own files)
Build = Callable[[Path | None], tuple[Any, Callable[[Path], None]] | None]


def resave_pipeline(run: Path, build: Build) -> Path | None:
    """Replace RUN/pipeline by ``build(current)`` under the run's lock, carrying over the old files it
    does not write; returns RUN/pipeline, or None when ``build`` had nothing to save."""
    run = RunDir(run)
    target = run.pipeline
    with run_lock(run.root, timeout=LOCK_WAIT_S):
        recover_dir(target)
        current = target if (target / "model_index.json").is_file() else None
        made = build(current)
        if made is None:
            return None
        pipe, write = made
        with atomic_dir(target, overwrite=True) as tmp:
            pipe.save_pretrained(tmp)
            write(tmp)
            for old in sorted(current.iterdir()) if current is not None else []:
                if old.is_file() and not old.name.startswith(".") and not (tmp / old.name).exists():
                    shutil.copy2(old, tmp / old.name)  # another stage's record (enrolled.json, ...)
    return target


def enrolled_history(pipeline: Path | None) -> list[dict[str, Any]]:
    """The enrolment events recorded in ``pipeline/enrolled.json`` (none without a pipeline)."""
    if pipeline is None:
        return []
    return list((read_json_if_exists(pipeline / ENROLLED) or {}).get("enrolled", []))


def graft_identities(dst: dict[str, Any], src: Any, names: list[str]) -> dict[str, int]:
    """Copy the identity rows ``names`` of pipeline ``src`` into pipeline parts ``dst`` (as load_parts
    returns them): a name ``dst`` has is overwritten, a new one gets a new row. Returns name -> row."""
    cond_enc, den = dst["condition_encoder"], dst["denoiser"]
    identities = list(dst.get("identities") or [f"ID_{i + 1}" for i in range(cond_enc.num_identities)])
    rows = {}
    for name in names:
        if name in identities:
            row = identities.index(name)
        else:
            row = add_identity_row(cond_enc, den)
            identities.append(name)
        copy_identity_row((src.condition_encoder, src.denoiser), src.identities.index(name), (cond_enc, den),
                          row)
        rows[name] = row
    dst["identities"] = identities
    return rows


def require_pipeline(run: Path, current: Path | None, what: str) -> Path:
    """``current`` (RUN/pipeline); one clear error when it has gone."""
    if current is None:
        raise DopplerDiffError(f"run '{run}' has no pipeline any more ('{RunDir(run).pipeline}'); {what}")
    return current


def save_enrolled(pipe: DopplerDiffPipeline, run: Path, event: dict[str, Any]) -> Path:
    """Put the identity row ``pipe`` learned (``event["identity"]``, ``event["row"]``) into RUN/pipeline as
    it is now, with ``event`` appended to ``enrolled.json``: a person enrolled meanwhile by another
    process, or a decoder attached meanwhile, stays."""
    name = event["identity"]

    def build(current: Path | None) -> tuple[Any, Callable[[Path], None]]:
        current = require_pipeline(run, current, f"identity '{name}' was not saved")
        parts = load_parts(current)
        if not same_shared_weights((parts["condition_encoder"], parts["denoiser"]),
                                   (pipe.condition_encoder, pipe.denoiser)):
            raise DopplerDiffError(f"'{current}' was retrained while '{name}' was learned; its identity row "
                                   "fits the old denoiser only: enroll again")
        row = graft_identities(parts, pipe, [name])[name]
        history = [*enrolled_history(current), {**event, "row": row}]
        return DopplerDiffPipeline(**parts), lambda tmp: write_json(tmp / ENROLLED, {"enrolled": history})

    return resave_pipeline(run, build)
