"""Checkpoints of the shared loop: ``checkpoint-N`` directories written atomically, found, pruned, resumed.

A checkpoint is ``accelerator.save_state`` (model weights as safetensors; optimiser, LR scheduler and RNG
states as tensors-only pickles that accelerate reads with ``weights_only=True``) plus files the project
writes and reads itself: ``loop_state.json`` and the EMA weights (``ema_<name>.safetensors`` + ``ema.json``).
Nothing is registered with ``register_for_checkpointing``: accelerate loads such custom state with
``weights_only=False``, so a planted ``custom_checkpoint_N.pkl`` could run code on resume.
"""

from __future__ import annotations

import contextlib
import json
import logging
import pickle
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator
from accelerate.utils import load as accelerate_load
from diffusers.training_utils import EMAModel
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from dopplerdiff.errors import DopplerDiffError
from dopplerdiff.utils.io import atomic_write_bytes

log = logging.getLogger(__name__)
CHECKPOINT_RE = re.compile(r"^checkpoint-(\d+)$")
LOOP_STATE = "loop_state.json"
EMA_META = "ema.json"
RNG_KEYS = ("random_state", "numpy_random_seed", "torch_manual_seed")
MIN_TORCH = (2, 4)  # the first torch whose weights_only loading accelerate uses (also pyproject's floor)


def find_checkpoints(work_dir: Path) -> list[Path]:
    """Complete checkpoints in ``work_dir`` sorted by step."""
    work_dir = Path(work_dir)
    if not work_dir.is_dir():
        return []
    found = [
        (int(m.group(1)), p)
        for p in work_dir.iterdir()
        if (m := CHECKPOINT_RE.match(p.name)) and (p / LOOP_STATE).is_file()
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
    if not (path / LOOP_STATE).is_file():
        raise DopplerDiffError(f"--resume '{resume}' is not a checkpoint directory (no {LOOP_STATE})")
    return path


def read_loop_state(ckpt: Path) -> dict[str, Any]:
    """``ckpt/loop_state.json``: step, epoch and (from this version on) the stage and its config."""
    try:
        state = json.loads((Path(ckpt) / LOOP_STATE).read_text())
        int(state["step"])
        return state
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise DopplerDiffError(f"checkpoint '{ckpt}' is damaged: {LOOP_STATE} is unreadable ({exc})") from exc


def checkpoint_step(ckpt: Path) -> int:
    """The optimiser step recorded in ``ckpt/loop_state.json``."""
    return int(read_loop_state(ckpt)["step"])


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


def save_ema(emas: dict[str, EMAModel], directory: Path) -> None:
    """EMA shadow weights as safetensors and the EMA counters as JSON (no pickle)."""
    meta: dict[str, Any] = {}
    for name, ema in emas.items():
        state = dict(ema.state_dict())
        shadow = state.pop("shadow_params")
        tensors = {f"{i:06d}": p.detach().cpu().contiguous() for i, p in enumerate(shadow)}
        save_file(tensors, str(directory / f"ema_{name}.safetensors"))
        meta[name] = state
    (directory / EMA_META).write_text(json.dumps(meta))


def load_ema(emas: dict[str, EMAModel], directory: Path, device: torch.device) -> None:
    """Restore what :func:`save_ema` wrote; a missing or damaged file is a clear error."""
    try:
        meta = json.loads((directory / EMA_META).read_text())
        for name, ema in emas.items():
            tensors = load_file(str(directory / f"ema_{name}.safetensors"))
            shadow = [tensors[k].to(device) for k in sorted(tensors)]
            ema.load_state_dict({**meta[name], "shadow_params": shadow})
    except (OSError, ValueError, KeyError, TypeError, SafetensorError) as exc:
        raise DopplerDiffError(
            f"checkpoint '{directory}' has no readable EMA state ({exc}); it was written by an older "
            "dopplerdiff or is damaged: resume from another checkpoint or start a new run"
        ) from exc


def check_rng_state(ckpt: Path, process_index: int) -> None:
    """Refuse a checkpoint whose RNG state cannot be restored (accelerate would skip it silently)."""
    path = ckpt / f"random_states_{process_index}.pkl"
    try:
        states = accelerate_load(path)  # weights_only=True with numpy's array types allowed
        missing = [k for k in RNG_KEYS if k not in states]
    except Exception as exc:  # torch.load raises many kinds (UnpicklingError, EOFError, RuntimeError, ...)
        raise DopplerDiffError(
            f"checkpoint '{ckpt}' is damaged: '{path.name}' cannot be read ({type(exc).__name__}); a resume "
            "without it would not continue the run exactly: resume from an earlier checkpoint (--resume PATH)"
        ) from exc
    if missing:
        raise DopplerDiffError(f"checkpoint '{ckpt}' is damaged: '{path.name}' lacks {', '.join(missing)}")


def check_no_custom_pickles(ckpt: Path) -> None:
    """Refuse ``custom_checkpoint_*.pkl``: never written by this version, and unpickling it can run code."""
    found = sorted(p.name for p in ckpt.glob("custom_checkpoint_*.pkl"))
    if found:
        raise DopplerDiffError(
            f"checkpoint '{ckpt}' contains {', '.join(found)}, a pickle dopplerdiff does not write (older "
            "versions stored EMA weights that way) and will not load, because unpickling can run code; "
            "resume from a checkpoint written by this version or start a new run"
        )


def check_safe_loading() -> None:
    """Refuse to unpickle checkpoint files with a torch older than 2.4: accelerate passes
    ``weights_only=True`` to ``torch.load`` only from 2.4 on, and a planted pickle could run code."""
    if tuple(int(v) for v in re.findall(r"\d+", torch.__version__)[:2]) < MIN_TORCH:
        raise DopplerDiffError(
            f"resuming needs torch >= {'.'.join(map(str, MIN_TORCH))} (installed: {torch.__version__}): "
            "older versions would load the checkpoint's optimiser and RNG pickles without weights_only")


def load_checkpoint(acc: Accelerator, ckpt: Path, emas: dict[str, EMAModel]) -> int:
    """Load models, optimisers, schedulers, RNG and EMA state from ``ckpt``; return its step."""
    check_safe_loading()
    step = checkpoint_step(ckpt)
    check_no_custom_pickles(ckpt)
    check_rng_state(ckpt, acc.process_index)
    try:
        with quiet_accelerate():
            acc.load_state(str(ckpt))
    except (RuntimeError, KeyError, ValueError, OSError, EOFError, pickle.UnpicklingError) as exc:
        raise DopplerDiffError(  # another model's weights, a damaged file, or a pickle that is not tensors
            f"checkpoint '{ckpt}' does not fit this stage's model or cannot be loaded safely "
            f"({type(exc).__name__}: {(str(exc).splitlines() or [''])[0][:200]}); it belongs to another "
            "stage or configuration, or is damaged"
        ) from exc
    if emas:
        load_ema(emas, ckpt, acc.device)
    return step


def save_checkpoint(acc: Accelerator, work_dir: Path, step: int, epoch: int, limit: int,
                    emas: dict[str, EMAModel] | None = None, record: dict[str, Any] | None = None) -> Path:
    """``accelerator.save_state`` into a temp dir on all processes, then rename + prune on the main one;
    ``record`` (the stage and its config, see ``train.resume``) goes into ``loop_state.json``."""
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
        if emas:  # identical on every process (gradients are all-reduced), so the main one writes it
            save_ema(emas, tmp)
        (tmp / LOOP_STATE).write_text(json.dumps({"step": step, "epoch": epoch, **(record or {})}))
        if final.exists():
            shutil.rmtree(final)
        tmp.rename(final)
        if limit > 0:
            for old in find_checkpoints(work_dir)[:-limit]:
                shutil.rmtree(old, ignore_errors=True)
    acc.wait_for_everyone()
    return final


def append_jsonl(path: Path, record: dict[str, Any]) -> None:
    with open(path, "a") as fh:
        fh.write(json.dumps(record) + "\n")


def truncate_log(path: Path, step: int) -> None:
    """Drop log lines from steps after ``step`` (they belong to a run that did not reach a checkpoint).

    A torn last line (the process died or the disk filled while writing it) is dropped with a warning;
    a damaged line elsewhere is an error naming the file.
    """
    if not path.is_file():
        return
    lines = [ln for ln in path.read_text(errors="replace").splitlines() if ln.strip()]
    records = []
    for i, ln in enumerate(lines):
        try:
            records.append((ln, json.loads(ln)))
        except json.JSONDecodeError as exc:
            if i < len(lines) - 1:
                raise DopplerDiffError(f"training log '{path}' is damaged at line {i + 1}: {exc}") from exc
            log.warning("dropping a torn last line of '%s' (an interrupted write)", path)
    keep = [ln for ln, rec in records if rec.get("step", 0) <= step]
    atomic_write_bytes(path, "".join(ln + "\n" for ln in keep).encode())
