"""The index operations behind the CLI: create, search, identify, enroll, remove.

Each returns plain dicts (JSON-ready) so the CLI only formats them. Index edits are written atomically:
the new index replaces the old directory (a crash never leaves half an index), and an edit holds the
index's lock from reading to writing, so concurrent edits queue instead of losing each other's changes.
"""

from __future__ import annotations

import logging
import math
import time
from pathlib import Path
from typing import Any

from dopplerdiff.config import Config
from dopplerdiff.embed.encode import build_index, embed_files
from dopplerdiff.embed.identify import Gallery, calibrate, identify
from dopplerdiff.embed.index import EmbeddingIndex, index_lock
from dopplerdiff.embed.search import make_backend
from dopplerdiff.errors import DopplerDiffError
from dopplerdiff.utils.io import check_out_dir, read_json_if_exists, versions
from dopplerdiff.utils.names import check_new_identity_name

log = logging.getLogger(__name__)


def _manifest(index_dir: Path | None, event: dict[str, Any], base: dict[str, Any] | None = None) -> dict:
    """manifest.json contents: creation info plus a history of edits (enroll/remove)."""
    old = (read_json_if_exists(index_dir / "manifest.json") if index_dir is not None else None) or {}
    event = {"time": time.strftime("%Y-%m-%dT%H:%M:%S%z"), **event}
    out = {**(base or {}), **{k: v for k, v in old.items() if k not in ("history",)}}
    out.setdefault("created", event["time"])
    out["versions"] = versions()
    out["history"] = [*old.get("history", []), event]
    return out


def _save(index: EmbeddingIndex, path: Path, cfg: Config, manifest: dict, overwrite: bool) -> None:
    import yaml

    cfg_yaml = yaml.safe_dump(cfg.to_dict(), sort_keys=False).encode()
    index.save(path, overwrite=overwrite, extra={"manifest.json": manifest, "config.yaml": cfg_yaml})


def try_calibrate(index: EmbeddingIndex, cfg: Config, group_size: int = 1) -> dict[str, Any] | None:
    """Calibration on the index's val rows, or None (with a log line) when it has none."""
    try:
        return calibrate(index, method=cfg.embed.method, k=cfg.embed.k, target_far=cfg.embed.target_far,
                         backend=cfg.embed.backend, group_size=group_size)
    except DopplerDiffError as exc:
        log.info("no threshold calibration: %s", exc)
        return None


def create_index(
    encoder: Path, data: Path, out: Path, cfg: Config, *, split: str = "all", overwrite: bool = False,
    strangers: list[str] | None = None, progress: bool = False,
) -> dict[str, Any]:
    """``dopplerdiff embed``: embed a data folder, calibrate if it has val rows, write the index."""
    with index_lock(Path(out)):
        return _create_index(encoder, data, Path(out), cfg, split, overwrite, strangers, progress)


def _create_index(encoder: Path, data: Path, out: Path, cfg: Config, split: str, overwrite: bool,
                  strangers: list[str] | None, progress: bool) -> dict[str, Any]:
    check_out_dir(out, overwrite, "choose another path or pass --overwrite", what="index")
    index, summary = build_index(encoder, data, cfg, split=split, batch_size=cfg.embed.batch_size,
                                 strangers=strangers, progress=progress)
    index.calibration = try_calibrate(index, cfg)
    manifest = _manifest(None, {"op": "embed", "rows": len(index)}, {
        "encoder": index.encoder, "data_root": summary["data_root"], "split": split,
        "split_source": summary["split_source"], "strangers": list(strangers or []), "seed": cfg.seed,
        "label_map": index.identities,
    })
    _save(index, Path(out), cfg, manifest, overwrite)
    return {"index": str(out), "rows": len(index), "dim": index.dim, "identities": index.identities,
            "counts": summary["counts"], "skipped_gap": summary["skipped_gap"],
            "split_source": summary["split_source"], "calibration": index.calibration}


def search_files(
    index_path: Path, files: list[Path], cfg: Config, *, k: int | None = None, encoder: Path | None = None,
) -> list[dict[str, Any]]:
    """``dopplerdiff search``: the k nearest indexed windows (any split) of each query, cosine scores."""
    index = EmbeddingIndex.load(index_path)
    queries, names = embed_files(index, files, cfg.data, encoder, cfg.embed.batch_size)
    backend = make_backend(index.vectors, cfg.embed.backend)
    scores, ids = backend.search(queries, k or cfg.embed.k)
    return [
        {"query": q, "backend": backend.name, "neighbours": [
            {"rank": r + 1, "score": float(s), "identity": index.identity[i], "file": index.file[i],
             "recording": index.recording[i], "window": index.window[i], "split": index.split[i]}
            for r, (s, i) in enumerate(zip(srow, irow, strict=True))
        ]}
        for q, srow, irow in zip(names, scores, ids, strict=True)
    ]


def resolve_threshold(
    index: EmbeddingIndex, cfg: Config, threshold: str, group_size: int
) -> tuple[float | None, dict[str, Any] | None]:
    """``auto`` (calibrate), ``none`` (closed set) or a number."""
    t = threshold.strip().lower()
    if t == "none":
        return None, None
    if t != "auto":
        try:
            value = float(t)
        except ValueError:
            value = math.nan
        if not math.isfinite(value):
            msg = f"--threshold must be 'auto', 'none' or a finite number, got '{threshold}'"
            raise DopplerDiffError(msg)
        return value, None
    cal = try_calibrate(index, cfg, group_size) if group_size > 1 else None
    if cal is None:
        if group_size > 1:
            log.warning("calibrating on single windows: fused scores vary less, so the false-accept rate of "
                        "a fused walk is at most the target")
        cal = calibrate(index, method=cfg.embed.method, k=cfg.embed.k, target_far=cfg.embed.target_far,
                        backend=cfg.embed.backend)
    return cal["threshold"], cal


def identify_files(
    index_path: Path, files: list[Path], cfg: Config, *, threshold: str = "auto", fuse: bool = False,
    encoder: Path | None = None,
) -> dict[str, Any]:
    """``dopplerdiff identify``: identity (or 'unknown') of each file, or of all files as one walk."""
    index = EmbeddingIndex.load(index_path)
    queries, names = embed_files(index, files, cfg.data, encoder, cfg.embed.batch_size)
    t, cal = resolve_threshold(index, cfg, threshold, len(names) if fuse else 1)
    gallery = Gallery.from_index(index, cfg.embed.backend)
    decisions = identify(gallery, queries, names, method=cfg.embed.method, k=cfg.embed.k, threshold=t,
                         fuse=fuse)
    return {"method": cfg.embed.method, "k": cfg.embed.k, "threshold": t, "fused": fuse,
            "calibration": cal, "results": [d.to_dict() for d in decisions]}


def enroll_files(
    index_path: Path, identity: str, files: list[Path], cfg: Config, *, append: bool = False,
    encoder: Path | None = None,
) -> dict[str, Any]:
    """``dopplerdiff enroll``: add a person's windows to the gallery (no retraining)."""
    check_new_identity_name(identity, "--identity")
    with index_lock(Path(index_path)):
        return _enroll(Path(index_path), identity, files, cfg, append, encoder)


def _enroll(index_path: Path, identity: str, files: list[Path], cfg: Config, append: bool,
            encoder: Path | None) -> dict[str, Any]:
    index = EmbeddingIndex.load(index_path)
    if identity in index.identities and not append:
        raise DopplerDiffError(
            f"identity '{identity}' is already in the index; pass --append to add windows to it"
        )
    vectors, names = embed_files(index, files, cfg.data, encoder, cfg.embed.batch_size)
    new = index.add(vectors, identity, file=names, split="enrolled")
    new.calibration = try_calibrate(new, cfg)  # the gallery changed: keep the recorded calibration current
    event = {"op": "enroll", "identity": identity, "files": names}
    _save(new, Path(index_path), cfg, _manifest(Path(index_path), event), overwrite=True)
    return {"index": str(index_path), "identity": identity, "added": len(names), "rows": len(new),
            "identities": new.identities}


def remove_identity(index_path: Path, identity: str, cfg: Config) -> dict[str, Any]:
    """``dopplerdiff remove``: drop every row of a person (gallery and held-out)."""
    with index_lock(Path(index_path)):
        index = EmbeddingIndex.load(index_path)
        new = index.remove(identity)
        new.calibration = try_calibrate(new, cfg)
        event = {"op": "remove", "identity": identity, "rows": len(index) - len(new)}
        _save(new, Path(index_path), cfg, _manifest(Path(index_path), event), overwrite=True)
    return {"index": str(index_path), "identity": identity, "removed": len(index) - len(new),
            "rows": len(new), "identities": new.identities}
