"""Model -> generations: batched decoding with a KV cache; greedy, sampling and beam search.

Read top to bottom: samplers (functions of logits only), drafting, the decoding state, the decoder
that turns a state into next-token logits (or verifies drafts), the three strategies, the command
line.

Windows. A model trained on `block_size` tokens sees at most W = block_size of them. Three
semantics for sequences longer than that:

- `window="reference"` (default) reproduces the reference evaluator exactly: to predict token
  L+1 the model sees tokens max(0, L-W)..L with positions restarting at 0. While a row fits in W
  it decodes one token per step through the KV cache. Past W every step moves every position, so
  nothing cached stays valid (not even for relative encodings: a cached key of a deep layer
  remembers tokens that have left the window); such a row recomputes its last W tokens each step,
  batched with the other rows past W, with the final block's queries, MLP and output layer for
  the last position only (`GPT.forward(last=True)`). This bounds the mode's speed: on the first
  100 demo test examples 53% of the generated tokens (10,302 of 19,557) lie past the window, so it
  computes 1.33M token positions against the reference evaluator's 3.05M (every row of a batch of
  10 runs a full 128-token forward per step until the batch's longest budget), at most ~2.3x less
  work, ~2.7x counting the cheaper final block. On a CPU the recomputed windows are split among
  threads of one core each (`on_threads`): 1.15x faster than torch's own threads on the 1,000
  demo test programs (2 cores), less on a few long rows decoding alone.
- `window="step-anchored"` (fast, not the reference's semantics): when a row's window is full it
  is re-anchored at the start of the previous trace step (just after the second-to-last
  "\\n#STEP\\n" token), positions restarting at 0, and re-prefilled from there once; the cache then
  serves every token until the window is full again, about one step later. The determinism filter
  keeps only traces whose consecutive steps fit in W together, so the model always sees the step it
  is copying from. If even that does not fit (a runaway generation), the anchor falls back to the
  start of the current step, then to the last W/2 tokens.
- `window="rolling"` (fast, not the reference's semantics; relative encodings only): sliding-window
  attention, every token attends to the last W slots (itself included) in every layer, through a
  cache that drops its oldest slots when full. No prefill ever repeats, but a deep layer's key
  carries information from up to n_layer * (W - 1) tokens back, a context the model never saw in
  training; on the demo model it scores below step-anchored (BENCHMARKS.md).

Suppressed tokens (`suppress`: ids, such as a text tokenizer's <unk>, <pad> and <bos>) get
logit -inf before any choice, in every strategy, so no generation ever holds one.

Batching. Rows of different prompt lengths are left-padded in one `KVCache` (its `pad`); each row
stops at the terminator `eos_id` or at its own budget. With more prompts than rows, a finished row
takes the next waiting prompt (prefilled into its own cache row); otherwise finished rows are dropped
from the batch once they are a quarter of it, and the batch ends when every row has stopped.

Speculation (greedy only; `speculate` = k, default 4, 0 = off). A trace step re-copies the
program, so the next tokens are often a copy of earlier ones. `draft_tokens` proposes, for each
row, the up-to-k tokens that followed the most recent earlier occurrence of the row's last 3 (else
2, else 1) tokens. One cached forward feeds [last token, draft] per row and takes the greedy token
after every fed token; the longest prefix of the draft equal to those tokens is accepted, plus the
model's token after it, so a step appends 1 to k + 1 tokens per row: the tokens one-token greedy
steps append (the same arg-maxes, computed in one batched forward, as a prefill's are). A draft
never carries a row past the point where its window semantics change (W tokens from `start`:
recomputation in reference mode, a re-anchor in step-anchored mode) nor past its budget. While a
row is past the window in reference mode, steps take one token: that row takes one per step anyway
and sets the number of steps. The cache ends as if the accepted tokens had been fed one by one:
each row's rejected slots are dropped by moving its slots right and raising its `pad` by as many
(positions slot - pad unchanged). Every row feeds the same number of tokens; a shorter draft is
padded with fillers (rejected), and a row too near the window's end for fillers (positions must
stay below W) feeds its last consumed tokens again in front instead. On the first 100 demo test
examples (golden checkpoint, step-anchored, 1 thread) k = 4 accepts 3.1 draft tokens per verified
draft (83% of those drafted) and cuts the decoding steps from 984 to 222, but the wall time by only
~30%: on CPU a forward of 100 rows x 5 tokens costs about twice one of 100 x 1 (matrix products
and attention over the cache, not per-op overhead, at that batch), and the re-anchor prefills
(about as many positions as are generated) do not change. k = 8 accepts 3.8 per step and is slower.
"""

from __future__ import annotations

import codecs
import functools
import math
import sys
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import torch
from torch.nn import functional as F

from tinylm.base.args import ArgumentParser
from tinylm.base.errors import ConfigError
from tinylm.lang.format import STEP
from tinylm.model.gpt import ABSOLUTE_POSITIONS

WINDOWS = ("reference", "step-anchored", "rolling")
SPECULATE = 4  # default draft length of greedy decoding (module docstring)


# -----------------------------------------------------------------------------
# Samplers: (B, V) logits -> (B,) token ids


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


# -----------------------------------------------------------------------------
# Drafting: the next tokens guessed by copying from earlier in the row


def draft_tokens(tokens: torch.Tensor, length: torch.Tensor, k: int,
                 ngrams: Sequence[int] = (3, 2, 1)) -> tuple[torch.Tensor, torch.Tensor]:
    """Prompt-lookup drafts: for each row b of tokens[b, :length[b]], the up-to-k tokens that
    followed the most recent earlier occurrence of its last n tokens (the first n of `ngrams` that
    occurs). Returns drafts (B, k), zero past each row's draft length, and the lengths (B,); 0 when
    no n-gram occurs."""
    B = tokens.size(0)
    N = int(length.max())
    tokens = tokens[:, :N]
    follow = torch.full((B,), -1, dtype=torch.long, device=tokens.device)  # index of the first draft token
    for n in ngrams:
        if N <= n:
            continue
        tail = tokens.gather(1, (length[:, None] - n + torch.arange(n, device=tokens.device)).clamp(min=0))
        starts = torch.arange(N - n + 1, device=tokens.device)
        match = (starts[None] + n < length[:, None]) & (length[:, None] >= n)  # ends before the last token
        for m in range(n):
            match &= tokens[:, m:N - n + 1 + m] == tail[:, m:m + 1]
        latest = torch.where(match, starts[None], -1).max(dim=1).values
        follow = torch.where((follow < 0) & (latest >= 0), latest + n, follow)
    n_draft = torch.where(follow >= 0, (length - follow).clamp(max=k), 0)
    offsets = torch.arange(k, device=tokens.device)
    drafts = tokens.gather(1, (follow.clamp(min=0)[:, None] + offsets[None]).clamp(max=N - 1))
    return drafts.masked_fill(offsets[None] >= n_draft[:, None], 0), n_draft


# -----------------------------------------------------------------------------
# Decoding state


@dataclass
class DecodeState:
    """Everything a batched decode carries from one step to the next; row b of every field and
    of the cache belong together.

    The model has consumed tokens[b, start[b] : length[b]-1] (held in the cache at slots
    [cache.pad[b], cache.length)); the last token tokens[b, length[b]-1] is still to be fed.
    Rows past the window in reference mode (`recompute`) keep no valid cache.
    """

    tokens: torch.Tensor  # (B, N) long: prompt then generated tokens, left-aligned
    length: torch.Tensor  # (B,) tokens in each row
    start: torch.Tensor  # (B,) first token the model sees; it sits at position 0
    prompt_len: torch.Tensor  # (B,)
    budget: torch.Tensor  # (B,) most new tokens
    done: torch.Tensor  # (B,) bool: stopped at the terminator or the budget
    recompute: torch.Tensor  # (B,) bool: past the window in reference mode
    row: torch.Tensor  # (B,) which input prompt the row decodes
    cache: object  # tinylm.model.gpt.KVCache

    @property
    def batch_size(self) -> int:
        return self.tokens.size(0)

    def generated(self, b: int) -> list[int]:
        return self.tokens[b, int(self.prompt_len[b]):int(self.length[b])].tolist()

    def keep(self, index: torch.Tensor) -> None:
        """Keep rows `index` in that order (finished rows dropped, beams reordered)."""
        for name in ("tokens", "length", "start", "prompt_len", "budget", "done", "recompute", "row"):
            setattr(self, name, getattr(self, name).index_select(0, index))
        self.cache.reorder(index)


# -----------------------------------------------------------------------------
# The decoder: state -> next-token logits, with the cache and the window


def on_threads(fn, x: torch.Tensor, workers: int) -> torch.Tensor:
    """fn(x) for a row-wise fn, computed as fn of up to `workers` slices of x's rows side by side
    on as many threads, torch running one thread in each (`fn` sets its own grad mode: it is
    per thread). On a CPU this beats torch's own threads inside each operation: a forward of 100
    windows of 128 tokens through the demo model takes 156 ms on two such threads against 230 ms
    in one call with two torch threads (attention and the small operations hardly use a second
    thread). A slice's rounding can differ from the whole batch's, as with any other batching."""
    parts = x.tensor_split(min(workers, x.size(0)))
    if len(parts) == 1:
        return fn(x)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return torch.cat(list(_thread_pool(len(parts)).map(fn, parts)))
    finally:
        torch.set_num_threads(threads)


@functools.cache
def _thread_pool(workers: int) -> ThreadPoolExecutor:
    return ThreadPoolExecutor(workers, thread_name_prefix="tinylm-decode")


def check_window(model, window: str) -> None:
    """The rolling window needs positions that go on past block_size (a relative encoding)."""
    if window == "rolling" and model.config.pos_encoding in ABSOLUTE_POSITIONS:
        raise ConfigError(f"window='rolling' needs a relative positional encoding; this model has "
                          f"{model.config.pos_encoding} positions, which stop at block_size: use "
                          f"'reference' or 'step-anchored'")


class Decoder:
    """Turns a `DecodeState` into next-token logits for each row, or verifies drafts of the next
    tokens (`speculative_step`), under one window semantics."""

    def __init__(self, model, *, window: str = "reference", step_id: int | None = None,
                 window_size: int | None = None, chunk_tokens: int = 16384, speculate: int = 0,
                 suppress: Sequence[int] = ()):
        if window not in WINDOWS:
            raise ConfigError(f"window must be one of {list(WINDOWS)}, got {window!r}")
        if window == "step-anchored" and step_id is None:
            raise ConfigError("window='step-anchored' needs the id of the \"\\n#STEP\\n\" token (step_id)")
        check_window(model, window)
        self.model = model
        self.window = window
        self.step_id = step_id
        self.W = int(window_size or model.config.block_size)
        if self.W < 2:
            raise ConfigError(f"window size must be at least 2, got {self.W}")
        if self.W > model.config.block_size and model.config.pos_encoding in ABSOLUTE_POSITIONS:
            raise ConfigError(f"a context of {self.W} tokens is past this model's block_size "
                              f"{model.config.block_size}, where its {model.config.pos_encoding} positions stop "
                              f"(longer contexts need a relative encoding)")
        self.band = self.W if window == "rolling" else None  # sliding-window attention
        if not 0 <= speculate < self.W:
            raise ConfigError(f"speculate must be in [0, {self.W}) (the window size), got {speculate}")
        self.speculate = speculate
        self.suppress = sorted(set(suppress))
        if any(not 0 <= i < model.config.vocab_size for i in self.suppress):
            raise ConfigError(f"suppressed token ids must be below vocab_size {model.config.vocab_size}, "
                              f"got {self.suppress}")
        self.chunk_tokens = chunk_tokens
        self.device = model.wte.weight.device
        self.workers = torch.get_num_threads() if self.device.type == "cpu" else 1  # see `on_threads`
        self.positions = 0  # token positions run through the model (prefill + steps + recomputation)
        self.verified = 0  # speculative forwards of rows that had a draft
        self.drafted = 0  # draft tokens those rows fed
        self.accepted = 0  # draft tokens that equalled the model's own greedy choice

    # -- starting ------------------------------------------------------------------------------

    @torch.inference_mode()
    def start(self, prompts: Sequence[Sequence[int]], budgets: Sequence[int], *, rows: int | None = None,
              width: int | None = None) -> DecodeState:
        """A state of `rows` rows (default: one per prompt) holding `prompts`, prefilled.

        `width` is the longest prompt + budget the state must ever hold (for later `admit`s).
        """
        if not prompts:
            raise ConfigError("nothing to decode: no prompts")
        B = rows or len(prompts)
        N = max(width or 0, max(len(p) + n for p, n in zip(prompts, budgets)))
        zeros = torch.zeros(B, dtype=torch.long, device=self.device)
        state = DecodeState(
            tokens=torch.zeros(B, N, dtype=torch.long, device=self.device), length=zeros.clone(),
            start=zeros.clone(), prompt_len=zeros.clone(), budget=zeros.clone(),
            done=torch.ones(B, dtype=torch.bool, device=self.device),
            recompute=torch.zeros(B, dtype=torch.bool, device=self.device), row=zeros - 1,
            cache=self.model.new_cache(B, self.W + max(self.W // 8, 16) + self.speculate),
        )
        self.admit(state, torch.arange(len(prompts), device=self.device), prompts, budgets,
                   list(range(len(prompts))))
        return state

    @torch.inference_mode()
    def admit(self, state: DecodeState, rows: torch.Tensor, prompts: Sequence[Sequence[int]],
              budgets: Sequence[int], ids: Sequence[int]) -> None:
        """Put new prompts into free rows `rows` (finished ones) and prefill them."""
        if min(len(p) for p in prompts) < 1:
            raise ConfigError("every prompt needs at least one token")
        if min(budgets) < 0:
            raise ConfigError(f"max_new_tokens must be >= 0, got {min(budgets)}")
        state.tokens[rows] = 0
        for b, p in zip(rows.tolist(), prompts):
            state.tokens[b, :len(p)] = torch.as_tensor(np.asarray(p, dtype=np.int64))
        length = torch.tensor([len(p) for p in prompts], device=self.device)
        budget = torch.tensor(list(budgets), device=self.device)
        state.length[rows], state.prompt_len[rows], state.budget[rows] = length, length, budget
        state.row[rows] = torch.tensor(list(ids), device=self.device)
        state.start[rows], state.done[rows], state.recompute[rows] = 0, budget == 0, False
        over = rows[length > self.W]
        if self.window == "reference":
            state.recompute[over] = True
        elif self.window == "step-anchored":
            for b in over.tolist():
                state.start[b] = self._anchor(state, b)
        cached = rows[~state.recompute[rows]]
        if len(cached):
            self._prefill(state, cached)

    # -- stepping ------------------------------------------------------------------------------

    @torch.inference_mode()
    def next_logits(self, state: DecodeState) -> torch.Tensor:
        """(B, V) logits for the token after each row's last token; zeros for finished rows."""
        live, cached, past = self._route(state)
        return self._logits(state, live, cached, past)

    def _route(self, state: DecodeState) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Apply the window to rows that outgrew it; (live, cached) masks and the indices of the
        live rows past the window in reference mode."""
        live = ~state.done
        over = live & ~state.recompute & (state.length - state.start > self.W)
        if self.window != "rolling" and over.any():
            if self.window == "reference":
                state.recompute |= over
            else:
                self._reanchor(state, over.nonzero().flatten())
        return live, live & ~state.recompute, (live & state.recompute).nonzero().flatten()

    def _logits(self, state: DecodeState, live: torch.Tensor, cached: torch.Tensor,
                past: torch.Tensor) -> torch.Tensor:
        if not len(past):  # every live row decodes through the cache: no scatter needed
            return self._suppressed(self._cached_step(state, cached).masked_fill_(~live[:, None], 0.0))
        out = torch.zeros(state.batch_size, self.model.config.vocab_size, device=self.device)
        if cached.any():
            out[cached] = self._cached_step(state, cached)[cached]
        out[past] = self._window_forward(state, past)
        return self._suppressed(out)

    def _suppressed(self, logits: torch.Tensor) -> torch.Tensor:
        """(..., V) logits with the suppressed tokens at -inf."""
        if self.suppress:
            logits[..., self.suppress] = float("-inf")
        return logits

    def _cached_step(self, state: DecodeState, cached: torch.Tensor) -> torch.Tensor:
        """Feed each row's last token through the cache; rows not in `cached` feed a dummy token."""
        cache = state.cache
        if cache.length == cache.max_len:
            self._shift_slots(state, cached)
        last = state.tokens.gather(1, (state.length - 1)[:, None])  # (B, 1)
        idx = torch.where(cached[:, None], last, torch.zeros_like(last))
        cache.pad = torch.where(cached, cache.pad, cache.length)  # a dummy sees only itself, at position 0
        logits, _ = self.model(idx, cache=cache, window=self.band)
        self.positions += state.batch_size
        return logits[:, -1]

    @torch.inference_mode()
    def speculative_step(self, state: DecodeState, eos_id: int | None) -> None:
        """Greedy step with prompt-lookup drafts: append 1 to speculate + 1 tokens to each live row,
        the tokens one-token greedy steps would append.

        A one-token step instead while a row recomputes its window (reference mode past W): such
        rows take one token per step and so set the number of steps, and the other rows' extra
        draft positions would only add work."""
        live, cached, past = self._route(state)
        if not len(past):
            drafts, n_draft = self._drafts(state, cached)
            if bool((n_draft > 0).any()):
                self.append(state, *self._verify(state, cached, drafts, n_draft), eos_id)
                return
        self.advance(state, greedy(self._logits(state, live, cached, past)), eos_id)

    def _drafts(self, state: DecodeState, cached: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Drafts of the cached rows, cut so that they stay inside the window (the reference
        semantics' switch to recomputation, or the step-anchored re-anchor) and leave the bonus
        token within the row's budget."""
        drafts, n_draft = draft_tokens(state.tokens, state.length, self.speculate)
        room = self._room(state)
        left = state.budget - (state.length - state.prompt_len)
        n_draft = torch.minimum(n_draft, torch.minimum(room, left - 1)).clamp(min=0)
        return drafts, torch.where(cached, n_draft, 0)

    def _verify(self, state: DecodeState, cached: torch.Tensor, drafts: torch.Tensor,
                n_draft: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One cached forward of [last token, drafts] per row: the model's greedy token after each,
        the longest prefix of the drafts equal to them, and the token after that prefix. Returns
        the tokens to append (B, T) and their counts (B,); the cache keeps the accepted tokens only.

        Every row feeds T tokens. A row with a shorter draft pads it with fillers; a row too close
        to the window's end for fillers (positions must stay below W) feeds its last consumed
        tokens again in front instead, after dropping them from its cache."""
        cache = state.cache
        T = 1 + int(n_draft.max())
        if cache.length + T > cache.max_len:
            self._shift_slots(state, cached)
        room = self._room(state)
        fillers = torch.minimum(T - 1 - n_draft, room - n_draft)
        again = torch.where(cached, T - 1 - n_draft - fillers, 0)  # consumed tokens fed again
        self._shift_rows(cache, again)
        block = self._block(state, cached, drafts, n_draft, again, T)
        cache.pad = torch.where(cached, cache.pad, cache.length)  # a dummy row sees only itself
        logits, _ = self.model(block, cache=cache, window=self.band)
        self.positions += block.numel()
        offsets = torch.arange(T, device=self.device)
        choice = greedy(self._suppressed(logits.flatten(0, 1))).view(-1, T)
        choice = choice.gather(1, (again[:, None] + offsets[None]).clamp(max=T - 1))  # [0]: after the last token
        agree = (drafts[:, :T - 1] == choice[:, :T - 1]) & (offsets[None, :T - 1] < n_draft[:, None])
        accepted = agree.long().cumprod(dim=1).sum(dim=1)
        self._shift_rows(cache, torch.where(cached, T - 1 - again - accepted, 0))  # drop the rejected slots
        self.verified += int((n_draft > 0).sum())
        self.drafted += int(n_draft.sum())
        self.accepted += int(accepted.sum())
        return choice, torch.where(cached, accepted + 1, 0)

    def _block(self, state: DecodeState, cached: torch.Tensor, drafts: torch.Tensor, n_draft: torch.Tensor,
               again: torch.Tensor, T: int) -> torch.Tensor:
        """(B, T) tokens to feed: `again` consumed tokens, the last token, the draft, filler zeros;
        zeros for rows not in `cached`."""
        offsets = torch.arange(T, device=self.device)[None]
        first = (state.length - 1 - again)[:, None]
        known = state.tokens.gather(1, (first + offsets).clamp(max=state.tokens.size(1) - 1))
        guessed = drafts.gather(1, (offsets - again[:, None] - 1).clamp(0, drafts.size(1) - 1))
        is_draft = offsets - again[:, None] - 1 < n_draft[:, None]
        block = torch.where(offsets <= again[:, None], known, torch.where(is_draft, guessed, 0))
        return block.masked_fill(~cached[:, None], 0)

    def _room(self, state: DecodeState) -> torch.Tensor:
        """(B,) tokens each row may still take before its window semantics change (recomputation
        or a re-anchor); the rolling window never changes."""
        if self.window == "rolling":
            return torch.full_like(state.length, self.speculate + 1)
        return self.W - (state.length - state.start)

    @staticmethod
    def _shift_rows(cache, by: torch.Tensor) -> None:
        """Move each row's filled slots right by by[b], dropping its last by[b] slots; positions
        (slot - pad) of the kept slots do not change. (A rolling cache's row may have pad < 0: the
        first by[b] slots then keep stale keys, but they lie more than W slots before any later
        query, outside its sliding window.)"""
        for n in by[by > 0].unique().tolist():
            rows = (by == n).nonzero().flatten()
            lo, end = max(int(cache.pad[rows].min()), 0), cache.length
            for buf in (*cache.k, *cache.v):
                buf[rows, :, lo + n:end] = buf[rows, :, lo:end - n]
        cache.pad = cache.pad + by

    def _window_forward(self, state: DecodeState, rows: torch.Tensor) -> torch.Tensor:
        """Reference semantics past the window: the last W tokens of each row, positions 0..W-1;
        only the last position's logits are computed. On a CPU the windows are split among
        `workers` threads of one core each (`on_threads`)."""
        offs = (state.length[rows] - self.W)[:, None] + torch.arange(self.W, device=self.device)[None]
        windows = state.tokens[rows].gather(1, offs)  # (R, W)
        self.positions += windows.numel()
        return on_threads(self._last_logits, windows, self.workers)

    @torch.inference_mode()
    def _last_logits(self, windows: torch.Tensor) -> torch.Tensor:
        step = max(1, self.chunk_tokens // self.W)
        return torch.cat([self.model(windows[i:i + step], last=True)[0][:, -1]
                          for i in range(0, windows.size(0), step)])

    def _shift_slots(self, state: DecodeState, cached: torch.Tensor) -> None:
        """The cache is full: drop the leading slots no cached row can see (positions unchanged;
        in a rolling window the slots before the last W - 1, so pad may become negative)."""
        cache = state.cache
        m = int(cache.pad[cached].min())
        if self.window == "rolling":
            m = max(m, cache.length - (self.W - 1))
        if m <= 0:
            raise RuntimeError("KV cache full although every row fits in the window")  # a bug, not an input
        n = cache.length - m
        for buf in (*cache.k, *cache.v):
            buf[:, :, :n] = buf[:, :, m:cache.length].clone()
        cache.pad = cache.pad - m
        cache.length = n

    def _anchor(self, state: DecodeState, b: int) -> int:
        """Step-anchored window start for row b: previous step, else current step, else last W/2."""
        L = int(state.length[b])
        toks = state.tokens[b, :L - 1]
        bounds = (toks == self.step_id).nonzero().flatten().tolist()
        for s in ([bounds[-2] + 1] if len(bounds) >= 2 else []) + ([bounds[-1] + 1] if bounds else []):
            if L - s <= self.W:
                return s
        return L - self.W // 2

    def _reanchor(self, state: DecodeState, rows: torch.Tensor) -> None:
        """Move the rows' windows to their anchors and prefill them into their own cache rows."""
        for b in rows.tolist():
            state.start[b] = self._anchor(state, b)
        self._prefill(state, rows)

    def _prefill(self, state: DecodeState, rows: torch.Tensor) -> None:
        """Compute tokens[b, start:length-1] of each row b (positions from 0) into the slots of its
        cache row that end at cache.length; the last token is fed by the next step."""
        cache = state.cache
        n = state.length[rows] - 1 - state.start[rows]
        n_max = int(n.max())
        keep = n_max if self.band is None else min(n_max, self.W - 1)  # a rolling window needs the last W - 1
        if keep > cache.length:  # make room on the left; positions (slot - pad) do not change
            d = keep - cache.length
            for buf in (*cache.k, *cache.v):
                buf[:, :, d:d + cache.length] = buf[:, :, :cache.length].clone()
            cache.pad = cache.pad + d
            cache.length = keep
        small = self.model.new_cache(len(rows), max(n_max, 1))
        small.pad = n_max - n
        if n_max > 0:
            offs = state.start[rows][:, None] + torch.arange(n_max, device=self.device)[None] - small.pad[:, None]
            self.model(state.tokens[rows].gather(1, offs.clamp(min=0)), cache=small, last=True, window=self.band)
            self.positions += len(rows) * n_max
        end = cache.length
        for dst, src in zip((*cache.k, *cache.v), (*small.k, *small.v)):
            dst[rows, :, end - keep:end] = src[:, :, n_max - keep:n_max]
        cache.pad[rows] = end - n_max + small.pad

    # -- bookkeeping ---------------------------------------------------------------------------

    @staticmethod
    def advance(state: DecodeState, ids: torch.Tensor, eos_id: int | None) -> None:
        """Append ids (B,) to the live rows; a row stops at eos_id or at its budget."""
        Decoder.append(state, ids[:, None], torch.ones_like(state.length), eos_id)

    @staticmethod
    def append(state: DecodeState, ids: torch.Tensor, count: torch.Tensor, eos_id: int | None) -> None:
        """Append ids[b, :count[b]] (ids (B, T)) to the live rows, cut after the first eos_id and at
        the budget; a row stops at eos_id or at its budget."""
        live = ~state.done
        offsets = torch.arange(ids.size(1), device=ids.device)[None]
        count = torch.minimum(count, state.budget - (state.length - state.prompt_len)).masked_fill(~live, 0)
        eos = torch.zeros_like(live)
        if eos_id is not None:
            at_eos = (ids == eos_id) & (offsets < count[:, None])
            eos = at_eos.any(dim=1)
            count = torch.where(eos, at_eos.long().argmax(dim=1) + 1, count)
        b, i = (offsets < count[:, None]).nonzero(as_tuple=True)
        state.tokens[b, state.length[b] + i] = ids[b, i].to(state.tokens.dtype)
        state.length += count
        state.done |= live & ((state.length - state.prompt_len >= state.budget) | eos)


# -----------------------------------------------------------------------------
# Strategies


@dataclass
class GenerateConfig:
    """How to decode; the defaults are the reference evaluator's greedy decoding."""

    max_new_tokens: int = 256
    """Most new tokens per prompt (a per-prompt list is accepted by `generate`)."""
    temperature: float = 0.0
    """0 = greedy (arg-max); otherwise the softmax temperature for sampling."""
    top_k: int | None = None
    """Sample among the k most likely tokens only."""
    top_p: float | None = None
    """Sample within the smallest set of tokens of total probability >= top_p."""
    beam: int = 1
    """Beam width; > 1 runs beam search (then temperature/top-k/top-p are not used)."""
    length_penalty: float = 1.0
    """Beam search ranks finished hypotheses by sum of log-probabilities / length ** length_penalty."""
    window: str = "reference"
    """'reference' (exact reference semantics), 'step-anchored' or 'rolling' (fast); see the module docstring."""
    context: int | None = None
    """Tokens the window holds; None: the model's block_size. Longer than block_size (relative
    encodings only) tests length extrapolation: attention distances the model never trained on."""
    seed: int | None = None
    """Seed of the sampler's random stream."""
    stop_at_eos: bool = True
    """Stop a row at the example terminator "\\n\\n"."""
    speculate: int = SPECULATE
    """Greedy only: most draft tokens verified per step (prompt-lookup speculative decoding, exact;
    0 = off); see the module docstring."""

    def validate(self) -> None:
        check_sampling(self.temperature, self.top_k, self.top_p)
        if self.beam < 1:
            raise ConfigError(f"beam must be >= 1, got {self.beam}")
        if self.window not in WINDOWS:
            raise ConfigError(f"window must be one of {list(WINDOWS)}, got {self.window!r}")
        if not math.isfinite(self.length_penalty):
            raise ConfigError(f"length_penalty must be finite, got {self.length_penalty}")
        if not isinstance(self.speculate, int) or self.speculate < 0:
            raise ConfigError(f"speculate must be an integer >= 0, got {self.speculate!r}")
        if self.context is not None and self.context < 2:
            raise ConfigError(f"context must be at least 2 tokens, got {self.context}")


@dataclass
class Generations:
    """Generated ids per prompt (ending with the terminator when the row stopped there) and costs."""

    ids: list[list[int]]
    positions: int  # token positions the model computed
    steps: int  # decoding steps (forward rounds)
    verified: int = 0  # speculative decoding: row-steps that verified a draft
    drafted: int = 0  # draft tokens they verified
    accepted: int = 0  # draft tokens accepted


def _budgets(max_new_tokens, n: int) -> list[int]:
    if isinstance(max_new_tokens, (int, np.integer)):
        return [int(max_new_tokens)] * n
    budgets = [int(x) for x in max_new_tokens]
    if len(budgets) != n:
        raise ConfigError(f"{len(budgets)} budgets for {n} prompts")
    return budgets


@torch.inference_mode()
def generate(model, prompts: Sequence[Sequence[int]], cfg: GenerateConfig | None = None, *,
             eos_id: int | None = None, step_id: int | None = None, max_new_tokens=None,
             sampler: Sampler | None = None, rows: int | None = None, suppress: Sequence[int] = ()) -> Generations:
    """Decode `prompts`, at most `rows` at a time (default: all in one batch); a finished row takes
    the next waiting prompt. `max_new_tokens` (int or one per prompt) overrides cfg's; no
    generation holds a token of `suppress`."""
    cfg = cfg or GenerateConfig()
    cfg.validate()
    if not prompts:
        raise ConfigError("nothing to decode: no prompts")
    budgets = _budgets(cfg.max_new_tokens if max_new_tokens is None else max_new_tokens, len(prompts))
    eos = eos_id if cfg.stop_at_eos else None
    if cfg.beam > 1:
        return beam_search(model, prompts, budgets, width=cfg.beam, length_penalty=cfg.length_penalty,
                           eos_id=eos, window=cfg.window, step_id=step_id, suppress=suppress, context=cfg.context)
    sampler = sampler or Sampler(cfg.temperature, cfg.top_k, cfg.top_p, cfg.seed)
    speculate = cfg.speculate if sampler.is_greedy else 0
    dec = Decoder(model, window=cfg.window, step_id=step_id, speculate=speculate, suppress=suppress,
                  window_size=cfg.context)
    n_rows = min(rows or len(prompts), len(prompts))
    width = max(len(p) + n for p, n in zip(prompts, budgets))
    state = dec.start(prompts[:n_rows], budgets[:n_rows], width=width)
    waiting = list(range(n_rows, len(prompts)))  # continuous batching: finished rows take the next prompts
    out: list[list[int]] = [[] for _ in prompts]
    steps = 0
    while True:
        n_done = int(state.done.sum())
        if n_done and (waiting or n_done == state.batch_size or n_done * 4 >= state.batch_size):
            free = state.done.nonzero().flatten()
            for b in free.tolist():
                if int(state.row[b]) >= 0:
                    out[int(state.row[b])] = state.generated(b)
                    state.row[b] = -1
            if waiting:
                new, waiting = waiting[:len(free)], waiting[len(free):]
                dec.admit(state, free[:len(new)], [prompts[i] for i in new], [budgets[i] for i in new], new)
            elif n_done == state.batch_size:
                break
            else:
                state.keep((~state.done).nonzero().flatten())
            if bool(state.done.all()):
                continue
        if speculate:
            dec.speculative_step(state, eos)
        else:
            dec.advance(state, sampler(dec.next_logits(state)), eos)
        steps += 1
    return Generations(out, dec.positions, steps, dec.verified, dec.drafted, dec.accepted)


def beam_search(model, prompts: Sequence[Sequence[int]], budgets: Sequence[int], *, width: int,
                length_penalty: float = 1.0, eos_id: int | None = None, window: str = "reference",
                step_id: int | None = None, suppress: Sequence[int] = (), context: int | None = None) -> Generations:
    """Beam search on log-softmax scores, `width` beams per prompt, all prompts in one batch.

    A candidate ending in eos_id among the top `width` becomes a finished hypothesis scored
    sum(log p) / length ** length_penalty; a prompt finishes with `width` hypotheses or at its
    budget (its live beams then count as hypotheses). Width 1 is greedy decoding.
    """
    P, k = len(prompts), width
    dec = Decoder(model, window=window, step_id=step_id, suppress=suppress, window_size=context)
    state = dec.start([p for p in prompts for _ in range(k)], [b for b in budgets for _ in range(k)])
    scores = torch.full((P, k), float("-inf"), device=dec.device)
    scores[:, 0] = 0.0  # one live beam at first, so that the k beams differ
    finished: list[list[tuple[float, list[int]]]] = [[] for _ in range(P)]
    active = [budgets[p] > 0 for p in range(P)]
    steps = 0

    def norm(score: float, n: int) -> float:
        return score / max(n, 1) ** length_penalty

    while any(active):
        logp = F.log_softmax(dec.next_logits(state).float(), dim=-1)  # (P*k, V)
        V = logp.size(-1)
        total = (logp + scores.view(-1, 1)).view(P, k * V)
        top, flat = total.topk(min(2 * k, k * V), dim=-1)  # (P, 2k)
        index = torch.arange(P * k, device=dec.device)
        tokens = torch.zeros(P * k, dtype=torch.long, device=dec.device)
        new_scores = scores.clone()
        for p in range(P):
            if not active[p]:
                continue
            chosen = 0
            for rank in range(top.size(1)):
                score, src, tok = float(top[p, rank]), int(flat[p, rank]) // V, int(flat[p, rank]) % V
                if score == float("-inf"):
                    break
                if eos_id is not None and tok == eos_id:
                    if rank < k:
                        ids = state.generated(p * k + src) + [tok]
                        finished[p].append((norm(score, len(ids)), ids))
                    continue
                index[p * k + chosen], tokens[p * k + chosen] = p * k + src, tok
                new_scores[p, chosen] = score
                chosen += 1
                if chosen == k:
                    break
            new_scores[p, chosen:] = float("-inf")
            if len(finished[p]) >= k or chosen == 0:
                active[p] = False
        state.keep(index)
        scores = new_scores
        for p in range(P):
            if not active[p]:
                state.done[p * k:(p + 1) * k] = True
        dec.advance(state, tokens, None)
        steps += 1
        for p in range(P):  # at the budget, the live beams become hypotheses
            if active[p] and bool(state.done[p * k]):
                for j in range(k):
                    if scores[p, j] > float("-inf"):
                        ids = state.generated(p * k + j)
                        finished[p].append((norm(float(scores[p, j]), len(ids)), ids))
                active[p] = False
    out = [max(f, key=lambda h: h[0])[1] if f else [] for f in finished]
    return Generations(out, dec.positions, steps)


# -----------------------------------------------------------------------------
# Command line


def decode_escapes(text: str) -> str:
    """Backslash escapes (\\n, \\t, \\\\, \\u00e9) decoded; every other character, non-ASCII
    included, kept as it is."""
    if "\\" not in text:
        return text
    return codecs.decode(text.encode("latin-1", "backslashreplace"), "unicode_escape")


def cli(argv: list[str]) -> int:
    """tinylm generate --checkpoint C --prompt TEXT [options]: print the prompt and its continuation.

    With a text tokenizer the prompt is read as the start of a document (after <bos>), and the
    continuation never holds <pad>, <bos> or (unless --allow-unk) <unk>."""
    ap = ArgumentParser(prog="tinylm generate", description=cli.__doc__)
    ap.add_argument("--checkpoint", required=True, help="a tinylm checkpoint (.pt)")
    ap.add_argument("--prompt", required=True, help="text to continue (escapes like \\n are decoded)")
    ap.add_argument("--max-new-tokens", type=int, default=256)
    ap.add_argument("--temperature", type=float, default=0.0, help="0 = greedy")
    ap.add_argument("--top-k", type=int, default=None)
    ap.add_argument("--top-p", type=float, default=None)
    ap.add_argument("--beam", type=int, default=1, help="beam width (> 1: beam search)")
    ap.add_argument("--length-penalty", type=float, default=1.0)
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--window", choices=WINDOWS, default="reference")
    ap.add_argument("--context", type=int, default=None, metavar="N",
                    help="tokens the window holds (default: the model's block_size; longer: relative encodings only)")
    ap.add_argument("--speculate", type=int, default=SPECULATE, metavar="K",
                    help="greedy: verify up to K tokens copied from earlier in the text per step (0 = off)")
    ap.add_argument("--allow-unk", action="store_true", help="let a text tokenizer's <unk> be generated")
    ap.add_argument("--device", default="auto", help="auto: a GPU if there is one, else cpu")
    args = ap.parse_args(argv)

    from tinylm.model.checkpoint import load_model

    cfg = GenerateConfig(max_new_tokens=args.max_new_tokens, temperature=args.temperature, top_k=args.top_k,
                         top_p=args.top_p, beam=args.beam, length_penalty=args.length_penalty,
                         window=args.window, context=args.context, seed=args.seed, speculate=args.speculate)
    cfg.validate()
    if not args.prompt:
        raise ConfigError("--prompt is empty; give the text to continue")
    model, tokenizer, _ = load_model(args.checkpoint, args.device)
    prompt = decode_escapes(args.prompt)
    ids = tokenizer.encode(prompt, where="--prompt").astype(np.int64).tolist()
    if not ids:
        raise ConfigError(f"--prompt {args.prompt!r} has no tokens in vocabulary {tokenizer.name}")
    if tokenizer.bos_id is not None:
        ids = [tokenizer.bos_id, *ids]
    step_id = step_token_id(tokenizer) if cfg.window == "step-anchored" else None
    result = generate(model, [ids], cfg, eos_id=tokenizer.eos_id, step_id=step_id,
                      suppress=suppressed_ids(tokenizer, allow_unk=args.allow_unk))
    sys.stdout.write(tokenizer.decode(ids + result.ids[0]))
    sys.stdout.write("\n")
    return 0


def suppressed_ids(tokenizer, *, allow_unk: bool = False) -> list[int]:
    """The special tokens a continuation must not hold: <pad>, <bos> and, unless `allow_unk`, <unk>
    (none for the TinyPy tokenizers, which have no such tokens)."""
    ids = [tokenizer.pad_id, tokenizer.bos_id] + ([] if allow_unk else [tokenizer.unk_id])
    return [i for i in ids if i is not None]


def step_token_id(tokenizer) -> int:
    """Id of the "\\n#STEP\\n" token; a tokenizer without one cannot anchor windows on steps."""
    from tinylm.base.errors import TokenizeError

    try:
        return tokenizer.token_id(STEP)
    except TokenizeError:
        raise ConfigError(f"tokenizer {tokenizer.name} has no \"\\n#STEP\\n\" token: "
                          f"use --window reference") from None
