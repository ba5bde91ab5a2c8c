"""Training the spectrogram encoder: cross-entropy + supervised contrastive loss on real TRAIN windows.

* ``train_encoder(data, out, cfg, ...)``: the ``train-encoder`` command. Uses the leak-free split of the
  run (``RUN/data.json`` via ``data.run_data.prepare_run_data`` when ``out`` is ``RUN/encoder``; otherwise
  the split is recorded in ``out/data.json``), the shared accelerate loop (checkpoints, resume) in
  ``RUN/train/encoder`` (``out.parent/train/<out.name>``), selects the weights with the best
  validation accuracy and writes ``out`` (``save_pretrained``) + ``metrics.json`` (val/test accuracy with
  bootstrap CIs, per-identity accuracy, confusion) + ``config.yaml`` + ``manifest.json``, atomically.
* ``fit_classifier(images, labels, num_classes, cfg, steps=, seed=, augment=, val=)``: the same model and
  loss in a small in-memory loop for experiments (no files), deterministic per seed.
* ``predict(encoder, images) -> (logits, embeddings)`` as numpy arrays.
"""

from __future__ import annotations

import copy
import logging
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from diffusers.optimization import get_scheduler
from torch import Tensor, nn
from tqdm.auto import tqdm

from dopplerdiff.config import Config
from dopplerdiff.config.data import AugmentConfig
from dopplerdiff.config.encoder import EncoderConfig
from dopplerdiff.data.augment import augment_batch
from dopplerdiff.errors import DataError, DopplerDiffError
from dopplerdiff.models.encoder import SpectrogramEncoder, encoder_from_config
from dopplerdiff.train.loop import TrainStage
from dopplerdiff.utils.io import atomic_dir, read_json_if_exists, write_json, write_manifest

log = logging.getLogger(__name__)


def supcon_loss(emb: Tensor, labels: Tensor, temperature: float) -> Tensor:
    """Supervised contrastive loss (Khosla et al. 2020, L_out) on L2-normalised embeddings (B, D).

    Anchors without another sample of their class in the batch are skipped; 0 if there are none.
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
    return -mean_log_prob.mean()


def encoder_loss(
    model: nn.Module, x: Tensor, y: Tensor, cfg: EncoderConfig
) -> tuple[Tensor, dict[str, float]]:
    """Cross-entropy (+ label smoothing) + ``supcon_weight`` x supervised contrastive; terms for logging."""
    emb, logits = model(x)
    ce = F.cross_entropy(logits.float(), y, label_smoothing=cfg.label_smoothing)
    terms = {"ce": float(ce.detach()), "acc": float((logits.argmax(1) == y).float().mean())}
    loss = ce
    if cfg.supcon_weight > 0:
        sc = supcon_loss(emb, y, cfg.supcon_temperature)
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


def _accuracy(encoder: SpectrogramEncoder, images: np.ndarray, labels: np.ndarray, bs: int) -> float:
    logits, _ = predict(encoder, images, bs)
    return float((logits.argmax(1) == labels).mean()) if len(labels) else float("nan")


def fit_classifier(
    images: np.ndarray, labels: np.ndarray, num_classes: int, cfg: EncoderConfig, *, steps: int, seed: int,
    augment: AugmentConfig | None = None, val: tuple[np.ndarray, np.ndarray] | None = None,
    progress: bool = False, identities: list[str] | None = None, colormap: str = "jet",
    device: str | torch.device = "cpu",
) -> SpectrogramEncoder:
    """Train an encoder in memory (no files) on images (N, C, H, W) in [-1, 1]; returns it in eval mode.

    Uses ``cfg.train`` for batch size, lr, weight decay, warmup, schedule and clipping (``steps``
    overrides ``cfg.train.steps``). With ``val``, accuracy is measured ~10 times and the best weights are
    returned (model selection on validation only). Deterministic for a given ``seed``.
    """
    x_all = torch.as_tensor(np.asarray(images), dtype=torch.float32)
    y_all = torch.as_tensor(np.asarray(labels), dtype=torch.int64)
    if x_all.ndim != 4 or len(x_all) != len(y_all):
        raise DataError(
            f"fit_classifier: images must be (N, C, H, W) matching labels, got {tuple(x_all.shape)}"
        )
    if len(x_all) < 2:
        raise DataError(f"fit_classifier needs at least 2 training images, got {len(x_all)}")
    if y_all.min() < 0 or y_all.max() >= num_classes:
        raise DataError(f"fit_classifier: labels must be in [0, {num_classes - 1}]")
    tc = cfg.train
    gen = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = encoder_from_config(
            cfg, num_classes=num_classes, image_size=int(x_all.shape[-1]), in_channels=int(x_all.shape[1]),
            identities=identities, colormap=colormap,
        ).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=tc.lr, weight_decay=tc.weight_decay)
    sched_name = "constant_with_warmup" if tc.lr_schedule == "constant" else tc.lr_schedule
    sched = get_scheduler(sched_name, opt, num_warmup_steps=tc.warmup_steps, num_training_steps=steps)
    bs = min(tc.batch_size, len(x_all))
    eval_every = max(steps // 10, 1)
    best_acc, best_state = -1.0, None
    order, pos = torch.randperm(len(x_all), generator=gen), 0
    model.train()
    for step in tqdm(range(steps), desc="fit encoder", disable=not progress, dynamic_ncols=True):
        if pos + bs > len(order):
            order, pos = torch.randperm(len(x_all), generator=gen), 0
        idx = order[pos : pos + bs]
        pos += bs
        x, y = x_all[idx], y_all[idx]
        if augment is not None:
            x = augment_batch(x, augment, generator=gen)
        loss, _ = encoder_loss(model, x.to(device), y.to(device), cfg)
        if not torch.isfinite(loss):
            raise DopplerDiffError(
                f"fit_classifier diverged at step {step + 1} (loss {loss.item()}); lower the lr"
            )
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if tc.grad_clip > 0:
            nn.utils.clip_grad_norm_(model.parameters(), tc.grad_clip)
        opt.step()
        sched.step()
        if val is not None and ((step + 1) % eval_every == 0 or step + 1 == steps):
            acc = _accuracy(model, val[0], np.asarray(val[1]), cfg.eval_batch_size)
            if acc > best_acc:  # strictly better: ties keep the earlier, less fitted weights
                best_acc, best_state = acc, copy.deepcopy(model.state_dict())
    if best_state is not None:
        model.load_state_dict(best_state)
    return model.eval()


def evaluate_encoder(
    encoder: SpectrogramEncoder, images: np.ndarray, labels: np.ndarray, num_classes: int,
    bootstrap: int = 1000, seed: int = 0, batch_size: int = 256,
) -> dict[str, Any]:
    """Identity accuracy (bootstrap CI, per identity, confusion) of ``encoder`` on a labelled set."""
    from dopplerdiff.evaluate.metrics import identity_accuracy

    if len(labels) == 0:
        return {"overall": None, "n": 0}
    logits, _ = predict(encoder, images, batch_size)
    return identity_accuracy(logits, labels, num_classes, bootstrap=bootstrap, seed=seed)


class EncoderStage(TrainStage):
    """The encoder's plug-in for the shared loop: CE + SupCon on augmented batches, val accuracy."""

    def __init__(
        self, model: SpectrogramEncoder, cfg: EncoderConfig, augment: AugmentConfig | None,
        val: tuple[np.ndarray, np.ndarray], work_dir: Path,
    ) -> None:
        self.net, self.cfg, self.augment, self.val, self.work_dir = model, cfg, augment, val, work_dir
        self.best_path = work_dir / "best"
        self.best_acc = -1.0

    def restore_best(self, resumed_step: int | None) -> None:
        """Keep the best-so-far weights of the trajectory being resumed; forget those of any other run."""
        best = _read_json(self.best_path / "best.json")
        if best is not None and resumed_step is not None and int(best["step"]) <= resumed_step:
            self.best_acc = float(best["val_accuracy"])
        else:
            shutil.rmtree(self.best_path, ignore_errors=True)
            self.best_acc = -1.0

    def modules(self) -> dict[str, nn.Module]:
        return {"encoder": self.net}

    def loss(self, batch: Any, step: int) -> tuple[Tensor, dict[str, float]]:
        x, y = batch["pixel_values"], batch["labels"]
        if self.augment is not None:
            # global RNG: restored by the loop on resume, so augmentations replay identically
            x = augment_batch(x, self.augment)
        return encoder_loss(self.model("encoder"), x, y, self.cfg)

    def validate(self, step: int, out_dir: Path) -> dict[str, float]:
        model = self.unwrapped("encoder")
        if len(self.val[1]) == 0:
            return {}
        acc = _accuracy(model, self.val[0], self.val[1], self.cfg.eval_batch_size)
        if acc > self.best_acc:  # model selection on val; kept on disk so a resumed run remembers it
            self.best_acc = acc
            tmp = self.work_dir / ".best.tmp"
            shutil.rmtree(tmp, ignore_errors=True)
            model.save_pretrained(tmp)
            write_json(tmp / "best.json", {"val_accuracy": acc, "step": step})
            shutil.rmtree(self.best_path, ignore_errors=True)
            tmp.rename(self.best_path)
        return {"val_accuracy": acc, "best_val_accuracy": self.best_acc}


def _read_json(path: Path) -> dict[str, Any] | None:
    return read_json_if_exists(path)  # a damaged file is an error naming it, not None


def _load_data(data: Path | None, out: Path, work_dir: Path, cfg: Config, progress: bool) -> tuple[Any, dict]:
    """Data + split from RUN/data.json when ``out`` is RUN/encoder, else recorded in the work dir.

    Either way a resumed run reuses exactly the split it started with.
    """
    from dopplerdiff.data.run_data import prepare_run_data

    run = out.parent
    if out.name == "encoder" or (run / "data.json").is_file():
        return prepare_run_data(run, data, cfg.data, progress=progress)
    return prepare_run_data(work_dir, data, cfg.data, progress=progress)


def train_encoder(
    data: Path | None, out: Path, cfg: Config, *, resume: str | None = None, progress: bool = True,
) -> dict[str, Any]:
    """The ``train-encoder`` command (see the module docstring); returns the metrics written."""
    from dopplerdiff.data.dataset import ImageDataset
    from dopplerdiff.train.loop import resolve_resume, train_loop

    out = Path(out)
    if out.exists() and any(out.iterdir()):
        raise DopplerDiffError(f"output '{out}' already exists; choose another path or remove it")
    ecfg = cfg.encoder
    work_dir = out.parent / "train" / out.name
    ds, split = _load_data(data, out, work_dir, cfg, progress)
    k = len(ds.identities)
    if k < 2:
        raise DataError(f"identity classification needs at least 2 identities; '{data}' has {k}")
    tr, va, te = (split[p] for p in ("train", "val", "test"))
    if len(tr) < ecfg.train.batch_size:
        raise DataError(
            f"the training split has {len(tr)} windows, fewer than encoder.train.batch_size="
            f"{ecfg.train.batch_size}; lower it (e.g. encoder.train.batch_size={max(len(tr) // 2, 1)})"
        )
    torch.manual_seed(ecfg.train.seed)
    model = encoder_from_config(
        ecfg, num_classes=k, image_size=cfg.data.size, in_channels=cfg.data.channels,
        identities=list(ds.identities), colormap=cfg.data.colormap,
    )
    augment = cfg.data.augment if ecfg.augment else None
    val = (ds.images[va], ds.labels[va])
    stage = EncoderStage(model, ecfg, augment, val, work_dir)
    ckpt = resolve_resume(resume, work_dir)
    stage.restore_best(_read_json(ckpt / "loop_state.json")["step"] if ckpt is not None else None)
    t0 = time.perf_counter()
    result = train_loop(
        stage, ImageDataset(ds, tr), ecfg.train, work_dir, resume=resume, progress=progress, desc="encoder"
    )
    train_seconds = time.perf_counter() - t0
    acc = result.accelerator
    if acc is not None and not acc.is_main_process:
        return {}
    final = result.modules["encoder"].eval()
    best = _read_json(stage.best_path / "best.json")
    selected = SpectrogramEncoder.from_pretrained(stage.best_path).eval() if best else final
    bs, boot = ecfg.eval_batch_size, cfg.evaluate.bootstrap
    metrics: dict[str, Any] = {
        "identities": list(ds.identities),
        "selected_step": best["step"] if best else result.step,
        "steps": result.step,
        "train_seconds": train_seconds,
        "split_sizes": {p: int(len(split[p])) for p in ("train", "val", "test")},
        "train_accuracy": _accuracy(selected, ds.images[tr], ds.labels[tr], bs),
        "val": evaluate_encoder(selected, ds.images[va], ds.labels[va], k, boot, cfg.seed, bs),
        "test": evaluate_encoder(selected, ds.images[te], ds.labels[te], k, boot, cfg.seed, bs),
        "chance": 1.0 / k,
        "kind": ecfg.kind,
        "num_parameters": int(sum(p.numel() for p in selected.parameters())),
    }
    metrics["val_accuracy"] = metrics["val"].get("overall")
    metrics["test_accuracy"] = metrics["test"].get("overall")
    with atomic_dir(out) as tmp:
        selected.save_pretrained(tmp)
        write_json(tmp / "metrics.json", metrics)
        cfg.save(tmp / "config.yaml")
        if (work_dir / "data.json").is_file():  # the split used, next to the standalone encoder
            shutil.copy2(work_dir / "data.json", tmp / "data.json")
        write_manifest(
            tmp, stage="encoder", data_root=str(ds.meta.get("root", data)), seed=ecfg.train.seed,
            identities=list(ds.identities),
            checkpoints=str(work_dir), selected_step=metrics["selected_step"],
        )
    write_json(work_dir / "metrics.json", metrics)
    return metrics
