"""First stage: architecture checks, measured latent scale, losses, training command and its errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from dopplerdiff.config import load_config
from dopplerdiff.errors import ConfigError, DopplerDiffError
from dopplerdiff.models.autoencoder import (
    build_autoencoder,
    decode,
    encode,
    latent_scale,
    load_autoencoder,
    measure_latent_scale,
    reconstruct,
)
from dopplerdiff.train import losses as L
from dopplerdiff.train.autoencoder import train_autoencoder


def _images(n: int = 12, size: int = 16, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(n, 1, size, size, generator=g) * 2 - 1).clamp(-1, 1)


@pytest.mark.parametrize("kind", ["kl", "vq"])
def test_build_shapes_and_unmeasured_scale_refused(kind: str):
    cfg = load_config("smoke", [f"autoencoder.kind={kind}"])
    vae = build_autoencoder(cfg.autoencoder, cfg.data)
    with pytest.raises(DopplerDiffError, match="never measured"):
        latent_scale(vae)
    x = _images(2)
    assert reconstruct(vae, x).shape == x.shape


def test_architecture_errors():
    cfg = load_config("smoke", ["autoencoder.block_out_channels=[8,16,32]", "data.size=18"])
    with pytest.raises(ConfigError, match="data.size=18 is not divisible .* factor 4"):
        build_autoencoder(cfg.autoencoder, cfg.data)
    cfg = load_config("smoke", ["autoencoder.norm_num_groups=3"])
    with pytest.raises(ConfigError, match="norm_num_groups=3"):
        build_autoencoder(cfg.autoencoder, cfg.data)


@pytest.mark.parametrize("kind", ["kl", "vq"])
def test_measured_scale_gives_unit_latents_and_round_trips(kind: str, tmp_path: Path):
    torch.manual_seed(0)
    cfg = load_config("smoke", [f"autoencoder.kind={kind}"])
    vae = build_autoencoder(cfg.autoencoder, cfg.data).eval()
    x = _images(24)
    with torch.no_grad():
        before = reconstruct(vae, x)
        stats = measure_latent_scale(vae, [x[:12], x[12:]])
        scale, shift = latent_scale(vae)
        assert scale == pytest.approx(stats["scaling_factor"]) and scale != pytest.approx(0.18215)
        if kind == "vq":
            assert shift == 0.0
            # centring was folded into the weights: reconstructions are unchanged
            torch.testing.assert_close(reconstruct(vae, x), before, atol=1e-4, rtol=1e-4)
        z = encode(vae, x, sample=True, generator=torch.Generator().manual_seed(1))
        assert abs(float(z.mean())) < 0.1 and float(z.std()) == pytest.approx(1.0, abs=0.1)
        # decode(encode(x)) through the scale/shift convention == the unscaled reconstruction
        torch.testing.assert_close(decode(vae, encode(vae, x)), reconstruct(vae, x), atol=1e-4, rtol=1e-4)
        vae.save_pretrained(tmp_path / "ae")
        loaded = load_autoencoder(tmp_path / "ae").eval()
        assert latent_scale(loaded) == pytest.approx((scale, shift))
        again = decode(loaded, encode(loaded, x))
        torch.testing.assert_close(again, reconstruct(vae, x), atol=1e-4, rtol=1e-4)


def test_losses_behave():
    x = _images(4)
    blurred = torch.nn.functional.avg_pool2d(x, 3, 1, 1)
    assert float(L.spectral_loss(x, x)) == 0.0
    assert float(L.spectral_loss(blurred, x)) > 0.1
    assert float(L.kl_loss(torch.zeros(2, 4, 2, 2), torch.zeros(2, 4, 2, 2))) == 0.0
    assert float(L.kl_loss(torch.ones(2, 4, 2, 2), torch.zeros(2, 4, 2, 2))) == pytest.approx(8.0)
    assert float(L.hinge_d_loss(torch.full((3,), 2.0), torch.full((3,), -2.0))) == 0.0
    loss, terms = L.reconstruction_loss(blurred, x, 1.0, 1.0)
    assert set(terms) == {"l1", "mse"} and float(loss) == pytest.approx(terms["l1"] + terms["mse"], rel=1e-5)
    h = L.histogram_comparison((x + 1) / 2, (x + 1) / 2)
    assert h["hist_l1"] == 0.0 and h["intensity_w1"] == 0.0
    last = torch.nn.Parameter(torch.randn(3))
    out = (last * torch.randn(3)).sum()
    w = L.adaptive_weight(out**2, -out, last)
    assert float(w) > 0 and not w.requires_grad


def test_train_autoencoder_kl_outputs(tmp_path: Path, sim_data: Path):
    cfg = load_config("smoke")
    run = tmp_path / "run"
    m = train_autoencoder(run, cfg, data_root=sim_data, progress=False)
    vae = load_autoencoder(run / "autoencoder")
    scale, shift = latent_scale(vae)
    assert scale == pytest.approx(m["latent"]["scaling_factor"]) and scale != pytest.approx(0.18215)
    assert len(vae.config.latents_std) == cfg.autoencoder.latent_channels
    saved = json.loads((run / "train/autoencoder/metrics.json").read_text())
    assert {"psnr", "ssim", "hist_l1", "dark_frac_recon"} <= set(saved["val"])
    assert saved["val"]["count"] == len(json.loads((run / "data.json").read_text())["split"]["val"])
    assert (run / "config.yaml").is_file() and (run / "manifest.json").is_file()
    assert (run / "train/autoencoder/val/step-000002/reconstructions.png").is_file()
    # a second run into the same RUN must not overwrite it silently, nor switch architecture
    with pytest.raises(DopplerDiffError, match="already has a trained autoencoder"):
        train_autoencoder(run, cfg, data_root=sim_data, progress=False)
    with pytest.raises(DopplerDiffError, match="autoencoder.kind='kl'"):
        train_autoencoder(run, load_config("smoke", ["autoencoder.kind=vq"]), data_root=sim_data,
                          progress=False)
    with pytest.raises(DopplerDiffError, match="data folder itself"):
        train_autoencoder(sim_data, cfg, data_root=sim_data, progress=False)
    # resuming a finished run re-exports it
    m2 = train_autoencoder(run, cfg, data_root=sim_data, resume="latest", progress=False)
    assert m2["steps"] == m["steps"] and m2["latent"]["scaling_factor"] == pytest.approx(scale)


def test_train_vq_with_gan_logs_usage(tmp_path: Path, sim_data: Path):
    cfg = load_config("smoke", [
        "autoencoder.kind=vq", "autoencoder.loss.adversarial=0.1", "autoencoder.loss.adversarial_start=1",
        "autoencoder.disc_channels=8", "autoencoder.vq_restart_every=2", "autoencoder.train.steps=3",
    ])
    m = train_autoencoder(tmp_path / "run", cfg, data_root=sim_data, progress=False)
    log = [json.loads(ln) for ln in (tmp_path / "run/train/autoencoder/log.jsonl").read_text().splitlines()]
    steps = [r for r in log if r.get("kind") != "val"]
    assert {"perplexity", "used_frac", "codebook", "commitment"} <= set(steps[0])
    assert "d_loss" not in steps[0] and {"d_loss", "g_adv", "adaptive_w"} <= set(steps[-1])
    assert 0 < m["val"]["vq_used_frac"] <= 1
    assert latent_scale(load_autoencoder(tmp_path / "run/autoencoder"))[1] == 0.0


class _Feature:
    """Feature hook that breaks training on call ``at``: NaN features or a simulated kill."""

    def __init__(self, at: int | None, mode: str):
        self.calls, self.at, self.mode = 0, at, mode

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        if self.at is not None and self.calls >= self.at:
            if self.mode == "kill":
                raise KeyboardInterrupt
            return x * float("nan")
        return x.mean(dim=(2, 3))


def test_nan_loss_stops_and_keeps_last_good_checkpoint(tmp_path: Path, sim_data: Path):
    cfg = load_config("smoke", ["autoencoder.loss.feature=0.1"])
    # 2 feature calls per micro-step (target + reconstruction): call 5 is in step 3
    with pytest.raises(DopplerDiffError, match=r"step 3: loss is nan.*checkpoint-2"):
        train_autoencoder(tmp_path / "run", cfg, data_root=sim_data, progress=False,
                          feature_fn=_Feature(5, "nan"))
    assert (tmp_path / "run/train/autoencoder/checkpoint-2/loop_state.json").is_file()
    assert not (tmp_path / "run/autoencoder").exists()


def test_resume_after_kill_gives_identical_losses(tmp_path: Path, sim_data: Path):
    cfg = load_config("smoke", ["autoencoder.loss.feature=0.1"])
    train_autoencoder(tmp_path / "a", cfg, data_root=sim_data, progress=False, feature_fn=_Feature(None, ""))
    with pytest.raises(KeyboardInterrupt):
        train_autoencoder(tmp_path / "b", cfg, data_root=sim_data, progress=False,
                          feature_fn=_Feature(5, "kill"))
    train_autoencoder(tmp_path / "b", cfg, data_root=sim_data, resume="latest", progress=False,
                      feature_fn=_Feature(None, ""))

    def losses(run: Path) -> list[float]:
        lines = (run / "train/autoencoder/log.jsonl").read_text().splitlines()
        return [json.loads(ln)["loss"] for ln in lines if "kind" not in json.loads(ln)]

    assert len(losses(tmp_path / "a")) == 4
    assert losses(tmp_path / "b") == losses(tmp_path / "a")
    a = load_autoencoder(tmp_path / "a/autoencoder").state_dict()
    b = load_autoencoder(tmp_path / "b/autoencoder").state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_empty_validation_split_trains_without_crashing(tmp_path: Path, sim_data: Path):
    cfg = load_config("smoke", ["data.split.train=0.8", "data.split.val=0.0", "data.split.test=0.2"])
    m = train_autoencoder(tmp_path / "run", cfg, data_root=sim_data, progress=False)
    assert m["val"]["count"] == 0 and (tmp_path / "run/autoencoder/config.json").is_file()
