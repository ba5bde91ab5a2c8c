"""Leak-free train/val/test split of overlapping spectrogram windows.

Neighbouring windows overlap in time (3 s windows at a 1 s hop share 2 s), so a random split puts
near-copies of test windows in training. Here each identity's recordings are ordered by window index
and cut into contiguous blocks ``train | gap | val | gap | test``; windows within ``gap_windows`` of a
block boundary are dropped. A recording too short for every split goes whole to one split instead.
Every identity keeps at least one training window in every walking condition it was recorded in, and
every condition's recordings are cut the same way, so each condition has later test windows.
The split is a pure function of the data and config
(``seed`` only orders the whole-recording assignment); file order on disk does not matter.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import numpy as np

from dopplerdiff.config.data import DataConfig, SplitConfig
from dopplerdiff.data.images import SpectrogramSet, natural_key
from dopplerdiff.errors import DataError

SPLITS = ("train", "val", "test")


def _active_splits(cfg: SplitConfig) -> list[tuple[str, float]]:
    return [(p, f) for p, f in zip(SPLITS, (cfg.train, cfg.val, cfg.test), strict=True) if f > 0]


def _block_counts(n_usable: int, fracs: list[float]) -> list[int]:
    """Largest-remainder allocation of ``n_usable >= len(fracs)`` windows, at least one per split."""
    raw = [f * n_usable / sum(fracs) for f in fracs]
    counts = [int(np.floor(r)) for r in raw]
    order = sorted(range(len(fracs)), key=lambda i: (-(raw[i] - counts[i]), i))
    for i in order[: n_usable - sum(counts)]:
        counts[i] += 1
    for i in range(len(counts)):
        if counts[i] == 0:  # a tiny split still gets one window, taken from the largest
            counts[int(np.argmax(counts))] -= 1
            counts[i] = 1
    return counts


def _cut_recording(
    idx: np.ndarray, win: np.ndarray, active: list[tuple[str, float]], gap: int
) -> dict[str, list[int]]:
    """Cut one recording (indices sorted by window) into contiguous blocks separated by a time gap."""
    counts = _block_counts(len(idx) - gap * (len(active) - 1), [f for _, f in active])
    out: dict[str, list[int]] = {}
    pos = 0
    last_win: int | None = None
    for (name, _), count in zip(active, counts, strict=True):
        if last_win is not None:
            # Skip every window that overlaps the previous block (distance <= gap in window index).
            while pos < len(idx) and win[pos] <= last_win + gap:
                pos += 1
        block = list(range(pos, min(pos + count, len(idx))))
        # Windows sharing the block's last index (duplicates) stay in the same block.
        end = pos + len(block)
        while block and end < len(idx) and win[end] == win[block[-1]]:
            block.append(end)
            end += 1
        out[name] = [int(idx[i]) for i in block]
        pos = end
        last_win = int(win[block[-1]]) if block else last_win
    if pos < len(idx) and active:
        # Rounding left windows after the last block that do not overlap it: they belong to it.
        out[active[-1][0]] += [int(i) for i in idx[pos:]]
    return out


def leak_free_split(ds: SpectrogramSet, cfg: SplitConfig) -> dict[str, np.ndarray]:
    """Split ``ds`` into {"train", "val", "test"} sorted index arrays without temporal overlap."""
    active = _active_splits(cfg)
    gap = cfg.gap_windows
    need = len(active) + gap * (len(active) - 1)  # shortest recording that can be cut into all splits
    result: dict[str, list[int]] = {p: [] for p in SPLITS}
    # One group per (identity, condition); a flat data root has one condition.
    by_group: dict[tuple[int, int], dict[str, list[int]]] = defaultdict(lambda: defaultdict(list))
    for i, (lab, cond, rec) in enumerate(zip(ds.labels.tolist(), ds.conditions.tolist(), ds.recordings,
                                             strict=True)):
        by_group[lab, cond][rec].append(i)
    rng = np.random.default_rng(cfg.seed)
    for group in sorted(by_group):
        recs = by_group[group]
        got = {p: 0 for p in SPLITS}
        short = []
        for rec in sorted(recs, key=natural_key):
            idx = np.asarray(sorted(recs[rec], key=lambda i: (ds.windows[i], natural_key(ds.files[i]))))
            win = ds.windows[idx]
            if len(np.unique(win)) >= need and len(active) > 1:
                for name, block in _cut_recording(idx, win, active, gap).items():
                    result[name] += block
                    got[name] += len(block)
            else:
                short.append(idx)
        if not short:
            continue
        # Whole recordings: seed-shuffled, each to the split furthest below its target share.
        total = sum(len(v) for v in recs.values())
        for j in rng.permutation(len(short)):
            idx = short[j]
            if got["train"] == 0:
                name = "train"  # every identity must be trainable (in each of its conditions)
            else:
                name = max(active, key=lambda pf: (pf[1] * total - got[pf[0]], pf[1]))[0]
            result[name] += idx.tolist()
            got[name] += len(idx)
    return {p: np.asarray(sorted(result[p]), dtype=np.int64) for p in SPLITS}


def limit_train(ds: SpectrogramSet, split: dict[str, np.ndarray], n: int) -> dict[str, np.ndarray]:
    """Keep the first ``n`` training windows of each identity: recordings in natural order, windows in time
    order, so the kept windows are one contiguous stretch, as a user with a short recording has them.
    Validation and test are unchanged. An identity with fewer than ``n`` training windows is an error."""
    if n < 1:
        raise DataError(f"data.train_per_identity must be >= 1, got {n}")
    keep: list[int] = []
    train = split["train"]
    for lab, ident in enumerate(ds.identities):
        idx = train[ds.labels[train] == lab]
        if len(idx) < n:
            raise DataError(f"data.train_per_identity={n} is larger than the data: identity '{ident}' has "
                            f"{len(idx)} training window(s)")
        order = sorted(idx.tolist(), key=lambda i: (natural_key(ds.recordings[i]), int(ds.windows[i]),
                                                    natural_key(ds.files[i])))
        keep += order[:n]
    return {**split, "train": np.asarray(sorted(keep), dtype=np.int64)}


def make_split(ds: SpectrogramSet, cfg: DataConfig) -> dict[str, np.ndarray]:
    """The leak-free split, with the train split cut to ``cfg.train_per_identity`` windows if set."""
    split = leak_free_split(ds, cfg.split)
    if cfg.train_per_identity is not None:
        split = limit_train(ds, split, cfg.train_per_identity)
    return split


def split_summary(ds: SpectrogramSet, split: dict[str, np.ndarray]) -> dict[str, Any]:
    """Counts per identity and split, plus windows dropped in the gaps."""
    n = len(ds)
    assigned = np.zeros(n, dtype=bool)
    rows = []
    for name in SPLITS:
        assigned[split[name]] = True
    for lab, ident in enumerate(ds.identities):
        mask = ds.labels == lab
        row: dict[str, Any] = {"identity": ident, "files": int(mask.sum())}
        row["recordings"] = len({r for r, m in zip(ds.recordings, mask, strict=True) if m})
        for name in SPLITS:
            row[name] = int((ds.labels[split[name]] == lab).sum())
        row["gap"] = int((mask & ~assigned).sum())
        rows.append(row)
    totals = {name: int(len(split[name])) for name in SPLITS}
    totals["gap"] = int(n - assigned.sum())
    return {"identities": rows, "totals": totals, "conditions": _condition_rows(ds, split, assigned)}


def _condition_rows(ds: SpectrogramSet, split: dict[str, np.ndarray], assigned: np.ndarray) -> list[dict]:
    """Counts per walking condition: windows, identities, and the splits."""
    rows = []
    for c, name in enumerate(ds.condition_names):
        mask = ds.conditions == c
        row: dict[str, Any] = {"condition": name, "files": int(mask.sum()),
                               "identities": len(set(ds.labels[mask].tolist()))}
        for name in SPLITS:
            row[name] = int((ds.conditions[split[name]] == c).sum())
        row["gap"] = int((mask & ~assigned).sum())
        rows.append(row)
    return rows
