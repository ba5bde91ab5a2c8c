"""Spectrogram encoder: model contract, save/load, losses, in-memory fitting and the train-encoder command."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from conftest import run_cli

from dopplerdiff.classifier import fit_steps
from dopplerdiff.config import load_config
from dopplerdiff.errors import DopplerDiffError
from dopplerdiff.models.encoder import SpectrogramEncoder, encoder_from_config, load_encoder
from dopplerdiff.train.encoder import fit_classifier, predict, supcon_loss


def _toy(n_per: int = 24, k: int = 3, size: int = 16, seed: int = 0):
    """Identity = the Doppler row of a bright torso line (plus noise and a random time offset of spikes)."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(-1, -0.8, (n_per * k, 1, size, size)).astype(np.float32)
    y = np.repeat(np.arange(k), n_per)
    for i, c in enumerate(y):
        x[i, 0, 3 + 4 * c, :] = 1.0
        x[i, 0, :, rng.integers(0, size)] = 0.0
    return x, y


@pytest.mark.parametrize("kind", ["cnn", "vit"])
def test_forward_contract_and_save_load_roundtrip(kind, tmp_path):
    cfg = load_config("smoke", [f"encoder.kind={kind}"]).encoder
    enc = encoder_from_config(cfg, num_classes=3, image_size=16, in_channels=1, identities=["a", "b", "c"])
    enc.eval()
    x = torch.rand(5, 1, 16, 16) * 2 - 1
    emb, logits = enc(x)
    assert emb.shape == (5, cfg.embed_dim) and logits.shape == (5, 3)
    torch.testing.assert_close(emb.norm(dim=1), torch.ones(5))
    torch.testing.assert_close(enc.embed(x), emb)
    torch.testing.assert_close(enc.classify(x), logits)
    feats = enc.features(x)
    assert not torch.allclose(feats.norm(dim=1), torch.ones(5))  # features are the un-normalised ones
    enc.save_pretrained(tmp_path / "enc")
    assert list((tmp_path / "enc").glob("*.safetensors"))
    loaded = load_encoder(tmp_path / "enc")
    assert not loaded.training
    assert loaded.config.identities == ["a", "b", "c"] and loaded.config.data_size == 16
    assert loaded.config.channels == 1 and loaded.config.colormap == "jet"
    torch.testing.assert_close(loaded.features(x), feats)
    with pytest.raises(DopplerDiffError, match=r"\(B, 1, 16, 16\)"):
        enc(torch.zeros(2, 3, 16, 16))


def test_vit_time_strip_patches():
    enc = SpectrogramEncoder(kind="vit", image_size=16, patch_size=4, vit_patches="time", embed_dim=8,
                             heads=2, depth=1, num_classes=2)
    assert enc.backbone.pos.shape[1] == 16 // 4 + 1  # one token per time strip + CLS
    assert enc(torch.zeros(2, 1, 16, 16))[1].shape == (2, 2)


def test_load_encoder_errors(tmp_path):
    with pytest.raises(DopplerDiffError, match="does not exist"):
        load_encoder(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DopplerDiffError, match="no config.json"):
        load_encoder(tmp_path / "empty")
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "config.json").write_text(json.dumps({"_class_name": "AutoencoderKL"}))
    with pytest.raises(DopplerDiffError, match="AutoencoderKL"):
        load_encoder(foreign)
    SpectrogramEncoder(num_classes=2, image_size=16, embed_dim=8, cnn_channels=[4]).save_pretrained(
        tmp_path / "ok"
    )
    for f in (tmp_path / "ok").glob("*.safetensors"):
        f.unlink()
    with pytest.raises(DopplerDiffError, match="no weights"):
        load_encoder(tmp_path / "ok")


def test_supcon_loss_prefers_clustered_embeddings():
    labels = torch.tensor([0, 0, 1, 1, 2, 2])
    centres = torch.nn.functional.normalize(torch.eye(3, 8), dim=1)
    clustered = centres[labels] + 0.01 * torch.randn(6, 8)
    mixed = torch.nn.functional.normalize(torch.randn(6, 8), dim=1)
    clustered = torch.nn.functional.normalize(clustered, dim=1)
    assert supcon_loss(clustered, labels, 0.1) < supcon_loss(mixed, labels, 0.1)
    # no positive pairs in the batch: defined, zero, and differentiable
    single = torch.nn.functional.normalize(torch.randn(3, 8, requires_grad=True), dim=1)
    loss = supcon_loss(single, torch.tensor([0, 1, 2]), 0.1)
    assert loss.detach().item() == 0.0
    loss.backward()


def test_fit_classifier_learns_and_is_deterministic():
    cfg = load_config("smoke", ["encoder.train.batch_size=16", "encoder.train.lr=3e-3"]).encoder
    x, y = _toy()
    xv, yv = _toy(n_per=8, seed=1)
    aug = load_config("smoke").data.augment
    a = fit_classifier(x, y, 3, cfg, steps=40, seed=0, augment=aug, val=(xv, yv))
    logits, emb = predict(a, xv)
    assert logits.shape == (24, 3) and emb.shape == (24, cfg.embed_dim)
    assert (logits.argmax(1) == yv).mean() >= 0.9
    b = fit_classifier(x, y, 3, cfg, steps=40, seed=0, augment=aug, val=(xv, yv))
    np.testing.assert_allclose(predict(b, xv)[0], logits, rtol=1e-5, atol=1e-5)
    c = fit_classifier(x, y, 3, cfg, steps=40, seed=1, augment=aug, val=(xv, yv))
    assert not np.allclose(predict(c, xv)[0], logits)
    with pytest.raises(DopplerDiffError, match="labels"):
        fit_classifier(x, y + 5, 3, cfg, steps=1, seed=0)

def test_train_encoder_command_run_layout_resume_and_errors(sim_data, tmp_path, monkeypatch, capsys):
    run = tmp_path / "run"
    out = run / "encoder"
    common = ["-c", "smoke", "--quiet", "encoder.train.steps=2"]
    code, stdout, err = run_cli(monkeypatch, capsys, "train-encoder", "--data", sim_data, "--out", out,
                                *common)
    assert code == 0, err
    assert "test accuracy" in stdout
    for name in ("config.json", "metrics.json", "config.yaml", "manifest.json"):
        assert (out / name).is_file(), name
    assert (run / "data.json").is_file() and (run / "train" / "encoder" / "checkpoint-2").is_dir()
    metrics = json.loads((out / "metrics.json").read_text())
    recorded = json.loads((run / "data.json").read_text())
    assert metrics["split_sizes"] == {p: len(recorded["split"][p]) for p in ("train", "val", "test")}
    assert metrics["identities"] == recorded["identities"] == ["ID_1", "ID_2", "ID_3"]
    assert len(metrics["test"]["per_identity"]) == 3 and metrics["test"]["n"] > 0
    enc = load_encoder(out)
    assert enc.config.identities == ["ID_1", "ID_2", "ID_3"] and enc.config.data_size == 16

    # an existing output is never overwritten
    code, _, err = run_cli(monkeypatch, capsys, "train-encoder", "--data", sim_data, "--out", out, *common)
    assert code == 2 and "already exists" in err

    # resume: continue the interrupted training from its latest checkpoint (data taken from RUN/data.json)
    import shutil

    shutil.rmtree(out)
    code, _, err = run_cli(monkeypatch, capsys, "train-encoder", "--out", out, "-c", "smoke", "--quiet",
                           "encoder.train.steps=4", "--resume", "latest")
    assert code == 0, err
    log = [json.loads(line) for line in (run / "train" / "encoder" / "log.jsonl").read_text().splitlines()]
    steps = [r["step"] for r in log if r.get("kind") != "val"]
    assert steps == [1, 2, 3, 4]
    assert json.loads((out / "metrics.json").read_text())["steps"] == 4

    # standalone output (not RUN/encoder): the split is recorded next to the encoder
    alone = tmp_path / "models" / "enc-a"
    code, _, err = run_cli(monkeypatch, capsys, "train-encoder", "--data", sim_data, "--out", alone, *common,
                           "--kind", "vit")
    assert code == 0, err
    assert (alone / "data.json").is_file() and load_encoder(alone).config.kind == "vit"

    code, _, err = run_cli(monkeypatch, capsys, "train-encoder", "--data", tmp_path / "nope",
                           "--out", tmp_path / "x" / "encoder", *common)
    assert code == 2 and "nope" in err


def test_stale_best_weights_are_forgotten_unless_resuming_their_trajectory(tmp_path):
    from dopplerdiff.train.encoder import EncoderStage
    from dopplerdiff.utils.io import write_json

    cfg = load_config("smoke").encoder
    enc = SpectrogramEncoder(num_classes=2, image_size=16, embed_dim=8, cnn_channels=[4])
    val = (np.zeros((0, 1, 16, 16), np.float32), np.zeros(0, np.int64))
    best = tmp_path / "best"
    enc.save_pretrained(best)
    write_json(best / "best.json", {"val_accuracy": 0.7, "step": 4})
    stage = EncoderStage(enc, cfg, None, val, tmp_path)
    stage.restore_best(6)  # resuming at step 6: the best from step 4 belongs to this trajectory
    assert stage.best_acc == 0.7 and best.is_dir()
    stage.restore_best(2)  # resuming before it: it came from a later, discarded part
    assert stage.best_acc == -1.0 and not best.exists()
    enc.save_pretrained(best)
    write_json(best / "best.json", {"val_accuracy": 0.7, "step": 4})
    stage.restore_best(None)  # fresh start
    assert not best.exists()


def test_encoder_of_another_architecture_version_is_refused(tmp_path):
    import json

    from dopplerdiff.errors import DopplerDiffError
    from dopplerdiff.models.encoder import ARCH_VERSION, SpectrogramEncoder, load_encoder

    enc = SpectrogramEncoder(num_classes=2, image_size=16, cnn_channels=[4, 8], embed_dim=8)
    enc.save_pretrained(tmp_path)
    assert load_encoder(tmp_path).config.arch_version == ARCH_VERSION
    cfg = json.loads((tmp_path / "config.json").read_text())
    cfg["arch_version"] = ARCH_VERSION - 1
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(DopplerDiffError, match="architecture version"):
        load_encoder(tmp_path)


def test_fit_steps_guards_nan_and_keeps_the_strictly_best_weights():
    model = torch.nn.Linear(1, 1, bias=False)
    torch.nn.init.zeros_(model.weight)
    opt = torch.optim.SGD(model.parameters(), lr=0.25)
    seen = []

    def loss_at(step):
        seen.append(model.weight.item())
        return ((model.weight - 1.0) ** 2).sum()

    scores = iter([0.5, 0.7, 0.7, 0.2])  # steps 2 and 3 tie: the earlier weights are kept
    losses = fit_steps(4, loss_at, opt, model=model, score=lambda: next(scores))
    assert losses == pytest.approx([(w - 1.0) ** 2 for w in seen]) and len(losses) == 4
    assert model.weight.item() == pytest.approx(seen[2])  # the weights after step 2

    def nan_at_3(step):
        return model.weight.sum() * (float("nan") if step == 2 else 1.0)

    with pytest.raises(DopplerDiffError, match="at step 3"):
        fit_steps(4, nan_at_3, opt, diverged=lambda step, loss: DopplerDiffError(f"diverged at step {step}"))
    assert np.isnan(fit_steps(3, nan_at_3, opt)[2])  # unchecked without ``diverged``
