"""Forgetting: which past tokens a model keeps, and the GPT run on the kept ones only.

A trace repeats the whole program at every step, so most of its tokens tell the model nothing new.
A *policy* drops them. The formulation, the same in training and in decoding:

- An example is split at a step boundary into a *context* (the prompt and the steps so far, ending
  with the step token "\\n#STEP\\n", at most `block_size - max_target` tokens, cut from the left)
  and a *target* (the next step, through the next step token or the terminator, at most
  `max_target` tokens). The target is never dropped; the loss is on the target only.
- The policy gives every context token a score that depends on tokens at or before it only
  (causal), keeps its top k tokens by score, always including its last `recent` tokens, and drops
  the rest. k is a budget (`keep_of`): "window" (default) keeps at most b = ceil(keep_ratio *
  (block_size - max_target)) tokens, so attention never runs on more than b context tokens and a
  context shorter than b (the program alone before the first step) is kept whole; "context"
  keeps ceil(keep_ratio * n) of every context's n tokens, so even the first step sees only part
  of the program it must copy.
- The kept context and the target are gathered into a shorter sequence (b + t positions instead
  of n + t) that keeps each token's ORIGINAL position id (`GPT.forward(positions=...)`), so
  absolute encodings see the positions they were trained on and relative ones the true distances.
  Inputs and labels are gathered with one index: label i is the token after original position i,
  and only the target's positions (all kept) have labels, so labels cannot be misaligned.

Policies (`ForgetConfig.policy`): "identity" keeps everything; "random" scores every token with
noise (a fixed ratio kept at random; the score depends on the row and position only, never on the
tokens); "oracle" keeps what a trace step needs, the most recent steps first and within a step its
state line first (the m2 line holding "@", whose annotation after "$" is the state), so at a
budget of one step it keeps exactly the previous step (the program text and the state); "mlp",
"cnn" (a left-padded causal convolution, then an MLP) and "gru" (one-directional) are learned
scorers over the LM's token embeddings (read, not trained, by the scorer) and each token's position
in the window: without it, every copy of a token scores the same, and a trace repeats its tokens
at every step, so no scorer could prefer the latest step.

Training a learned scorer (`estimator`), with exploration logits log q, q = (1 - eps) *
softmax(s / tau) + eps / n over the droppable context tokens (`temperature`, `epsilon`: linear
schedules from start to end over the run):

- "straight_through": Gumbel top-k. The kept set is the top-k of log q + Gumbel noise (hard, in the
  forward); every kept token's key gets the attention bias log p - stop_gradient(log p), zero in the
  forward, with p = sigmoid((z - threshold) / tau) its soft keep probability (threshold: midway
  between the k-th and k+1-th perturbed logits). The LM loss's gradient reaches the scores through
  that bias, in every layer.
- "reinforce": the kept set is a Plackett-Luce sample of k tokens (the same Gumbel top-k) and the
  scorer's loss is -(reward - baseline) * log P(set), reward the row's target log-likelihood
  ("loglik", mean per token) or next-token accuracy ("accuracy"), baseline a moving average.
- "imitate" (the positive control): the scorer learns the oracle's kept set, a binary cross-entropy
  of each droppable token's score (as a logit) against whether the oracle keeps it at the same
  budget; the LM sees the scorer's own top-k. A scorer that cannot learn this mask cannot be
  expected to find one by the other two.

`freeze_lm` trains the scorer alone on a frozen LM (e.g. started from a pretrained checkpoint);
otherwise the LM is trained jointly. In eval mode a policy keeps the plain top-k of its scores.

Noise (the random policy's scores, the Gumbel perturbations) is drawn per row from that row's own
seed (`row_seeds`: the run's seed, the step and the row's index in the global batch; in decoding
the example and its step), so it does not depend on how rows are batched or shared out over
ranks: two-process training takes the same steps as one process, and a random policy keeps the
same tokens of an example whatever the evaluation's batch size.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import torch
import torch.nn as nn
from torch.nn import functional as F

from tinylm.base.config import from_dict, to_dict
from tinylm.base.errors import ConfigError, DataError
from tinylm.data.batches import IGNORE, BatchStream, TokenDataset, TokenSplit, split_step_starts
from tinylm.model.gpt import lm_loss

VALIDATION_STEP = 2**63 - 1  # the step in the noise seeds of validation rows: no training step is this one
POLICIES = ("identity", "random", "oracle", "mlp", "cnn", "gru")
LEARNED = ("mlp", "cnn", "gru")


@dataclass
class ForgetConfig:
    """A drop policy and how it is trained (see the module docstring)."""

    policy: Literal["identity", "random", "oracle", "mlp", "cnn", "gru"] = "identity"
    """Which tokens of the context are kept."""
    keep_ratio: float = 0.5
    """Fraction kept, of what `keep_of` says; identity keeps all."""
    keep_of: Literal["window", "context"] = "window"
    """The budget: keep_ratio of the window's context capacity (block_size - max_target; at most the
    whole context) or of each context's length."""
    recent: int = 1
    """The last `recent` context tokens are always kept (1: the step token the target follows)."""
    max_target: int = 80
    """Longest target (one step) in tokens; the context holds at most block_size - max_target."""
    estimator: Literal["straight_through", "reinforce", "imitate"] = "straight_through"
    """How a learned scorer gets its gradient (imitate: from the oracle's kept set, a positive control)."""
    reward: Literal["loglik", "accuracy"] = "loglik"
    """reinforce: a row's reward, its target's mean log-likelihood or next-token accuracy."""
    baseline_momentum: float = 0.9
    """reinforce: the baseline is this moving average of the batches' mean rewards."""
    policy_weight: float = 1.0
    """reinforce and imitate: weight of the scorer's loss beside the LM loss."""
    temperature: list[float] = field(default_factory=lambda: [1.0, 1.0])
    """Exploration temperature of the scores, [start, end], linear over the run."""
    epsilon: list[float] = field(default_factory=lambda: [0.0, 0.0])
    """Exploration: weight of the uniform distribution mixed into the keep distribution, [start, end]."""
    freeze_lm: bool = False
    """Train the scorer only; the LM's weights stay as they were (a learned policy only)."""
    hidden: int = 64
    """Width of a learned scorer."""
    kernel: int = 5
    """cnn: convolution width in tokens (the token and the kernel - 1 before it)."""

    def validate(self) -> None:
        if not 0.0 < self.keep_ratio <= 1.0:
            raise ConfigError(f"forget.keep_ratio must be in (0, 1], got {self.keep_ratio}")
        for key in ("recent", "max_target", "hidden", "kernel"):
            if getattr(self, key) < 1:
                raise ConfigError(f"forget.{key} must be at least 1, got {getattr(self, key)}")
        if len(self.temperature) != 2 or min(self.temperature) <= 0:
            raise ConfigError(f"forget.temperature must be [start, end], both > 0, got {self.temperature}")
        if len(self.epsilon) != 2 or not all(0.0 <= e <= 1.0 for e in self.epsilon):
            raise ConfigError(f"forget.epsilon must be [start, end], both in [0, 1], got {self.epsilon}")
        if not 0.0 <= self.baseline_momentum < 1.0:
            raise ConfigError(f"forget.baseline_momentum must be in [0, 1), got {self.baseline_momentum}")
        if self.estimator == "imitate" and self.policy not in LEARNED:
            raise ConfigError(f"forget.estimator 'imitate' trains a learned scorer; policy {self.policy!r} has none")
        if self.freeze_lm and self.policy not in LEARNED:
            raise ConfigError(f"forget.freeze_lm trains the scorer alone; policy {self.policy!r} has none "
                              f"(learned policies: {', '.join(LEARNED)})")

    def schedule(self, progress: float) -> tuple[float, float]:
        """(temperature, epsilon) at `progress` (0: first step, 1: last) of the run."""
        p = min(max(progress, 0.0), 1.0)
        return tuple(a + (b - a) * p for a, b in (self.temperature, self.epsilon))


# ----------------------------------------------------------------------------- scorers: (B, T) ids -> (B, T) scores


# A scorer's read-out has no bias: the kept set and the keep distribution (a softmax over a row) do
# not change when every score of a row shifts, so a bias gets no gradient, only an optimizer's
# normalised rounding noise.


class MLPScorer(nn.Module):
    """Each token on its own: its embedding through a two-layer MLP."""

    def __init__(self, n_embd: int, hidden: int):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(n_embd, hidden), nn.GELU(), nn.Linear(hidden, 1, bias=False))

    def forward(self, emb: torch.Tensor) -> torch.Tensor:
        return self.net(emb).squeeze(-1)  # (B, T)


class CNNScorer(nn.Module):
    """A convolution over the token and the kernel - 1 before it (left padding: causal), then an MLP."""

    def __init__(self, n_embd: int, hidden: int, kernel: int):
        super().__init__()
        self.kernel = kernel
        self.conv = nn.Conv1d(n_embd, hidden, kernel)
        self.mlp = MLPScorer(hidden, hidden)

    def forward(self, emb: torch.Tensor) -> torch.Tensor:
        h = F.pad(emb.transpose(1, 2), (self.kernel - 1, 0))  # (B, C, kernel - 1 + T)
        return self.mlp(F.gelu(self.conv(h)).transpose(1, 2))  # (B, T)


class GRUScorer(nn.Module):
    """A one-directional GRU over the embeddings; a linear read-out of each token's state."""

    def __init__(self, n_embd: int, hidden: int):
        super().__init__()
        self.rnn = nn.GRU(n_embd, hidden, batch_first=True)
        self.out = nn.Linear(hidden, 1, bias=False)

    def forward(self, emb: torch.Tensor) -> torch.Tensor:
        return self.out(self.rnn(emb)[0]).squeeze(-1)  # (B, T)


@dataclass
class TraceTokens:
    """The ids the oracle reads the trace layout from."""

    step_id: int
    at_id: int | None
    """The state line's "@" (None in a vocabulary without one: no oracle there)."""
    line_end: list[int]
    """Ids of every token that ends a line (its text ends with a newline)."""

    @classmethod
    def of(cls, tokenizer) -> TraceTokens:
        from tinylm.lang.format import STEP

        strings = tokenizer.token_strings(list(range(tokenizer.vocab_size)))
        return cls(step_id=tokenizer.token_id(STEP), at_id=strings.index("@") if "@" in strings else None,
                   line_end=[i for i, s in enumerate(strings) if s.endswith("\n")])


def oracle_scores(x: torch.Tensor, ids: TraceTokens) -> torch.Tensor:
    """Step index of each token (the step token opens its step), + 0.5 on the state line ("@" to the
    end of its line), + a tie-break for later positions: each depends on tokens at or before it."""
    T = x.size(1)
    pos = torch.arange(T, device=x.device).expand_as(x)
    step = torch.cumsum(x == ids.step_id, dim=1).float()
    ends = torch.isin(x, torch.tensor(ids.line_end, device=x.device))
    last_at = torch.where(x == ids.at_id, pos, -1).cummax(dim=1).values
    last_end = torch.where(ends, pos, -1).cummax(dim=1).values
    end_before = torch.cat([torch.full_like(last_end[:, :1], -1), last_end[:, :-1]], dim=1)  # strictly before
    on_state_line = (last_at > end_before).float()
    return step + 0.5 * on_state_line + 1e-5 * pos.float()


class Policy(nn.Module):
    """A policy's causal scores of every token of a (B, T) window."""

    def __init__(self, cfg: ForgetConfig, n_embd: int, block_size: int, ids: TraceTokens):
        super().__init__()
        self.kind = cfg.policy
        self.ids = ids
        if (cfg.policy == "oracle" or cfg.estimator == "imitate") and ids.at_id is None:
            raise ConfigError('the oracle (forget.policy "oracle", forget.estimator "imitate") finds the state '
                              'line by its "@"; this vocabulary has none')
        self.block_size = block_size
        if cfg.policy == "mlp":
            self.scorer = MLPScorer(n_embd + 1, cfg.hidden)
        elif cfg.policy == "cnn":
            self.scorer = CNNScorer(n_embd + 1, cfg.hidden, cfg.kernel)
        elif cfg.policy == "gru":
            self.scorer = GRUScorer(n_embd + 1, cfg.hidden)

    def forward(self, x: torch.Tensor, emb: torch.Tensor | None, noise: torch.Tensor | None = None) -> torch.Tensor:
        """Scores (B, T); `emb` (B, T, C) the LM's token embeddings of x; `noise` (B, T) uniform, the
        random policy's scores."""
        if self.kind in LEARNED:  # each token's embedding and its position in the window (/ block_size)
            pos = torch.arange(x.size(1), device=x.device, dtype=emb.dtype) / self.block_size
            return self.scorer(torch.cat([emb.detach(), pos.expand_as(x)[..., None]], dim=-1)).float()
        if self.kind == "oracle":
            return oracle_scores(x, self.ids)
        if self.kind == "random":
            return noise
        return torch.zeros(x.shape, device=x.device)  # identity: keeps everything anyway


# ----------------------------------------------------------------------------- selection and compaction


def keep_counts(n_ctx: torch.Tensor, keep_ratio: float, recent: int, capacity: int | None = None) -> torch.Tensor:
    """Context tokens kept per row (B,): ceil(keep_ratio * capacity), or ceil(keep_ratio * n) without a
    capacity; at least the `recent` ones, at most n."""
    base = n_ctx if capacity is None else torch.full_like(n_ctx, capacity)
    # float64 on the CPU: the same counts on every device, and MPS has no float64
    k = torch.ceil(base.to("cpu", torch.float64) * keep_ratio).long().to(n_ctx.device)
    return torch.maximum(k, n_ctx.clamp(max=recent)).minimum(n_ctx)


def free_tokens(T: int, n_ctx: torch.Tensor, recent: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(droppable, forced) (B, T): context tokens the policy chooses among, and the last `recent` ones."""
    pos = torch.arange(T, device=n_ctx.device)[None]
    in_ctx = pos < n_ctx[:, None]
    forced = in_ctx & (pos >= n_ctx[:, None] - recent)
    return in_ctx & ~forced, forced


def top_k_keep(logits: torch.Tensor, free: torch.Tensor, forced: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """Kept context tokens (B, T): the forced ones, then the highest `logits` among the free ones,
    k per row in all (ties: the earlier token)."""
    z = logits.masked_fill(~free, -math.inf).masked_fill(forced, math.inf)
    order = z.argsort(dim=1, descending=True, stable=True)
    rank = order.argsort(dim=1)
    return (rank < k[:, None]) & (free | forced)


def explore_logits(scores: torch.Tensor, free: torch.Tensor, temperature: float, epsilon: float) -> torch.Tensor:
    """log q over the free tokens (-inf elsewhere): q = (1 - eps) softmax(s / tau) + eps / n_free."""
    logq = torch.log_softmax((scores / temperature).masked_fill(~free, -math.inf), dim=1)
    if epsilon > 0:
        n_free = free.sum(1, keepdim=True).clamp(min=1)
        logq = torch.logaddexp(logq + math.log1p(-epsilon) if epsilon < 1 else torch.full_like(logq, -math.inf),
                               (epsilon / n_free).log().expand_as(logq))
    return logq.masked_fill(~free, -math.inf)


def row_seeds(keys) -> torch.Tensor:
    """(B,) int64 seeds, one per row: a hash of each row's key, a tuple of non-negative ints (e.g.
    the run's seed, the step and the row's index in the global batch)."""
    return torch.tensor([int(np.random.SeedSequence(list(key)).generate_state(1, np.uint64)[0] >> 1) for key in keys],
                        dtype=torch.long)


def row_noise(seeds: torch.Tensor | None, shape: tuple[int, int], width: int, device) -> torch.Tensor:
    """(B, T) uniform noise in [0, 1): row i the first T of `width` values drawn from seeds[i] (so a
    row's noise is the same in any batch, whatever its width T <= width); None: the global generator."""
    if seeds is None:
        return torch.rand(shape, device=device)
    rows = [torch.rand(width, generator=torch.Generator().manual_seed(s))[:shape[1]] for s in seeds.tolist()]
    return torch.stack(rows).to(device)


def gumbel(u: torch.Tensor) -> torch.Tensor:
    """Standard Gumbel noise from uniform noise u."""
    return -torch.log(-torch.log(u.clamp(1e-9, 1 - 1e-9)))


def straight_through_bias(z: torch.Tensor, keep: torch.Tensor, free: torch.Tensor, k_free: torch.Tensor,
                          temperature: float) -> torch.Tensor:
    """(B, T) attention bias of each kept free token: log p - stop_gradient(log p) (zero forward)."""
    zs = z.masked_fill(~free, -math.inf).sort(dim=1, descending=True).values  # (B, T)
    n_free = free.sum(1)
    last = zs.gather(1, (k_free - 1).clamp(min=0)[:, None]).squeeze(1)
    first_out = zs.gather(1, k_free.clamp(max=z.size(1) - 1)[:, None]).squeeze(1)
    first_out = torch.where(k_free < n_free, first_out, last - 2.0)
    last = torch.where(k_free > 0, last, first_out + 2.0)
    threshold = torch.nan_to_num((last + first_out) / 2, posinf=0.0, neginf=0.0).detach()  # rows with no free token
    logp = F.logsigmoid((z.masked_fill(~free, 0.0) - threshold[:, None]) / temperature)
    return torch.where(keep & free, logp - logp.detach(), torch.zeros_like(logp))


def plackett_luce_logp(logq: torch.Tensor, z: torch.Tensor, free: torch.Tensor, k_free: torch.Tensor) -> torch.Tensor:
    """log P of the ordered sample (the top k_free of z = log q + Gumbel) under Plackett-Luce with
    weights q (B,): sum over picks j of log q_j - log(1 - q of the earlier picks)."""
    order = z.masked_fill(~free, -math.inf).argsort(dim=1, descending=True)
    logq_s = logq.gather(1, order)  # (B, T), picks first
    picked = torch.arange(z.size(1), device=z.device)[None] < k_free[:, None]
    q_s = torch.where(picked, logq_s.exp(), torch.zeros_like(logq_s))
    before = torch.cumsum(q_s, dim=1) - q_s
    terms = logq_s - torch.log((1 - before).clamp(min=1e-6))
    return torch.where(picked, terms, torch.zeros_like(terms)).sum(1)


@dataclass
class Compacted:
    """The gathered sequence: index (B, L) of original positions (the kept context in order, then the
    target), valid (B, L) false on the padding after a row's last kept position."""

    index: torch.Tensor
    valid: torch.Tensor

    def gather(self, t: torch.Tensor, pad) -> torch.Tensor:
        return t.gather(1, self.index).masked_fill(~self.valid, pad)


def compact(keep_ctx: torch.Tensor, n_ctx: torch.Tensor, t_len: torch.Tensor) -> Compacted:
    """Kept context positions, then the target's n_ctx .. n_ctx + t_len - 1, right-padded to the longest row."""
    pos = torch.arange(keep_ctx.size(1), device=keep_ctx.device)[None]
    keep = keep_ctx | ((pos >= n_ctx[:, None]) & (pos < (n_ctx + t_len)[:, None]))
    count = keep.sum(1)
    L = int(count.max())
    index = torch.sort((~keep).to(torch.int8), dim=1, stable=True).indices[:, :L]
    valid = torch.arange(L, device=keep.device)[None] < count[:, None]
    return Compacted(index, valid)


# ----------------------------------------------------------------------------- the model with a policy


class ForgetLM(nn.Module):
    """A GPT and a drop policy; `forward` runs the GPT on the kept context and the target."""

    def __init__(self, gpt: nn.Module, cfg: ForgetConfig, ids: TraceTokens):
        super().__init__()
        self.gpt = gpt
        self.cfg = cfg
        self.policy = Policy(cfg, gpt.config.n_embd, gpt.config.block_size, ids)
        self.register_buffer("baseline", torch.tensor(math.nan))  # reinforce: moving mean reward
        if cfg.freeze_lm:
            gpt.requires_grad_(False)

    @property
    def config(self):
        return self.gpt.config

    @property
    def capacity(self) -> int | None:
        """The budget's base (`keep_of`): the window's context capacity, or None for each context's length."""
        return self.config.block_size - self.cfg.max_target if self.cfg.keep_of == "window" else None

    @property
    def blocks(self):  # the optimizer's Muon takes the GPT's block weights
        return self.gpt.blocks

    def num_params(self, non_embedding: bool = False) -> int:
        return self.gpt.num_params(non_embedding) + sum(p.numel() for p in self.policy.parameters())

    def checkpoint_entry(self) -> dict:
        """What a checkpoint holds beside the GPT: the policy's config and its weights (and baseline)."""
        return {"config": to_dict(self.cfg),
                "state": {k: v for k, v in self.state_dict().items() if not k.startswith("gpt.")}}

    def load_entry(self, entry: dict) -> None:
        missing, unexpected = self.load_state_dict(entry["state"], strict=False)
        wrong = unexpected + [k for k in missing if not k.startswith("gpt.")]
        if wrong:
            raise DataError(f"the checkpoint's forget policy does not fit policy {self.cfg.policy!r} ({wrong[0]})")

    def configure_optimizer(self, weight_decay: float, lr: float, betas, device_type: str):
        from tinylm.model.optim import adamw

        return adamw([p for p in self.parameters() if p.requires_grad], lr, weight_decay, betas, device_type)

    def select(self, x: torch.Tensor, n_ctx: torch.Tensor, seeds: torch.Tensor | None = None,
               progress: float = 1.0):
        """(keep (B, T), key bias (B, T) or None, the scorer's own term or None: log P(kept set) (B,)
        for reinforce, the imitation loss (a scalar) for imitate). Training mode samples as the
        estimator says; eval mode keeps the plain top-k of the scores. `seeds` (B,) seed each row's
        noise (`row_seeds`; None: the global generator)."""
        cfg = self.cfg
        free, forced = free_tokens(x.size(1), n_ctx, cfg.recent)
        if cfg.policy == "identity":
            return free | forced, None, None
        k = keep_counts(n_ctx, cfg.keep_ratio, cfg.recent, self.capacity)
        sampled = self.training and cfg.policy in LEARNED
        noise = (row_noise(seeds, x.shape, self.config.block_size, x.device)
                 if cfg.policy == "random" or sampled else None)
        scores = self.policy(x, self.gpt.wte(x) if cfg.policy in LEARNED else None, noise)
        if not sampled:
            return top_k_keep(scores, free, forced, k), None, None
        if cfg.estimator == "imitate":  # the oracle's kept set at the same budget is the label
            teacher = top_k_keep(oracle_scores(x, self.policy.ids), free, forced, k)
            imitation = F.binary_cross_entropy_with_logits(scores[free], teacher[free].float())
            return top_k_keep(scores, free, forced, k), None, imitation
        temperature, epsilon = cfg.schedule(progress)
        logq = explore_logits(scores, free, temperature, epsilon)
        z = logq + gumbel(noise)
        keep = top_k_keep(z, free, forced, k)
        k_free = k - forced.sum(1)
        if cfg.estimator == "straight_through":
            return keep, straight_through_bias(z, keep, free, k_free, temperature), None
        return keep, None, plackett_luce_logp(logq, z.detach(), free, k_free)

    def forward(self, x: torch.Tensor, y: torch.Tensor, n_ctx: torch.Tensor, t_len: torch.Tensor,
                seeds: torch.Tensor | None = None, progress: float = 1.0):
        """Windows x, y (B, T) with context lengths n_ctx, target lengths t_len and noise seeds (B,) ->
        (logits (B, L, V), labels (B, L), the scorer's extra loss (a scalar), kept context tokens (B,))."""
        keep, bias, own = self.select(x, n_ctx, seeds, progress)
        c = compact(keep, n_ctx, t_len)
        key_bias = None if bias is None else c.gather(bias, 0.0)
        logits, _ = self.gpt(c.gather(x, 0), positions=c.index, key_bias=key_bias)
        labels = c.gather(y, IGNORE)
        extra = logits.new_zeros(())
        if own is not None and self.cfg.estimator == "imitate":
            extra = self.cfg.policy_weight * own
        elif own is not None:
            logp = own
            reward = self.reward(logits.detach(), labels)
            mean, m = global_mean(reward), self.cfg.baseline_momentum
            baseline = mean if self.baseline.isnan() else self.baseline.clone()  # the batches before this one
            extra = -self.cfg.policy_weight * ((reward - baseline) * logp).mean()
            self.baseline.copy_(baseline * m + (1 - m) * mean)
        return logits, labels, extra, keep.sum(1)

    def reward(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Each row's target log-likelihood per token, or its next-token accuracy (B,)."""
        counted = labels != IGNORE
        if self.cfg.reward == "accuracy":
            hit = (logits.argmax(-1) == labels) & counted
        else:
            hit = -lm_loss(logits, labels, reduction="none")
        return hit.float().sum(1) / counted.sum(1).clamp(min=1)


def global_mean(values: torch.Tensor) -> torch.Tensor:
    """The mean of `values` over every rank's rows (equal row counts per rank), or this process's."""
    mean = values.mean()
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.all_reduce(mean)
        mean = mean / torch.distributed.get_world_size()
    return mean


# ----------------------------------------------------------------------------- batches: context + next step


def step_windows(split: TokenSplit, after_step: np.ndarray, block_size: int, max_target: int,
                 eos_id: int, step_id: int) -> tuple[torch.Tensor, ...]:
    """x, y (B, T) int64 and n_ctx, t_len (B,) for the step boundaries at `after_step` (offsets just
    after a step token): the context is the example's tokens before the offset (at most block_size -
    max_target, cut from the left), the target the step that follows, through its closing step token
    or terminator (at most max_target tokens); labels are the target's tokens, -100 elsewhere."""
    tokens, n = split.tokens, len(split.tokens)
    p = np.asarray(after_step, dtype=np.int64)
    example = split.starts[np.searchsorted(split.starts, p, side="right") - 1]
    start = np.maximum(example, p - (block_size - max_target))
    n_ctx = p - start
    t_len = np.empty_like(p)
    for i, q in enumerate(p):  # the target ends at the next step token or terminator
        ahead = np.asarray(tokens[q:q + max_target])
        ends = np.flatnonzero((ahead == step_id) | (ahead == eos_id))
        t_len[i] = ends[0] + 1 if len(ends) else len(ahead)
    idx = start[:, None] + np.arange(block_size + 1)
    window = np.asarray(tokens[np.minimum(idx, n - 1)], dtype=np.int64)
    window[idx >= n] = eos_id
    x, y = window[:, :-1], window[:, 1:].copy()
    j = np.arange(block_size)[None]
    y[(j < n_ctx[:, None] - 1) | (j >= (n_ctx + t_len - 1)[:, None])] = IGNORE
    return tuple(torch.from_numpy(a) for a in (x, y, n_ctx, t_len))


class StepBatchStream(BatchStream):
    """BatchStream's seeded, rank-sliced global batches, each row a step boundary drawn uniformly
    from the split's (every step of every example is a target equally often)."""

    def __init__(self, *args, max_target: int, **kwargs):
        super().__init__(*args, **kwargs)
        self.max_target = max_target

    def global_starts(self, step: int) -> np.ndarray:
        dataset = self.stage(step).dataset
        pool = split_step_starts(dataset, dataset.train)
        return pool[np.random.default_rng([self.seed, step]).integers(0, len(pool), size=self.batch_size)]

    def next(self) -> list[tuple[torch.Tensor, ...]]:
        """The micro-batches (x, y, n_ctx, t_len, seeds) of this rank for the next step; the seeds
        are those of the rows' places in the global batch."""
        step = self.position
        per_rank = self.batch_size // self.world_size
        lo = self.rank * per_rank
        mine = self.global_starts(step)[lo:lo + per_rank]
        seeds = row_seeds((self.seed, step, r) for r in range(lo, lo + per_rank))
        dataset = self.stage(step).dataset
        self.position += 1
        return [(*step_windows(dataset.train, mine[part], self.block_size, self.max_target, dataset.eos_id,
                               dataset.step_id), seeds[part])
                for part in np.array_split(np.arange(per_rank), self.grad_accum)]


def validation_steps(dataset: TokenDataset, block_size: int, max_tokens: int | None) -> np.ndarray:
    """A fixed validation sample: ceil(max_tokens / block_size) step boundaries of val.bin, evenly spread."""
    pool = split_step_starts(dataset, dataset.val)
    n = min(len(pool), -(-max_tokens // block_size)) if max_tokens else len(pool)
    return pool[np.linspace(0, len(pool) - 1, n).round().astype(np.int64)]


def load_forget_model(path, device="cpu"):
    """(ForgetLM in eval mode, tokenizer, checkpoint) from a forgetting run's checkpoint."""
    from tinylm.model.checkpoint import load_model

    gpt, tokenizer, ckpt = load_model(path, device)
    if "forget" not in ckpt:
        raise DataError(f"{path}: not a forgetting run's checkpoint (no 'forget' entry)")
    cfg = from_dict(ForgetConfig, ckpt["forget"]["config"], where=f"{path} (forget)", prefix="forget.")
    lm = ForgetLM(gpt, cfg, TraceTokens.of(tokenizer))
    lm.load_entry(ckpt["forget"])
    return lm.to(device).eval(), tokenizer, ckpt
