"""Identification against an embedding index: k-NN vote or class centroids, open-set rejection, fusion.

Scores. Every query gets one score per enrolled identity (a row of a (Q, K) matrix), in cosine units:
- ``centroid``: cosine to the identity's centroid (the re-normalised mean of its gallery vectors);
- ``knn``: similarity-weighted vote over the k nearest gallery vectors, sum of the neighbours'
  cosines per identity divided by k (an identity holding all k neighbours at cosine s scores s);
  identities with no neighbour among the k score -1.
The decision is the arg-max identity, or ``unknown`` when its score is below the threshold.
Sequence fusion (``fuse``) treats several windows as one walk: the score rows are averaged first.

Threshold calibration (``calibrate``), done on held-out rows of the index, never on the gallery itself:
- genuine score of a ``val`` window = its score for its own identity with the full gallery;
- impostor score, preferred: the best score of a window of a *stranger* (rows with split ``stranger``:
  people kept out of the gallery, and ideally out of encoder training — ``embed --strangers``);
- impostor score, fallback: the best score of a ``val`` window when its own identity is removed from the
  gallery (leave-one-identity-out: every val window plays a stranger once, against everyone else).
  Caveat, measured in bench/identify.py: if the encoder was trained on these identities it has learned to
  push them apart, so these impostor scores are lower than a real stranger's and the false-accept rate for
  new people comes out above the target; the result lists such ``impostors_seen_by_encoder``;
- threshold = the lowest value whose false-accept rate on the impostor scores is <= ``target_far``
  (openset.threshold_at_far); FRR and EER are reported alongside.
With fusion of n windows the same is done on sliding groups of n consecutive val windows of one recording,
because averaged scores have narrower distributions than single-window scores.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np

from dopplerdiff.embed.index import STRANGER, EmbeddingIndex, normalize
from dopplerdiff.embed.openset import summarize, threshold_at_far
from dopplerdiff.embed.search import SearchBackend, make_backend
from dopplerdiff.errors import DopplerDiffError
from dopplerdiff.utils.names import UNKNOWN

Method = Literal["knn", "centroid"]


class Gallery:
    """The gallery rows of an index grouped by identity, ready for scoring."""

    def __init__(self, vectors: np.ndarray, identity: list[str], backend: str = "auto") -> None:
        if len(vectors) == 0:
            raise DopplerDiffError("the index has no gallery vectors (embed a train split or enroll someone)")
        self.vectors = normalize(vectors)
        self.identities = list(dict.fromkeys(identity))
        lookup = {name: i for i, name in enumerate(self.identities)}
        self.labels = np.array([lookup[n] for n in identity], dtype=np.int64)
        sums = np.zeros((len(self.identities), self.vectors.shape[1]), np.float64)
        np.add.at(sums, self.labels, self.vectors)
        self.centroids = normalize(sums)
        self.backend_name = backend
        self._backend: SearchBackend | None = None

    @classmethod
    def from_index(cls, index: EmbeddingIndex, backend: str = "auto") -> Gallery:
        g = index.gallery_mask()
        return cls(index.vectors[g], [n for n, keep in zip(index.identity, g, strict=True) if keep], backend)

    @property
    def backend(self) -> SearchBackend:
        if self._backend is None:
            self._backend = make_backend(self.vectors, self.backend_name)
        return self._backend

    def without(self, label: int) -> Gallery:
        """The gallery minus one identity (for leave-one-identity-out calibration)."""
        keep = self.labels != label
        sub = Gallery(self.vectors[keep], [self.identities[j] for j in self.labels[keep]], self.backend_name)
        return sub

    def scores(self, queries: np.ndarray, method: Method = "centroid", k: int = 10) -> np.ndarray:
        """(Q, K) per-identity scores of L2-normalised ``queries`` (column order = ``self.identities``)."""
        q = normalize(queries)
        if method == "centroid":
            return q @ self.centroids.T
        if method != "knn":
            raise DopplerDiffError(f"unknown identification method '{method}' (use knn or centroid)")
        sims, idx = self.backend.search(q, k)
        out = np.zeros((len(q), len(self.identities)), np.float64)
        rows = np.repeat(np.arange(len(q)), sims.shape[1])
        np.add.at(out, (rows, self.labels[idx].ravel()), sims.ravel())
        hit = np.zeros_like(out, dtype=bool)
        hit[rows, self.labels[idx].ravel()] = True
        out /= k  # divide by the requested k: fewer gallery rows than k cannot inflate a score
        out[~hit] = -1.0
        return out.astype(np.float32)


@dataclass
class Decision:
    """One identification: the accepted identity (or 'unknown'), the best candidate and its score."""

    identity: str
    best: str
    score: float
    accepted: bool
    ranking: list[tuple[str, float]]
    files: list[str]

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["ranking"] = [{"identity": n, "score": s} for n, s in self.ranking]
        return d


def decide(
    gallery: Gallery, scores: np.ndarray, threshold: float | None, files: list[list[str]], top: int = 3
) -> list[Decision]:
    """Turn (Q, K) score rows into decisions; ``threshold`` None accepts everything (closed set)."""
    out = []
    for row, names in zip(scores, files, strict=True):
        order = np.argsort(-row, kind="stable")
        best = int(order[0])
        score = float(row[best])
        accepted = threshold is None or score >= threshold
        ranking = [(gallery.identities[j], float(row[j])) for j in order[:top]]
        out.append(Decision(gallery.identities[best] if accepted else UNKNOWN, gallery.identities[best],
                            score, accepted, ranking, names))
    return out


def identify(
    gallery: Gallery, queries: np.ndarray, files: list[str] | None = None, *, method: Method = "centroid",
    k: int = 10, threshold: float | None = None, fuse: bool = False,
) -> list[Decision]:
    """Identify each query (or, with ``fuse``, all queries as one walk by averaging their score rows)."""
    files = list(files) if files is not None else [f"#{i}" for i in range(len(queries))]
    scores = gallery.scores(queries, method, k)
    if fuse:
        return decide(gallery, scores.mean(axis=0, keepdims=True), threshold, [files])
    return decide(gallery, scores, threshold, [[f] for f in files])


def window_groups(index: EmbeddingIndex, rows: np.ndarray, size: int) -> list[np.ndarray]:
    """Sliding groups of ``size`` consecutive windows within each (identity, recording) among ``rows``."""
    if size <= 1:
        return [np.array([r]) for r in rows]
    by_rec: dict[tuple[str, str], list[int]] = {}
    for r in rows:
        by_rec.setdefault((index.identity[r], index.recording[r]), []).append(int(r))
    groups = []
    for members in by_rec.values():
        members.sort(key=lambda r: (index.window[r], index.file[r]))
        groups += [np.array(members[s : s + size]) for s in range(0, len(members) - size + 1)]
    return groups


def loo_scores(
    index: EmbeddingIndex, gallery: Gallery, rows: np.ndarray, method: Method, k: int, group_size: int = 1
) -> tuple[np.ndarray, np.ndarray]:
    """(genuine, impostor) scores of ``rows`` (identities that are in the gallery); see module docstring."""
    lookup = {n: i for i, n in enumerate(gallery.identities)}
    rows = np.array([r for r in rows if index.identity[r] in lookup], dtype=np.int64)
    if len(rows) == 0:
        return np.zeros(0), np.zeros(0)
    labels = np.array([lookup[index.identity[r]] for r in rows])
    full = gallery.scores(index.vectors[rows], method, k)
    # Impostor rows: own identity removed from the gallery. Column of the own identity is set to -inf.
    loo = np.full_like(full, -np.inf)
    for lab in np.unique(labels):
        sel = labels == lab
        if method == "centroid":
            loo[sel] = full[sel]
        else:
            sub = gallery.without(int(lab))
            cols = [lookup[n] for n in sub.identities]
            loo[np.ix_(sel, cols)] = sub.scores(index.vectors[rows[sel]], method, k)
        loo[sel, lab] = -np.inf
    pos = {int(r): i for i, r in enumerate(rows)}
    genuine, impostor = [], []
    for grp in window_groups(index, rows, group_size):
        ids = [pos[int(r)] for r in grp]
        lab = labels[ids[0]]
        genuine.append(full[ids, lab].mean())
        impostor.append(loo[ids].mean(axis=0).max())
    return np.asarray(genuine, np.float64), np.asarray(impostor, np.float64)


def stranger_scores(
    index: EmbeddingIndex, gallery: Gallery, rows: np.ndarray, method: Method, k: int, group_size: int = 1
) -> np.ndarray:
    """Best gallery score of each (group of) ``rows`` of people who are not enrolled."""
    if len(rows) == 0:
        return np.zeros(0)
    scores = gallery.scores(index.vectors[rows], method, k)
    pos = {int(r): i for i, r in enumerate(rows)}
    return np.asarray([scores[[pos[int(r)] for r in g]].mean(axis=0).max()
                       for g in window_groups(index, rows, group_size)], np.float64)


def calibrate(
    index: EmbeddingIndex, *, method: Method = "centroid", k: int = 10, target_far: float = 0.05,
    backend: str = "auto", split: str = "val", group_size: int = 1,
) -> dict[str, Any]:
    """Calibrate the open-set threshold on held-out rows of the index (see module docstring).

    Impostors are the ``stranger`` rows when the index has any (people never enrolled, ideally never
    seen by the encoder either), else leave-one-identity-out over the ``split`` rows. The result says
    whether the impostor identities were in the encoder's training label map: an encoder learns to push
    its training identities apart, so such impostors score lower than true strangers and the real
    false-accept rate for new people is then higher than ``target_far``.
    """
    gallery = Gallery.from_index(index, backend)
    strangers = np.flatnonzero(index.mask((STRANGER,)))
    if len(gallery.identities) < (1 if len(strangers) else 2):
        raise DopplerDiffError("threshold calibration needs at least 2 identities in the gallery")
    rows = np.flatnonzero(index.mask((split,)))
    genuine, impostor = loo_scores(index, gallery, rows, method, k, group_size)
    source, imp_ids = "leave-one-identity-out", {index.identity[r] for r in rows}
    if len(strangers):
        impostor = stranger_scores(index, gallery, strangers, method, k, group_size)
        source, imp_ids = "strangers", {index.identity[r] for r in strangers}
    if len(impostor) == 0:
        raise DopplerDiffError(
            f"the index has no '{split}' vectors of enrolled identities to calibrate on "
            f"(embed with --split all, or pass a number to --threshold)"
            if group_size <= 1 else
            f"no recording has {group_size} consecutive held-out windows to calibrate fusion of "
            f"{group_size} files; pass a number to --threshold"
        )
    threshold = threshold_at_far(impostor, target_far)
    stats = summarize(genuine, impostor, threshold)
    seen = sorted(imp_ids & set((index.encoder or {}).get("identities") or []))
    return {"method": method, "k": k, "target_far": target_far, "split": split, "group_size": group_size,
            "impostors": source, "impostors_seen_by_encoder": seen, **stats}
