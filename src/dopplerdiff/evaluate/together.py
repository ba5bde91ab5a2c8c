"""The augmentation experiments' classifiers trained together instead of one after another.

A *trainer* fits a list of ``classifier.FitJob`` (each: its own images, labels, seed, loss weights, init)
and returns the models in job order: ``trainer(jobs, num_classes, cfg, *, steps, augment, val, device,
together)``. ``fit_classifiers`` (the encoder architecture, ``fit_classifier``'s recipe) and ``fit_judges``
(the judge architecture, ``judge.fit_for_experiment``'s recipe) train up to ``together`` models of a batch
size at once with ``dopplerdiff.models.stacked``: every model gets the initial weights, batches,
augmentations, dropout masks and validation-selected weights of its sequential fit; only the float32
rounding of the grouped convolutions differs. ``together=1`` runs the sequential fits themselves.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from dopplerdiff.classifier import (
    Batches,
    FitJob,
    augmented_batch,
    checked_data,
    classifier_optimiser,
    fit_classifier,
    loss_of_outputs,
    new_classifier,
    weighted_cross_entropy,
)
from dopplerdiff.errors import DopplerDiffError
from dopplerdiff.evaluate.judge import (
    JUDGE_GROUP_RULES,
    JudgeSettings,
    fit_for_experiment,
    judge_batch,
    judge_optimiser,
    new_judge,
)
from dopplerdiff.models.encoder import ENCODER_GROUP_RULES
from dopplerdiff.models.stacked import Rule, Stacked, train_stacked

Trainer = Callable[..., list[Any]]


# how the composite modules of both architectures run as a group (next to each architecture's forward)
RULES: dict[type, Rule] = {**ENCODER_GROUP_RULES, **JUDGE_GROUP_RULES}


def sequential(fit: Callable[..., Any]) -> Trainer:
    """A trainer calling a single-model ``fit(x, y, num_classes, cfg, seed=, ...)`` once per job (init and
    weights are passed only where a job has them, so simpler injected fits keep working)."""

    def trainer(jobs: Sequence[FitJob], num_classes: int, cfg: Any, *, together: int = 1,
                **kw: Any) -> list[Any]:
        out = []
        for j in jobs:
            extra = {k: v for k, v in (("init", j.init), ("weights", j.weights)) if v is not None}
            out.append(fit(j.images, j.labels, num_classes, cfg, seed=int(j.seed), **kw, **extra))
        return out

    return trainer


def trainer_for(fit: Callable[..., Any] | None, fit_many: Trainer | None) -> Trainer:
    """The experiment's trainer: ``fit_many`` if given, else ``fit`` one job at a time, else the encoder
    architecture's ``fit_classifiers``."""
    if fit_many is not None:
        return fit_many
    return sequential(fit) if fit is not None else fit_classifiers


def groups(shapes: Sequence[tuple[int, ...]], batch_size: int, together: int) -> list[list[int]]:
    """Job indices in groups of at most ``together`` whose images (N, C, H, W) differ in N only and give
    the same batch size (the group stacks one batch of each)."""
    by: dict[tuple[int, ...], list[int]] = {}
    for i, shape in enumerate(shapes):
        by.setdefault((min(batch_size, shape[0]), *shape[1:]), []).append(i)
    return [ids[k : k + together] for ids in by.values() for k in range(0, len(ids), together)]


def _in_groups(jobs: Sequence[FitJob], batch_size: int, together: int,
               fit_group: Callable[[list[FitJob]], list[nn.Module]]) -> list[nn.Module]:
    out: list[Any] = [None] * len(jobs)
    for g in groups([np.shape(j.images) for j in jobs], batch_size, together):
        for i, model in zip(g, fit_group([jobs[i] for i in g]), strict=True):
            out[i] = model
    return out


def _val_score(st: Stacked, val: Any, pick: Callable[[Any], Tensor], batch_size: int,
               device: Any) -> Callable[[], Tensor] | None:
    """Per-model accuracy (M,) on the validation windows, as the sequential fits measure it."""
    if val is None or not len(val[1]):
        return None
    x = torch.as_tensor(np.asarray(val[0]), dtype=torch.float32).to(device)
    y = torch.as_tensor(np.asarray(val[1]), dtype=torch.int64)
    return lambda: (torch.cat([pick(o) for o in st.shared(x, batch_size)], dim=1).argmax(-1).cpu() == y) \
        .double().mean(1)


def _diverged(who: str) -> Callable[[int, int, float], Exception]:
    return lambda m, step, loss: DopplerDiffError(f"{who} (model {m + 1} of a group) diverged at step {step} "
                                                  f"(loss {loss}); lower the lr")


def fit_classifiers(jobs: Sequence[FitJob], num_classes: int, cfg: Any, *, steps: int, augment: Any = None,
                    val: Any = None, progress: bool = False, device: Any = "cpu",
                    together: int = 1) -> list[nn.Module]:
    """``fit_classifier`` of every job, ``together`` at a time (a ViT, whose attention draws dropout
    inside the model, is fitted one after another)."""
    if together <= 1 or cfg.kind != "cnn":
        return sequential(fit_classifier)(jobs, num_classes, cfg, steps=steps, augment=augment, val=val,
                                          progress=progress, device=device)
    return _in_groups(jobs, cfg.train.batch_size, together,
                      partial(_fit_encoder_group, num_classes=num_classes, cfg=cfg, steps=steps,
                              augment=augment, val=val, device=device))


def _fit_encoder_group(jobs: list[FitJob], *, num_classes: int, cfg: Any, steps: int, augment: Any,
                       val: Any, device: Any) -> list[nn.Module]:
    data = [checked_data(j.images, j.labels, num_classes, j.weights, "fit_classifier") for j in jobs]
    st = Stacked([new_classifier(cfg, num_classes, d[0], j.seed, j.init, device)
                  for d, j in zip(data, jobs, strict=True)], rules=RULES)
    gens = [torch.Generator().manual_seed(j.seed) for j in jobs]
    bs = min(cfg.train.batch_size, len(data[0][0]))
    batches = [Batches(len(d[0]), bs, g) for d, g in zip(data, gens, strict=True)]
    opt, sched = classifier_optimiser(list(st.params.values()), cfg.train, steps)
    targets: list[tuple[Tensor, Tensor | None, Any]] = []

    def batch(step: int) -> Tensor:
        xs = []
        targets.clear()
        for (x_all, y_all, w_all), b, g in zip(data, batches, gens, strict=True):
            idx = b.next()
            x, mix = augmented_batch(x_all[idx], y_all[idx], augment, g)
            xs.append(x)
            targets.append((y_all[idx].to(device), None if w_all is None else w_all[idx].to(device),
                            None if mix is None else (mix[0].to(device), mix[1])))
        return torch.stack(xs).to(device)

    def loss(out: tuple[Tensor, Tensor]) -> Tensor:
        emb, logits = out
        return torch.stack([loss_of_outputs(emb[m], logits[m], y, cfg, w, mix)[0]
                            for m, (y, w, mix) in enumerate(targets)])

    score = _val_score(st, val, lambda o: o[1], cfg.eval_batch_size, device)
    return train_stacked(st, steps, batch, loss, opt, sched, grad_clip=cfg.train.grad_clip, val_score=score,
                         every=max(steps // 10, 1), diverged=_diverged("fit_classifier"))


def fit_judges(jobs: Sequence[FitJob], num_classes: int, cfg: Any = None, *, steps: int, augment: Any = None,
               val: Any = None, progress: bool = False, device: Any = "cpu",
               channels: tuple[int, ...] = (16, 32, 64), together: int = 1) -> list[nn.Module]:
    """``judge.fit_for_experiment`` of every job, ``together`` at a time (``cfg``/``augment`` unused: the
    judge keeps its own recipe)."""
    if together <= 1:
        return sequential(fit_for_experiment)(jobs, num_classes, cfg, steps=steps, val=val, device=device,
                                              channels=channels)
    s = JudgeSettings(channels=tuple(channels), steps=steps)
    return _in_groups(jobs, s.batch_size, together,
                      partial(_fit_judge_group, num_classes=num_classes, s=s, val=val, device=device))


def _fit_judge_group(jobs: list[FitJob], *, num_classes: int, s: JudgeSettings, val: Any,
                     device: Any) -> list[nn.Module]:
    data = [checked_data(j.images, j.labels, num_classes, j.weights, "judge") for j in jobs]
    models, drop_gens = [], []
    for d, j in zip(data, jobs, strict=True):
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(j.seed)
            models.append(new_judge(d[0], num_classes, s, j.init, device))
            # fit_judge's dropout goes on drawing from the global stream its init left: the same, per model
            drop = torch.Generator()
            drop.set_state(torch.get_rng_state())
            drop_gens.append(drop)
    st = Stacked(models, drop_gens, RULES)
    gens = [torch.Generator().manual_seed(j.seed) for j in jobs]
    bs = min(s.batch_size, len(data[0][0]))
    batches = [Batches(len(d[0]), bs, g) for d, g in zip(data, gens, strict=True)]
    opt, sched = judge_optimiser(list(st.params.values()), s)
    targets: list[tuple[Tensor, Tensor | None]] = []

    def batch(step: int) -> Tensor:
        xs = []
        targets.clear()
        for (x_all, y_all, w_all), b, g in zip(data, batches, gens, strict=True):
            idx = b.next()
            xs.append(judge_batch(x_all[idx], g, True))
            targets.append((y_all[idx].to(device), None if w_all is None else w_all[idx].to(device)))
        return torch.stack(xs).to(device)

    def loss(logits: Tensor) -> Tensor:
        return torch.stack([weighted_cross_entropy(logits[m], y, w) for m, (y, w) in enumerate(targets)])

    score = _val_score(st, val, lambda o: o, 256, device)
    return train_stacked(st, s.steps, batch, loss, opt, sched, val_score=score,
                         every=max(s.steps // max(s.evals, 1), 1), diverged=_diverged("judge training"))
