"""M independent models of one architecture trained at once, as one grouped network.

The models' parameters and buffers are stacked (``torch.func.stack_module_state``: one leaf tensor per
parameter name with a leading M axis) and run by ``Grouped``, which walks the first model's module tree and
evaluates each layer for all M models in one call: a convolution as a grouped convolution (``groups=M``),
BatchNorm over the M*C channels (exactly each model's own BatchNorm, its running mean/var updated in place in
the stacked buffers), a linear layer as a batched matrix product. Each model keeps its own initial weights,
its own data and batch order (the caller draws each model's batch from that model's generator) and its own
dropout masks (drawn from a per-model generator exactly as ``F.dropout`` draws them from the global one).
AdamW is elementwise, so one optimiser over the stacked tensors is M optimisers; clipping is per model.

Mathematically these are M separate trainings; numerically a grouped convolution orders its sums differently
(float32 rounding, about 1e-7 per layer). Layouts: 4-D activations are (B, M*C, H, W) with model m's
channels at [m*C, (m+1)*C); 2-D ones are (M, B, F). Composite modules with their own ``forward`` need a
rule (``rules``: module type -> ``fn(grouped, module, prefix, x)``).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import stack_module_state

Rule = Callable[["Grouped", nn.Module, str, Any], Any]
CL = torch.channels_last


class Grouped:
    """One forward pass of M stacked models (see the module docstring for the layouts)."""

    def __init__(self, m: int, params: dict[str, Tensor], buffers: dict[str, Tensor], training: bool,
                 gens: Sequence[torch.Generator], rules: dict[type, Rule]):
        self.m, self.p, self.b, self.training = m, params, buffers, training
        self.gens, self.rules = gens, rules

    def __call__(self, mod: nn.Module, pre: str, x: Any) -> Any:
        rule = self.rules.get(type(mod))
        if rule is not None:
            return rule(self, mod, pre, x)
        if isinstance(mod, nn.Sequential):
            for name, child in mod.named_children():
                x = self(child, f"{pre}{name}.", x)
            return x
        if isinstance(mod, nn.Conv2d):
            bias = None if mod.bias is None else self.p[pre + "bias"].flatten()
            return F.conv2d(x, self.p[pre + "weight"].flatten(0, 1), bias, mod.stride, mod.padding,
                            mod.dilation, self.m * mod.groups)
        if isinstance(mod, nn.BatchNorm2d):
            return self._batch_norm(mod, pre, x)
        if isinstance(mod, nn.Linear):
            w = self.p[pre + "weight"].transpose(1, 2)
            return torch.bmm(x, w) if mod.bias is None else torch.baddbmm(self.p[pre + "bias"][:, None], x, w)
        if isinstance(mod, nn.LayerNorm):
            y = F.layer_norm(x, mod.normalized_shape, eps=mod.eps)
            return y * self.p[pre + "weight"][:, None] + self.p[pre + "bias"][:, None]
        return self._parameter_free(mod, x)

    def _batch_norm(self, mod: nn.BatchNorm2d, pre: str, x: Tensor) -> Tensor:
        if self.training:
            self.b[pre + "num_batches_tracked"].add_(1)
        # views of the stacked buffers: batch_norm's in-place update reaches each model's running stats
        return F.batch_norm(x, self.b[pre + "running_mean"].view(-1), self.b[pre + "running_var"].view(-1),
                            self.p[pre + "weight"].flatten(), self.p[pre + "bias"].flatten(), self.training,
                            mod.momentum, mod.eps)

    def _parameter_free(self, mod: nn.Module, x: Tensor) -> Tensor:
        if isinstance(mod, nn.Identity):
            return x
        if isinstance(mod, nn.GELU):
            return F.gelu(x, approximate=mod.approximate)
        if isinstance(mod, nn.ReLU):
            return F.relu(x, inplace=mod.inplace)
        if isinstance(mod, nn.MaxPool2d):
            return F.max_pool2d(x, mod.kernel_size, mod.stride, mod.padding, mod.dilation, mod.ceil_mode)
        if isinstance(mod, nn.AdaptiveAvgPool2d):
            return F.adaptive_avg_pool2d(x, mod.output_size)
        if isinstance(mod, nn.Flatten):  # (B, M*C, H, W) -> (M, B, C*H*W), each model's own order
            return x.reshape(x.shape[0], self.m, -1).transpose(0, 1)
        if isinstance(mod, nn.Dropout):
            if not self.training or mod.p == 0:
                return x
            keep = 1.0 - mod.p  # as F.dropout: empty_like(x).bernoulli_(1 - p).div_(1 - p), then x * mask
            masks = [torch.empty(x.shape[1:]).bernoulli_(keep, generator=g).div_(keep) for g in self.gens]
            return x * torch.stack(masks).to(x.device)
        raise TypeError(f"{type(mod).__name__} cannot be trained as part of a group (no rule)")


class Stacked:
    """``models`` (same architecture) as stacked parameters and buffers; ``gens``: per-model generators
    for dropout (each continuing the global RNG stream its model's sequential training would use)."""

    def __init__(self, models: Sequence[nn.Module], gens: Sequence[torch.Generator] | None = None,
                 rules: dict[type, Rule] | None = None):
        self.models, self.gens, self.rules = list(models), list(gens or []), dict(rules or {})
        params, self.buffers = stack_module_state(self.models)
        self.params = {k: v.detach().requires_grad_(True) for k, v in params.items()}
        self.base = copy.deepcopy(self.models[0]).to("meta")  # the structure only
        if any(isinstance(mod, nn.Dropout) for mod in self.base.modules()) and len(self.gens) != len(self):
            raise ValueError("Stacked: models with dropout need one generator per model")

    def __len__(self) -> int:
        return len(self.models)

    def __call__(self, x: Tensor, train: bool = True) -> Any:
        """Outputs of every model for its own batch: ``x`` (M, B, C, H, W) -> outputs (M, B, ...)."""
        # channels-last: grouped convolutions, BatchNorm and pooling run faster on CPU in that layout
        grouped = x.transpose(0, 1).reshape(x.shape[1], -1, *x.shape[3:]).contiguous(memory_format=CL)
        run = Grouped(len(self), self.params, self.buffers, train, self.gens, self.rules)
        return run(self.base, "", grouped)

    @torch.no_grad()
    def shared(self, x: Tensor, batch_size: int = 256) -> list[Any]:
        """Eval-mode outputs of every model for the same images ``x`` (N, C, H, W), in chunks."""
        run = Grouped(len(self), self.params, self.buffers, False, self.gens, self.rules)
        chunks = (x[i : i + batch_size].repeat(1, len(self), 1, 1) for i in range(0, len(x), batch_size))
        return [run(self.base, "", c.contiguous(memory_format=CL)) for c in chunks]

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
    best = torch.full((len(st),), -1.0, dtype=torch.float64)
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
