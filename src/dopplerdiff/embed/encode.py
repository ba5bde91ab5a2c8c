"""Turn spectrogram files into index vectors with a saved SpectrogramEncoder.

The encoder's config says how images must be read (``data_size``, ``channels``, ``colormap``), so an index
always embeds queries exactly as it embedded its gallery. The index records the encoder's directory and a
fingerprint of its weights; queries embedded by a different encoder are refused (their vectors would live
in another space).

Which split a window belongs to: if the encoder was trained inside a run directory (``RUN/encoder`` with
``RUN/data.json``) on the same data, the split recorded there is reused, so windows the encoder trained on
never end up in ``val``/``test``; otherwise the leak-free split of the config is computed. Guard-gap windows
(in no split) are not indexed, because they overlap windows of two splits in time.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dopplerdiff.config import Config
from dopplerdiff.config.data import DataConfig
from dopplerdiff.data.images import (
    IMAGE_EXTS,
    SpectrogramSet,
    from_unit,
    load_spectrograms,
    read_file,
    resize,
)
from dopplerdiff.data.run_data import read_run_data
from dopplerdiff.data.split import SPLITS, leak_free_split
from dopplerdiff.embed.index import STRANGER, EmbeddingIndex, fingerprint_dir
from dopplerdiff.errors import DataError, DopplerDiffError
from dopplerdiff.models.encoder import SpectrogramEncoder, load_encoder
from dopplerdiff.utils.rundir import RunDir

log = logging.getLogger(__name__)
QUERY_EXTS = tuple(IMAGE_EXTS) + (".npy", ".mat")
SPLIT_CHOICES = ("all", "none", *SPLITS)


def encoder_data_config(encoder: SpectrogramEncoder, base: DataConfig) -> DataConfig:
    """The data settings the encoder was trained with (size/channels/colormap), other fields from ``base``."""
    c = encoder.config
    return dataclasses.replace(
        base,
        size=int(c.data_size or c.image_size),
        channels=int(c.channels or c.in_channels),
        colormap=str(c.colormap or base.colormap),
    )


def encoder_info(path: Path, encoder: SpectrogramEncoder) -> dict[str, Any]:
    """What the index records about its encoder (and checks again before embedding queries)."""
    c = encoder.config
    return {
        "path": str(Path(path).resolve()),
        "fingerprint": fingerprint_dir(path),
        "kind": c.kind,
        "embed_dim": int(c.embed_dim),
        "identities": list(c.identities or []),
        "data_size": int(c.data_size or c.image_size),
        "channels": int(c.channels or c.in_channels),
        "colormap": str(c.colormap),
    }


@torch.no_grad()
def embed_images(
    encoder: SpectrogramEncoder, images: np.ndarray, batch_size: int = 256, progress: bool = False
) -> np.ndarray:
    """(N, C, H, W) in [-1, 1] -> (N, D) float32 L2-normalised embeddings, in batches."""
    encoder.eval()
    out = []
    starts = range(0, len(images), batch_size)
    if progress:
        from tqdm import tqdm

        starts = tqdm(starts, desc="embedding", unit="batch")
    device = next(encoder.parameters()).device
    for s in starts:
        x = torch.from_numpy(np.ascontiguousarray(images[s : s + batch_size], dtype=np.float32)).to(device)
        out.append(encoder.embed(x).float().cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, int(encoder.config.embed_dim)), np.float32)


def expand_files(paths: list[Path]) -> list[Path]:
    """Files as given; a directory stands for the supported files directly inside it (sorted)."""
    out: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            found = sorted(f for f in p.iterdir() if f.is_file() and f.suffix.lower() in QUERY_EXTS)
            if not found:
                raise DataError(f"folder '{p}' contains no spectrogram files ({', '.join(QUERY_EXTS)})")
            out += found
        elif p.is_file():
            out.append(p)
        else:
            raise DataError(f"query file '{p}' does not exist")
    if not out:
        raise DataError("no query files given")
    return out


def read_files(paths: list[Path], cfg: DataConfig) -> np.ndarray:
    """Read single spectrogram files like the data layer does: (N, C, size, size) in [-1, 1]."""
    images, bad = [], []
    for p in paths:
        try:
            images.append(resize(read_file(p, cfg).array, cfg.size, cfg.resample))
        except Exception as exc:  # noqa: BLE001 - any decoder failure is reported per file
            bad.append(f"{p}: {type(exc).__name__}: {exc}".splitlines()[0][:200])
    if bad:
        raise DataError(f"{len(bad)} unreadable query file(s): " + "; ".join(bad[:5]))
    return from_unit(np.stack(images)).astype(np.float32)


def _run_split(encoder_path: Path, ds: SpectrogramSet) -> dict[str, np.ndarray] | None:
    """The split recorded in RUN/data.json next to RUN/encoder, if it describes the same data."""

    run = Path(encoder_path).resolve().parent
    if not RunDir(run).data_record.is_file():
        return None
    rec = read_run_data(run)
    if Path(rec["data_root"]).resolve() != Path(ds.meta["root"]).resolve():
        log.warning("encoder run '%s' was trained on other data; computing a fresh split", run)
        return None
    pos = {f: i for i, f in enumerate(ds.files)}
    return {name: np.asarray(sorted(pos[f] for f in rec["split"].get(name, []) if f in pos), np.int64)
            for name in SPLITS}


def recorded_data_root(encoder_path: Path) -> Path | None:
    """The data folder of the run the encoder belongs to (RUN/data.json), if any."""

    run = Path(encoder_path).resolve().parent
    return Path(read_run_data(run)["data_root"]) if RunDir(run).data_record.is_file() else None


def build_index(
    encoder_path: Path, data_root: Path, cfg: Config, *, split: str = "all", batch_size: int = 256,
    strangers: list[str] | None = None, progress: bool = False,
) -> tuple[EmbeddingIndex, dict[str, Any]]:
    """Embed a data folder into a new index; returns it with a summary (counts per split, data meta).

    ``strangers``: identities whose windows are all indexed as ``stranger`` rows (never gallery), the
    impostors of threshold calibration; best if the encoder was trained without them.
    """
    chosen = [s.strip() for s in split.split(",")]
    bad = [p for p in chosen if p not in SPLIT_CHOICES]
    if bad:
        raise DopplerDiffError(f"--split '{split}': no split '{bad[0]}' (use {', '.join(SPLIT_CHOICES)})")
    encoder = load_encoder(encoder_path)
    dcfg = encoder_data_config(encoder, cfg.data)
    ds = load_spectrograms(Path(data_root), dcfg, progress=progress)
    if "none" in chosen:
        names = np.array(["gallery"] * len(ds), dtype=object)  # no held-out rows: everything is gallery
        source = "none"
    else:
        recorded = _run_split(encoder_path, ds)
        split_idx = recorded if recorded is not None else leak_free_split(ds, dcfg.split)
        source = "run" if recorded is not None else "computed"
        names = np.array([""] * len(ds), dtype=object)
        for name in SPLITS:
            names[split_idx[name]] = name
    strangers = list(strangers or [])
    unknown = [n for n in strangers if n not in ds.identities]
    if unknown:
        raise DopplerDiffError(f"--strangers: '{unknown[0]}' is not an identity folder of '{data_root}'")
    if strangers and len(strangers) >= len(ds.identities):
        raise DopplerDiffError("--strangers leaves no identity to enroll")
    is_stranger = np.isin(np.asarray(ds.identities, dtype=object)[ds.labels], strangers)
    names[is_stranger] = STRANGER  # every window: strangers share no recording with the gallery
    wanted = set(SPLITS) if "all" in chosen else set(chosen) | ({"gallery"} if "none" in chosen else set())
    wanted.add(STRANGER)
    rows = np.flatnonzero(np.isin(names, list(wanted)))
    if len(rows) == 0:
        raise DopplerDiffError(f"no windows of '{data_root}' fall in split '{split}'")
    vectors = embed_images(encoder, ds.images[rows], batch_size, progress)
    index = EmbeddingIndex(
        vectors,
        [ds.identities[int(ds.labels[i])] for i in rows],
        [ds.files[i] for i in rows],
        [ds.recordings[i] for i in rows],
        [int(ds.windows[i]) for i in rows],
        [str(names[i]) for i in rows],
        encoder_info(encoder_path, encoder),
    )
    counts = {p: int(np.sum(names[rows] == p)) for p in sorted(set(names[rows]))}
    summary = {"data_root": str(Path(data_root).resolve()), "split": split, "split_source": source,
               "counts": counts, "skipped_gap": int(np.sum(names == "")),
               "data_meta": ds.meta}
    return index, summary


def load_query_encoder(index: EmbeddingIndex, encoder_path: Path | None = None) -> SpectrogramEncoder:
    """The encoder that made ``index`` (its recorded path, or ``encoder_path``), checked by fingerprint."""
    rec = index.encoder or {}
    path = Path(encoder_path) if encoder_path is not None else Path(rec.get("path", ""))
    if encoder_path is None and not rec.get("path"):
        raise DopplerDiffError("the index records no encoder; pass --encoder")
    if not path.is_dir():
        raise DopplerDiffError(
            f"encoder '{path}' recorded in the index does not exist; pass --encoder with its new location"
        )
    fp = fingerprint_dir(path)
    if rec.get("fingerprint") and fp != rec["fingerprint"]:
        raise DopplerDiffError(
            f"encoder '{path}' (fingerprint {fp}) is not the one this index was built with "
            f"({rec['fingerprint']}); its vectors are not comparable — re-run `dopplerdiff embed`"
        )
    return load_encoder(path)


def embed_files(
    index: EmbeddingIndex, paths: list[Path], cfg: DataConfig, encoder_path: Path | None = None,
    batch_size: int = 256,
) -> tuple[np.ndarray, list[str]]:
    """Embed query files (or folders of them) with the index's encoder: ((N, D) vectors, file names)."""
    encoder = load_query_encoder(index, encoder_path)
    files = expand_files(paths)
    images = read_files(files, encoder_data_config(encoder, cfg))
    return embed_images(encoder, images, batch_size), [str(f) for f in files]
