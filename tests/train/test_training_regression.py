"""Expected-output regression of every training path: a fixed seed gives stored losses and weights.

The numbers were computed once (CPU, float32) before the training loop was rewritten as one loop and the
in-memory fits were moved onto ``classifier.fit_steps``; the rewrite reproduced them bit for bit. A change in
what a step does or in the order it draws randomness (batch order, augmentation, dropout, noise, the EMA,
clipping, accumulation, the auxiliary optimiser, model selection) moves them.
"""

from __future__ import annotations

import dataclasses
import json
import shutil

import numpy as np
import pytest
import torch
from conftest import build_tiny_pipeline
from torch import nn
from torch.utils.data import TensorDataset

from dopplerdiff.classifier import fit_classifier
from dopplerdiff.config import load_config
from dopplerdiff.config.loop import LoopConfig
from dopplerdiff.evaluate.judge import JudgeSettings, fit_judge
from dopplerdiff.pipelines.pipeline_dopplerdiff import DopplerDiffPipeline
from dopplerdiff.train.diffusion import train_diffusion
from dopplerdiff.train.identity import learn_identity
from dopplerdiff.train.loop import TrainStage, frozen, train_loop

TOL = dict(rel=1e-4, abs=1e-6)  # float summation order may differ between CPUs; a changed step moves more


def weight_stats(modules: dict[str, nn.Module]) -> list[float]:
    """(sum, sum of absolute values) over every tensor of the modules' state dicts."""
    tensors = [v.detach().double() for m in modules.values() for v in m.state_dict().values()
               if v.is_floating_point()]
    return [float(sum(t.sum() for t in tensors)), float(sum(t.abs().sum() for t in tensors))]


class DropoutGanToy(TrainStage):
    """A regression MLP with dropout, noise from the global RNG and a frozen-discriminator term, plus the
    discriminator's auxiliary optimiser; validation consumes RNG (which must not change training)."""

    def __init__(self):
        torch.manual_seed(1)
        self.net = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Dropout(0.2), nn.Linear(16, 1))
        self.disc = nn.Linear(1, 1)

    def modules(self):
        return {"net": self.net}

    def aux_modules(self):
        return {"disc": self.disc}

    def loss(self, batch, step):
        x, y = batch
        pred = self.model("net")(x) + 0.01 * torch.randn_like(y)
        loss = ((pred - y) ** 2).mean()
        with frozen(self.unwrapped("disc")) as d:
            loss = loss + 0.01 * d(pred).mean()
        self._pred = pred.detach()
        return loss, {"mse": loss.item()}

    def aux_loss(self, batch, step):
        return (self.model("disc")(self._pred) ** 2).mean(), {"d": 1.0}

    def validate(self, step, out_dir):
        torch.randn(7)
        return {"w": float(self.unwrapped("net")[0].weight.sum())}


# the loop: losses of the 9 steps, grad norms of steps 1 and 9, EMA-exported weights (sum, sum |w|)
EXPECTED_LOOP = {
    "losses": [16.44556474685669, 7.439931869506836, 22.189900875091553, 11.511889219284058,
               14.348904132843018, 7.140081167221069, 18.595791816711426, 4.956910610198975,
               18.084789752960205],
    "grad_norms": [7.567384243011475, 13.134693145751953],
    "weights": [2.048235192, 22.49347770],
}


def test_train_loop_steps_and_weights(tmp_path):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(40, 4, generator=g)
    y = x @ torch.tensor([[1.0], [-2.0], [0.5], [3.0]]) + 0.3
    cfg = LoopConfig(steps=9, batch_size=8, grad_accum=2, lr=0.05, lr_schedule="cosine", warmup_steps=2,
                     grad_clip=0.5, checkpoint_every=3, checkpoints_total_limit=2, val_every=4, log_every=2,
                     ema=True, ema_decay=0.9, seed=3)
    res = train_loop(DropoutGanToy(), TensorDataset(x, y), cfg, tmp_path, progress=False)
    assert list(res.history[0]) == ["step", "epoch", "loss", "mse", "d", "lr", "grad_norm", "step_time"]
    assert [h["loss"] for h in res.history] == pytest.approx(EXPECTED_LOOP["losses"], **TOL)
    norms = [res.history[0]["grad_norm"], res.history[-1]["grad_norm"]]
    assert norms == pytest.approx(EXPECTED_LOOP["grad_norms"], **TOL)
    assert weight_stats(res.modules) == pytest.approx(EXPECTED_LOOP["weights"], **TOL)
    assert sorted(p.name for p in tmp_path.glob("checkpoint-*")) == ["checkpoint-6", "checkpoint-9"]


# the smoke autoencoder of the session's run (its log) and a diffusion stage with 2 micro-batches a step
EXPECTED_STAGES = {
    "autoencoder": [0.8236708045005798, 0.7014499306678772, 0.6220300197601318, 0.6181861162185669],
    "diffusion": [1.084575355052948, 1.109894573688507, 0.9695256352424622, 0.9666610062122345],
    "denoiser": [841.3813588, 10670.31300],  # denoiser + condition encoder (sum, sum |w|), EMA weights
}


def _logged_losses(path) -> list[float]:
    lines = [json.loads(ln) for ln in path.read_text().splitlines()]
    return [ln["loss"] for ln in lines if "kind" not in ln]


def test_autoencoder_and_diffusion_stages(ae_run, tmp_path):
    losses = _logged_losses(ae_run / "train/autoencoder/log.jsonl")
    assert losses == pytest.approx(EXPECTED_STAGES["autoencoder"], **TOL)
    run = tmp_path / "run"
    shutil.copytree(ae_run, run)
    cfg = load_config("smoke", ["diffusion.train.grad_accum=2", "diffusion.train.val_every=100"])
    train_diffusion(run, cfg, progress=False)
    losses = _logged_losses(run / "train/diffusion/log.jsonl")
    assert losses == pytest.approx(EXPECTED_STAGES["diffusion"], **TOL)
    pipe = DopplerDiffPipeline.from_pretrained(run / "pipeline")
    got = weight_stats({"d": pipe.denoiser, "c": pipe.condition_encoder})
    assert got == pytest.approx(EXPECTED_STAGES["denoiser"], **TOL)


def _images(n_per: int = 8, k: int = 3, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Class c: a bright row at 2 + 4c over noise, in [-1, 1]."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(-1, -0.5, (n_per * k, 1, 16, 16)).astype(np.float32)
    y = np.repeat(np.arange(k), n_per)
    for i, c in enumerate(y):
        x[i, 0, 2 + 4 * c] = 1.0
    return x, y


# weights (sum, sum |w|) of: fit_classifier with augmentation, mixup, loss weights and validation; without
EXPECTED_CLASSIFIER = {"full": [127.9659959, 518.0964712], "plain": [121.9143711, 510.3691500]}


def test_fit_classifier_weights():
    cfg = load_config("smoke", ["encoder.train.batch_size=8", "encoder.train.lr=3e-3"]).encoder
    aug = dataclasses.replace(load_config("smoke").data.augment, mixup=0.4)
    (x, y), val = _images(), _images(4, seed=1)
    w = np.linspace(0.5, 1.5, len(y)).astype(np.float32)
    full = fit_classifier(x, y, 3, cfg, steps=12, seed=5, augment=aug, val=val, weights=w)
    assert weight_stats({"m": full}) == pytest.approx(EXPECTED_CLASSIFIER["full"], **TOL)
    plain = fit_classifier(x, y, 3, cfg, steps=7, seed=2)
    assert weight_stats({"m": plain}) == pytest.approx(EXPECTED_CLASSIFIER["plain"], **TOL)


# weights (sum, sum |w|) of the judge: own time roll + weights + validation; residual with classic
# augmentations and mixup; no augmentation
EXPECTED_JUDGE = {"own": [12.62815648, 66.90759862], "classic": [55.86223524, 162.6916447],
                  "none": [16.40297776, 63.97995329]}


def test_fit_judge_weights():
    (x, y), val = _images(), _images(4, seed=1)
    w = np.linspace(0.5, 1.5, len(y)).astype(np.float32)
    s = JudgeSettings(channels=(4, 8), steps=20, batch_size=8, evals=3)
    got = {"own": fit_judge(x, y, 3, s, seed=3, val=val, weights=w)}
    aug = dataclasses.replace(load_config("smoke").data.augment, mixup=0.4)
    residual = JudgeSettings(channels=(4, 8), steps=20, batch_size=8, arch="residual")
    got["classic"] = fit_judge(x, y, 3, residual, seed=4, classic=aug)
    got["none"] = fit_judge(x, y, 3, s, seed=1, augment=False)
    for name, model in got.items():
        assert weight_stats({"m": model}) == pytest.approx(EXPECTED_JUDGE[name], **TOL), name


# learn_identity: loss_first, loss_last, loss_before, loss_after, the new row's (sum, sum |w|), and the next
# draw of the global RNG afterwards (the row's training consumes none of it)
EXPECTED_IDENTITY = [1.127788519859314, 1.1543675780296325, 1.1408946737647057, 1.1383227035403252,
                     5.421094231, 8.598515444, 0.14904171228408813]


def test_learn_identity_row(smoke_config):
    pipe = build_tiny_pipeline(smoke_config, backbone="unet", names=["ID_1", "ID_2", "ID_3"])
    images = (torch.rand(4, 1, 16, 16, generator=torch.Generator().manual_seed(0)) * 2 - 1).numpy()
    torch.manual_seed(11)
    info = learn_identity(pipe, images, "NEW", smoke_config, steps=12, lr=0.05, batch_size=4, seed=2,
                          progress=False)
    row = pipe.condition_encoder.table.weight[info["row"]].detach().double()
    got = [info["loss_first"], info["loss_last"], info["loss_before"], info["loss_after"],
           float(row.sum()), float(row.abs().sum()), float(torch.rand(1))]
    assert got == pytest.approx(EXPECTED_IDENTITY, **TOL)
