"""Open set for novel walkers: enroll each novel person with k real (+ synthetic) windows in an embedding
gallery and identify its later windows.

Per seed an encoder (the project's classifier, ``fit_classifier``) is trained on the base people's training
windows only, so it has never seen a novel person. Its embeddings fill an ``embed.identify.Gallery``: base
people from their training windows, each novel person from its enrollment windows (``real``: the k shots;
``real+M``: the shots plus method M's synthetic windows). Scores are cosines to centroids.

- ``rank1``: novel test windows whose best-scoring person is their own (closed set over base + novel);
- ``eer``: equal error rate of the novel test windows' genuine scores (own centroid) against their impostor
  scores (best score with their own person removed: each plays a stranger once);
- ``dir``: detection-and-identification rate at the operating point: accepted (score >= threshold) and
  right, the threshold set at ``embed.target_far`` on base people's test windows (leave-own-out impostors),
  never on the novel people it is applied to.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import numpy as np

from dopplerdiff.classifier import fit_classifier
from dopplerdiff.classifier import predict as classifier_predict
from dopplerdiff.config import Config
from dopplerdiff.embed.identify import Gallery
from dopplerdiff.embed.openset import equal_error_rate, threshold_at_far
from dopplerdiff.evaluate.strategies import summary
from dopplerdiff.fewshot.arms import Arrays, FewshotSet


def _own_and_impostor(scores: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Genuine score (own column) and leave-own-out best score of every query."""
    rows = np.arange(len(labels))
    genuine = scores[rows, labels]
    loo = scores.copy()
    loo[rows, labels] = -np.inf
    return genuine, loo.max(axis=1)


def _enroll_scores(fs: FewshotSet, embed: Any, enroll: Arrays, target_far: float) -> dict[str, float]:
    names = [str(i) for i in range(len(fs.names))]
    vecs = np.concatenate([embed(fs.base_train[0]), embed(enroll[0])])
    labels = np.concatenate([fs.base_train[1], enroll[1]])
    order = np.argsort(labels, kind="stable")  # gallery columns in label order
    gallery = Gallery(vecs[order], [names[j] for j in labels[order]], backend="numpy")
    novel = gallery.scores(embed(fs.novel_test[0]), "centroid")
    base = gallery.scores(embed(fs.base_test[0]), "centroid")
    _, base_imp = _own_and_impostor(base, fs.base_test[1])
    threshold = threshold_at_far(base_imp, target_far)
    genuine, impostor = _own_and_impostor(novel, fs.novel_test[1])
    right = novel.argmax(1) == fs.novel_test[1]
    return {"rank1": float(right.mean()), "dir": float((right & (novel.max(1) >= threshold)).mean()),
            "eer": equal_error_rate(genuine, impostor)[0], "threshold": float(threshold)}


def open_set(fs: FewshotSet, synthetic: dict[str, Arrays], cfg: Config, *, steps: int, seeds: Sequence[int],
             device: Any = "cpu") -> dict[str, dict[str, list[float]]]:
    """arm ('real', 'real+M') -> metric -> [value per seed]."""
    enc_cfg = cfg.encoder
    if cfg.evaluate.augment_channels:
        enc_cfg = dataclasses.replace(enc_cfg, channels=list(cfg.evaluate.augment_channels))
    out: dict[str, dict[str, list[float]]] = {}
    for seed in seeds:
        model = fit_classifier(*fs.base_train, fs.n_base, enc_cfg, steps=steps, seed=int(seed),
                               augment=cfg.data.augment, device=device)

        def embed(x: np.ndarray, model: Any = model) -> np.ndarray:
            return classifier_predict(model, x)[1]

        arms = {"real": fs.shots, **{f"real+{m}": (np.concatenate([fs.shots[0], s[0]]),
                                                   np.concatenate([fs.shots[1], s[1]]))
                                     for m, s in synthetic.items()}}
        for arm, enroll in arms.items():
            got = _enroll_scores(fs, embed, enroll, cfg.embed.target_far)
            for key, value in got.items():
                out.setdefault(arm, {}).setdefault(key, []).append(value)
    return out


def summarise_open_set(cells: Sequence[dict[str, dict[str, list[float]]]]) -> dict[str, Any]:
    """Pool folds (same seeds): per arm each metric, and its gain over ``real`` paired seed by seed."""
    arms = [a for a in cells[0] if all(a in c for c in cells)]
    pooled = {a: {m: [v for c in cells for v in c[a][m]] for m in ("rank1", "dir", "eer")} for a in arms}
    out: dict[str, Any] = {}
    for arm in arms:
        row: dict[str, Any] = {m: summary(pooled[arm][m]) for m in ("rank1", "dir", "eer")}
        if arm != "real":
            for m in ("rank1", "dir", "eer"):
                row[f"{m}_gain_vs_real"] = summary(np.subtract(pooled[arm][m], pooled["real"][m]), ci=True)
        out[arm] = row
    return out
