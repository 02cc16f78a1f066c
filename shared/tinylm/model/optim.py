"""Optimizers for training: AdamW everywhere, or Muon for the blocks' weight matrices.

`optim.name: adamw` is the reference's optimizer: AdamW on every parameter, weight decay on
matrices and embeddings only (`GPT.configure_optimizer`).

`optim.name: muon` gives the weight matrix of every linear layer inside a transformer block
(attention and MLP projections) to `Muon`: Nesterov momentum, orthogonalised by five quintic
Newton-Schulz iterations (coefficients 3.4445, -4.775, 2.0315), then a step scaled to AdamW's update RMS
(0.2 * sqrt(max(rows, cols))), so the one learning rate, schedule and weight decay of the config
can serve both halves (`optim.adamw_lr` gives the AdamW half a peak rate of its own). This is the
algorithm of `torch.optim.Muon` (torch >= 2.9) with `adjust_lr_fn="match_rms_adamw"`. It is
written out here because torch's version iterates in bfloat16, which CPUs without bf16 units run
several times slower than float32, and to keep torch >= 2.4 working. The iteration runs in
bfloat16 on CUDA and float32 elsewhere. Embeddings, the output head, norms, biases and the
positional tables inside the blocks (`Er` of `relative`, `dist_bias` of `distance_bias`, matrices
too) stay on AdamW: Muon is defined for hidden weight matrices only.

Both halves sit behind `OptimizerGroup`, which exposes the union of their `param_groups` (the
schedule sets `lr` on each) and a single state dict for checkpoints.
"""

from __future__ import annotations

import inspect
import math
from typing import Any

import torch

from tinylm.base.errors import ConfigError

NS_COEFFICIENTS = (3.4445, -4.775, 2.0315)


def orthogonalize(update: torch.Tensor, steps: int = 5, eps: float = 1e-7) -> torch.Tensor:
    """About U V^T for update = U S V^T: quintic Newton-Schulz iterations on the wide orientation."""
    a, b, c = NS_COEFFICIENTS
    x = update.to(torch.bfloat16 if update.is_cuda else torch.float32)
    tall = x.size(0) > x.size(1)
    if tall:
        x = x.T
    x = x / x.norm().clamp(min=eps)                  # spectral norm <= Frobenius norm <= 1
    for _ in range(steps):
        gram = x @ x.T
        x = torch.addmm(x, torch.addmm(gram, gram, gram, beta=b, alpha=c), x, beta=a)
    return (x.T if tall else x).to(update.dtype)


class Muon(torch.optim.Optimizer):
    """Muon for matrices: decoupled weight decay, step size matched to AdamW's update RMS."""

    def __init__(self, params, lr: float, weight_decay: float, momentum: float = 0.95, ns_steps: int = 5):
        super().__init__(params, {"lr": lr, "weight_decay": weight_decay, "momentum": momentum,
                                  "ns_steps": ns_steps})
        for group in self.param_groups:
            for p in group["params"]:
                if p.dim() != 2:
                    raise ConfigError(f"Muon takes matrices only, got a parameter of shape {tuple(p.shape)}")

    @torch.no_grad()
    def step(self) -> None:
        for group in self.param_groups:
            lr, beta = group["lr"], group["momentum"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if not state:
                    state["momentum_buffer"] = torch.zeros_like(p)
                buf = state["momentum_buffer"]
                buf.lerp_(p.grad, 1 - beta)
                update = orthogonalize(p.grad.lerp(buf, beta), group["ns_steps"])
                p.mul_(1 - lr * group["weight_decay"])
                p.add_(update, alpha=-lr * 0.2 * math.sqrt(max(p.shape)))


class OptimizerGroup:
    """Several optimizers over disjoint parameters, stepped and saved as one."""

    def __init__(self, optimizers: list[torch.optim.Optimizer]):
        self.optimizers = optimizers

    @property
    def param_groups(self) -> list[dict[str, Any]]:
        return [group for opt in self.optimizers for group in opt.param_groups]

    def step(self) -> None:
        for opt in self.optimizers:
            opt.step()

    def zero_grad(self, set_to_none: bool = True) -> None:
        for opt in self.optimizers:
            opt.zero_grad(set_to_none=set_to_none)

    def state_dict(self) -> dict[str, Any]:
        return {"optimizers": [opt.state_dict() for opt in self.optimizers]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        saved = state.get("optimizers")
        if saved is None or len(saved) != len(self.optimizers):
            raise ConfigError(f"optimizer state holds {len(saved or [])} optimizers, "
                              f"this run has {len(self.optimizers)}")
        for opt, opt_state in zip(self.optimizers, saved):
            opt.load_state_dict(opt_state)


def adamw(params: list[torch.nn.Parameter], lr: float, weight_decay: float, betas: tuple[float, float],
          device_type: str) -> torch.optim.AdamW:
    """AdamW; weight decay on matrices and embeddings (>= 2-D) only; fused kernel on CUDA."""
    groups = [{"params": [p for p in params if p.dim() >= 2], "weight_decay": weight_decay},
              {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0}]
    fused = device_type == "cuda" and "fused" in inspect.signature(torch.optim.AdamW).parameters
    return torch.optim.AdamW([g for g in groups if g["params"]], lr=lr, betas=tuple(betas),
                             **({"fused": True} if fused else {}))


def build_optimizer(model: torch.nn.Module, name: str, lr: float, weight_decay: float,
                    betas: tuple[float, float], momentum: float, device_type: str,
                    adamw_lr: float | None = None):
    """The optimizer `name` ("adamw" or "muon") over the model's trainable parameters. With muon,
    `adamw_lr` is the peak rate of the AdamW half: its groups carry `lr_scale` = adamw_lr / lr,
    by which the schedule multiplies the rate it sets."""
    if name == "adamw":
        return model.configure_optimizer(weight_decay, lr, betas, device_type)
    if name != "muon":
        raise ConfigError(f"optim.name: expected 'adamw' or 'muon', got {name!r}")
    hidden = [m.weight for m in model.blocks.modules()
              if isinstance(m, torch.nn.Linear) and m.weight.requires_grad]
    hidden_ids = {id(p) for p in hidden}
    rest = [p for p in model.parameters() if p.requires_grad and id(p) not in hidden_ids]
    adamw_lr = adamw_lr or lr
    others = adamw(rest, adamw_lr, weight_decay, betas, device_type)
    for group in others.param_groups:
        group["lr_scale"] = adamw_lr / lr
    return OptimizerGroup([Muon(hidden, lr=lr, weight_decay=weight_decay, momentum=momentum), others])


def set_rates(optimizer, lr: float) -> None:
    """Set every parameter group's rate to `lr` times the group's `lr_scale` (1 where it has none)."""
    for group in optimizer.param_groups:
        group["lr"] = lr * group.get("lr_scale", 1.0)


def load_keeping_rate_scales(optimizer, state: dict) -> None:
    """Load an optimizer state, each group keeping the `lr_scale` it was built with: the config sets
    the halves' rates, not the checkpoint (which may come from a run with another `adamw_lr`)."""
    built = [group.get("lr_scale") for group in optimizer.param_groups]
    optimizer.load_state_dict(state)
    for group, scale in zip(optimizer.param_groups, built):
        group.pop("lr_scale", None)
        if scale is not None:
            group["lr_scale"] = scale
