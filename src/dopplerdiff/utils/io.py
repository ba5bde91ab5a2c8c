"""Atomic output directories/files, locks of shared outputs, and run manifests."""

from __future__ import annotations

import contextlib
import errno
import glob
import json
import os
import platform
import shutil
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout

from dopplerdiff.errors import DopplerDiffError
from dopplerdiff.utils.rundir import RunDir

LOCK_NAME = ".lock"  # a run directory's lock file; not an output
COMMIT_WAIT_S = 600.0  # how long a replacement or a recovery waits for another one of the same directory


def check_out_dir(out: Path, overwrite: bool = False, hint: str = "choose another path or remove it",
                  what: str = "output") -> Path:
    """Refuse, before any work, an output folder path that is a file, or a non-empty folder unless
    ``overwrite``."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise DopplerDiffError(f"{what} '{out}' is an existing file; give a folder path")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise DopplerDiffError(f"{what} '{out}' already exists; {hint}")
    return out


@contextlib.contextmanager
def loadable_weights(path: Path, what: str) -> Iterator[None]:
    """diffusers reports an unreadable weights file (truncated, damaged) as an OSError without an errno;
    make it one error naming the saved part."""
    try:
        yield
    except OSError as exc:
        if exc.errno is not None:  # a real file-system error: the CLI reports those itself
            raise
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise DopplerDiffError(f"{what} '{path}' cannot be loaded ({reason}); its files are damaged or "
                               "incomplete: restore them or train that stage again") from exc


@contextlib.contextmanager
def atomic_dir(target: Path, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary sibling directory that is renamed to ``target`` only on success.

    An interrupted or failed write leaves nothing at ``target`` that looks complete, and an existing
    ``target`` is never touched unless ``overwrite`` is set (checked again at the commit, so of two
    concurrent writers the later one fails and the earlier one's output stays).
    """
    target = Path(target)
    if target.exists() and not overwrite:
        if target.is_dir() and not any(target.iterdir()):
            target.rmdir()
        else:
            raise DopplerDiffError(f"output '{target}' already exists; choose another path or remove it")
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    tmp.chmod(0o777 & ~_umask())  # mkdtemp makes 0700; outputs should be readable like any new dir
    try:
        yield tmp
        _commit(tmp, target, overwrite)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _commit(tmp: Path, target: Path, overwrite: bool) -> None:
    """Move the finished ``tmp`` to ``target``: without ``overwrite`` one rename that refuses a non-empty
    ``target``; with it, under the commit lock, the old version goes to a unique backup name first."""
    if not overwrite:
        try:
            tmp.rename(target)  # atomic; fails when another writer has filled ``target`` meanwhile
        except OSError as exc:
            if exc.errno not in (errno.ENOTEMPTY, errno.EEXIST, errno.ENOTDIR, errno.EISDIR):
                raise
            raise DopplerDiffError(f"output '{target}' was written by another process meanwhile; "
                                   "choose another path or remove it") from None
        return
    with commit_lock(target):
        stale = _backups(target)
        if target.exists():
            backup = target.with_name(f"{_backup_prefix(target)}{os.getpid()}-{uuid.uuid4().hex[:8]}")
            target.rename(backup)
            tmp.rename(target)  # a kill between the two renames is repaired by recover_dir
            stale.append(backup)
        else:
            tmp.rename(target)
        for old in stale:  # ``target`` is complete now: earlier interrupted replacements are obsolete
            _remove(old)


def _backup_prefix(target: Path) -> str:
    return f".{target.name}.old-"


def _backups(target: Path) -> list[Path]:
    """Backups of ``target`` left by replacements, oldest first (one removed meanwhile is skipped)."""
    found = target.parent.glob(f"{glob.escape(_backup_prefix(target))}*") if target.parent.is_dir() else []
    dated = []
    for path in found:
        with contextlib.suppress(FileNotFoundError):
            dated.append((path.stat().st_mtime, path))
    return [path for _, path in sorted(dated)]


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def commit_lock(target: Path, timeout: float | None = None) -> contextlib.AbstractContextManager[None]:
    """The lock beside ``target`` held while it is replaced or recovered (and by edits of an index);
    waits ``timeout`` s (default :data:`COMMIT_WAIT_S`)."""
    target = Path(target)
    wait = COMMIT_WAIT_S if timeout is None else timeout
    return file_lock(target.parent / f".{target.name}.lock", f"'{target}'", wait)


def recover_dir(target: Path, timeout: float | None = None) -> bool:
    """Put back the previous version of ``target`` when a replacement died between its two renames.

    :func:`atomic_dir` moves the old directory to a backup name, then the new one into place; only the
    old one is known to be complete, so it is restored. This holds the commit lock, so a replacement in
    progress is waited for, not undone. Returns True when something was restored.
    """
    target = Path(target)
    if target.exists() or not _backups(target):
        return False
    with commit_lock(target, timeout):
        backups = [b for b in _backups(target) if b.is_dir() and any(b.iterdir())]
        if target.exists() or not backups:
            return False
        backups[-1].rename(target)
        return True


def recover_parts(directory: Path) -> list[str]:
    """:func:`recover_dir` for every part of ``directory`` (a run) that a replacement left missing;
    returns the names restored."""
    directory = Path(directory)
    backups = directory.glob(".*.old-*") if directory.is_dir() else []
    names = {p.name[1:].split(".old-")[0] for p in backups}
    return sorted(n for n in names if recover_dir(directory / n))


@contextlib.contextmanager
def file_lock(lock_path: Path, what: str, timeout: float = 0.0) -> Iterator[None]:
    """Hold the exclusive lock ``lock_path`` (waiting up to ``timeout`` s, -1 forever) for ``what``.

    Re-entrant in one thread of one process (nested stages of ``run`` take the same lock); another process
    or thread gets one clear error when the wait runs out.
    """
    lock_path = Path(lock_path)
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(lock_path), is_singleton=True)
    try:
        lock.acquire(timeout=timeout)
    except Timeout:
        raise DopplerDiffError(
            f"{what} is in use by another dopplerdiff process (lock '{lock_path}'); wait for it to finish"
        ) from None
    try:
        yield
    finally:
        lock.release()


@contextlib.contextmanager
def run_lock(directory: Path, *, enabled: bool = True, timeout: float = 0.0) -> Iterator[None]:
    """Exclusive use of a run (or training) directory; a second writer fails at once, or after waiting
    ``timeout`` s."""
    if not enabled:  # non-main processes of a distributed launch: the main one holds the lock
        yield
        return
    with file_lock(Path(directory) / LOCK_NAME, f"'{directory}'", timeout):
        yield


def dir_entries(directory: Path) -> list[Path]:
    """Entries of ``directory`` other than its lock file."""
    return [p for p in Path(directory).iterdir() if p.name != LOCK_NAME]


def check_run_output(run: Path, data_root: Path | None = None) -> bool:
    """Refuse an output that is a file, the data folder itself, or a non-empty folder that is not a run.

    Returns whether ``run`` already holds a run (the caller decides whether that needs ``--resume``).
    """
    run = Path(run)
    if run.exists() and not run.is_dir():
        raise DopplerDiffError(f"--out '{run}' exists and is not a directory")
    if data_root is not None and Path(data_root).resolve() == run.resolve():
        raise DopplerDiffError(f"--out '{run}' is the data folder itself; choose a separate run directory")
    if not run.is_dir() or not dir_entries(run):
        return False
    if not (RunDir(run).config.is_file() or RunDir(run).data_record.is_file()):
        raise DopplerDiffError(
            f"--out '{run}' is a non-empty directory that is not a dopplerdiff run (no config.yaml or "
            "data.json); choose a new path"
        )
    return True


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write a file via a temp file + rename so readers never see a partial file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_json(path: Path, obj: Any) -> None:
    atomic_write_bytes(Path(path), (json.dumps(obj, indent=2, default=_json_default) + "\n").encode())


def _json_default(obj: Any) -> Any:
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def versions() -> dict[str, str]:
    """Versions of the libraries that determine results (read from package metadata, no imports)."""
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": sys.version.split()[0], "platform": platform.platform()}
    for name in ("dopplerdiff", "torch", "diffusers", "accelerate", "numpy", "scipy", "torchmetrics"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            continue
    return out


def write_manifest(out_dir: Path, **fields: Any) -> dict[str, Any]:
    """Write ``manifest.json`` (inputs, seed, label map, ... plus versions and time)."""
    manifest = {"created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "versions": versions(), **fields}
    write_json(Path(out_dir) / "manifest.json", manifest)
    return manifest


def read_json(path: Path) -> Any:
    """Parsed JSON at ``path``; a missing or damaged file is one error naming it."""
    path = Path(path)
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise DopplerDiffError(f"'{path}' does not exist") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DopplerDiffError(f"'{path}' is damaged (not valid JSON: {exc}); restore or remove it") from exc


def pretrained_config(directory: Path, what: str, file: str = "config.json",
                      hint: str = "") -> dict[str, Any]:
    """The JSON config of a ``save_pretrained`` directory (its ``_class_name`` says what it holds); a missing
    file is one error saying the directory is not a saved ``what`` (+ ``hint``), a damaged one names it.
    A directory left missing by an interrupted replacement is restored first."""
    recover_dir(Path(directory))
    cfg_file = Path(directory) / file
    if not cfg_file.is_file():
        raise DopplerDiffError(f"'{directory}' is not a saved {what} (no {file}){hint}")
    return read_json(cfg_file)


def read_json_if_exists(path: Path) -> Any:
    """Parsed JSON at ``path``, or None when it is missing; a damaged file is an error, not None."""
    return read_json(path) if Path(path).is_file() else None
