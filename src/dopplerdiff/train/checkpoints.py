"""Checkpoints of the shared loop: ``checkpoint-N`` directories written atomically, found, pruned, resumed."""

from __future__ import annotations

import contextlib
import json
import logging
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

from accelerate import Accelerator

from dopplerdiff.errors import DopplerDiffError

CHECKPOINT_RE = re.compile(r"^checkpoint-(\d+)$")


def find_checkpoints(work_dir: Path) -> list[Path]:
    """Complete checkpoints in ``work_dir`` sorted by step."""
    work_dir = Path(work_dir)
    if not work_dir.is_dir():
        return []
    found = [
        (int(m.group(1)), p)
        for p in work_dir.iterdir()
        if (m := CHECKPOINT_RE.match(p.name)) and (p / "loop_state.json").is_file()
    ]
    return [p for _, p in sorted(found)]


def resolve_resume(resume: str | Path | None, work_dir: Path) -> Path | None:
    """``None`` / ``"latest"`` / a path -> checkpoint directory to load (or None for a fresh start)."""
    if resume is None:
        return None
    if str(resume) == "latest":
        ckpts = find_checkpoints(work_dir)
        return ckpts[-1] if ckpts else None
    path = Path(resume)
    if not (path / "loop_state.json").is_file():
        raise DopplerDiffError(f"--resume '{resume}' is not a checkpoint directory (no loop_state.json)")
    return path


@contextlib.contextmanager
def quiet_accelerate() -> Iterator[None]:
    """accelerate logs every file of save_state/load_state at INFO; keep our logs readable."""
    logger = logging.getLogger("accelerate")
    level = logger.level
    logger.setLevel(max(level, logging.WARNING))
    try:
        yield
    finally:
        logger.setLevel(level)


def save_checkpoint(acc: Accelerator, work_dir: Path, step: int, epoch: int, limit: int) -> Path:
    """``accelerator.save_state`` into a temp dir on all processes, then rename + prune on the main one."""
    final = work_dir / f"checkpoint-{step}"
    tmp = work_dir / f".checkpoint-{step}.tmp"
    if acc.is_main_process:
        if tmp.exists():
            shutil.rmtree(tmp)
        tmp.mkdir(parents=True)  # before the others write their RNG states into it
    acc.wait_for_everyone()
    with quiet_accelerate():
        acc.save_state(str(tmp))
    acc.wait_for_everyone()
    if acc.is_main_process:
        (tmp / "loop_state.json").write_text(json.dumps({"step": step, "epoch": epoch}))
        if final.exists():
            shutil.rmtree(final)
        tmp.rename(final)
        if limit > 0:
            for old in find_checkpoints(work_dir)[:-limit]:
                shutil.rmtree(old, ignore_errors=True)
    acc.wait_for_everyone()
    return final
