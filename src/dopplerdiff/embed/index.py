"""On-disk embedding index: L2-normalised vectors plus per-vector metadata, versioned, written atomically.

Layout of an index directory ``INDEX/``::

    vectors.safetensors   tensor "vectors" (N, D) float32, rows L2-normalised
    meta.json             {"format", "version", "dim", "count", "vectors_sha256", "encoder": {...},
                           "columns": {"identity": [...], "file": [...], "recording": [...],
                                       "window": [...], "split": [...]}, "calibration": {...} | null}
    config.yaml, manifest.json   written by the CLI

``vectors_sha256`` ties meta.json to its vectors file, so a truncated or swapped file is detected on load;
``meta_sha256`` (the SHA-256 of meta.json's canonical JSON without that key) guards the labels and the
calibration the same way. An index left missing by an update killed between its two renames is restored
from the previous version on open (``utils.io.recover_dir``, under the index lock, so an update in progress
is waited for rather than undone). Edits hold ``index_lock`` (one writer).
Rows whose split is ``val``, ``test`` or ``stranger`` are held out: they calibrate and evaluate
identification but are never part of the gallery that queries are matched against.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from safetensors import SafetensorError
from safetensors.numpy import load_file, save_file

from dopplerdiff.errors import DopplerDiffError
from dopplerdiff.utils.io import atomic_dir, commit_lock, recover_dir, write_json
from dopplerdiff.utils.names import check_identity_names

log = logging.getLogger(__name__)

FORMAT = "dopplerdiff-embedding-index"
VERSION = 2  # 2: meta.json carries its own checksum
READABLE_VERSIONS = (1, 2)  # version 1 (no meta checksum) still loads, with a warning
LOCK_WAIT_S = 600.0  # a second writer waits this long for the first to finish its edit
VECTORS_FILE = "vectors.safetensors"
META_FILE = "meta.json"
COLUMNS = ("identity", "file", "recording", "window", "split")
STRANGER = "stranger"  # rows of people kept out of the gallery: impostors for threshold calibration
HELD_OUT_SPLITS = ("val", "test", STRANGER)


class IndexFormatError(DopplerDiffError):
    """An index directory is missing, corrupt, foreign or of an unsupported version."""


def normalize(x: np.ndarray, eps: float = 1e-12) -> np.ndarray:
    """Row-wise L2 normalisation in float32 (cosine similarity becomes a dot product)."""
    x = np.asarray(x, dtype=np.float32)
    if x.ndim != 2:
        raise DopplerDiffError(f"vectors must be a 2-D array (N, D), got shape {x.shape}")
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.maximum(norms, eps)


@dataclass
class EmbeddingIndex:
    """Vectors (N, D) with aligned metadata columns; ``encoder`` describes how vectors were made."""

    vectors: np.ndarray
    identity: list[str]
    file: list[str] = field(default_factory=list)
    recording: list[str] = field(default_factory=list)
    window: list[int] = field(default_factory=list)
    split: list[str] = field(default_factory=list)
    encoder: dict[str, Any] = field(default_factory=dict)
    calibration: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        self.vectors = normalize(self.vectors)
        n = len(self.vectors)
        self.identity = [str(v) for v in self.identity]
        # Optional columns default to neutral values so plain-vector indexes need only identities.
        self.file = [str(v) for v in self.file] if self.file else [""] * n
        self.recording = [str(v) for v in self.recording] if self.recording else [""] * n
        self.window = [int(v) for v in self.window] if self.window else [-1] * n
        self.split = [str(v) for v in self.split] if self.split else ["gallery"] * n
        for name in COLUMNS:
            if len(getattr(self, name)) != n:
                raise DopplerDiffError(
                    f"index column '{name}' has {len(getattr(self, name))} rows, expected {n}"
                )

    # ------------------------------------------------------------------ views
    def __len__(self) -> int:
        return len(self.vectors)

    @property
    def dim(self) -> int:
        return int(self.vectors.shape[1])

    @property
    def identities(self) -> list[str]:
        """Distinct identities in first-appearance order."""
        return list(dict.fromkeys(self.identity))

    def mask(self, splits: tuple[str, ...] | None = None, exclude: tuple[str, ...] = ()) -> np.ndarray:
        """Boolean row mask for rows whose split is in ``splits`` (all if None) and not in ``exclude``."""
        split = np.asarray(self.split, dtype=object)
        m = np.ones(len(self), bool) if splits is None else np.isin(split, list(splits))
        if exclude:
            m &= ~np.isin(split, list(exclude))
        return m

    def gallery_mask(self) -> np.ndarray:
        """Rows that queries are matched against: everything except held-out val/test/stranger rows."""
        return self.mask(exclude=HELD_OUT_SPLITS)

    def subset(self, rows: np.ndarray) -> EmbeddingIndex:
        rows = np.flatnonzero(rows) if np.asarray(rows).dtype == bool else np.asarray(rows, dtype=np.int64)
        pick = lambda col: [col[i] for i in rows]  # noqa: E731
        return EmbeddingIndex(
            self.vectors[rows], pick(self.identity), pick(self.file), pick(self.recording),
            pick(self.window), pick(self.split), dict(self.encoder), self.calibration,
        )

    # ------------------------------------------------------------------ edits
    def add(
        self, vectors: np.ndarray, identity: str | list[str], *, file: list[str] | None = None,
        recording: list[str] | None = None, window: list[int] | None = None, split: str = "enrolled",
    ) -> EmbeddingIndex:
        """Return a new index with rows appended (enrolment: no retraining, just more gallery vectors)."""
        vectors = normalize(vectors)
        n = len(vectors)
        if len(self) and vectors.shape[1] != self.dim:
            raise DopplerDiffError(f"cannot add {vectors.shape[1]}-d vectors to a {self.dim}-d index")
        ids = [identity] * n if isinstance(identity, str) else list(identity)
        return EmbeddingIndex(
            np.concatenate([self.vectors, vectors]) if len(self) else vectors,
            self.identity + ids,
            self.file + list(file or [""] * n),
            self.recording + list(recording or [""] * n),
            self.window + list(window or [-1] * n),
            self.split + [split] * n,
            dict(self.encoder), self.calibration,
        )

    def remove(self, identity: str) -> EmbeddingIndex:
        """Return a new index without any row (gallery or held-out) of ``identity``."""
        keep = np.asarray(self.identity, dtype=object) != identity
        if keep.all():
            raise DopplerDiffError(
                f"identity '{identity}' is not in the index (known: {', '.join(self.identities) or 'none'})"
            )
        return self.subset(keep)

    # ------------------------------------------------------------------ IO
    def save(self, path: Path, overwrite: bool = False, extra: dict[str, Any] | None = None) -> Path:
        """Write the index to directory ``path`` atomically.

        ``extra`` maps file names to contents written alongside (bytes as is, anything else as JSON), so
        config.yaml and manifest.json appear in the same rename as the vectors.
        """
        path = Path(path)
        with atomic_dir(path, overwrite=overwrite) as tmp:
            save_file({"vectors": np.ascontiguousarray(self.vectors)}, str(tmp / VECTORS_FILE))
            write_json(tmp / META_FILE, self._meta(_sha256(tmp / VECTORS_FILE)))
            for name, obj in (extra or {}).items():
                if isinstance(obj, bytes):
                    (tmp / name).write_bytes(obj)
                else:
                    write_json(tmp / name, obj)
        return path

    def _meta(self, digest: str) -> dict[str, Any]:
        meta = {
            "format": FORMAT,
            "version": VERSION,
            "dim": self.dim,
            "count": len(self),
            "vectors_sha256": digest,
            "encoder": self.encoder,
            "identities": self.identities,
            "columns": {name: getattr(self, name) for name in COLUMNS},
            "calibration": self.calibration,
        }
        return {**meta, "meta_sha256": meta_digest(meta)}

    @classmethod
    def load(cls, path: Path) -> EmbeddingIndex:
        """Load and validate an index directory; any problem is one clear error naming the path."""
        path = Path(path)
        if recover_dir(path, LOCK_WAIT_S):  # holds the index lock: never undoes an edit in progress
            log.warning("index '%s' was missing after an interrupted update; restored the previous one", path)
        if not path.is_dir():
            raise IndexFormatError(f"index '{path}' is not a directory (create one with `dopplerdiff embed`)")
        meta_path = path / META_FILE
        if not meta_path.is_file():
            raise IndexFormatError(f"'{path}' is not an embedding index: {META_FILE} is missing")
        try:
            meta = json.loads(meta_path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise IndexFormatError(
                f"index '{path}' is corrupt: {META_FILE} is not valid JSON ({exc})"
            ) from exc
        if not isinstance(meta, dict) or meta.get("format") != FORMAT:
            found = meta.get("format") if isinstance(meta, dict) else type(meta).__name__
            raise IndexFormatError(
                f"'{path}' is not a dopplerdiff embedding index (format {found!r}, expected {FORMAT!r})"
            )
        _check_meta(path, meta)
        vec_path = path / VECTORS_FILE
        if not vec_path.is_file():
            raise IndexFormatError(f"index '{path}' is corrupt: {VECTORS_FILE} is missing")
        if _sha256(vec_path) != meta.get("vectors_sha256"):
            raise IndexFormatError(
                f"index '{path}' is corrupt: {VECTORS_FILE} does not match the checksum in {META_FILE}"
            )
        try:
            vectors = load_file(str(vec_path))["vectors"]
            cols = meta["columns"]
            identity = check_identity_names(cols["identity"], f"index '{path}'")
            index = cls(
                vectors, identity, cols["file"], cols["recording"], cols["window"], cols["split"],
                meta.get("encoder") or {}, meta.get("calibration"),
            )
        except (SafetensorError, KeyError, TypeError, ValueError, DopplerDiffError) as exc:
            raise IndexFormatError(f"index '{path}' is corrupt: {exc}") from exc
        if index.vectors.shape != (meta.get("count"), meta.get("dim")):
            raise IndexFormatError(
                f"index '{path}' is corrupt: vectors have shape {index.vectors.shape}, "
                f"meta.json says ({meta.get('count')}, {meta.get('dim')})"
            )
        return index


def meta_digest(meta: dict[str, Any]) -> str:
    """SHA-256 of meta.json's content without its own checksum (canonical JSON: sorted keys, no spaces)."""
    body = {k: v for k, v in meta.items() if k != "meta_sha256"}
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def _check_meta(path: Path, meta: dict[str, Any]) -> None:
    version = meta.get("version")
    if version not in READABLE_VERSIONS:
        raise IndexFormatError(
            f"index '{path}' has format version {version!r}; this dopplerdiff reads versions "
            f"{', '.join(map(str, READABLE_VERSIONS))} (re-create it with `dopplerdiff embed`)"
        )
    if version == 1:
        log.warning("index '%s' has no meta.json checksum (format version 1); an edit adds one", path)
    elif meta.get("meta_sha256") != meta_digest(meta):
        raise IndexFormatError(
            f"index '{path}' is corrupt: {META_FILE} does not match its checksum (labels or calibration "
            "changed on disk); re-create the index with `dopplerdiff embed`"
        )


@contextlib.contextmanager
def index_lock(path: Path, timeout: float = LOCK_WAIT_S) -> Iterator[None]:
    """Exclusive edit of index ``path``: the lock beside it that its replacement and its recovery on load
    also hold (the directory itself is replaced)."""
    with commit_lock(Path(path), timeout):
        yield


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def fingerprint_dir(path: Path) -> str:
    """A stable hash of a saved model directory (config + weight files) to tie an index to its encoder."""
    path = Path(path)
    h = hashlib.sha256()
    skip = ("metrics.json", "manifest.json")  # run bookkeeping, not the model
    files = sorted(p for p in path.iterdir() if p.suffix in (".json", ".safetensors") and p.name not in skip)
    for p in files:
        h.update(p.name.encode())
        h.update(_sha256(p).encode())
    return h.hexdigest()[:16]
