"""The shared training loop on a toy regression stage: convergence, resume, NaN, checkpoints, EMA."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

from dopplerdiff.config.loop import LoopConfig
from dopplerdiff.errors import DopplerDiffError
from dopplerdiff.train.loop import TrainStage, find_checkpoints, frozen, train_loop


def _data(n: int = 64) -> TensorDataset:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, 4, generator=g)
    y = x @ torch.tensor([[1.0], [-2.0], [0.5], [3.0]]) + 0.3
    return TensorDataset(x, y)


class Toy(TrainStage):
    """Linear regression with a noise term (uses the global RNG, so RNG restore is exercised)."""

    def __init__(self, fail_at: int | None = None, nan_at: int | None = None, disc: bool = False):
        torch.manual_seed(1)
        self.net = nn.Linear(4, 1)
        self.disc = nn.Linear(1, 1) if disc else None
        self.fail_at, self.nan_at = fail_at, nan_at
        self.seen: list[torch.Tensor] = []
        self.val_weights: list[torch.Tensor] = []

    def modules(self):
        return {"net": self.net}

    def aux_modules(self):
        return {"disc": self.disc} if self.disc is not None else {}

    def loss(self, batch, step):
        if self.fail_at is not None and step == self.fail_at:
            raise KeyboardInterrupt  # simulated kill after the checkpoint
        x, y = batch
        pred = self.model("net")(x) + 0.01 * torch.randn_like(y)
        loss = ((pred - y) ** 2).mean()
        if self.nan_at is not None and step >= self.nan_at:
            loss = loss * float("nan")
        if self.disc is not None:
            with frozen(self.unwrapped("disc")) as d:
                loss = loss + 0.0 * d(pred).mean()
            self._pred = pred.detach()
        return loss, {"mse": loss.item()}

    def aux_loss(self, batch, step):
        return (self.model("disc")(self._pred) ** 2).mean(), {"d": 1.0}

    def validate(self, step, out_dir):
        self.val_weights.append(self.unwrapped("net").weight.detach().clone())
        torch.randn(100)  # consuming RNG in validation must not change training
        return {"w0": float(self.unwrapped("net").weight[0, 0])}


def _cfg(**kw) -> LoopConfig:
    base = dict(steps=8, batch_size=8, lr=0.05, checkpoint_every=4, checkpoints_total_limit=2,
                val_every=4, log_every=1, ema=True, ema_decay=0.9, seed=3)
    base.update(kw)
    return LoopConfig(**base)


def test_loss_goes_down(tmp_path: Path):
    cfg = _cfg(steps=60, checkpoint_every=0, val_every=0)
    res = train_loop(Toy(), _data(), cfg, tmp_path, progress=False)
    losses = [h["loss"] for h in res.history]
    assert len(losses) == 60 and res.step == 60
    assert sum(losses[-5:]) / 5 < 0.1 * sum(losses[:5]) / 5
    lines = [json.loads(ln) for ln in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert [ln["step"] for ln in lines if "kind" not in ln] == list(range(1, 61))
    assert {"loss", "mse", "lr", "grad_norm", "epoch", "step_time"} <= set(lines[0])


def test_resume_gives_identical_losses(tmp_path: Path):
    cfg = _cfg(steps=10, grad_accum=2, lr_schedule="cosine", warmup_steps=2)
    ref = train_loop(Toy(), _data(36), cfg, tmp_path / "a", progress=False)
    with pytest.raises(KeyboardInterrupt):
        train_loop(Toy(fail_at=6), _data(36), cfg, tmp_path / "b", progress=False)
    assert [p.name for p in find_checkpoints(tmp_path / "b")] == ["checkpoint-4"]
    stage = Toy()
    res = train_loop(stage, _data(36), cfg, tmp_path / "b", resume="latest", progress=False)
    assert [h["step"] for h in res.history] == list(range(5, 11))
    assert [h["loss"] for h in res.history] == [h["loss"] for h in ref.history[4:]]
    assert [h["lr"] for h in res.history] == [h["lr"] for h in ref.history[4:]]
    # EMA-exported weights equal those of the uninterrupted run (EMA shadow params were restored)
    assert torch.equal(res.modules["net"].weight, ref.modules["net"].weight)
    # the log of the resumed run has each step once
    steps = [json.loads(ln)["step"] for ln in (tmp_path / "b" / "log.jsonl").read_text().splitlines()
             if "kind" not in json.loads(ln)]
    assert steps == list(range(1, 11))


def test_resume_restores_optimizer_and_ema_state(tmp_path: Path):
    cfg = _cfg(steps=4, checkpoint_every=4)
    ref = train_loop(Toy(), _data(), cfg, tmp_path, progress=False)
    stage = Toy()
    res = train_loop(stage, _data(), cfg, tmp_path, resume=tmp_path / "checkpoint-4", progress=False)
    # no step left: the result reports the last logged training record and validation, not empty values
    assert res.step == 4 and [h["step"] for h in res.history] == [4] and res.val == ref.val
    assert torch.equal(res.modules["net"].weight, ref.modules["net"].weight)
    opt_state = stage.accelerator._optimizers[0].state_dict()["state"]
    assert opt_state and int(opt_state[0]["step"]) == 4


def test_nan_stops_and_keeps_last_good_checkpoint(tmp_path: Path):
    with pytest.raises(DopplerDiffError, match=r"step 6.*checkpoint-4"):
        train_loop(Toy(nan_at=5), _data(), _cfg(steps=8), tmp_path, progress=False)
    assert [p.name for p in find_checkpoints(tmp_path)] == ["checkpoint-4"]
    state = json.loads((tmp_path / "checkpoint-4" / "loop_state.json").read_text())
    assert state["step"] == 4
    # the kept checkpoint resumes fine with finite losses
    res = train_loop(Toy(), _data(), _cfg(steps=8), tmp_path, resume="latest", progress=False)
    assert res.step == 8 and all(torch.isfinite(torch.tensor(h["loss"])) for h in res.history)


def test_checkpoint_total_limit(tmp_path: Path):
    train_loop(Toy(), _data(), _cfg(steps=10, checkpoint_every=2, checkpoints_total_limit=2), tmp_path,
               progress=False)
    assert [p.name for p in find_checkpoints(tmp_path)] == ["checkpoint-8", "checkpoint-10"]
    assert not list(tmp_path.glob(".checkpoint-*"))


def test_validate_sees_ema_weights(tmp_path: Path):
    stage = Toy()
    res = train_loop(stage, _data(), _cfg(steps=8, checkpoint_every=0), tmp_path, progress=False)
    assert len(stage.val_weights) == 2  # steps 4 and 8
    # at the end the exported module holds the EMA weights = what validation saw at step 8 ...
    assert torch.equal(stage.val_weights[-1], res.modules["net"].weight)
    # ... which differ from the raw trained weights kept in the checkpoint-free run's optimiser target
    raw = train_loop(Toy(), _data(), _cfg(steps=8, checkpoint_every=0, ema=False), tmp_path / "raw",
                     progress=False)
    assert not torch.allclose(raw.modules["net"].weight, res.modules["net"].weight)
    vals = [json.loads(ln) for ln in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert [v["step"] for v in vals if v.get("kind") == "val"] == [4, 8]


def test_aux_optimizer_trains_discriminator(tmp_path: Path):
    stage = Toy(disc=True)
    w0 = stage.disc.weight.detach().clone()
    res = train_loop(stage, _data(), _cfg(steps=4, checkpoint_every=4), tmp_path, progress=False)
    assert not torch.equal(w0, res.modules["disc"].weight)
    assert "d" in res.history[-1]
    # discriminator is checkpointed with its own optimiser
    assert (tmp_path / "checkpoint-4" / "optimizer_1.bin").is_file()


def test_batch_larger_than_dataset_is_a_clear_error(tmp_path: Path):
    with pytest.raises(DopplerDiffError, match="fewer than batch_size"):
        train_loop(Toy(), _data(4), _cfg(batch_size=8), tmp_path, progress=False)


class _Planted:
    """Unpickling this creates ``path``: a stand-in for a payload like ``os.system(...)``."""

    def __init__(self, path: Path):
        self.path = path

    def __reduce__(self):
        return (open, (str(self.path), "w"))


def test_resume_never_unpickles_planted_custom_state(tmp_path: Path):
    cfg = _cfg(steps=4, checkpoint_every=4)
    train_loop(Toy(), _data(), cfg, tmp_path / "w", progress=False)
    ckpt = tmp_path / "w" / "checkpoint-4"
    assert (ckpt / "ema_net.safetensors").is_file() and not list(ckpt.glob("custom_checkpoint_*"))
    marker = tmp_path / "executed"
    torch.save(_Planted(marker), ckpt / "custom_checkpoint_0.pkl")
    with pytest.raises(DopplerDiffError, match="custom_checkpoint_0.pkl"):
        train_loop(Toy(), _data(), cfg, tmp_path / "w", resume="latest", progress=False)
    assert not marker.exists()


def test_damaged_rng_state_is_refused(tmp_path: Path):
    cfg = _cfg(steps=4, checkpoint_every=4)
    train_loop(Toy(), _data(), cfg, tmp_path, progress=False)
    (tmp_path / "checkpoint-4" / "random_states_0.pkl").write_bytes(b"not a pickle")
    with pytest.raises(DopplerDiffError, match="random_states_0.pkl"):
        train_loop(Toy(), _data(), cfg, tmp_path, resume="latest", progress=False)


def test_torn_last_log_line_is_dropped_on_resume(tmp_path: Path):
    cfg = _cfg(steps=8)
    with pytest.raises(KeyboardInterrupt):
        train_loop(Toy(fail_at=6), _data(), cfg, tmp_path, progress=False)
    with open(tmp_path / "log.jsonl", "a") as fh:
        fh.write('{"step": 6, "loss": 0.')  # the disk filled up mid-line
    res = train_loop(Toy(), _data(), cfg, tmp_path, resume="latest", progress=False)
    assert res.step == 8
    lines = [json.loads(ln) for ln in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert [ln["step"] for ln in lines if "kind" not in ln] == list(range(1, 9))


def test_second_writer_of_a_work_dir_is_refused(tmp_path: Path):
    from filelock import FileLock

    other = FileLock(str(tmp_path / ".lock"))  # another process training into the same directory
    other.acquire()
    try:
        with pytest.raises(DopplerDiffError, match="in use by another"):
            train_loop(Toy(), _data(), _cfg(steps=2), tmp_path, progress=False)
    finally:
        other.release()
    assert not (tmp_path / "log.jsonl").exists()
