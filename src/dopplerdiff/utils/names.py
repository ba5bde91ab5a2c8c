"""Identity names that later become folder and file names: checked where they enter the program."""

from __future__ import annotations

from collections.abc import Iterable

from dopplerdiff.errors import DataError

MAX_NAME = 255  # one path component on common file systems
UNKNOWN = "unknown"  # `identify`'s answer for a stranger
RESERVED = (UNKNOWN,)  # a person of this name could not be told apart from a rejected query


def check_identity_name(name: object, source: str) -> str:
    """``name`` if it is safe as one path component, else a DataError naming ``source``.

    Refused: empty names, path separators, ``.``/``..`` and other names starting with a dot (hidden or
    parent folders), control characters and names longer than one path component may be.
    """
    if not isinstance(name, str) or not name.strip():
        raise DataError(f"identity name {name!r} in {source} is empty or not a string")
    bad = (
        "/" in name or "\\" in name or name.startswith(".") or len(name) > MAX_NAME
        or any(ord(c) < 32 or ord(c) == 127 for c in name)
    )
    if bad:
        raise DataError(
            f"identity name {name!r} in {source} is not a plain folder name (no '/', '\\', leading '.', "
            f"control characters, at most {MAX_NAME} characters); it would write outside the output folder"
        )
    return name


def check_identity_names(names: Iterable[object], source: str) -> list[str]:
    """Every name checked by :func:`check_identity_name`."""
    return [check_identity_name(n, source) for n in names]


def check_new_identity_name(name: object, source: str) -> str:
    """A name given for a new person (enrolment): :func:`check_identity_name`, and not a reserved word."""
    name = check_identity_name(name, source)
    if name.strip().lower() in RESERVED:
        raise DataError(f"identity name {name!r} in {source} is reserved ({', '.join(RESERVED)}); "
                        "choose another")
    return name
