"""Model -> next tokens: a batch of rows decoded through one KV cache, under a window semantics.

`Decoder` turns a `DecodeState` (the rows' tokens, where each stands, its cache) into next-token
logits, or verifies drafts of the next tokens; the strategies that loop over it (sampling, greedy,
beam search) are in tinylm.decode.strategies, the token choice in tinylm.decode.sampling, the three
window semantics in tinylm.decode.windows. Rows past the window in reference mode recompute their
last W tokens each step, with the final block's queries, MLP and output layer for the last position
only (`GPT.forward(last=True)`); on a CPU those windows are split among threads of one core each
(`on_threads`). BENCHMARKS.md measures both, and speculation, on the demo model.

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
stay below W) feeds its last consumed tokens again in front instead. BENCHMARKS.md has its
acceptance rate and what it saves on the demo model.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import torch

from tinylm.base.errors import ConfigError
from tinylm.decode.sampling import Sampler
from tinylm.decode.windows import make_window

SPECULATE = 4  # default draft length of greedy decoding (module docstring)


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
    cache: object  # tinylm.model.cache.KVCache

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
    per thread). On a CPU this beats torch's own threads inside each operation, which attention and
    the small operations hardly spread (BENCHMARKS.md). A slice's rounding can differ from the
    whole batch's, as with any other batching."""
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


class Decoder:
    """Turns a `DecodeState` into next-token logits for each row (`next_logits`), or takes the next
    tokens itself (`step`: the sampler's choice, greedy with drafts verified when `speculate`),
    under one window semantics (tinylm.decode.windows)."""

    def __init__(self, model, *, window: str = "reference", step_id: int | None = None,
                 window_size: int | None = None, chunk_tokens: int = 16384, speculate: int = 0,
                 suppress: Sequence[int] = (), sampler: Sampler | None = None):
        self.model = model
        self.W = int(window_size or model.config.block_size)
        self.window = make_window(model, window, self.W, step_id)
        self.band = self.window.band  # sliding-window attention
        self.sampler = sampler or Sampler()
        if not 0 <= speculate < self.W:
            raise ConfigError(f"speculate must be in [0, {self.W}) (the window size), got {speculate}")
        if speculate and not self.sampler.is_greedy:
            raise ConfigError("speculative decoding verifies greedy choices: it needs temperature 0")
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
        self.window.admit(state, rows[length > self.W])
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
        if over.any():
            again = self.window.outgrown(state, over.nonzero().flatten())
            if len(again):
                self._prefill(state, again)
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
    def step(self, state: DecodeState, eos_id: int | None) -> None:
        """Append the sampler's next token to each live row, or with `speculate`, 1 to speculate + 1
        greedy tokens."""
        if self.speculate:
            self.speculative_step(state, eos_id)
        else:
            self.advance(state, self.sampler(self.next_logits(state)), eos_id)

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
        self.advance(state, self.sampler(self._logits(state, live, cached, past)), eos_id)

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
        cache.shift_rows(again)
        block = self._block(state, cached, drafts, n_draft, again, T)
        cache.pad = torch.where(cached, cache.pad, cache.length)  # a dummy row sees only itself
        logits, _ = self.model(block, cache=cache, window=self.band)
        self.positions += block.numel()
        offsets = torch.arange(T, device=self.device)
        choice = self.sampler(self._suppressed(logits.flatten(0, 1))).view(-1, T)
        choice = choice.gather(1, (again[:, None] + offsets[None]).clamp(max=T - 1))  # [0]: after the last token
        agree = (drafts[:, :T - 1] == choice[:, :T - 1]) & (offsets[None, :T - 1] < n_draft[:, None])
        accepted = agree.long().cumprod(dim=1).sum(dim=1)
        cache.shift_rows(torch.where(cached, T - 1 - again - accepted, 0))  # drop the rejected slots
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
        """(B,) tokens each row may still take before its window semantics change."""
        return self.window.room(state, self.speculate)

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
        """The cache is full: drop the leading slots no cached row can see (positions unchanged)."""
        m = self.window.needed_from(state.cache, cached)
        if m <= 0:
            raise RuntimeError("KV cache full although every row fits in the window")  # a bug, not an input
        state.cache.drop_leading(m)

    def _prefill(self, state: DecodeState, rows: torch.Tensor) -> None:
        """Compute tokens[b, start:length-1] of each row b (positions from 0) into the slots of its
        cache row that end at cache.length; the last token is fed by the next step."""
        cache = state.cache
        n = state.length[rows] - 1 - state.start[rows]
        n_max = int(n.max())
        keep = n_max if self.band is None else min(n_max, self.W - 1)  # a rolling window needs the last W - 1
        if keep > cache.length:  # make room on the left
            cache.grow_left(keep)
        small = self.model.new_cache(len(rows), max(n_max, 1))
        small.pad = n_max - n
        if n_max > 0:
            offs = state.start[rows][:, None] + torch.arange(n_max, device=self.device)[None] - small.pad[:, None]
            self.model(state.tokens[rows].gather(1, offs.clamp(min=0)), cache=small, last=True, window=self.band)
            self.positions += len(rows) * n_max
        cache.copy_rows(rows, small, n_max - keep, n_max)
        cache.pad[rows] = cache.length - n_max + small.pad

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
