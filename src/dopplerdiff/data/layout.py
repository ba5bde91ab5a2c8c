"""The folder layouts a data root may have, and the index of its windows.

Flat: ``ROOT/<identity>/<files>`` (files may sit in subfolders): one condition, named ``default``.
Conditions: ``ROOT/<condition>/<identity>/<files>``, how gait-condition datasets are organised
(``Normal_line/ID_1``, ``Backpack_line/ID_1``). A top folder is a condition folder when its name is not
person-like (ID_3, subject_07, ...) and it holds person-like folders; the same identity folder name in two
conditions is one person. Mixing the two layouts at the top level is refused: the identity folders would
either become "people" or be merged.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dopplerdiff.errors import DataError
from dopplerdiff.utils.names import check_identity_names

IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".bmp")
ARRAY_EXTS = (".npy", ".mat")
SUPPORTED_EXTS = IMAGE_EXTS + ARRAY_EXTS
DEFAULT_CONDITION = "default"  # the one condition of a flat data root
# A folder name that names a person (ID_3, id-12, Person 4, subject_07, participant2).
IDENTITY_LIKE = re.compile(r"^(id|person|subject|participant)[ _\-]?\d+$", re.IGNORECASE)


def natural_key(text: str) -> list[Any]:
    """Sort key that orders embedded integers numerically (ID_2 before ID_10)."""
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", text)]


@dataclass
class Tree:
    """What a data root holds: identities (natural order, the union over conditions), condition folder
    names ([] for a flat root) and each (condition, identity)'s files relative to the root."""

    identities: list[str]
    conditions: list[str]
    files: dict[tuple[str | None, str], list[str]]
    ignored: int


def _subdirs(folder: Path) -> list[Path]:
    return sorted((p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")),
                  key=lambda p: natural_key(p.name))


def _is_condition_folder(top: Path) -> bool:
    return not IDENTITY_LIKE.match(top.name) and any(IDENTITY_LIKE.match(p.name) for p in _subdirs(top))


def _check_conditions(root: Path, tops: list[Path], conds: list[Path]) -> None:
    """Every top folder is a condition folder holding identity folders and no loose data files."""
    for top in tops:
        if top in conds:
            loose = [p.name for p in top.iterdir() if p.is_file() and p.suffix.lower() in SUPPORTED_EXTS]
            if loose:
                raise DataError(f"condition folder '{top}' holds data files directly ('{loose[0]}'); "
                                f"put them in its identity folders, {top.name}/<identity>/<files>")
        elif IDENTITY_LIKE.match(top.name):
            raise DataError(
                f"data root '{root}' mixes identity folders ('{top.name}') with condition folders "
                f"('{conds[0].name}'); use DATA/<identity>/<files> or DATA/<condition>/<identity>/<files>"
            )
        else:
            raise DataError(
                f"condition folder '{top}' has no identity folders (expected {top.name}/ID_1/..., as in "
                f"'{conds[0].name}'); remove it or add its identity folders"
            )


def _identity_files(root: Path, folder: Path) -> tuple[list[str], int]:
    """Supported files under one identity folder (relative to root, natural order), count of ignored."""
    found, ignored = [], 0
    for p in folder.rglob("*"):
        if not p.is_file() or any(part.startswith(".") for part in p.relative_to(folder).parts):
            continue
        if p.suffix.lower() in SUPPORTED_EXTS:
            found.append(p.relative_to(root).as_posix())
        else:
            ignored += 1
    if not found:
        raise DataError(
            f"identity folder '{folder}' contains no supported files ({', '.join(SUPPORTED_EXTS)})"
        )
    return sorted(found, key=natural_key), ignored


def scan_layout(root: Path) -> Tree:
    """Index ``root`` in either layout (one DataError naming the folder when it is neither)."""
    root = Path(root)
    if not root.exists():
        raise DataError(f"data root '{root}' does not exist")
    if not root.is_dir():
        raise DataError(f"data root '{root}' is not a directory (expected ROOT/<identity>/<files>)")
    tops = _subdirs(root)
    if not tops:
        loose = [p.name for p in root.iterdir() if p.suffix.lower() in SUPPORTED_EXTS]
        hint = f"; found {len(loose)} data files directly in it" if loose else ""
        raise DataError(
            f"data root '{root}' has no identity subfolders{hint}; expected one folder per person, "
            "e.g. ROOT/ID_1/*.jpg, ROOT/ID_2/*.jpg"
        )
    conds = [top for top in tops if _is_condition_folder(top)]
    if conds:
        _check_conditions(root, tops, conds)
    groups = [(c.name, c, _subdirs(c)) for c in conds] if conds else [(None, root, tops)]
    files: dict[tuple[str | None, str], list[str]] = {}
    ignored = 0
    for cond, folder, idents in groups:
        check_identity_names((d.name for d in idents), f"data root '{folder}'")
        for d in idents:
            files[cond, d.name], n = _identity_files(root, d)
            ignored += n
    identities = sorted({ident for _, ident in files}, key=natural_key)
    return Tree(identities, [c.name for c in conds], files, ignored)


def scan_tree(root: Path) -> tuple[list[str], dict[str, list[str]], int]:
    """Identities (natural order), their supported files over all conditions (relative to root), count of
    ignored files."""
    tree = scan_layout(root)
    per_id: dict[str, list[str]] = {ident: [] for ident in tree.identities}
    for (_, ident), rels in tree.files.items():
        per_id[ident] += rels
    return tree.identities, {k: sorted(v, key=natural_key) for k, v in per_id.items()}, tree.ignored


# ---------------------------------------------------------------- window index
_CASE_RE = re.compile(r"(?:^|[_\-\s])case(\d+)_(\d+)_doppler(\d+)$", re.IGNORECASE)
_TRAILING_RE = re.compile(r"^(.*?)[_\-\s.]*(\d+)$")


def parse_name(identity: str, rel: str) -> tuple[str, int] | None:
    """(recording key, window index) from a file path relative to its identity folder, or None.

    ``ID3_case1_2_Doppler7.jpg`` -> ("ID_3/case1_2", 7) (with the folder name as identity). Other names
    with a trailing integer: the text before it names the recording (``img_0001`` -> ("ID_3/img", 1)).
    """
    stem = str(Path(rel).with_suffix("")).replace("\\", "/")
    m = _CASE_RE.search(stem)
    if m:
        return f"{identity}/case{int(m.group(1))}_{int(m.group(2))}", int(m.group(3))
    m = _TRAILING_RE.match(stem)
    if m:
        return f"{identity}/{m.group(1) or 'rec'}", int(m.group(2))
    return None


def _windows_for(identity: str, rels: list[str], depth: int) -> tuple[list[str], list[int], bool]:
    """Recording keys and window indices for one identity's files (``depth`` folders above each file's
    path inside its identity folder); False if sorted order had to be used."""
    parsed = [parse_name(identity, r.split("/", depth)[depth]) for r in rels]
    keys = [p for p in parsed if p is not None]
    if len(keys) == len(rels) and len(set(keys)) == len(keys):
        return [k[0] for k in keys], [k[1] for k in keys], True
    return [f"{identity}/sorted"] * len(rels), list(range(len(rels))), False


@dataclass
class TreeIndex:
    """Per file (identity-major, then condition, then natural file order): label, condition, recording
    (``<condition>/`` in front of the key in a condition layout) and window index."""

    tree: Tree
    condition_names: list[str]
    files: list[str]
    labels: list[int]
    conditions: list[int]
    recordings: list[str]
    windows: list[int]
    sorted_groups: list[str]  # identities (``<condition>/<identity>``) whose window order is the file order
    groups: int  # (condition, identity) folders


def index_tree(root: Path) -> TreeIndex:
    """Scan ``root`` and index every window."""
    tree = scan_layout(root)
    names = tree.conditions or [DEFAULT_CONDITION]
    out = TreeIndex(tree, names, [], [], [], [], [], [], len(tree.files))
    conds: list[str | None] = list(tree.conditions) or [None]
    for label, ident in enumerate(tree.identities):
        for c, cond in enumerate(conds):
            rels = tree.files.get((cond, ident))
            if rels is None:
                continue
            recs, wins, from_name = _windows_for(ident, rels, 1 if cond is None else 2)
            if not from_name:
                out.sorted_groups.append(ident if cond is None else f"{cond}/{ident}")
            out.files += rels
            out.labels += [label] * len(rels)
            out.conditions += [c] * len(rels)
            out.recordings += recs if cond is None else [f"{cond}/{r}" for r in recs]
            out.windows += wins
    return out
