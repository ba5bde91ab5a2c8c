"""What a checkpoint was trained with, and whether ``--resume`` may continue it.

Every checkpoint's ``loop_state.json`` records the stage that wrote it and the stage's config. A resume is
refused (one error naming the keys) when the config now differs in anything that changes the model, the
objective or the data order; only the keys in :data:`RESUME_FREE` (length of training, bookkeeping, what
validation shows, how samples are drawn afterwards) may change. A checkpoint of another stage is refused too.
"""

from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from dopplerdiff.config.base import to_dict
from dopplerdiff.errors import DopplerDiffError
from dopplerdiff.train.checkpoints import CHECKPOINT_RE, find_checkpoints, read_loop_state, resolve_resume

log = logging.getLogger(__name__)

# Leaf keys that a resume may change: none of them alters the weights' trajectory.
RESUME_FREE = frozenset({
    "steps", "checkpoint_every", "checkpoints_total_limit", "val_every", "log_every", "num_workers",
    "workers", "report_to",
    "val_images", "val_identities", "val_samples", "val_max", "eval_batch_size", "scheduler",
    "num_inference_steps", "guidance_scale", "samples_per_identity", "sample_steps", "truncation_rate",
})
_MISSING = "<not set>"


def stage_record(stage: str, **sections: Any) -> dict[str, Any]:
    """``{"stage": name, "config": {section: plain dict}}``: what a checkpoint of ``stage`` records."""
    return {"stage": stage, "config": {k: to_dict(v) for k, v in sections.items()}}


def _flat(obj: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(obj, dict):
        return {k: v for key, val in obj.items() for k, v in _flat(val, f"{prefix}{key}.").items()}
    return {prefix.rstrip("."): obj}


def config_diff(old: dict[str, Any], new: dict[str, Any]) -> list[tuple[str, Any, Any]]:
    """(key, recorded, now) for every key outside :data:`RESUME_FREE` whose value differs."""
    a, b = _flat(old), _flat(new)
    keys = sorted(k for k in a.keys() | b.keys() if k.rsplit(".", 1)[-1] not in RESUME_FREE)
    # A key added later with the default None (e.g. diffusion.condition.condition_dropout) is no change.
    return [(k, a.get(k, _MISSING), b.get(k, _MISSING)) for k in keys
            if a.get(k, _MISSING) != b.get(k, _MISSING) and not (k not in a and b[k] is None)]


def check_record(ckpt: Path, record: dict[str, Any]) -> None:
    """Refuse ``ckpt`` when another stage wrote it or its config differs (see the module docstring)."""
    state = read_loop_state(ckpt)
    if "stage" not in state:
        log.warning("checkpoint '%s' records no config (an older dopplerdiff wrote it): its settings cannot "
                    "be compared with this command's", ckpt)
        return
    if state["stage"] != record["stage"]:
        raise DopplerDiffError(
            f"--resume '{ckpt}' is a checkpoint of the {state['stage']} stage, not of the {record['stage']} "
            f"stage; pass a checkpoint of this stage (or --resume latest)")
    diff = config_diff(state.get("config") or {}, record["config"])
    if diff:
        listed = "; ".join(f"{k}: {was!r} -> {now!r}" for k, was, now in diff[:8])
        more = f" (and {len(diff) - 8} more)" if len(diff) > 8 else ""
        raise DopplerDiffError(
            f"cannot resume from '{ckpt}': the {record['stage']} config differs from the one it was trained "
            f"with in {listed}{more}; resume with the recorded settings, or train anew in a new run "
            "directory")


def plan_resume(resume: str | Path | None, work_dir: Path, record: dict[str, Any], outputs: Sequence[Path],
                steps: int) -> tuple[Path | None, bool]:
    """(checkpoint to load or None, whether the stage is already finished) for ``--resume``, checked
    before any work: another stage's or a differently configured checkpoint is refused; ``latest`` with no
    checkpoint is a warning (seen with -q), or an error when ``outputs`` already exist (they would be
    overwritten by a restart). Finished: the checkpoint is at ``steps`` and every output exists."""
    ckpt = resolve_resume(resume, work_dir)
    present = [Path(p) for p in outputs if Path(p).exists()]
    if ckpt is None:
        if resume is not None and present:
            raise DopplerDiffError(
                f"--resume {resume}: '{work_dir}' holds no checkpoint, and '{present[0]}' is already "
                "trained; nothing to resume (to train again, remove it, or use a new run directory)")
        if resume is not None:
            log.warning("--resume %s: no checkpoint in '%s'; training starts from step 0", resume, work_dir)
        return None, False
    check_record(ckpt, record)
    finished = bool(outputs) and len(present) == len(outputs) and int(read_loop_state(ckpt)["step"]) >= steps
    if finished:
        log.warning("'%s' is already trained to step %d (checkpoint '%s'); nothing to do, nothing re-saved",
                    present[0], steps, ckpt)
    return ckpt, finished


def drop_newer(work_dir: Path, step: int) -> None:
    """Remove checkpoints after ``step``: a resume from an older one abandons them, and ``--resume latest``
    must not pick them up later."""
    for old in find_checkpoints(work_dir):
        if int(CHECKPOINT_RE.match(old.name).group(1)) > step:
            log.warning("removing '%s': resuming from step %d abandons it", old, step)
            shutil.rmtree(old, ignore_errors=True)


def logged_result(log_path: Path) -> tuple[list[dict[str, Any]], dict[str, float]]:
    """([last training record], last validation metrics) of ``log.jsonl``: what a resumed, already
    finished loop reports instead of empty values."""
    train: list[dict[str, Any]] = []
    val: dict[str, float] = {}
    if Path(log_path).is_file():
        for line in Path(log_path).read_text().splitlines():
            rec = json.loads(line) if line.strip() else {}
            if rec.get("kind") == "val":
                val = {k: v for k, v in rec.items() if k not in ("kind", "step")}
            elif rec:
                train = [rec]
    return train, val
