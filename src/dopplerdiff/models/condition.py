"""Identity condition encoders: K identities -> K+1 rows, row K is the trained null identity.

Every encoder maps integer identity ids (B,) to conditioning for the denoiser and owns the classifier-free
guidance convention:

- ``null_id`` is always K (the number of real identities). Guidance uses exactly this id for the
  unconditional half of the batch, and training replaces ids with it by per-sample dropout
  (``drop(ids, p)``), so the null row is trained by construction.
- ``encode(ids)`` returns ``(B, T, D)`` tokens (``T = num_tokens``, ``D = cross_attention_dim``) for the
  UNet's cross-attention. ``kind="label"`` is the DiT case: the DiT keeps its own label tables (with row K as
  the null, see ``models.denoiser``), so ``encode`` returns the ids themselves as a (B,) LongTensor.

Kinds: ``embedding`` (a (K+1) x (T*D) table), ``onehot_mlp`` (one-hot of K+1 -> MLP -> T*D; the null is
the (K+1)-th one-hot, so it has its own first-layer weights), ``tokens`` (learnable (K+1) x T x D tokens,
initialised small like transformer positional tokens), ``label`` (parameter-free, for the DiT backbone).

Walking conditions: with ``num_conditions`` C > 1 (UNet kinds only) a second table of C+1 rows (row C = the
null condition, trained by its own per-sample dropout) gives one more token, appended after the identity
token(s): ``encode(ids, conditions)`` is (B, T+1, D). The UNet's time embedding takes the mean token
(``models.denoiser.denoise``), so the condition reaches it too. With C = 1 nothing is added: the module,
its weights and its outputs are those of an identity-only encoder.
"""

from __future__ import annotations

import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from torch import nn

from dopplerdiff.errors import DopplerDiffError

CONDITION_KINDS = ("embedding", "onehot_mlp", "tokens", "label")


class IdentityConditionEncoder(ModelMixin, ConfigMixin):
    """Identity ids -> conditioning tokens, with a trained null identity at row K."""

    @register_to_config
    def __init__(
        self,
        num_identities: int,
        kind: str = "embedding",
        num_tokens: int = 1,
        cross_attention_dim: int = 128,
        hidden_dim: int = 256,
        num_conditions: int = 1,
    ):
        super().__init__()
        if kind not in CONDITION_KINDS:
            raise DopplerDiffError(f"condition kind '{kind}' is unknown; valid: {', '.join(CONDITION_KINDS)}")
        if num_identities < 1:
            raise DopplerDiffError(f"condition encoder needs >= 1 identity, got {num_identities}")
        if num_tokens < 1:
            raise DopplerDiffError(f"condition.num_tokens must be >= 1, got {num_tokens}")
        if num_conditions < 1:
            raise DopplerDiffError(f"condition encoder needs >= 1 walking condition, got {num_conditions}")
        if num_conditions > 1 and kind == "label":
            raise DopplerDiffError("walking conditions need the unet backbone (diffusion.backbone=unet); "
                                   "the dit backbone has identity labels only")
        rows, out = num_identities + 1, num_tokens * cross_attention_dim
        if kind == "embedding":
            self.table = nn.Embedding(rows, out)
            nn.init.normal_(self.table.weight, std=1.0)
        elif kind == "onehot_mlp":
            self.mlp = nn.Sequential(nn.Linear(rows, hidden_dim), nn.SiLU(), nn.Linear(hidden_dim, out))
        elif kind == "tokens":
            self.tokens = nn.Parameter(torch.randn(rows, num_tokens, cross_attention_dim) * 0.02)
        else:
            # Parameter-free, but keep one buffer so save_pretrained/from_pretrained have a state dict.
            self.register_buffer("null_label", torch.tensor([num_identities], dtype=torch.long))
        if num_conditions > 1:  # created last, so the identity weights draw the same random numbers as before
            self.condition_table = nn.Embedding(num_conditions + 1, cross_attention_dim)
            nn.init.normal_(self.condition_table.weight, std=1.0)

    @property
    def null_id(self) -> int:
        """The id of the null identity used for guidance (row K)."""
        return int(self.config.num_identities)

    @property
    def num_identities(self) -> int:
        return int(self.config.num_identities)

    @property
    def num_conditions(self) -> int:
        return int(self.config.get("num_conditions", 1))

    @property
    def null_condition(self) -> int:
        """The id of the null walking condition (row C of the condition table)."""
        return self.num_conditions

    @property
    def has_conditions(self) -> bool:
        return self.num_conditions > 1

    def drop(self, ids: torch.Tensor, p: float, generator: torch.Generator | None = None,
             null: int | None = None) -> torch.Tensor:
        """Replace each id by the null id (``null``, default the null identity) with probability ``p``
        (classifier-free guidance training)."""
        if p <= 0:
            return ids
        mask = torch.rand(ids.shape, generator=generator, device=ids.device) < p
        return torch.where(mask, torch.full_like(ids, self.null_id if null is None else null), ids)

    def drop_conditions(self, conds: torch.Tensor, p: float,
                        generator: torch.Generator | None = None) -> torch.Tensor:
        """Condition dropout to row C, independent of the identity's (a no-op without conditions)."""
        if not self.has_conditions:
            return conds
        return self.drop(conds, p, generator, null=self.null_condition)

    def null_ids(self, batch: int, device: torch.device | str = "cpu") -> torch.Tensor:
        return torch.full((batch,), self.null_id, dtype=torch.long, device=device)

    def forward(self, ids: torch.Tensor, conditions: torch.Tensor | None = None) -> torch.Tensor:
        return self.encode(ids, conditions)

    def encode(self, ids: torch.Tensor, conditions: torch.Tensor | None = None) -> torch.Tensor:
        """(B,) ids in [0, K] (+ condition ids in [0, C], default the null condition) -> (B, T(+1), D)
        tokens (or the ids themselves for ``kind='label'``)."""
        return self.add_condition(self.identity_tokens(ids), conditions)

    def add_condition(self, tokens: torch.Tensor, conditions: torch.Tensor | None) -> torch.Tensor:
        """Append the condition token to identity tokens (B, T, D); unchanged without conditions."""
        if not self.has_conditions:
            return tokens
        c = self.null_condition
        if conditions is None:
            conditions = torch.full((tokens.shape[0],), c, dtype=torch.long, device=tokens.device)
        conditions = conditions.long().to(tokens.device)
        if conditions.numel() and (int(conditions.min()) < 0 or int(conditions.max()) > c):
            raise DopplerDiffError(
                f"condition id out of range: ids must be in [0, {c}] (C={c} conditions + null), got min "
                f"{int(conditions.min())} max {int(conditions.max())}"
            )
        row = self.condition_table(conditions).to(tokens.dtype)
        return torch.cat([tokens, row[:, None, :]], dim=1)

    def identity_tokens(self, ids: torch.Tensor) -> torch.Tensor:
        """(B,) ids in [0, K] -> (B, T, D) identity tokens (the ids themselves for ``kind='label'``)."""
        ids = ids.long()
        if ids.numel() and (int(ids.min()) < 0 or int(ids.max()) > self.null_id):
            raise DopplerDiffError(
                f"identity id out of range: ids must be in [0, {self.null_id}] (K={self.num_identities}"
                f" identities + null), got min {int(ids.min())} max {int(ids.max())}"
            )
        cfg = self.config
        if cfg.kind == "label":
            return ids
        if cfg.kind == "embedding":
            flat = self.table(ids)
        elif cfg.kind == "onehot_mlp":
            onehot = nn.functional.one_hot(ids, cfg.num_identities + 1).to(self.mlp[0].weight.dtype)
            flat = self.mlp(onehot)
        else:
            return self.tokens[ids]
        return flat.view(ids.shape[0], cfg.num_tokens, cfg.cross_attention_dim)

    def null_row_grads(self) -> list[torch.Tensor | None]:
        """Gradients of the weights that belong only to the null row (for tests and diagnostics)."""
        cfg = self.config
        if cfg.kind == "embedding":
            return [
                self.table.weight.grad[cfg.num_identities] if self.table.weight.grad is not None else None
            ]
        if cfg.kind == "onehot_mlp":
            g = self.mlp[0].weight.grad
            return [g[:, cfg.num_identities] if g is not None else None]
        if cfg.kind == "tokens":
            return [self.tokens.grad[cfg.num_identities] if self.tokens.grad is not None else None]
        return []


def build_condition_encoder(cfg, num_identities: int, backbone: str = "unet",
                            num_conditions: int = 1) -> IdentityConditionEncoder:
    """Build from a ``DiffusionConfig``; the DiT backbone always uses ``kind='label'``. ``num_conditions``:
    the run's walking conditions (1 = none, no condition table)."""
    kind = "label" if backbone == "dit" else cfg.condition.kind
    return IdentityConditionEncoder(
        num_identities=num_identities,
        kind=kind,
        num_tokens=cfg.condition.num_tokens,
        cross_attention_dim=cfg.cross_attention_dim,
        num_conditions=num_conditions,
    )
