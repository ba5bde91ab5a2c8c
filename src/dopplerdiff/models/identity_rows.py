"""Identity rows of a trained conditional model: find them, and add one for a new person.

Where an identity lives, per condition kind: ``embedding`` -> row of ``table.weight``; ``tokens`` -> row of
``tokens``; ``onehot_mlp`` -> column of the first linear layer (the one-hot selects it); ``label`` (DiT) ->
row of every transformer block's label table. Adding a person inserts a new row at index K, just before
the null row, so the null identity stays the last row (id K+1 after the insertion) as guidance expects.
"""

from __future__ import annotations

import torch
from diffusers.models.embeddings import LabelEmbedding
from torch import nn

from dopplerdiff.errors import DopplerDiffError


def identity_tables(condition_encoder: nn.Module, denoiser: nn.Module) -> list[tuple[nn.Module, str, int]]:
    """(module, parameter name, identity axis) of every tensor holding per-identity rows."""
    kind = condition_encoder.config.kind
    if kind == "embedding":
        return [(condition_encoder.table, "weight", 0)]
    if kind == "tokens":
        return [(condition_encoder, "tokens", 0)]
    if kind == "onehot_mlp":
        return [(condition_encoder.mlp[0], "weight", 1)]
    tables = [(m.embedding_table, "weight", 0) for m in denoiser.modules() if isinstance(m, LabelEmbedding)]
    if not tables:
        raise DopplerDiffError("the denoiser has no label tables to hold a new identity")
    return tables


def _insert(param: torch.Tensor, axis: int, k: int) -> torch.Tensor:
    """Insert at index ``k`` (before the null) the mean of the K identity rows: a neutral starting point."""
    real = param.narrow(axis, 0, k)
    init = real.mean(dim=axis, keepdim=True)
    return torch.cat([real, init, param.narrow(axis, k, param.shape[axis] - k)], dim=axis)


def add_identity_row(condition_encoder: nn.Module, denoiser: nn.Module) -> int:
    """Grow every identity table by one row at index K; return the new identity's id (the old K)."""
    k = int(condition_encoder.config.num_identities)
    for module, name, axis in identity_tables(condition_encoder, denoiser):
        grown = _insert(getattr(module, name).detach(), axis, k)
        setattr(module, name, nn.Parameter(grown))
        if isinstance(module, nn.Embedding):
            module.num_embeddings = grown.shape[0]
        elif isinstance(module, nn.Linear):
            module.in_features = grown.shape[1]
    for m in denoiser.modules():
        if isinstance(m, LabelEmbedding):
            m.num_classes = k + 1
    if "num_embeds_ada_norm" in denoiser.config:
        # from_pretrained rebuilds K+1 classes + diffusers' null row = the grown tables
        denoiser.register_to_config(num_embeds_ada_norm=k + 1)
    condition_encoder.register_to_config(num_identities=k + 1)
    if hasattr(condition_encoder, "null_label"):
        condition_encoder.null_label.fill_(k + 1)
    return k


def reset_identity_row(condition_encoder: nn.Module, denoiser: nn.Module, row: int) -> None:
    """Set identity ``row`` back to the mean of the other identity rows (before relearning it)."""
    k = int(condition_encoder.config.num_identities)
    others = [i for i in range(k) if i != row]
    with torch.no_grad():
        for module, name, axis in identity_tables(condition_encoder, denoiser):
            p = getattr(module, name)
            idx = torch.tensor(others, device=p.device)
            p.index_copy_(
                axis,
                torch.tensor([row], device=p.device),
                p.index_select(axis, idx).mean(dim=axis, keepdim=True),
            )


def train_only_row(
    condition_encoder: nn.Module, denoiser: nn.Module, row: int | list[int]
) -> tuple[list[nn.Parameter], list]:
    """Freeze everything except identity ``row`` (or rows; gradient hooks zero every other row); return the
    parameters to optimise (whole tables, of which only ``row`` ever changes with a decay-free optimiser)
    and the hook handles, to remove when done."""
    for module in (condition_encoder, denoiser):
        module.requires_grad_(False)
    params, handles = [], []
    for module, name, axis in identity_tables(condition_encoder, denoiser):
        p = getattr(module, name)
        p.requires_grad_(True)
        keep = torch.zeros(p.shape[axis], dtype=p.dtype, device=p.device)
        keep[row] = 1.0
        shape = [1] * p.ndim
        shape[axis] = -1
        handles.append(p.register_hook(lambda g, keep=keep.view(shape): g * keep))
        params.append(p)
    return params, handles


def copy_identity_row(src: tuple[nn.Module, nn.Module], src_row: int, dst: tuple[nn.Module, nn.Module],
                      dst_row: int) -> None:
    """Copy identity ``src_row`` of (condition encoder, denoiser) ``src`` into row ``dst_row`` of ``dst``."""
    with torch.no_grad():
        for (sm, sn, axis), (dm, dn, _) in zip(identity_tables(*src), identity_tables(*dst), strict=True):
            s, d = getattr(sm, sn), getattr(dm, dn)
            value, into = s.narrow(axis, src_row, 1), d.narrow(axis, dst_row, 1)
            if value.shape != into.shape:
                raise DopplerDiffError(f"identity rows of shape {tuple(value.shape)} do not fit a model "
                                       f"whose rows are {tuple(into.shape)}")
            into.copy_(value.to(d.device, d.dtype))


def same_shared_weights(a: tuple[nn.Module, nn.Module], b: tuple[nn.Module, nn.Module]) -> bool:
    """Whether two (condition encoder, denoiser) pairs agree in every weight except the identity rows."""
    skip_a = {id(getattr(m, n)) for m, n, _ in identity_tables(*a)}
    skip_b = {id(getattr(m, n)) for m, n, _ in identity_tables(*b)}
    for mod_a, mod_b in zip(a, b, strict=True):
        pa = [p for p in mod_a.parameters() if id(p) not in skip_a]
        pb = [p for p in mod_b.parameters() if id(p) not in skip_b]
        if len(pa) != len(pb) or any(
            x.shape != y.shape or not torch.equal(x.detach().cpu(), y.detach().cpu())
            for x, y in zip(pa, pb, strict=True)
        ):
            return False
    return True
