"""Atomic output directories/files and run manifests."""

from __future__ import annotations

import contextlib
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from dopplerdiff.errors import DopplerDiffError


@contextlib.contextmanager
def atomic_dir(target: Path, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary sibling directory that is renamed to ``target`` only on success.

    An interrupted or failed write leaves nothing at ``target`` that looks complete, and an existing
    ``target`` is never touched unless ``overwrite`` is set.
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
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if target.exists():
        backup = target.with_name(f".{target.name}.old-{os.getpid()}")
        target.rename(backup)
        tmp.rename(target)
        shutil.rmtree(backup, ignore_errors=True)
    else:
        tmp.rename(target)


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


def read_json_if_exists(path: Path) -> Any:
    """Parsed JSON at ``path``, or None when it is missing or unreadable."""
    try:
        return json.loads(Path(path).read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None
