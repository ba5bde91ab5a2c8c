"""M independent models of one architecture trained at once: ``torch.func`` stacked state + ``vmap``.

Each model keeps its own initial weights, its own data and batch order (the caller draws each model's batch
from that model's generator), its own BatchNorm statistics (the buffers are stacked and vmapped, so train
mode updates each model's running mean/var in place) and its own dropout masks (drawn outside ``vmap`` from
a per-model generator exactly as ``F.dropout`` draws them from the global one). AdamW is elementwise, so
one optimiser over the stacked tensors is M optimisers; gradient clipping is done per model.

Mathematically this is M separate trainings; numerically the convolutions run as one grouped convolution,
whose sums are ordered differently (float32 rounding, about 1e-7 per forward pass).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor, nn
from torch.func import functional_call, stack_module_state, vmap


class GivenDropout(nn.Module):
    """Dropout whose scaled mask (B, ...) arrives as the buffer ``mask`` (one per model under vmap)."""

    def __init__(self, p: float):
        super().__init__()
        self.p, self.shape = p, None
        self.register_buffer("mask", torch.empty(0), persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        if not self.training or self.p == 0:
            return x
        if x.device.type == "meta":  # the shape-finding pass
            self.shape = tuple(x.shape)
            return x
        return x * self.mask


class Stacked:
    """``models`` (same architecture) as stacked parameters and buffers; ``gens``: per-model generators
    for dropout (each continuing the global RNG stream its model's sequential training would use)."""

    def __init__(self, models: Sequence[nn.Module], gens: Sequence[torch.Generator] | None = None):
        self.models, self.gens = list(models), list(gens or [])
        params, buffers = stack_module_state(self.models)
        self.params = {k: v.detach().requires_grad_(True) for k, v in params.items()}
        self.buffers = buffers
        self.base = copy.deepcopy(self.models[0]).to("meta")
        self.dropouts: list[tuple[str, GivenDropout]] = []
        for name, mod in list(self.base.named_modules()):
            if isinstance(mod, nn.Dropout):
                parent, _, leaf = name.rpartition(".")
                given = GivenDropout(mod.p)
                setattr(self.base.get_submodule(parent) if parent else self.base, leaf, given)
                self.dropouts.append((name, given))
        if self.dropouts and len(self.gens) != len(self.models):
            raise ValueError("Stacked: models with dropout need one generator per model")

    def __len__(self) -> int:
        return len(self.models)

    def _masks(self, x: Tensor) -> dict[str, Tensor]:
        if not self.dropouts:
            return {}
        if self.dropouts[0][1].shape is None or self.dropouts[0][1].shape[0] != x.shape[1]:
            self.base.train()
            with torch.no_grad():
                functional_call(self.base, ({k: v[0].to("meta") for k, v in self.params.items()},
                                            {k: v[0].to("meta") for k, v in self.buffers.items()}),
                                (x[0].to("meta"),))
        out: dict[str, Tensor] = {}
        for name, drop in self.dropouts:
            keep = 1.0 - drop.p  # as F.dropout: empty_like(x).bernoulli_(1 - p).div_(1 - p), then x * mask
            masks = [torch.empty(drop.shape).bernoulli_(keep, generator=g).div_(keep) for g in self.gens]
            out[f"{name}.mask"] = torch.stack(masks).to(x.device)
        return out

    def __call__(self, x: Tensor, train: bool = True) -> Any:
        """Outputs of every model for its own batch: ``x`` (M, B, ...) -> outputs with a leading M axis."""
        masks = self._masks(x) if train else {}
        self.base.train(train)

        def one(p: dict, b: dict, xi: Tensor) -> Any:
            return functional_call(self.base, (p, b), (xi,))

        return vmap(one)(self.params, {**self.buffers, **masks}, x)

    @torch.no_grad()
    def shared(self, x: Tensor, batch_size: int = 256) -> list[Any]:
        """Eval-mode outputs of every model for the same images ``x`` (N, ...), in chunks."""
        self.base.eval()

        def one(p: dict, b: dict, xi: Tensor) -> Any:
            return functional_call(self.base, (p, b), (xi,))

        run = vmap(one, in_dims=(0, 0, None))
        return [run(self.params, self.buffers, x[i : i + batch_size]) for i in range(0, len(x), batch_size)]

    def clip_(self, max_norm: float) -> None:
        """``nn.utils.clip_grad_norm_`` of each model on its own gradients."""
        grads = [p.grad for p in self.params.values() if p.grad is not None]
        norms = torch.stack([g.flatten(1).norm(dim=1) for g in grads], dim=1).norm(dim=1)
        coef = (max_norm / (norms + 1e-6)).clamp(max=1.0)
        for g in grads:
            g.mul_(coef.view(-1, *([1] * (g.ndim - 1))))

    def state(self, m: int) -> dict[str, Tensor]:
        """A copy of model ``m``'s state dict."""
        return {k: v[m].detach().clone() for k, v in {**self.params, **self.buffers}.items()}

    def unstack(self, states: Sequence[dict[str, Tensor] | None]) -> list[nn.Module]:
        """The models in eval mode, each with ``states[m]`` (None: its current stacked weights)."""
        for m, model in enumerate(self.models):
            model.load_state_dict(states[m] if states[m] is not None else self.state(m))
        return [model.eval() for model in self.models]


def train_stacked(st: Stacked, steps: int, batch: Callable[[int], Tensor], loss: Callable[[Any], Tensor],
                  opt: torch.optim.Optimizer, sched: Any, *, grad_clip: float = 0.0,
                  val_score: Callable[[], Tensor] | None = None, every: int = 1,
                  diverged: Callable[[int, int, float], Exception] | None = None) -> list[nn.Module]:
    """The shared loop: ``batch(step)`` -> stacked inputs (M, B, ...) (the caller also prepares targets),
    ``loss(outputs)`` -> per-model losses (M,); with ``val_score`` (per-model accuracy, (M,)), each model's
    best-scoring weights (strictly better: ties keep the earlier) are returned, as the sequential fits do."""
    best = torch.full((len(st),), -1.0)
    states: list[dict[str, Tensor] | None] = [None] * len(st)
    for step in range(steps):
        losses = loss(st(batch(step)))
        bad = ~torch.isfinite(losses.detach())
        if bad.any() and diverged is not None:
            m = int(bad.nonzero()[0])
            raise diverged(m, step + 1, float(losses[m]))
        opt.zero_grad(set_to_none=True)
        losses.sum().backward()  # independent models: the gradient of the sum is each model's own
        if grad_clip > 0:
            st.clip_(grad_clip)
        opt.step()
        sched.step()
        if val_score is not None and ((step + 1) % every == 0 or step + 1 == steps):
            acc = val_score()
            for m in torch.nonzero(acc > best).flatten().tolist():
                best[m], states[m] = acc[m], st.state(m)
    return st.unstack(states)
