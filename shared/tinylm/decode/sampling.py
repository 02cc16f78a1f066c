"""Token choice: (B, V) logits -> (B,) token ids. Greedy (the reference evaluator's arg-max) and
temperature / top-k / top-p sampling, behind one `Sampler`: every strategy of tinylm.decode picks
its tokens here, greedy speculation included (it verifies drafts against the sampler's choice)."""

from __future__ import annotations

import math

import torch
from torch.nn import functional as F

from tinylm.base.errors import ConfigError


def greedy(logits: torch.Tensor) -> torch.Tensor:
    """Arg-max of the softmax, first index on ties (as the reference evaluator's torch.max)."""
    return F.softmax(logits.float(), dim=-1).argmax(dim=-1)


def check_sampling(temperature: float, top_k: int | None, top_p: float | None) -> None:
    if not (isinstance(temperature, (int, float)) and math.isfinite(temperature) and temperature >= 0):
        raise ConfigError(f"temperature must be a finite number >= 0 (0 = greedy), got {temperature!r}")
    if top_k is not None and (not isinstance(top_k, int) or top_k < 1):
        raise ConfigError(f"top_k must be an integer >= 1, got {top_k!r}")
    if top_p is not None and not (isinstance(top_p, (int, float)) and 0.0 < top_p <= 1.0):
        raise ConfigError(f"top_p must be in (0, 1], got {top_p!r}")


def filter_logits(logits: torch.Tensor, top_k: int | None = None, top_p: float | None = None) -> torch.Tensor:
    """Set to -inf every logit outside the top k, then outside the smallest nucleus of mass top_p."""
    logits = logits.float()
    if top_k is not None and top_k < logits.size(-1):
        kth = torch.topk(logits, top_k, dim=-1).values[..., -1:]  # (B, 1)
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p is not None and top_p < 1.0:
        sorted_logits, order = torch.sort(logits, dim=-1, descending=True)
        cum = F.softmax(sorted_logits, dim=-1).cumsum(dim=-1)
        drop = cum - F.softmax(sorted_logits, dim=-1) >= top_p  # mass before this token already >= top_p
        drop[..., 0] = False
        logits = logits.masked_fill(drop.scatter(-1, order, drop), float("-inf"))
    return logits


class Sampler:
    """Token choice from logits alone: temperature 0 is greedy; otherwise top-k/top-p sampling.

    The random stream is the sampler's own (`seed`), so a run is reproducible for the same
    prompts and batch layout.
    """

    def __init__(self, temperature: float = 0.0, top_k: int | None = None, top_p: float | None = None,
                 seed: int | None = None):
        check_sampling(temperature, top_k, top_p)
        self.temperature, self.top_k, self.top_p = float(temperature), top_k, top_p
        self.generator = torch.Generator()
        self.generator.manual_seed(0 if seed is None else int(seed))

    @property
    def is_greedy(self) -> bool:
        return self.temperature == 0.0

    def __call__(self, logits: torch.Tensor) -> torch.Tensor:
        if self.is_greedy:
            return greedy(logits)
        probs = F.softmax(filter_logits(logits / self.temperature, self.top_k, self.top_p), dim=-1)
        # sample on the CPU generator so that the stream does not depend on the device
        return torch.multinomial(probs.cpu(), 1, generator=self.generator).squeeze(1).to(logits.device)
