"""Paths named inside files the program reads back (RUN/data.json, output manifests): checked before use.

A run file is data, not trusted input: an entry such as ``ID_1/../../../home/u/.bashrc`` must never make a
command read or write outside the folder the entry is relative to.
"""

from __future__ import annotations

from pathlib import Path

from dopplerdiff.errors import DataError


def check_relpath(rel: object, source: str) -> str:
    """``rel`` if it is a plain relative path (``a/b.png``: no leading '/', no '..', '.' or empty parts,
    no backslash or control characters), else one DataError naming ``source``."""
    parts = rel.split("/") if isinstance(rel, str) else [""]
    bad = (
        any(p in ("", ".", "..") for p in parts) or "\\" in rel
        or any(ord(c) < 32 or ord(c) == 127 for c in rel)
    )
    if bad:
        raise DataError(f"path {rel!r} in {source} is not a plain relative path inside its folder "
                        "(no leading '/', no '..'); the file is damaged or was edited: restore it")
    return rel


def path_inside(root: Path, rel: object, source: str) -> Path:
    """``root / rel`` once ``rel`` passed :func:`check_relpath` and it resolves (links followed) inside
    ``root``; else one DataError naming ``source``."""
    path = Path(root) / check_relpath(rel, source)
    if not path.resolve().is_relative_to(Path(root).resolve()):
        raise DataError(f"path {rel!r} in {source} leads outside '{root}' (through a symbolic link); "
                        "only files inside the folder are used")
    return path
