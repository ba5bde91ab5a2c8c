"""Identification, open-set rejection, enrolment and threshold calibration on synthetic vectors."""

from __future__ import annotations

import numpy as np
import pytest

from dopplerdiff.embed.identify import UNKNOWN, Gallery, calibrate, identify
from dopplerdiff.embed.index import EmbeddingIndex, normalize
from dopplerdiff.embed.openset import equal_error_rate, far_frr, threshold_at_far
from dopplerdiff.errors import DopplerDiffError

D = 16


def _people(n_people: int, seed: int) -> np.ndarray:
    return normalize(np.random.default_rng(seed).standard_normal((n_people, D)))


def _walk(center: np.ndarray, n: int, rng: np.random.Generator, noise: float = 0.25) -> np.ndarray:
    return normalize(center + noise * rng.standard_normal((n, D)) / np.sqrt(D) * 2)


def _clustered_index(n_people: int = 12, per: int = 30, seed: int = 0) -> tuple[EmbeddingIndex, np.ndarray]:
    """Each person: one recording of `per` windows; first half train, then val, then test."""
    rng = np.random.default_rng(seed)
    centers = _people(n_people, seed)
    vecs, ids, recs, wins, split = [], [], [], [], []
    for p, c in enumerate(centers):
        vecs.append(_walk(c, per, rng))
        ids += [f"ID_{p + 1}"] * per
        recs += [f"ID_{p + 1}/case1_1"] * per
        wins += list(range(per))
        split += ["train"] * (per // 2) + ["val"] * (per // 4) + ["test"] * (per - per // 2 - per // 4)
    return EmbeddingIndex(np.concatenate(vecs), ids, recording=recs, window=wins, split=split), centers


@pytest.mark.parametrize("method", ["centroid", "knn"])
def test_closed_set_identification(method):
    index, _ = _clustered_index()
    gallery = Gallery.from_index(index, backend="numpy")
    test = index.mask(("test",))
    out = identify(gallery, index.vectors[test], method=method, k=5)
    truth = [n for n, t in zip(index.identity, test, strict=True) if t]
    acc = np.mean([d.identity == t for d, t in zip(out, truth, strict=True)])
    assert acc >= 0.95
    assert all(d.accepted for d in out)  # no threshold: closed set


def test_knn_vote_scores():
    # Gallery: 3 of 'a' at cos 1, 0.8, 0.6 to the query direction; 'b' far away.
    q = np.array([[1.0, 0.0]])
    a = np.array([[1.0, 0.0], [0.8, 0.6], [0.6, 0.8]])
    b = np.array([[-1.0, 0.0]])
    g = Gallery(np.concatenate([a, b]), ["a", "a", "a", "b"], backend="numpy")
    s = g.scores(q, "knn", k=2)
    np.testing.assert_allclose(s[0], [(1.0 + 0.8) / 2, -1.0], atol=1e-6)
    s4 = g.scores(q, "knn", k=4)
    np.testing.assert_allclose(s4[0], [(1.0 + 0.8 + 0.6) / 4, -1.0 / 4], atol=1e-6)


def test_enroll_then_identify_returns_new_name_and_remove():
    index, _ = _clustered_index(n_people=5)
    rng = np.random.default_rng(42)
    newcomer = _people(1, 99)[0]
    enrolled = index.add(_walk(newcomer, 10, rng), "alice")
    walk = _walk(newcomer, 4, rng)
    for method in ("centroid", "knn"):
        out = identify(Gallery.from_index(enrolled), walk, method=method, k=5, threshold=0.5)
        assert [d.identity for d in out] == ["alice"] * 4
    removed = enrolled.remove("alice")
    out = identify(Gallery.from_index(removed), walk, method="centroid", threshold=0.5)
    assert all(d.identity != "alice" for d in out)
    assert "alice" not in Gallery.from_index(removed).identities


def test_stranger_far_from_all_centroids_is_unknown():
    index, centers = _clustered_index(n_people=6)
    cal = calibrate(index, method="centroid", target_far=0.01, backend="numpy")
    stranger = normalize(-centers.mean(axis=0, keepdims=True))  # opposite to everyone
    d = identify(Gallery.from_index(index), stranger, threshold=cal["threshold"])[0]
    assert d.identity == UNKNOWN and not d.accepted and d.best.startswith("ID_")
    known = identify(Gallery.from_index(index), index.vectors[index.mask(("test",))][:3],
                     threshold=cal["threshold"])
    assert all(k.accepted for k in known)


def test_fusion_is_mean_of_scores():
    index, centers = _clustered_index(n_people=4)
    g = Gallery.from_index(index)
    walk = _walk(centers[2], 5, np.random.default_rng(1), noise=0.6)
    single = g.scores(walk, "centroid")
    fused = identify(g, walk, [f"w{i}.png" for i in range(5)], fuse=True)
    assert len(fused) == 1 and fused[0].files == [f"w{i}.png" for i in range(5)]
    assert fused[0].score == pytest.approx(float(single.mean(axis=0).max()), abs=1e-6)
    assert fused[0].identity == "ID_3"


def test_threshold_at_far_exact_counts():
    imp = np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1, 0.0])
    t = threshold_at_far(imp, 0.2)  # at most 2 of 10 accepted
    assert np.sum(imp >= t) == 2 and 0.7 < t <= 0.8
    assert np.sum(imp >= threshold_at_far(imp, 0.0)) == 0
    with pytest.raises(DopplerDiffError):
        threshold_at_far(np.zeros(0), 0.1)


@pytest.mark.parametrize("target", [0.01, 0.05, 0.2])
def test_calibration_reaches_target_far_on_synthetic_distributions(target):
    rng = np.random.default_rng(0)
    impostor = rng.normal(0.2, 0.1, 20000)
    genuine = rng.normal(0.7, 0.1, 20000)
    t = threshold_at_far(impostor, target)
    far, frr = far_frr(genuine, impostor, t)
    assert far <= target and far >= target - 1e-3  # tight on the calibration sample
    fresh_far, _ = far_frr(genuine, rng.normal(0.2, 0.1, 20000), t)
    assert abs(fresh_far - target) < 0.25 * target + 0.003  # and generalises to fresh impostors
    assert frr < 0.01


def test_equal_error_rate_of_known_gaussians():
    rng = np.random.default_rng(1)
    eer, t = equal_error_rate(rng.normal(1, 1, 50000), rng.normal(-1, 1, 50000))
    assert eer == pytest.approx(0.1587, abs=0.01) and abs(t) < 0.05


@pytest.mark.parametrize("method", ["centroid", "knn"])
def test_calibrate_on_index_controls_far_for_strangers(method):
    index, _ = _clustered_index(n_people=16, per=40, seed=3)
    cal = calibrate(index, method=method, k=5, target_far=0.1, backend="numpy")
    assert cal["far"] <= 0.1 and cal["n_impostor"] == 16 * 10 and cal["n_genuine"] == 16 * 10
    # Fresh strangers drawn from the same population are accepted at about the target rate.
    rng = np.random.default_rng(7)
    strangers = np.concatenate([_walk(c, 10, rng) for c in _people(40, 1234)])
    out = identify(Gallery.from_index(index), strangers, method=method, k=5, threshold=cal["threshold"])
    far = np.mean([d.accepted for d in out])
    assert far < 0.25
    assert cal["eer"] < 0.2


def test_calibrate_fused_groups_and_errors():
    index, _ = _clustered_index(n_people=6, per=40)
    single = calibrate(index, target_far=0.05)
    fused = calibrate(index, target_far=0.05, group_size=3)
    assert fused["group_size"] == 3 and fused["n_impostor"] == 6 * (10 - 2)
    assert fused["threshold"] <= single["threshold"] + 1e-6  # averaging narrows impostor scores
    with pytest.raises(DopplerDiffError, match="consecutive"):
        calibrate(index, group_size=50)
    no_val = index.subset(~index.mask(("val",)))
    with pytest.raises(DopplerDiffError, match="no 'val' vectors"):
        calibrate(no_val)
    one = index.subset(np.array([i == "ID_1" for i in index.identity]))
    with pytest.raises(DopplerDiffError, match="at least 2 identities"):
        calibrate(one)


def test_calibration_prefers_strangers_and_flags_seen_impostors():
    index, _ = _clustered_index(n_people=10, per=40, seed=5)
    index.encoder = {"identities": [f"ID_{i}" for i in range(1, 11)]}
    loo = calibrate(index, target_far=0.1)
    assert loo["impostors"] == "leave-one-identity-out" and len(loo["impostors_seen_by_encoder"]) == 10
    # Mark two people as strangers: they leave the gallery and become the impostors.
    split = ["stranger" if n in ("ID_9", "ID_10") else s
             for n, s in zip(index.identity, index.split, strict=True)]
    with_strangers = EmbeddingIndex(index.vectors, index.identity, index.file, index.recording, index.window,
                                    split, {"identities": [f"ID_{i}" for i in range(1, 9)]})
    assert "ID_9" not in Gallery.from_index(with_strangers).identities
    cal = calibrate(with_strangers, target_far=0.1)
    assert cal["impostors"] == "strangers" and cal["impostors_seen_by_encoder"] == []
    assert cal["n_impostor"] == 80 and cal["n_genuine"] == 8 * 10 and cal["far"] <= 0.1
    # Its threshold sits at the strangers' score quantile.
    g = Gallery.from_index(with_strangers)
    best = g.scores(with_strangers.vectors[with_strangers.mask(("stranger",))]).max(axis=1)
    assert np.mean(best >= cal["threshold"]) == pytest.approx(cal["far"])
