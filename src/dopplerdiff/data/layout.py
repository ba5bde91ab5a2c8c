"""The folder layout a data root must have: ``ROOT/<identity>/<files>`` (files may sit in subfolders).

Researchers often group walks by condition, ``ROOT/<condition>/ID_k/...``. Read as identities, the
condition folders would become "people" and every ID_k of a condition would be merged into one; until
conditions are supported, such a root is refused with one error that names the layout.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

from dopplerdiff.errors import DataError

# A folder name that names a person (ID_3, id-12, Person 4, subject_07, participant2).
IDENTITY_LIKE = re.compile(r"^(id|person|subject|participant)[ _\-]?\d+$", re.IGNORECASE)


def check_flat_layout(root: Path, folders: Sequence[Path]) -> None:
    """Refuse ``root`` when a top folder that is not itself person-like holds person-like subfolders."""
    for top in folders:
        if IDENTITY_LIKE.match(top.name):
            continue
        inner = sorted(p.name for p in top.iterdir() if p.is_dir() and IDENTITY_LIKE.match(p.name))
        if inner:
            raise DataError(
                f"data root '{root}' has the nested layout DATA/<condition>/<identity>/ ('{top.name}/"
                f"{inner[0]}'{' and more' if len(inner) > 1 else ''}): condition folders are not supported "
                f"yet, and reading them as identities would merge different people; point the command at "
                f"one condition folder (e.g. '{top}') or lay the data out as DATA/<identity>/<files>"
            )
