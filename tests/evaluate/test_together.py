"""Classifiers trained together (one grouped network) are the classifiers trained one after another.

Tolerances: a grouped convolution adds its products in another order than M separate ones, so outputs
differ by float32 rounding (~1e-7 per layer). AdamW divides each gradient element by its own running
magnitude, so an element whose gradient is near zero can turn such a rounding difference into an update of
up to lr; after a few steps weights therefore agree to ~lr x steps at worst (observed: <= 1e-4 with lr 1e-3
and 4 steps), and logits, which average over many weights, to ~1e-5. Training on another arm's data moves
weights by ~1e-2 or more, far outside both bounds.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from dopplerdiff.classifier import FitJob, fit_classifier
from dopplerdiff.config.data import AugmentConfig
from dopplerdiff.evaluate.judge import JudgeCNN, JudgeSettings, fit_for_experiment, fit_judge
from dopplerdiff.evaluate.synthetic_gain import ARMS, run_synthetic_gain
from dopplerdiff.evaluate.together import RULES, fit_classifiers, fit_judges, groups
from dopplerdiff.models.stacked import Stacked

K, STEPS = 3, 4
WEIGHT_TOL = 5e-4  # < lr (1e-3) x STEPS; see the module docstring
LOGIT_TOL = 1e-4


def _data(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, K, n)
    x = 0.3 * (y[:, None, None, None] - 1) + 0.5 * rng.standard_normal((n, 1, 16, 16))
    return np.clip(x, -1, 1).astype(np.float32), y


def _enc_cfg(smoke_config):
    return replace(smoke_config.encoder, channels=[4, 8])


def _diff(a: torch.nn.Module, b: torch.nn.Module) -> float:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    return max(float((sa[k].double() - sb[k].double()).abs().max()) for k in sa)


def _jobs() -> list[FitJob]:
    (xa, ya), (xb, yb) = _data(40, 1), _data(52, 2)
    return [FitJob(xa, ya, 0), FitJob(xb, yb, 0), FitJob(xa, ya, 1, weights=np.linspace(0.2, 1.0, 40))]


def test_encoder_classifiers_together_equal_one_by_one(smoke_config):
    cfg, jobs, val = _enc_cfg(smoke_config), _jobs(), _data(20, 3)
    aug = AugmentConfig(time_shift=True, gain_jitter=0.05, mixup=0.2)  # every random draw of the recipe
    together = fit_classifiers(jobs, K, cfg, steps=STEPS, augment=aug, val=val, together=3)
    xt = torch.as_tensor(_data(30, 4)[0])
    for job, model in zip(jobs, together, strict=True):
        alone = fit_classifier(job.images, job.labels, K, cfg, steps=STEPS, seed=job.seed, augment=aug,
                               val=val, weights=job.weights)
        assert _diff(model, alone) < WEIGHT_TOL  # weights and BatchNorm running statistics
        assert torch.allclose(model(xt)[1], alone(xt)[1], atol=LOGIT_TOL)
        assert not model.training


def test_judges_together_equal_one_by_one_with_their_dropout():
    jobs, val = _jobs(), _data(20, 3)
    together = fit_judges(jobs, K, steps=STEPS, val=val, channels=(4, 8), together=3)
    xt = torch.as_tensor(_data(30, 4)[0])
    for job, model in zip(jobs, together, strict=True):
        alone = fit_for_experiment(job.images, job.labels, K, None, steps=STEPS, seed=job.seed, val=val,
                                   channels=(4, 8), weights=job.weights)
        assert _diff(model, alone) < WEIGHT_TOL
        assert torch.allclose(model(xt), alone(xt), atol=LOGIT_TOL)


def test_each_model_trains_on_its_own_data(smoke_config):
    """Same seed, different data: each model of the group matches its own data's fit, not the other's."""
    cfg, (xa, ya), (xb, yb) = _enc_cfg(smoke_config), _data(40, 1), _data(40, 2)
    a, b = fit_classifiers([FitJob(xa, ya, 0), FitJob(xb, yb, 0)], K, cfg, steps=STEPS, together=2)
    alone_a = fit_classifier(xa, ya, K, cfg, steps=STEPS, seed=0)
    alone_b = fit_classifier(xb, yb, K, cfg, steps=STEPS, seed=0)
    assert _diff(a, alone_a) < WEIGHT_TOL and _diff(b, alone_b) < WEIGHT_TOL
    assert _diff(a, alone_b) > 10 * WEIGHT_TOL and _diff(b, alone_a) > 10 * WEIGHT_TOL


def test_residual_judges_run_as_a_group():
    """The residual stage's rule: a train-mode pass of the group = each judge's own pass (outputs and the
    BatchNorm running statistics it updates)."""
    torch.manual_seed(0)
    judges = [JudgeCNN(1, K, (4, 4, 8), "residual") for _ in range(2)]
    gens = [torch.Generator().manual_seed(i) for i in range(2)]
    st = Stacked(judges, [torch.Generator().manual_seed(i) for i in range(2)], RULES)
    x = torch.as_tensor(np.stack([_data(6, 1)[0], _data(6, 2)[0]]))
    out = st(x)
    for m, judge in enumerate(judges):
        judge.train()
        feats = judge.head[:2](judge.features(x[m]))  # the group draws its mask from gens[m]: same here
        keep = 1.0 - 0.3
        mask = torch.empty(feats.shape).bernoulli_(keep, generator=gens[m]).div_(keep)
        assert torch.allclose(out[m], judge.head[3](feats * mask), atol=1e-5)
        assert torch.allclose(st.buffers["features.0.body.1.running_mean"][m],
                              judge.features[0].body[1].running_mean, atol=1e-6)


def test_models_of_other_batch_sizes_or_image_shapes_train_in_their_own_group():
    shapes = [(40, 1, 16, 16), (52, 1, 16, 16), (5, 1, 16, 16), (64, 1, 16, 16), (3, 1, 16, 16),
              (40, 1, 12, 12)]
    assert groups(shapes, 32, 2) == [[0, 1], [3], [2], [4], [5]]


def test_experiment_keys_and_scores_do_not_depend_on_training_together(smoke_config):
    train, test, syn = _data(30, 1), _data(24, 2), _data(15, 3)
    kw = {"steps": 3, "seeds": [0, 1], "val": _data(12, 5)}
    cfg = _enc_cfg(smoke_config)
    one = run_synthetic_gain(train, test, syn, K, cfg, together=1, **kw)
    six = run_synthetic_gain(train, test, syn, K, cfg, together=6, **kw)
    assert set(six) == set(one) == {"arms", "per_identity_mean", "gain", "seeds", "steps",
                                    "synthetic_per_identity", "n_real_train", "n_synthetic", "n_real_test"}
    for arm in ARMS:
        # one test window's worth: logits agree to ~1e-5, a near-tie could still change one argmax
        assert np.allclose(six["arms"][arm]["runs"], one["arms"][arm]["runs"], atol=1 / 24 + 1e-9)


def test_experiment_gives_each_arm_its_own_windows():
    train, test, syn = _data(10, 1), _data(6, 2), _data(5, 3)
    seen: list[FitJob] = []

    def trainer(jobs, num_classes, cfg, **kw):
        seen.extend(jobs)
        return [(j.images, j.labels) for j in jobs]

    def predict(model, x):
        return np.eye(K)[np.full(len(x), 0)], None

    run_synthetic_gain(train, test, syn, K, None, steps=1, seeds=[7, 8], fit_many=trainer,
                                predict=predict)
    want = {"real": train, "real+synthetic": (np.concatenate([train[0], syn[0]]),
                                              np.concatenate([train[1], syn[1]])), "synthetic": syn}
    assert [j.seed for j in seen] == [7, 7, 7, 8, 8, 8]
    for i, job in enumerate(seen):
        x, y = want[ARMS[i % 3]]
        assert np.array_equal(job.images, x) and np.array_equal(job.labels, y)


def test_augment_together_must_be_positive():
    from dopplerdiff.config import load_config
    from dopplerdiff.errors import ConfigError

    with pytest.raises((ConfigError, ValueError), match="augment_together"):
        load_config("smoke", ["evaluate.augment_together=0"])


def test_fit_judge_still_refuses_bad_input():
    with pytest.raises(Exception, match="at least 2"):
        fit_judge(np.zeros((1, 1, 8, 8), np.float32), np.zeros(1, np.int64), K, JudgeSettings(steps=1))
