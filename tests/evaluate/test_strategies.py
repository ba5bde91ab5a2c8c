"""Strategy arms of the augmentation experiment: names, paired gains, simulator pre-training, train-only
seeds and the real-data budget, end to end on a tiny run (16x16, 2 sampler steps)."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
import torch

from dopplerdiff.config import load_config
from dopplerdiff.config.evaluate import parse_strategy
from dopplerdiff.errors import ConfigError, DopplerDiffError
from dopplerdiff.evaluate.strategies import ArmData, run_strategy_arms, t_interval
from dopplerdiff.pipelines.auto_pipeline import load_run_pipeline

K = 3


@pytest.mark.parametrize(("name", "want"), [
    ("prior", dict(interval=False, strength=None, filtered=False, simpre=False)),
    ("interval", dict(interval=True)),
    ("real:0.5", dict(strength=0.5)),
    ("real:0.8+filtered", dict(strength=0.8, filtered=True)),
    ("simpre+interval+filtered", dict(simpre=True, interval=True, filtered=True)),
])
def test_strategy_names_parse(name, want):
    spec = parse_strategy(name)
    assert spec.name == name and all(getattr(spec, k) == v for k, v in want.items())
    assert spec.synthetic


def test_training_levers_parse_and_do_not_change_how_windows_are_drawn():
    spec = parse_strategy("real:0.5+w:0.25+n:32")
    assert (spec.weight, spec.per_identity, spec.strength, spec.synthetic) == (0.25, 32, 0.5, True)
    assert spec.sampling == parse_strategy("real:0.5")
    assert parse_strategy("prior").weight == 1.0 and parse_strategy("prior").per_identity is None
    assert parse_strategy("simpre+prior+w:0.5").sampling.name == "simpre+prior"


def test_simpre_alone_adds_no_synthetic_windows():
    assert not parse_strategy("simpre").synthetic and parse_strategy("simpre+prior").synthetic


@pytest.mark.parametrize(("value", "match"), [
    ("[prior, mixup]", "unknown part 'mixup'"),
    ("[real:1.5]", "'real:1.5' needs one strength"),
    ("[real:x]", "'real:x' needs one strength"),
    ("[prior+real:0.5]", "give one"),
    ("[interval+interval]", "empty or repeated part"),
    ("[prior, prior]", "lists a strategy twice"),
    ("[prior+w:0]", "'w:0' needs one loss weight"),
    ("[prior+w:1.5]", "'w:1.5' needs one loss weight"),
    ("[prior+n:0]", "'n:0' needs a whole number"),
    ("[real:0.5+n:x]", "'n:x' needs a whole number"),
    ("[prior+w:0.5+w:0.2]", "'w:' given twice"),
    ("[simpre+w:0.5]", "w:/n: need synthetic windows"),
    ("[w:0.5]", "w:/n: need synthetic windows"),
])
def test_bad_strategy_names_are_one_clear_config_error(value, match):
    with pytest.raises(ConfigError, match=match) as info:
        load_config("smoke", [f"evaluate.augment_strategies={value}"])
    assert "evaluate.augment_strategies" in str(info.value)


def test_guidance_interval_and_simpre_settings_are_checked():
    with pytest.raises(ConfigError, match="augment_guidance_interval"):
        load_config("smoke", ["evaluate.augment_guidance_interval=[0.8, 0.2]"])
    with pytest.raises(ConfigError, match="simpre_per_identity"):
        load_config("smoke", ["evaluate.simpre_per_identity=0"])
    cfg = load_config("smoke", ["evaluate.augment_strategies=[prior, real:0.5, simpre+interval]"])
    assert [a.name for a in cfg.evaluate.arms()] == ["prior", "real:0.5", "simpre+interval"]


def _blobs(n_per: int, rng: np.random.Generator, noise: float = 0.1) -> tuple[np.ndarray, np.ndarray]:
    labels = np.repeat(np.arange(K), n_per)
    noise = noise * rng.standard_normal((len(labels), 1, 4, 4))
    x = np.linspace(-0.6, 0.6, K)[labels][:, None, None, None] + noise
    return x.astype(np.float32), labels.astype(np.int64)


class _Centroid:
    def __init__(self, x, y, k):
        self.c = np.stack([x[y == j].mean(axis=0).ravel() if (y == j).any() else np.zeros(x[0].size)
                           for j in range(k)])


def _predict(model, images):
    d = ((images.reshape(len(images), -1)[:, None, :] - model.c[None]) ** 2).sum(-1)
    return -d, None


def test_arms_are_paired_with_the_baseline_and_simpre_pretrains_once_per_seed():
    rng = np.random.default_rng(0)
    train, test = _blobs(1, rng, noise=1.5), _blobs(20, rng)
    good, bad = _blobs(10, rng), _blobs(10, rng)
    bad = (bad[0], (bad[1] + 1) % K)  # wrongly labelled synthetic windows must hurt
    sim = (rng.standard_normal((12, 1, 4, 4)).astype(np.float32), np.repeat(np.arange(4), 3), 4)
    calls = []

    def fit(x, y, k, cfg, *, steps, seed, augment, val, progress, device, init=None):
        calls.append({"n": len(x), "k": k, "seed": seed, "init": init, "steps": steps})
        return _Centroid(x, y, k)

    arms = [ArmData(parse_strategy("real:0.5"), good), ArmData(parse_strategy("interval"), bad),
            ArmData(parse_strategy("simpre"), None), ArmData(parse_strategy("simpre+real:0.8"), good),
            ArmData(parse_strategy("prior"), good)]
    res = run_strategy_arms(train, test, arms, K, None, steps=5, seeds=[0, 1, 2], pretrain=sim,
                            reuse={"prior": [0.5, 0.5, 0.5]}, fit=fit, predict=_predict)
    assert list(res["arms"]) == ["real:0.5", "interval", "simpre", "simpre+real:0.8", "prior"]
    base = res["baseline"]["runs"]
    for arm in res["arms"].values():
        assert len(arm["accuracy"]["runs"]) == 3
        assert arm["gain"]["runs"] == pytest.approx(np.subtract(arm["accuracy"]["runs"], base).tolist())
        lo, hi = arm["gain"]["ci95"]
        assert lo <= arm["gain"]["mean"] <= hi
    assert res["arms"]["real:0.5"]["gain"]["mean"] > 0 > res["arms"]["interval"]["gain"]["mean"]
    assert res["arms"]["prior"]["accuracy"]["runs"] == [0.5] * 3  # reused, not refitted
    assert res["arms"]["simpre"]["n_synthetic"] == 0
    assert res["arms"]["real:0.5"]["synthetic_per_identity"] == 10
    pre = [c for c in calls if c["k"] == 4]
    assert sorted(c["seed"] for c in pre) == [0, 1, 2]  # one pre-training per seed, shared by both arms
    tuned = [c for c in calls if c["init"] is not None]
    assert len(tuned) == 6 and {c["n"] for c in tuned} == {3, 33}
    assert {c["steps"] for c in calls} == {5}
    # baseline (3) + real:0.5 (3) + interval (3) + pre-training (3) + simpre arms (6); prior reused
    assert len(calls) == 18


def test_arm_errors():
    rng = np.random.default_rng(0)
    train = _blobs(2, rng)
    with pytest.raises(DopplerDiffError, match="strategy 'simpre' needs simulated"):
        run_strategy_arms(train, train, [ArmData(parse_strategy("simpre"), None)], K, None, steps=1,
                          seeds=[0], fit=lambda *a, **k: None, predict=_predict)
    wrong = (np.zeros((3, 1, 8, 8), np.float32), np.zeros(3, np.int64))
    with pytest.raises(DopplerDiffError, match="strategy 'interval': synthetic images"):
        run_strategy_arms(train, train, [ArmData(parse_strategy("interval"), wrong)], K, None, steps=1,
                          seeds=[0], fit=lambda *a, **k: None, predict=_predict)


def test_t_interval():
    assert t_interval([0.1]) is None
    lo, hi = t_interval([0.0, 0.1, 0.2])
    assert lo == pytest.approx(0.1 - 4.303 * 0.1 / np.sqrt(3), abs=1e-3) and hi > 0.2


def test_load_backbone_copies_everything_but_the_head():
    from dopplerdiff.classifier import load_backbone
    from dopplerdiff.evaluate.judge import JudgeCNN

    torch.manual_seed(0)
    pre, new = JudgeCNN(1, 5, (4, 8)), JudgeCNN(1, 3, (4, 8))
    head = new.head[-1].weight.clone()
    load_backbone(new, pre)
    assert torch.equal(new.features[0].weight, pre.features[0].weight)
    assert torch.equal(new.head[-1].weight, head)
    with pytest.raises(DopplerDiffError, match="shares no weights"):
        load_backbone(new, torch.nn.Linear(2, 2))


def test_simulated_pretraining_set_matches_the_data(smoke_config):
    from dopplerdiff.evaluate.strategies import simulated_set

    cfg = copy.deepcopy(smoke_config)
    cfg.evaluate.simpre_per_identity = 6
    x, y, k = simulated_set(cfg)
    assert x.shape == (6 * cfg.simulate.identities, 1, cfg.data.size, cfg.data.size)
    assert k == cfg.simulate.identities and sorted(set(y.tolist())) == list(range(k))
    assert x.min() >= -1.0 and x.max() <= 1.0


def test_evaluation_with_strategy_arms_on_a_budgeted_run(tmp_path, sim_data, smoke_config):
    """Budget 3 windows per identity: every stage sees 3; the arms exist under both classifier
    architectures, real-seeded arms are seeded by those training windows only, and the report has the
    table."""
    from test_evaluate import _add_pipeline, _make_run

    from dopplerdiff.evaluate.evaluate import evaluate_run

    # classifiers trained in groups of 4: both architectures, pre-trained inits, weights, other set sizes
    cfg = load_config("smoke", ["data.train_per_identity=3", "evaluate.simpre_per_identity=4",
                                "evaluate.augment_strategies=[prior, interval, real:0.5, simpre, "
                                "real:0.5+filtered, real:0.5+w:0.5+n:2]", "evaluate.augment_together=4"])
    run = _make_run(tmp_path, sim_data, cfg)
    data = json.loads((run / "data.json").read_text())
    _add_pipeline(run, cfg, data["identities"])
    m = evaluate_run(run, copy.deepcopy(cfg), progress=False)
    k = len(data["identities"])
    assert m["counts"]["train"] == 3 * k and m["augmentation"]["n_real_train"] == 3 * k
    train = set(data["split"]["train"])
    filtered_left_out = any("'real:0.5+filtered' left out" in x for x in m["missing"])
    expected = ["prior", "interval", "real:0.5", "simpre"]
    expected += ([] if filtered_left_out else ["real:0.5+filtered"]) + ["real:0.5+w:0.5+n:2"]
    for key in ("augmentation", "augmentation_judge"):
        s = m[key]["strategies"]
        assert list(s["arms"]) == expected
        assert s["baseline"]["runs"] == m[key]["arms"]["real"]["runs"]
        assert s["arms"]["prior"]["accuracy"]["runs"] == m[key]["arms"]["real+synthetic"]["runs"]
        assert all(len(a["gain"]["runs"]) == cfg.evaluate.augment_seeds for a in s["arms"].values())
        lever = s["arms"]["real:0.5+w:0.5+n:2"]
        assert lever["synthetic_weight"] == 0.5 and lever["synthetic_per_identity"] == 2
        assert lever["synthetic_to_real"] == pytest.approx(2 / 3, abs=1e-3)
    recipes = m["augmentation_strategies"]
    assert recipes["interval"]["guidance_interval"] == cfg.evaluate.augment_guidance_interval
    seeds = recipes["real:0.5"]["source_windows"]
    assert seeds and set(seeds) <= train  # only the budgeted training windows seed samples
    assert recipes["real:0.5"]["strength"] == 0.5 and recipes["simpre"]["synthetic"] is None
    rec = m["augmentation_recommendation"]
    assert rec["best"] in expected and set(rec["gain"]) == {"encoder", "judge"}
    html = (run / "eval" / "report.html").read_text()
    assert "<h3>Strategies</h3>" in html and "real:0.5" in html and "Recommended:" in html


def test_filtered_arm_uses_the_configured_filter_and_train_sources(tmp_path, sim_data, smoke_config,
                                                                   monkeypatch):
    from synthetic_helpers import make_run

    import dopplerdiff.evaluate.strategies as S
    import dopplerdiff.generate as gen
    from dopplerdiff.evaluate.strategies import make_arm_data

    run, split = make_run(tmp_path, sim_data, smoke_config)
    cfg = load_config("smoke", ["evaluate.augment_filter_confidence=0",
                                "evaluate.augment_filter_stats=[extent]",
                                "evaluate.augment_filter_tolerance=0.5"])
    seen = {}

    def fake_sample(pipe, plan, *, progress):
        ids, n = list(range(len(pipe.identities))), plan.count
        seen.update(filter=plan.filter, allow_short=plan.allow_short, strength=plan.strength,
                    steps=plan.steps, guidance=plan.guidance, guidance_interval=plan.interval)
        return gen.Drawn(np.zeros((len(ids) * n, 1, 16, 16), np.float32), np.repeat(ids, n),
                         np.tile(np.arange(n), len(ids)), {k: {"rate": 1.0, "kept": n} for k in ids})

    monkeypatch.setattr(S, "sample", fake_sample)
    arm = make_arm_data(parse_strategy("real:0.5+filtered"), load_run_pipeline(run, "cpu"), run, cfg, 2)
    assert arm.recipe["filter"] == {"min_confidence": None, "physics_stats": ["extent"],
                                    "physics_quantiles": [0.025, 0.975], "physics_tolerance": 0.5}
    assert seen["strength"] == 0.5 and seen["steps"] == cfg.evaluate.steps and seen["allow_short"]
    assert seen["guidance"] == cfg.evaluate.guidance and seen["guidance_interval"] is None
    assert arm.recipe["source_windows"] and set(arm.recipe["source_windows"]) <= set(split["train"])
    assert arm.synthetic[0].shape == (6, 1, 16, 16) and arm.synthetic[0].min() == -1.0
    with pytest.raises(ConfigError, match="augment_filter_confidence"):
        load_config("smoke", ["evaluate.augment_filter_confidence=1.5"])


def test_simulated_pretraining_walkers_are_not_the_simulated_default_people(tmp_path, smoke_config):
    """On the simulated default the pre-training walkers must be other people: the run's own simulator seed
    would re-create the evaluated identities (and their windows), leaking test data into pre-training."""
    from dopplerdiff.data.images import load_spectrograms
    from dopplerdiff.data.simulate import simulate_dataset
    from dopplerdiff.evaluate.strategies import simulated_set

    cfg = copy.deepcopy(smoke_config)
    cfg.evaluate.simpre_per_identity = cfg.simulate.per_identity
    simulate_dataset(cfg.simulate, tmp_path / "data", progress=False)
    data = load_spectrograms(tmp_path / "data", cfg.data).images.reshape(-1, cfg.data.size ** 2)
    x, _, _ = simulated_set(cfg)
    x = x.reshape(len(x), -1)
    nearest = np.abs(x[:, None, :] - data[None, :, :]).max(axis=2).min(axis=1)
    assert nearest.min() > 1e-3


def test_weighted_arms_pass_per_window_loss_weights_real_one_synthetic_w():
    rng = np.random.default_rng(0)
    train, test, syn = _blobs(4, rng), _blobs(5, rng), _blobs(2, rng)
    seen = {}

    def fit(x, y, k, cfg, *, steps, seed, augment, val, progress, device, init=None, weights=None):
        seen.setdefault(len(seen), (len(x), None if weights is None else np.asarray(weights)))
        return _Centroid(x, y, k)

    arms = [ArmData(parse_strategy("prior"), syn), ArmData(parse_strategy("prior+w:0.25"), syn)]
    res = run_strategy_arms(train, test, arms, K, None, steps=1, seeds=[0], fit=fit, predict=_predict)
    (_, w0), (_, w1), (n2, w2) = seen[0], seen[1], seen[2]  # baseline, prior, prior+w:0.25
    assert w0 is None and w1 is None and n2 == 12 + 6
    assert w2.tolist() == [1.0] * 12 + [0.25] * 6
    arm = res["arms"]["prior+w:0.25"]
    assert arm["synthetic_weight"] == 0.25 and arm["synthetic_to_real"] == pytest.approx(0.5)


def _stripes(n_per: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Class k: a bright row k on noise, (N, 1, 16, 16) in [-1, 1]."""
    y = np.repeat(np.arange(K), n_per)
    x = -0.8 + 0.1 * rng.standard_normal((len(y), 1, 16, 16))
    for i, k in enumerate(y):
        x[i, 0, 3 + 5 * k] = 0.9
    return x.astype(np.float32), y.astype(np.int64)


@pytest.mark.parametrize("which", ["encoder", "judge"])
def test_a_zero_loss_weight_silences_wrongly_labelled_windows(which):
    """Real windows plus twice as many wrongly labelled ones: with weight 1 the wrong labels win, with
    weight 0 on them the classifier learns the real labels (both architectures of the experiment)."""
    from dopplerdiff.classifier import fit_classifier, predict
    from dopplerdiff.config.encoder import EncoderConfig
    from dopplerdiff.evaluate.judge import fit_for_experiment, predict_for_experiment

    rng = np.random.default_rng(0)
    (xr, yr), (xw, yw), (xt, yt) = _stripes(6, rng), _stripes(12, rng), _stripes(10, rng)
    x, y = np.concatenate([xr, xw]), np.concatenate([yr, (yw + 1) % K])
    cfg = EncoderConfig(channels=[8, 16], embed_dim=16, supcon_weight=0.5)
    cfg.train.batch_size, cfg.train.warmup_steps = 16, 0

    def acc(w):
        if which == "encoder":
            m = fit_classifier(x, y, K, cfg, steps=60, seed=0, weights=w)
            return float((predict(m, xt)[0].argmax(1) == yt).mean())
        m = fit_for_experiment(x, y, K, None, steps=60, seed=0, channels=(8, 16), weights=w)
        return float((predict_for_experiment(m, xt)[0].argmax(1) == yt).mean())

    w = np.concatenate([np.ones(len(yr)), np.zeros(len(yw))])
    assert acc(w) > 0.9 and acc(None) < 0.5


def test_bad_loss_weights_are_one_data_error():
    from dopplerdiff.classifier import sample_weights
    from dopplerdiff.errors import DataError

    assert sample_weights(None, 3, "x") is None
    for bad in ([1.0, 1.0], [1.0, -1.0, 1.0], [0.0, 0.0, 0.0], [1.0, float("nan"), 1.0]):
        with pytest.raises(DataError, match="fit: weights must be"):
            sample_weights(np.asarray(bad), 3, "fit")


def test_weighted_cross_entropy_matches_torch_on_the_weighted_subset():
    import torch.nn.functional as F

    from dopplerdiff.classifier import weighted_cross_entropy

    g = torch.Generator().manual_seed(0)
    logits, y = torch.randn(8, 4, generator=g), torch.randint(0, 4, (8,), generator=g)
    keep = torch.tensor([1, 0, 1, 1, 0, 0, 1, 1], dtype=torch.bool)
    got = weighted_cross_entropy(logits, y, keep.float() * 0.3)
    assert torch.allclose(got, F.cross_entropy(logits[keep], y[keep]))
    assert torch.allclose(weighted_cross_entropy(logits, y), F.cross_entropy(logits, y))


def test_arms_that_differ_only_in_levers_share_their_windows(monkeypatch):
    from dopplerdiff.evaluate import strategies as S
    from dopplerdiff.evaluate.windows import WindowSet

    x, y = _blobs(4, np.random.default_rng(0))
    pool = WindowSet(x, np.zeros((len(y), 2)), np.zeros((len(y), K)), y, [])
    drawn = []

    def fake_make(spec, pipe, run, cfg, n, progress=False):
        drawn.append((spec.name, n))
        xs, ys = _blobs(n, np.random.default_rng(n))
        return ArmData(spec, (xs, ys), {"from": "drawn"})

    monkeypatch.setattr(S, "make_arm_data", fake_make)
    pipe = type("P", (), {"identities": [f"ID_{i}" for i in range(K)]})()
    cfg = load_config("smoke")
    specs = [parse_strategy(n) for n in ("prior", "prior+w:0.5", "prior+n:2", "prior+n:6", "interval",
                                         "interval+w:0.1")]
    missing: list[str] = []
    arms = S.build_arms(specs, pipe, None, cfg, 4, pool, missing)
    by = {a.spec.name: a for a in arms}
    assert drawn == [("prior", 6), ("interval", 4)] and not missing  # pool covers n <= 4
    assert by["prior+w:0.5"].synthetic is by["prior"].synthetic and len(by["prior"].synthetic[1]) == 4 * K
    assert len(by["prior+n:2"].synthetic[1]) == 2 * K and len(by["prior+n:6"].synthetic[1]) == 6 * K
    assert by["interval+w:0.1"].synthetic is by["interval"].synthetic
    assert by["interval+w:0.1"].recipe["synthetic_weight"] == 0.1


def _arms(**gains):
    """{name: (mean, ci_lo)} -> a run_strategy_arms-like result."""
    return {"arms": {n: {"gain": {"mean": g, "ci95": [lo, 2 * g - lo]}} for n, (g, lo) in gains.items()}}


def test_recommendation_needs_a_gain_above_zero_under_every_architecture():
    from dopplerdiff.evaluate.strategies import recommend

    enc = _arms(a=(0.05, 0.01), b=(0.10, 0.02), c=(-0.02, -0.05))
    judge = _arms(a=(0.03, 0.005), b=(-0.01, -0.04), c=(0.08, 0.01))
    rec = recommend({"encoder": enc, "judge": judge})
    assert rec["strategy"] == "a" and rec["gain"] == {"encoder": 0.05, "judge": 0.03}
    judge["arms"]["a"]["gain"]["ci95"] = [-0.01, 0.07]  # a is best but not significant under the judge
    rec = recommend({"encoder": enc, "judge": judge})
    assert rec["strategy"] is None and rec["best"] == "a"
    assert recommend({"encoder": None, "judge": None})["best"] is None


def test_prior_arm_reuses_the_pool_encoding():
    """The 'prior' arm's windows come from the evaluation pool, already encoded: sample_quality does not
    encode them again, and a drawn arm is encoded."""
    from dopplerdiff.evaluate import strategies as S
    from dopplerdiff.evaluate.windows import WindowSet

    x, y = _blobs(4, np.random.default_rng(0))
    feats, logits = np.random.default_rng(1).standard_normal((len(y), 2)), np.eye(K)[y]
    pool = WindowSet(x, feats, logits, y, [])
    pipe = type("P", (), {"identities": [f"ID_{i}" for i in range(K)]})()
    arms = S.build_arms([parse_strategy("prior")], pipe, None, load_config("smoke"), 4, pool, [])

    def encode(images):
        raise AssertionError("the pool's windows were encoded again")

    q = S.sample_quality(arms[0], encode, feats[:6], knn_k=2)
    assert q["encoder_accuracy"] == 1.0 and "precision" in q
    drawn = ArmData(parse_strategy("interval"), (x, y))
    assert S.sample_quality(drawn, lambda im: (feats, logits), feats[:6], knn_k=2)["encoder_accuracy"] == 1.0


def test_strategy_arms_together_equal_one_by_one(smoke_config):
    """Strategy arms, simulator pre-training and the baseline trained together score as one by one."""
    from dataclasses import replace

    rng = np.random.default_rng(0)
    train, test = _blobs(8, rng), _blobs(6, rng)
    sim = (*_blobs(6, rng), K)
    arms = [ArmData(parse_strategy("interval"), _blobs(4, rng)), ArmData(parse_strategy("simpre"), None)]
    cfg = replace(smoke_config.encoder, channels=[4, 8])
    kw = {"steps": 3, "seeds": [0, 1], "pretrain": sim}
    one = run_strategy_arms(train, test, arms, K, cfg, together=1, **kw)
    four = run_strategy_arms(train, test, arms, K, cfg, together=4, **kw)
    assert set(four["arms"]) == set(one["arms"]) == {"interval", "simpre"}
    # one test window's worth (see tests/evaluate/test_together.py for why not bit-equal)
    assert np.allclose(four["baseline"]["runs"], one["baseline"]["runs"], atol=1 / len(test[1]) + 1e-9)
    for name in one["arms"]:
        assert np.allclose(four["arms"][name]["accuracy"]["runs"], one["arms"][name]["accuracy"]["runs"],
                           atol=1 / len(test[1]) + 1e-9)
