"""The identity classifier shared by training and evaluation: its loss, in-memory fitting, prediction
and identity accuracy.

* ``fit_classifier(images, labels, num_classes, cfg, steps=, seed=, augment=, val=)``: the encoder's model
  and loss (cross-entropy + supervised contrastive) in a small in-memory loop (no files), deterministic per
  seed; used by experiments, evaluation and `train-encoder`'s building blocks.
* ``fit_steps``: that in-memory loop (loss -> NaN guard -> backward -> clip -> step -> model selection),
  shared with the independent judge (``evaluate.judge``) and the few-shot identity row (``train.identity``);
  ``Batches``: how those fits draw their batches.
* ``predict(encoder, images) -> (logits, embeddings)`` as numpy arrays.
* ``identity_accuracy(pred, labels, num_classes)``: overall and per-identity accuracy with a percentile
  bootstrap 95 % CI and the confusion matrix.

Both ``dopplerdiff.train`` and ``dopplerdiff.evaluate`` import this module; it imports neither.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from diffusers.optimization import get_scheduler
from torch import Tensor, nn
from tqdm.auto import tqdm

from dopplerdiff.config.data import AugmentConfig
from dopplerdiff.config.encoder import EncoderConfig
from dopplerdiff.data.transforms import augment_batch, mixup
from dopplerdiff.errors import DataError, DopplerDiffError
from dopplerdiff.models.encoder import SpectrogramEncoder, encoder_from_config


def weighted_mean(values: Tensor, weights: Tensor | None) -> Tensor:
    """Mean of per-sample ``values`` (B,) weighted by ``weights`` (B,) (None: the plain mean)."""
    if weights is None:
        return values.mean()
    w = weights.to(values.dtype)
    return (values * w).sum() / w.sum().clamp_min(torch.finfo(values.dtype).tiny)


def weighted_cross_entropy(logits: Tensor, labels: Tensor, weights: Tensor | None = None,
                           label_smoothing: float = 0.0) -> Tensor:
    """Cross-entropy with per-sample loss weights (e.g. synthetic windows down-weighted); None: plain mean."""
    ce = F.cross_entropy(logits.float(), labels, label_smoothing=label_smoothing, reduction="none")
    return weighted_mean(ce, weights)


def supcon_loss(emb: Tensor, labels: Tensor, temperature: float, weights: Tensor | None = None) -> Tensor:
    """Supervised contrastive loss (Khosla et al. 2020, L_out) on L2-normalised embeddings (B, D).

    Anchors without another sample of their class in the batch are skipped; 0 if there are none.
    ``weights`` (B,): each anchor's weight in the mean (None: equal).
    """
    b = emb.shape[0]
    sim = emb.float() @ emb.float().T / temperature
    eye = torch.eye(b, dtype=torch.bool, device=emb.device)
    sim = sim.masked_fill(eye, float("-inf"))
    log_prob = sim - torch.logsumexp(sim, dim=1, keepdim=True)
    pos = (labels[:, None] == labels[None, :]) & ~eye
    n_pos = pos.sum(1)
    has = n_pos > 0
    if not has.any():
        return emb.sum() * 0.0
    mean_log_prob = log_prob.masked_fill(~pos, 0.0).sum(1)[has] / n_pos[has]
    return -weighted_mean(mean_log_prob, None if weights is None else weights[has])


def encoder_loss(
    model: nn.Module, x: Tensor, y: Tensor, cfg: EncoderConfig, weights: Tensor | None = None,
    mix: tuple[Tensor, float] | None = None,
) -> tuple[Tensor, dict[str, float]]:
    """Cross-entropy (+ label smoothing) + ``supcon_weight`` x supervised contrastive; terms for logging.
    ``weights`` (B,): per-sample loss weights (None: equal). ``mix`` (second labels, lam) of a mixup batch:
    lam CE(y) + (1 - lam) CE(second); the contrastive term uses the dominant label ``y``."""
    emb, logits = model(x)
    return loss_of_outputs(emb, logits, y, cfg, weights, mix)


def loss_of_outputs(
    emb: Tensor, logits: Tensor, y: Tensor, cfg: EncoderConfig, weights: Tensor | None = None,
    mix: tuple[Tensor, float] | None = None,
) -> tuple[Tensor, dict[str, float]]:
    """``encoder_loss`` of a model's outputs (embeddings, logits) for one batch."""
    ce = weighted_cross_entropy(logits, y, weights, cfg.label_smoothing)
    if mix is not None:
        ce = mix[1] * ce + (1.0 - mix[1]) * weighted_cross_entropy(logits, mix[0], weights,
                                                                     cfg.label_smoothing)
    terms = {"ce": float(ce.detach()), "acc": float((logits.argmax(1) == y).float().mean())}
    loss = ce
    if cfg.supcon_weight > 0:
        sc = supcon_loss(emb, y, cfg.supcon_temperature, weights)
        loss = loss + cfg.supcon_weight * sc
        terms["supcon"] = float(sc.detach())
    return loss, terms


@torch.no_grad()
def predict(
    encoder: SpectrogramEncoder, images: np.ndarray | Tensor, batch_size: int = 256
) -> tuple[np.ndarray, np.ndarray]:
    """(logits (N, K), L2-normalised embeddings (N, D)) for images (N, C, H, W) in [-1, 1], eval mode."""
    was_training = encoder.training
    encoder.eval()
    t = torch.as_tensor(np.asarray(images) if not isinstance(images, Tensor) else images, dtype=torch.float32)
    dev = next(encoder.parameters()).device
    logits, embs = [], []
    try:
        for i in range(0, len(t), batch_size):
            e, lg = encoder(t[i : i + batch_size].to(dev))
            logits.append(lg.float().cpu())
            embs.append(e.float().cpu())
    finally:
        encoder.train(was_training)
    if not logits:
        k, d = encoder.config.num_classes, encoder.config.embed_dim
        return np.zeros((0, k), np.float32), np.zeros((0, d), np.float32)
    return torch.cat(logits).numpy(), torch.cat(embs).numpy()


def load_backbone(model: nn.Module, init: nn.Module | None) -> nn.Module:
    """Copy ``init``'s weights into ``model`` except its classification head (``head.*``) and any tensor of
    another shape: pre-training on other classes (simulated walkers), then fine-tuning. Returns ``model``."""
    if init is None:
        return model
    own = model.state_dict()
    take = {k: v for k, v in init.state_dict().items()
            if not k.startswith("head.") and k in own and own[k].shape == v.shape}
    if not take:
        raise DopplerDiffError("the pre-trained classifier shares no weights with the one to fine-tune")
    model.load_state_dict(take, strict=False)
    return model


def sample_weights(weights: np.ndarray | None, n: int, who: str) -> Tensor | None:
    """Per-image loss weights as a tensor (None stays None); DataError unless (n,), finite, >= 0, some > 0."""
    if weights is None:
        return None
    w = torch.as_tensor(np.asarray(weights), dtype=torch.float32)
    if w.shape != (n,) or not torch.isfinite(w).all() or (w < 0).any() or not (w > 0).any():
        raise DataError(f"{who}: weights must be ({n},) finite, >= 0 and not all 0, "
                        f"got shape {tuple(w.shape)}")
    return w


def accuracy_of(encoder: SpectrogramEncoder, images: np.ndarray, labels: np.ndarray, bs: int) -> float:
    logits, _ = predict(encoder, images, bs)
    return float((logits.argmax(1) == labels).mean()) if len(labels) else float("nan")


@dataclass
class FitJob:
    """One classifier to fit: training images (N, C, H, W) in [-1, 1] and labels, its seed, optional
    per-image loss weights and a pre-trained ``init`` (see ``fit_classifier``)."""

    images: np.ndarray
    labels: np.ndarray
    seed: int
    weights: np.ndarray | None = None
    init: nn.Module | None = None


class Batches:
    """Batch indices as every in-memory fit draws them: a fresh permutation from ``gen`` whenever fewer
    than a batch are left of the current one."""

    def __init__(self, n: int, batch_size: int, gen: torch.Generator):
        self.n, self.bs, self.gen = n, batch_size, gen
        self.order, self.pos = torch.randperm(n, generator=gen), 0

    def next(self) -> Tensor:
        if self.pos + self.bs > len(self.order):
            self.order, self.pos = torch.randperm(self.n, generator=self.gen), 0
        idx = self.order[self.pos : self.pos + self.bs]
        self.pos += self.bs
        return idx


def checked_data(images: Any, labels: Any, num_classes: int, weights: np.ndarray | None,
                 who: str) -> tuple[Tensor, Tensor, Tensor | None]:
    """(images, labels, weights) as tensors; DataError unless (N, C, H, W) with N >= 2 matching labels in
    [0, num_classes)."""
    x = torch.as_tensor(np.asarray(images), dtype=torch.float32)
    y = torch.as_tensor(np.asarray(labels), dtype=torch.int64)
    if x.ndim != 4 or len(x) != len(y):
        raise DataError(f"{who}: images must be (N, C, H, W) matching labels, got {tuple(x.shape)}")
    if len(x) < 2:
        raise DataError(f"{who} needs at least 2 training images, got {len(x)}")
    if y.min() < 0 or y.max() >= num_classes:
        raise DataError(f"{who}: labels must be in [0, {num_classes - 1}]")
    return x, y, sample_weights(weights, len(y), who)


def new_classifier(cfg: EncoderConfig, num_classes: int, x: Tensor, seed: int, init: nn.Module | None,
                    device: str | torch.device, identities: list[str] | None = None,
                    colormap: str = "jet") -> SpectrogramEncoder:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = encoder_from_config(
            cfg, num_classes=num_classes, image_size=int(x.shape[-1]), in_channels=int(x.shape[1]),
            identities=identities, colormap=colormap,
        )
    return load_backbone(model, init).to(device)


def classifier_optimiser(params: Any, tc: Any, steps: int) -> tuple[torch.optim.Optimizer, Any]:
    opt = torch.optim.AdamW(params, lr=tc.lr, weight_decay=tc.weight_decay)
    sched_name = "constant_with_warmup" if tc.lr_schedule == "constant" else tc.lr_schedule
    return opt, get_scheduler(sched_name, opt, num_warmup_steps=tc.warmup_steps, num_training_steps=steps)


def augmented_batch(x: Tensor, y: Tensor, augment: AugmentConfig | None,
               gen: torch.Generator) -> tuple[Tensor, tuple[Tensor, float] | None]:
    """The batch after the spectrogram augmentations and mixup (its second labels and lam, else None)."""
    if augment is None:
        return x, None
    x = augment_batch(x, augment, generator=gen)
    if augment.mixup <= 0:
        return x, None
    x, y_b, lam = mixup(x, y, augment.mixup, gen)
    return x, (y_b, lam)


def _diverged(step: int, loss: float) -> DopplerDiffError:
    return DopplerDiffError(f"fit_classifier diverged at step {step} (loss {loss}); lower the lr")


def fit_steps(steps: int, loss_at: Callable[[int], Tensor], opt: torch.optim.Optimizer, sched: Any = None, *,
              grad_clip: float = 0.0, diverged: Callable[[int, float], Exception] | None = None,
              model: nn.Module | None = None, score: Callable[[], float] | None = None, every: int = 1,
              progress: bool = False, desc: str = "fit") -> list[float]:
    """The loop of every in-memory fit; returns the per-step losses.

    Each step: ``loss_at(step)`` (draw the batch, compute its loss), a non-finite loss refused with
    ``diverged(step + 1, loss)`` (None: not checked), zero_grad -> backward -> clip the optimised parameters'
    norm to ``grad_clip`` (0: no clipping) -> optimiser step -> ``sched`` step. With ``score`` (a validation
    accuracy of ``model``), it is called every ``every`` steps and after the last; ``model``'s best weights
    are loaded at the end (strictly better only: ties keep the earlier, less fitted weights)."""
    best, best_state, losses = -1.0, None, []
    params = [p for group in opt.param_groups for p in group["params"]]
    for step in tqdm(range(steps), desc=desc, disable=not progress, dynamic_ncols=True):
        loss = loss_at(step)  # batch -> loss
        losses.append(loss.item())
        if diverged is not None and not math.isfinite(losses[-1]):  # NaN guard
            raise diverged(step + 1, losses[-1])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if grad_clip > 0:
            nn.utils.clip_grad_norm_(params, grad_clip)
        opt.step()
        if sched is not None:
            sched.step()
        if score is not None and ((step + 1) % every == 0 or step + 1 == steps):  # model selection
            acc = score()
            if acc > best:
                best, best_state = acc, copy.deepcopy(model.state_dict())
    if best_state is not None:
        model.load_state_dict(best_state)
    return losses


def fit_classifier(
    images: np.ndarray, labels: np.ndarray, num_classes: int, cfg: EncoderConfig, *, steps: int, seed: int,
    augment: AugmentConfig | None = None, val: tuple[np.ndarray, np.ndarray] | None = None,
    progress: bool = False, identities: list[str] | None = None, colormap: str = "jet",
    device: str | torch.device = "cpu", init: nn.Module | None = None, weights: np.ndarray | None = None,
) -> SpectrogramEncoder:
    """Train an encoder in memory (no files) on images (N, C, H, W) in [-1, 1]; returns it in eval mode.

    ``init``: a classifier of the same architecture (e.g. pre-trained on simulated walkers) whose weights,
    except the head, start the training. ``weights`` (N,): per-image loss weights (``sample_weights``).

    Uses ``cfg.train`` for batch size, lr, weight decay, warmup, schedule and clipping (``steps``
    overrides ``cfg.train.steps``). With ``val``, accuracy is measured ~10 times and the best weights are
    returned (model selection on validation only). Deterministic for a given ``seed``.
    """
    x_all, y_all, w_all = checked_data(images, labels, num_classes, weights, "fit_classifier")
    tc = cfg.train
    gen = torch.Generator().manual_seed(seed)
    model = new_classifier(cfg, num_classes, x_all, seed, init, device, identities, colormap)
    opt, sched = classifier_optimiser(model.parameters(), tc, steps)
    batches = Batches(len(x_all), min(tc.batch_size, len(x_all)), gen)

    def loss_at(step: int) -> Tensor:
        idx = batches.next()
        x, mix = augmented_batch(x_all[idx], y_all[idx], augment, gen)
        mix = None if mix is None else (mix[0].to(device), mix[1])
        w = None if w_all is None else w_all[idx].to(device)
        return encoder_loss(model, x.to(device), y_all[idx].to(device), cfg, w, mix)[0]

    score = None if val is None else (lambda: accuracy_of(model, val[0], np.asarray(val[1]),
                                                          cfg.eval_batch_size))
    model.train()
    fit_steps(steps, loss_at, opt, sched, grad_clip=tc.grad_clip, diverged=_diverged, model=model,
              score=score, every=max(steps // 10, 1), progress=progress, desc="fit encoder")
    return model.eval()


def identity_accuracy(
    pred: Sequence[int] | np.ndarray, labels: Sequence[int] | np.ndarray, num_classes: int,
    bootstrap: int = 1000, seed: int = 0,
) -> dict[str, Any]:
    """Identity accuracy with a percentile bootstrap CI.

    ``pred`` is (N,) predicted labels or (N, K) logits/scores (argmax is taken). Returns ``overall``,
    ``ci95`` [lo, hi] (resampling samples with replacement ``bootstrap`` times), ``per_identity`` (accuracy
    per class, None where a class has no samples), ``per_identity_n``, ``per_identity_ci95``,
    ``confusion`` (K x K, rows = true, columns = predicted), ``n`` and ``chance`` = 1/K.
    """
    p = np.asarray(pred)
    if p.ndim == 2:
        p = p.argmax(axis=1)
    p = p.astype(np.int64)
    y = np.asarray(labels).astype(np.int64)
    if p.shape != y.shape or y.ndim != 1:
        raise DopplerDiffError(f"identity_accuracy: predictions {p.shape} and labels {y.shape} differ")
    if len(y) == 0:
        raise DopplerDiffError("identity_accuracy needs at least one sample")
    if y.min() < 0 or y.max() >= num_classes or p.min() < 0 or p.max() >= num_classes:
        raise DopplerDiffError(f"identity_accuracy: labels must be in [0, {num_classes - 1}]")
    correct = (p == y).astype(np.float64)
    rng = np.random.default_rng(seed)
    ci = [float(correct.mean())] * 2
    per_ci: list[list[float] | None] = [None] * num_classes
    if bootstrap > 0:
        idx = rng.integers(0, len(y), size=(bootstrap, len(y)))
        ci = [float(v) for v in np.percentile(correct[idx].mean(axis=1), [2.5, 97.5])]
    confusion = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(confusion, (y, p), 1)
    per: list[float | None] = []
    for c in range(num_classes):
        sel = correct[y == c]
        per.append(float(sel.mean()) if len(sel) else None)
        if bootstrap > 0 and len(sel):
            boot = sel[rng.integers(0, len(sel), size=(bootstrap, len(sel)))].mean(axis=1)
            per_ci[c] = [float(v) for v in np.percentile(boot, [2.5, 97.5])]
    return {
        "overall": float(correct.mean()),
        "ci95": ci,
        "per_identity": per,
        "per_identity_n": [int((y == c).sum()) for c in range(num_classes)],
        "per_identity_ci95": per_ci,
        "confusion": confusion.tolist(),
        "n": int(len(y)),
        "chance": 1.0 / num_classes,
    }
