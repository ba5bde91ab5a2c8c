"""An independent judge: a plain CNN that shares nothing with the models it judges.

The run's spectrogram encoder pools over time and was trained with a contrastive loss; it learned features
that survive blur, so it calls blurred reconstructions faithful. The judge is a different, plain
architecture (3x3 conv + BatchNorm + ReLU + max-pool stages, a small spatial grid kept before the linear
head, so texture and position matter), trained separately on the real training split with its own seed and
its own augmentation (random circular time shift only), cross-entropy only, best weights on real
validation windows. It is never used to train any generative stage.

* ``fit_judge(x, y, num_classes, ...)`` -> ``JudgeCNN`` (eval mode), deterministic per seed;
* ``judge_logits(model, x)`` -> numpy logits;
* ``fit_for_experiment`` / ``predict_for_experiment``: the same with the call signatures of the
  augmentation experiment (``dopplerdiff.evaluate.synthetic_gain``), so its arms can be scored by the judge.

Images are (N, C, H, W) float32 in [-1, 1].
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from dopplerdiff.classifier import Batches, checked_data, fit_steps, load_backbone, weighted_cross_entropy
from dopplerdiff.config.data import AugmentConfig
from dopplerdiff.config.evaluate import JUDGE_ARCHS
from dopplerdiff.data.transforms import augment_batch, mixup
from dopplerdiff.errors import DopplerDiffError
from dopplerdiff.models.stacked import Rule

GRID = 4  # spatial cells kept before the head: where in the window (Doppler row, time) still matters


@dataclass
class JudgeSettings:
    channels: tuple[int, ...] = (16, 32, 64)
    steps: int = 300
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 1e-4
    evals: int = 10  # validation checks over the run (best weights kept)
    arch: str = "plain"  # JUDGE_ARCHS


class ResidualStage(nn.Module):
    """Two conv3x3-BN layers with an identity (or 1x1-projected) shortcut, ReLU, then maxpool 2."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout),
                                  nn.ReLU(inplace=True), nn.Conv2d(cout, cout, 3, padding=1, bias=False),
                                  nn.BatchNorm2d(cout))
        self.skip = nn.Identity() if cin == cout else nn.Sequential(nn.Conv2d(cin, cout, 1, bias=False),
                                                                    nn.BatchNorm2d(cout))
        self.out = nn.Sequential(nn.ReLU(inplace=True), nn.MaxPool2d(2))

    def forward(self, x: Tensor) -> Tensor:
        return self.out(self.body(x) + self.skip(x))


def _plain_stage(cin: int, cout: int) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
            nn.MaxPool2d(2)]


class JudgeCNN(nn.Module):
    """VGG-style classifier: per width a stage, then GRIDxGRID avg pool and a linear head. Stages are
    [conv3x3-BN-ReLU, maxpool 2] (``plain``) or two-layer residual blocks (``residual``: deeper, a stronger
    judge of texture, at about twice the cost)."""

    def __init__(self, in_channels: int, num_classes: int, channels: tuple[int, ...] = (16, 32, 64),
                 arch: str = "plain"):
        super().__init__()
        if arch not in JUDGE_ARCHS:
            raise DopplerDiffError(f"judge architecture must be one of {', '.join(JUDGE_ARCHS)}, "
                                   f"got {arch!r}")
        layers: list[nn.Module] = []
        cin = in_channels
        for c in channels:
            layers += _plain_stage(cin, c) if arch == "plain" else [ResidualStage(cin, c)]
            cin = c
        self.features = nn.Sequential(*layers)
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(GRID), nn.Flatten(), nn.Dropout(0.3),
                                  nn.Linear(cin * GRID * GRID, num_classes))

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.features(x))


# The judge's forward for M models at once (``models.stacked``): keep in step with the forwards above.
JUDGE_GROUP_RULES: dict[type, Rule] = {
    ResidualStage: lambda g, mod, pre, x: g(mod.out, pre + "out.",
                                            g(mod.body, pre + "body.", x) + g(mod.skip, pre + "skip.", x)),
    JudgeCNN: lambda g, mod, pre, x: g(mod.head, pre + "head.", g(mod.features, pre + "features.", x)),
}


def _roll_time(x: Tensor, gen: torch.Generator) -> Tensor:
    """Each sample rolled by its own random number of columns (time is the last axis)."""
    shifts = torch.randint(0, x.shape[-1], (len(x),), generator=gen)
    return torch.stack([torch.roll(xi, int(s), dims=-1) for xi, s in zip(x, shifts, strict=True)])


@torch.no_grad()
def judge_logits(model: nn.Module, images: Any, batch_size: int = 256) -> np.ndarray:
    """Logits (N, K) of images in [-1, 1] (eval mode; the model's device)."""
    model.eval()
    dev = next(model.parameters()).device
    x = torch.as_tensor(np.asarray(images), dtype=torch.float32)
    out = [model(x[i : i + batch_size].to(dev)).float().cpu() for i in range(0, len(x), batch_size)]
    return torch.cat(out).numpy() if out else np.zeros((0, model.head[-1].out_features), np.float32)


def _accuracy(model: nn.Module, val: tuple[Any, Any]) -> float:
    return float((judge_logits(model, val[0]).argmax(1) == np.asarray(val[1])).mean())


def fit_judge(images: Any, labels: Any, num_classes: int, settings: JudgeSettings | None = None, *,
              seed: int = 0, val: tuple[Any, Any] | None = None, device: str | torch.device = "cpu",
              augment: bool = True, init: nn.Module | None = None,
              weights: np.ndarray | None = None, classic: AugmentConfig | None = None) -> JudgeCNN:
    """Train a judge in memory on images (N, C, H, W) in [-1, 1]; deterministic per seed. ``init``: a judge
    whose weights, except the head, start the training (pre-training on other data); ``weights`` (N,):
    per-image loss weights; ``classic``: spectrogram augmentations (and mixup) in place of the judge's own
    time roll, for experiments that compare augmentation recipes."""
    s = settings or JudgeSettings()
    x_all, y_all, w_all = checked_data(images, labels, num_classes, weights, "judge")
    with torch.random.fork_rng(devices=[]):  # dropout and init draw from the global RNG: seed it locally
        torch.manual_seed(seed)
        model = new_judge(x_all, num_classes, s, init, device)
        _train(model, (x_all, y_all, w_all), s, torch.Generator().manual_seed(seed), val, device, augment,
               classic)
    return model.eval()


def new_judge(x: Tensor, num_classes: int, s: JudgeSettings, init: nn.Module | None,
              device: str | torch.device) -> JudgeCNN:
    """A freshly initialised judge (from the global RNG) for images like ``x``, ``init``'s backbone loaded."""
    return load_backbone(JudgeCNN(x.shape[1], num_classes, tuple(s.channels), s.arch), init).to(device)


def judge_batch(x: Tensor, gen: torch.Generator, augment: bool) -> Tensor:
    """The judge's own augmentation of a batch: a random circular time shift per window (or none)."""
    return _roll_time(x, gen) if augment else x


def judge_optimiser(params: Any, s: JudgeSettings) -> tuple[torch.optim.Optimizer, Any]:
    opt = torch.optim.AdamW(params, lr=s.lr, weight_decay=s.weight_decay)
    return opt, torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=s.lr, total_steps=s.steps, pct_start=0.1)


def _batch_loss(model: JudgeCNN, x: Tensor, y: Tensor, w: Tensor | None, gen: torch.Generator,
                classic: AugmentConfig | None, device: str | torch.device) -> Tensor:
    """Cross-entropy of one batch; with ``classic``, its augmentations and (two-label) mixup."""
    if classic is None:
        return weighted_cross_entropy(model(x.to(device)), y.to(device), w)
    x = augment_batch(x, classic, generator=gen)
    if classic.mixup <= 0:
        return weighted_cross_entropy(model(x.to(device)), y.to(device), w)
    x, y_b, lam = mixup(x, y, classic.mixup, gen)
    logits = model(x.to(device))
    return lam * weighted_cross_entropy(logits, y.to(device), w) + \
        (1.0 - lam) * weighted_cross_entropy(logits, y_b.to(device), w)


def _train(model: JudgeCNN, data: tuple[Tensor, Tensor, Tensor | None], s: JudgeSettings,
           gen: torch.Generator, val: tuple[Any, Any] | None, device: str | torch.device,
           augment: bool, classic: AugmentConfig | None = None) -> None:
    """AdamW + one-cycle schedule; with ``val``, the best validation weights are loaded at the end."""
    x_all, y_all, w_all = data
    opt, sched = judge_optimiser(model.parameters(), s)
    batches = Batches(len(x_all), min(s.batch_size, len(x_all)), gen)

    def loss_at(step: int) -> Tensor:
        idx = batches.next()
        x = judge_batch(x_all[idx], gen, augment and classic is None)
        model.train()  # scoring the validation windows left it in eval mode
        w = None if w_all is None else w_all[idx].to(device)
        return _batch_loss(model, x, y_all[idx], w, gen, classic, device)

    score = (lambda: _accuracy(model, val)) if val is not None and len(val[1]) else None
    fit_steps(s.steps, loss_at, opt, sched, diverged=_diverged, model=model, score=score,
              every=max(s.steps // max(s.evals, 1), 1))


def _diverged(step: int, loss: float) -> DopplerDiffError:
    return DopplerDiffError(f"judge training diverged at step {step}")


def fit_for_experiment(x: Any, y: Any, num_classes: int, cfg: Any, *, steps: int, seed: int,
                       augment: Any = None, val: Any = None, progress: bool = False,
                       channels: tuple[int, ...] = (16, 32, 64), device: Any = "cpu",
                       init: nn.Module | None = None, weights: np.ndarray | None = None) -> JudgeCNN:
    """``fit`` for the augmentation experiment: the judge architecture; ``cfg``/``augment`` are not used
    (the judge keeps its own recipe so that it stays independent of the encoder's)."""
    return fit_judge(x, y, num_classes, JudgeSettings(channels=channels, steps=steps), seed=seed, val=val,
                     device=device, init=init, weights=weights)


def predict_for_experiment(model: nn.Module, x: Any) -> tuple[np.ndarray, None]:
    return judge_logits(model, x), None
