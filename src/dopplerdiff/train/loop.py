"""The one accelerate training loop shared by every trained stage.

Contract (stable)
-----------------
A stage subclasses :class:`TrainStage` and implements

* ``modules() -> dict[str, nn.Module]`` — modules trained by the main AdamW optimiser (``cfg.lr``,
  ``cfg.weight_decay``, warmup + ``cfg.lr_schedule``), EMA'd when ``cfg.ema`` and checkpointed.
  Called once, before ``accelerator.prepare``.
* ``loss(batch, step) -> (loss, terms)`` — scalar loss of one micro-batch (already on the device,
  run under ``accelerator.autocast()``) and a dict of floats to log. ``step`` = optimiser steps done.
* ``validate(step, out_dir) -> dict[str, float]`` — main process only, under ``torch.no_grad()``, modules
  in eval mode, EMA weights swapped in (store/copy_to/restore) and global RNG state isolated (so validation
  never changes the training trajectory). ``out_dir`` = ``work_dir/val/step-NNNNNN`` (created).

Optional hooks (defaults do nothing):

* ``aux_modules()`` + ``aux_loss(batch, step) -> (loss | None, terms)`` — a second module set with its own
  optimiser (``build_aux_optimizer``; default AdamW at ``cfg.lr``, constant LR), not EMA'd, e.g. a GAN
  discriminator. ``aux_loss`` runs after the main loss on the same micro-batch; return ``None`` to skip.
  To keep aux gradients out of the main loss, use the aux module through ``self.unwrapped(name)`` inside
  ``with frozen(module):`` (gradients then flow only to the inputs).

Inside hooks, ``self.accelerator``, ``self.device``, ``self.model(name)`` (the prepared, possibly
DDP-wrapped module: call it for forward passes that must sync gradients) and ``self.unwrapped(name)``
are available.

The loop
--------
``_train_steps`` is the whole training step, one commented loop in the order of diffusers' example scripts:
batch -> accumulate (``grad_accum`` micro-batches) -> loss -> backward -> clip -> optimiser and LR step ->
EMA -> log / checkpoint / validate. The non-obvious parts live beside it: resuming (``_start``,
``resume.py``, ``checkpoints.py``), the NaN guard (``guards.py``), checkpoint writing and rotation
(``checkpoints.py``), validation with EMA weights and isolated RNG (``validation.py``), the data order
(``batching.py``) and the auxiliary optimiser's step (``_aux_step``).

Semantics
---------
* ``cfg.batch_size`` is the GLOBAL micro-batch, split evenly over processes (so 1 and 2 processes follow
  the same optimisation); one optimiser step = ``cfg.grad_accum`` micro-batches (``accelerator.accumulate``).
* Data: an endless stream of epochs; epoch ``e`` is a permutation seeded by ``(cfg.seed, e)``, incomplete
  last batches are dropped. Resuming at step ``s`` skips exactly ``s * grad_accum`` micro-batches, so
  data order after resume equals an uninterrupted run. (Exact identity also needs randomness to come from
  the global RNGs in the main process, i.e. ``num_workers=0`` when the dataset itself is random.)
* Checkpoints: ``work_dir/checkpoint-N`` (``accelerator.save_state``: models, optimisers, LR scheduler,
  EMA, RNG states, plus ``loop_state.json``) every ``cfg.checkpoint_every`` steps and at the end, written
  atomically; only the newest ``cfg.checkpoints_total_limit`` are kept (<= 0 keeps all).
* ``resume``: ``"latest"`` (newest checkpoint in ``work_dir``; a fresh start, with a warning, when there is
  none) or a checkpoint path. Each checkpoint records ``record`` (the stage and its config, default: the
  stage's class and ``cfg``); a checkpoint of another stage or config is refused (``train.resume``).
  ``log.jsonl`` lines and checkpoints after the resumed step are dropped. A resumed loop with no step left
  reports the last logged loss and validation.
* A non-finite loss or gradient norm (on any process) stops training with :class:`DopplerDiffError`
  naming the step and the last good checkpoint; nothing is stepped or saved for that step.
* ``log.jsonl`` (main process): one JSON line per ``cfg.log_every`` steps with step, epoch, loss (mean over
  processes and micro-batches), the stage's terms (main process), lr, grad_norm, step_time; validation
  lines have ``"kind": "val"``.
* Returns :class:`LoopResult`; ``result.modules`` are the unwrapped modules with the EMA weights copied in
  (when ``cfg.ema``), ready for ``save_pretrained``.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator
from accelerate.state import AcceleratorState, is_initialized
from accelerate.utils import send_to_device, set_seed
from diffusers.optimization import get_scheduler
from diffusers.training_utils import EMAModel
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from dopplerdiff.config.loop import LoopConfig
from dopplerdiff.errors import ConfigError, DataError, DopplerDiffError
from dopplerdiff.train.batching import EpochBatchSampler, unpack_data
from dopplerdiff.train.checkpoints import (  # noqa: F401 - re-exported: the loop's public helpers
    CHECKPOINT_RE,
    append_jsonl,
    find_checkpoints,
    load_checkpoint,
    resolve_resume,
    save_checkpoint,
    truncate_log,
)
from dopplerdiff.train.guards import checked, clip_grads
from dopplerdiff.train.resume import check_record, drop_newer, logged_result, stage_record
from dopplerdiff.train.tracking import accelerator_kwargs, end_tracking, log_scalars, start_tracking
from dopplerdiff.train.validation import run_validation
from dopplerdiff.utils.io import run_lock

log = logging.getLogger(__name__)
LOG_FILE = "log.jsonl"


class TrainStage:
    """Base class of a trained stage; see the module docstring for the contract."""

    accelerator: Accelerator
    _prepared: dict[str, nn.Module]

    def modules(self) -> dict[str, nn.Module]:
        raise NotImplementedError

    def loss(self, batch: Any, step: int) -> tuple[Tensor, dict[str, float]]:
        raise NotImplementedError

    def validate(self, step: int, out_dir: Path) -> dict[str, float]:
        return {}

    def aux_modules(self) -> dict[str, nn.Module]:
        return {}

    def aux_loss(self, batch: Any, step: int) -> tuple[Tensor | None, dict[str, float]]:
        return None, {}

    def build_aux_optimizer(self, params: list[nn.Parameter], cfg: LoopConfig) -> torch.optim.Optimizer:
        return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)

    # -- helpers available once the loop has bound the stage --
    def model(self, name: str) -> nn.Module:
        """The prepared (possibly DDP-wrapped) module ``name``."""
        return self._prepared[name]

    def unwrapped(self, name: str) -> nn.Module:
        """The plain module ``name`` (no DDP / compile wrapper)."""
        return self.accelerator.unwrap_model(self._prepared[name])

    @property
    def device(self) -> torch.device:
        return self.accelerator.device


@contextlib.contextmanager
def frozen(module: nn.Module) -> Iterator[nn.Module]:
    """Temporarily set ``requires_grad=False`` on a module's parameters (gradients reach inputs only)."""
    flags = [(p, p.requires_grad) for p in module.parameters()]
    for p, _ in flags:
        p.requires_grad_(False)
    try:
        yield module
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)


@dataclass
class LoopResult:
    step: int
    history: list[dict[str, float]] = field(default_factory=list)  # one entry per step run in this call
    val: dict[str, float] = field(default_factory=dict)  # last validation metrics
    checkpoint: Path | None = None  # last checkpoint written or loaded
    modules: dict[str, nn.Module] = field(default_factory=dict)  # unwrapped, EMA weights if cfg.ema
    accelerator: Accelerator | None = None


def make_accelerator(cfg: LoopConfig, work_dir: Path | None = None) -> Accelerator:
    """An Accelerator for ``cfg`` (mixed precision, gradient accumulation, per-step LR scheduler), with
    the trackers of ``cfg.report_to`` logging under ``work_dir``'s run (see ``train.tracking``)."""
    if cfg.mixed_precision == "fp16" and not torch.cuda.is_available():
        raise ConfigError("mixed_precision 'fp16' needs a CUDA GPU; use 'bf16' or 'no' on CPU")
    # accelerate's state is a process-wide singleton whose precision cannot change once set.
    if is_initialized() and AcceleratorState().mixed_precision != cfg.mixed_precision:
        raise ConfigError(
            f"mixed_precision '{cfg.mixed_precision}' differs from "
            f"'{AcceleratorState().mixed_precision}' "
            "of a stage trained earlier in this process; use one precision for all stages of a run "
            "or train the stages with separate commands"
        )
    return Accelerator(
        mixed_precision=cfg.mixed_precision,
        gradient_accumulation_steps=cfg.grad_accum,
        step_scheduler_with_optimizer=False,
        # Without a GPU, cpu=True is what makes torchrun launches use the gloo MULTI_CPU backend.
        cpu=not torch.cuda.is_available(),
        **(accelerator_kwargs(cfg, work_dir) if work_dir is not None else {}),
    )


def _params(mods: dict[str, nn.Module]) -> list[nn.Parameter]:
    return [p for m in mods.values() for p in m.parameters() if p.requires_grad]


@dataclass
class _Setup:
    """The prepared optimisation objects of one ``train_loop`` call."""

    acc: Accelerator
    cfg: LoopConfig
    main: list[str]
    aux: list[str]
    opt: Any
    sched: Any
    aux_opt: Any
    emas: dict[str, EMAModel]
    record: dict[str, Any] = field(default_factory=dict)


def _check_sizes(acc: Accelerator, cfg: LoopConfig, n: int) -> None:
    if acc.gradient_accumulation_steps != cfg.grad_accum:
        raise ConfigError(
            f"accelerator uses gradient_accumulation_steps={acc.gradient_accumulation_steps}, "
            f"config grad_accum={cfg.grad_accum}"
        )
    if cfg.batch_size % acc.num_processes:
        raise ConfigError(
            f"batch_size {cfg.batch_size} is not divisible by the {acc.num_processes} processes"
        )
    if n < cfg.batch_size:
        raise DataError(f"the training set has {n} samples, fewer than batch_size={cfg.batch_size}")


def _setup(stage: TrainStage, cfg: LoopConfig, acc: Accelerator) -> _Setup:
    """Build optimisers and LR schedule, ``accelerator.prepare`` everything, bind the stage, make EMAs."""
    mods, aux = stage.modules(), stage.aux_modules()
    if not mods:
        raise DopplerDiffError("the training stage has no modules to train")
    opt = torch.optim.AdamW(_params(mods), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched_name = "constant_with_warmup" if cfg.lr_schedule == "constant" else cfg.lr_schedule
    sched = get_scheduler(sched_name, opt, num_warmup_steps=cfg.warmup_steps, num_training_steps=cfg.steps)
    aux_opt = stage.build_aux_optimizer(_params(aux), cfg) if aux else None
    objs = [*mods.values(), *aux.values(), opt, sched] + ([aux_opt] if aux_opt is not None else [])
    prepared = acc.prepare(*objs)
    names = [*mods, *aux]
    stage.accelerator = acc
    stage._prepared = dict(zip(names, prepared[: len(names)], strict=True))
    opt, sched = prepared[len(names)], prepared[len(names) + 1]
    aux_opt = prepared[len(names) + 2] if aux_opt is not None else None
    # EMA state is checkpointed by the project (safetensors + JSON), never through accelerate's pickles.
    emas = {k: EMAModel(stage.unwrapped(k).parameters(), decay=cfg.ema_decay) for k in mods if cfg.ema}
    return _Setup(acc, cfg, list(mods), list(aux), opt, sched, aux_opt, emas)


def _start(s: _Setup, resume: str | Path | None, work_dir: Path, log_path: Path) -> tuple[int, Path | None]:
    """Load the checkpoint to resume from (or seed a fresh start); align log.jsonl with it."""
    ckpt = resolve_resume(resume, work_dir)
    start = 0
    if ckpt is not None:
        check_record(ckpt, s.record)
        start = load_checkpoint(s.acc, ckpt, s.emas)
        log.info("resumed from %s (step %d)", ckpt, start)
    else:
        if resume is not None:
            log.warning("--resume %s: no checkpoint in '%s'; training starts from step 0", resume, work_dir)
        set_seed(s.cfg.seed, device_specific=True)
    if s.acc.is_main_process:
        if ckpt is None:
            log_path.unlink(missing_ok=True)
        else:
            truncate_log(log_path, start)
            drop_newer(work_dir, start)
    s.acc.wait_for_everyone()
    return start, ckpt


def _loader(dataset: Dataset, collate: Any, cfg: LoopConfig, acc: Accelerator, start: int) -> tuple:
    sampler = EpochBatchSampler(
        len(dataset), cfg.batch_size, acc.process_index, acc.num_processes, cfg.seed,  # type: ignore[arg-type]
        start_micro=start * cfg.grad_accum,
    )
    loader = DataLoader(
        dataset,
        batch_sampler=sampler,  # type: ignore[arg-type]
        collate_fn=collate,
        num_workers=cfg.num_workers,
        # An explicit generator keeps DataLoader setup from consuming the global RNG.
        generator=torch.Generator().manual_seed(cfg.seed),
    )
    return sampler, iter(loader)


def _finish(stage: TrainStage, s: _Setup, result: LoopResult) -> LoopResult:
    """Copy the EMA weights in for export and collect the unwrapped modules."""
    for k in s.main:
        if k in s.emas:
            s.emas[k].copy_to(stage.unwrapped(k).parameters())
        result.modules[k] = stage.unwrapped(k)
    for k in s.aux:
        result.modules[k] = stage.unwrapped(k)
    s.acc.wait_for_everyone()
    return result


def train_loop(
    stage: TrainStage,
    train_data: Dataset | DataLoader,
    cfg: LoopConfig,
    work_dir: Path,
    *,
    resume: str | Path | None = None,
    accelerator: Accelerator | None = None,
    collate_fn: Any = None,
    progress: bool = True,
    desc: str = "train",
    record: dict[str, Any] | None = None,
) -> LoopResult:
    """Train ``stage`` on ``train_data`` for ``cfg.steps`` optimiser steps; see the module docstring."""
    acc = accelerator or make_accelerator(cfg, Path(work_dir))
    dataset, collate = unpack_data(train_data, collate_fn)
    _check_sizes(acc, cfg, len(dataset))  # type: ignore[arg-type]
    work_dir, main = Path(work_dir), acc.is_main_process
    if main:
        work_dir.mkdir(parents=True, exist_ok=True)
    with run_lock(work_dir, enabled=main):
        s = _setup(stage, cfg, acc)
        s.record = record or stage_record(type(stage).__name__, train=cfg)
        log_path = work_dir / LOG_FILE
        start, ckpt = _start(s, resume, work_dir, log_path)
        sampler, batches = _loader(dataset, collate, cfg, acc, start)
        start_tracking(acc, work_dir, start)
        result = LoopResult(step=start, checkpoint=ckpt, accelerator=acc)
        if ckpt is not None and start >= cfg.steps:  # nothing left to train: report what was logged
            result.history, result.val = logged_result(log_path)
        pbar = tqdm(total=cfg.steps, initial=start, desc=desc, disable=not (progress and main))
        for k in s.main + s.aux:
            stage.model(k).train()
        _train_steps(stage, s, batches, sampler, result, work_dir, pbar)
        pbar.close()
        result.step = max(start, cfg.steps)
        end_tracking(acc)
        return _finish(stage, s, result)


def _train_steps(stage: TrainStage, s: _Setup, batches: Iterator[Any], sampler: EpochBatchSampler,
                 result: LoopResult, work_dir: Path, pbar: Any) -> None:
    """The training loop, one optimiser step per iteration, in the order of diffusers' example scripts:
    batch -> accumulate -> loss -> backward -> clip -> step -> EMA -> log / checkpoint / validate."""
    acc, cfg, log_path = s.acc, s.cfg, work_dir / LOG_FILE
    models = [stage.model(k) for k in s.main + s.aux]
    for step in range(result.step, cfg.steps):  # ``step`` optimiser steps are done
        t0, loss_sum, terms_sum, grad_norm = time.perf_counter(), 0.0, {}, float("nan")
        for _ in range(cfg.grad_accum):
            # batch: the next micro-batch of the seeded epoch stream (batching.py), on the device
            batch = send_to_device(next(batches), acc.device, non_blocking=True)
            # accumulate: gradients sync, and the optimisers step, on the last micro-batch only
            with acc.accumulate(*models):
                # loss, under mixed precision; the NaN guard stops every process together (guards.py)
                with acc.autocast():
                    loss, terms = stage.loss(batch, step)
                loss_sum += checked(acc, loss, step, "loss", result.checkpoint) / cfg.grad_accum
                # backward (accelerate divides the loss by grad_accum and scales it under fp16)
                acc.backward(loss)
                if acc.sync_gradients:
                    # clip the main modules' gradients (a non-finite norm stops training too)
                    main_params = _params({k: stage.model(k) for k in s.main})
                    grad_norm = clip_grads(acc, main_params, cfg.grad_clip, step, "", result.checkpoint)
                    # step: optimiser, LR schedule, gradients cleared
                    s.opt.step()
                    s.sched.step()
                    s.opt.zero_grad(set_to_none=True)
                # the auxiliary optimiser (a GAN discriminator) on the same micro-batch
                if s.aux_opt is not None:
                    terms = {**terms, **_aux_step(stage, s, batch, step, result.checkpoint)}
            terms_sum.update({k: terms_sum.get(k, 0.0) + float(v) / cfg.grad_accum for k, v in terms.items()})
        # EMA of the main modules' weights
        for k, ema in s.emas.items():
            ema.step(stage.unwrapped(k).parameters())
        # log: the step's record in the history and the progress bar, every log_every steps to log.jsonl
        done, final = step + 1, step + 1 == cfg.steps
        record = {"step": done, "epoch": sampler.epoch, "loss": loss_sum, **terms_sum,
                  "lr": float(s.sched.get_last_lr()[0]), "grad_norm": grad_norm,
                  "step_time": time.perf_counter() - t0}
        result.history.append(record)
        pbar.update(1)
        pbar.set_postfix(loss=f"{record['loss']:.4g}")
        if acc.is_main_process and (done % max(cfg.log_every, 1) == 0 or final):
            append_jsonl(log_path, record)
            log_scalars(acc, {k: v for k, v in record.items() if k != "step"}, done, "train/")
        # checkpoint: atomic, the oldest beyond checkpoints_total_limit removed (checkpoints.py)
        if final or (cfg.checkpoint_every > 0 and done % cfg.checkpoint_every == 0):
            result.checkpoint = save_checkpoint(acc, work_dir, done, sampler.epoch,
                                                cfg.checkpoints_total_limit, s.emas, s.record)
        # validate: main process, EMA weights swapped in, RNG isolated (validation.py)
        if final or (cfg.val_every > 0 and done % cfg.val_every == 0):
            result.val = run_validation(stage, s.main, s.emas, done, work_dir, log_path)


def _aux_step(stage: TrainStage, s: _Setup, batch: Any, step: int, last: Path | None) -> dict[str, float]:
    """The auxiliary optimiser's loss, backward, clip and step on the micro-batch (e.g. a discriminator)."""
    acc = s.acc
    with acc.autocast():
        aloss, aterms = stage.aux_loss(batch, step)
    if aloss is not None:
        checked(acc, aloss, step, "auxiliary loss", last)
        acc.backward(aloss)
    if acc.sync_gradients:
        aux_params = _params({k: stage.model(k) for k in s.aux})
        clip_grads(acc, aux_params, s.cfg.grad_clip, step, "auxiliary ", last)
        s.aux_opt.step()
        s.aux_opt.zero_grad(set_to_none=True)
    return dict(aterms) if aloss is not None else {}
