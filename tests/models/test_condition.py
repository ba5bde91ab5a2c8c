"""Identity condition encoders: null row K is trained by dropout, and guidance uses it."""

from __future__ import annotations

import pytest
import torch

from dopplerdiff.errors import DopplerDiffError
from dopplerdiff.models.condition import IdentityConditionEncoder
from dopplerdiff.models.denoiser import build_denoiser

K = 3


def _null_grad_norm(enc: IdentityConditionEncoder, p: float, seed: int = 0) -> float:
    enc.zero_grad(set_to_none=False)
    g = torch.Generator().manual_seed(seed)
    for _ in range(5):
        ids = torch.randint(0, K, (16,), generator=g)
        out = enc.encode(enc.drop(ids, p, generator=g))
        (out.float() ** 2).sum().backward()
    grads = enc.null_row_grads()
    return float(sum(gr.abs().sum() for gr in grads if gr is not None))


@pytest.mark.parametrize("kind", ["embedding", "onehot_mlp", "tokens"])
def test_null_row_gets_gradient_only_with_dropout(kind):
    torch.manual_seed(0)
    enc = IdentityConditionEncoder(num_identities=K, kind=kind, num_tokens=2, cross_attention_dim=8)
    assert enc.null_id == K
    assert enc.encode(torch.tensor([0, K])).shape == (2, 2, 8)
    assert _null_grad_norm(enc, p=0.0) == 0.0
    assert _null_grad_norm(enc, p=0.3) > 0.0


def test_dropout_rate_and_null_ids():
    enc = IdentityConditionEncoder(num_identities=K)
    ids = torch.zeros(20000, dtype=torch.long)
    dropped = enc.drop(ids, 0.1, generator=torch.Generator().manual_seed(0))
    assert set(dropped.unique().tolist()) == {0, K}
    assert abs((dropped == K).float().mean().item() - 0.1) < 0.01
    assert torch.equal(enc.null_ids(4), torch.full((4,), K))


def test_out_of_range_ids_rejected_and_unknown_kind():
    enc = IdentityConditionEncoder(num_identities=K)
    with pytest.raises(DopplerDiffError, match="out of range"):
        enc.encode(torch.tensor([K + 1]))
    with pytest.raises(DopplerDiffError, match="valid"):
        IdentityConditionEncoder(num_identities=K, kind="bogus")


def test_encoder_save_load_roundtrip(tmp_path):
    enc = IdentityConditionEncoder(num_identities=K, kind="onehot_mlp", cross_attention_dim=8)
    enc.save_pretrained(tmp_path / "enc")
    back = IdentityConditionEncoder.from_pretrained(tmp_path / "enc")
    ids = torch.arange(K + 1)
    assert torch.equal(enc.encode(ids), back.encode(ids))
    assert back.config.kind == "onehot_mlp"


def test_dit_null_label_trained_only_by_our_dropout(smoke_config):
    """diffusers' DiT drops labels per block by itself; ours must be off so only row K = our null trains."""
    cfg = smoke_config.diffusion
    cfg = type(cfg)(**{**cfg.__dict__, "backbone": "dit"})
    torch.manual_seed(0)
    dit = build_denoiser(cfg, 4, 4, K).train()
    tables = [m.embedding_table for m in dit.modules() if hasattr(m, "embedding_table")]
    assert tables and all(t.num_embeddings == K + 1 for t in tables)
    x, t = torch.randn(64, 4, 4, 4), torch.randint(0, 1000, (64,))
    dit(x, timestep=t, class_labels=torch.randint(0, K, (64,))).sample.pow(2).sum().backward()
    assert all(float(tb.weight.grad[K].abs().sum()) == 0.0 for tb in tables)
    dit.zero_grad()
    labels = torch.randint(0, K, (64,))
    labels[:8] = K
    dit(x, timestep=t, class_labels=labels).sample.pow(2).sum().backward()
    assert all(float(tb.weight.grad[K].abs().sum()) > 0.0 for tb in tables)


@pytest.mark.parametrize("guidance", [0.0, 1.0, 2.5])
def test_guidance_uses_null_row_in_one_batched_forward(tiny_pipeline_factory, guidance, monkeypatch):
    pipe = tiny_pipeline_factory(identities=K, scaling_factor=1.3)
    enc, den = pipe.condition_encoder, pipe.denoiser
    seen_ids: list[list[int]] = []
    batch_sizes: list[int] = []
    orig_encode, orig_forward = enc.encode, den.forward
    monkeypatch.setattr(enc, "encode", lambda ids: (seen_ids.append(ids.tolist()), orig_encode(ids))[1])
    monkeypatch.setattr(
        den, "forward", lambda x, *a, **k: (batch_sizes.append(x.shape[0]), orig_forward(x, *a, **k))[1]
    )
    pipe([0, 2], num_inference_steps=2, guidance_scale=guidance)
    assert len(batch_sizes) == 2  # one denoiser forward per step, whatever the guidance
    if guidance == 1.0:
        assert batch_sizes == [2, 2] and [K, K] not in seen_ids
    elif guidance == 0.0:
        assert batch_sizes == [2, 2] and all(ids == [K, K] for ids in seen_ids)
    else:
        assert batch_sizes == [4, 4]
        assert [0, 2] in seen_ids and [K, K] in seen_ids
