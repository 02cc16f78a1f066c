"""Model -> generations: batched decoding with a KV cache; greedy, sampling and beam search.

Read top to bottom: samplers (functions of logits only), the decoding state, the decoder that
turns a state into next-token logits, the three strategies, the command line.

Windows. A model trained on `block_size` tokens sees at most W = block_size of them. Two
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
  work, ~2.7x counting the cheaper final block.
- `window="step-anchored"` (fast, not the reference's semantics): when a row's window is full it
  is re-anchored at the start of the previous trace step (just after the second-to-last
  "\\n#STEP\\n" token), positions restarting at 0, and re-prefilled from there once; the cache then
  serves every token until the window is full again, about one step later. The determinism filter
  keeps only traces whose consecutive steps fit in W together, so the model always sees the step it
  is copying from. If even that does not fit (a runaway generation), the anchor falls back to the
  start of the current step, then to the last W/2 tokens.

Batching. Rows of different prompt lengths are left-padded in one `KVCache` (its `pad`); each row
stops at the terminator `eos_id` or at its own budget. With more prompts than rows, a finished row
takes the next waiting prompt (prefilled into its own cache row); otherwise finished rows are dropped
from the batch once they are a quarter of it, and the batch ends when every row has stopped.
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch.nn import functional as F

from tinylm.errors import ConfigError

WINDOWS = ("reference", "step-anchored")
STEP_TOKEN = "\n#STEP\n"


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
    cache: object  # tinylm.model.KVCache

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


class Decoder:
    """Turns a `DecodeState` into next-token logits for each row, under one window semantics."""

    def __init__(self, model, *, window: str = "reference", step_id: int | None = None,
                 window_size: int | None = None, chunk_tokens: int = 16384):
        if window not in WINDOWS:
            raise ConfigError(f"window must be one of {list(WINDOWS)}, got {window!r}")
        if window == "step-anchored" and step_id is None:
            raise ConfigError("window='step-anchored' needs the id of the \"\\n#STEP\\n\" token (step_id)")
        self.model = model
        self.window = window
        self.step_id = step_id
        self.W = int(window_size or model.config.block_size)
        if self.W < 2:
            raise ConfigError(f"window size must be at least 2, got {self.W}")
        self.chunk_tokens = chunk_tokens
        self.device = model.wte.weight.device
        self.positions = 0  # token positions run through the model (prefill + steps + recomputation)

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
            cache=self.model.new_cache(B, self.W + max(self.W // 8, 16)),
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
        else:
            for b in over.tolist():
                state.start[b] = self._anchor(state, b)
        cached = rows[~state.recompute[rows]]
        if len(cached):
            self._prefill(state, cached)

    # -- stepping ------------------------------------------------------------------------------

    @torch.inference_mode()
    def next_logits(self, state: DecodeState) -> torch.Tensor:
        """(B, V) logits for the token after each row's last token; zeros for finished rows."""
        live = ~state.done
        over = live & ~state.recompute & (state.length - state.start > self.W)
        if over.any():
            if self.window == "reference":
                state.recompute |= over
            else:
                self._reanchor(state, over.nonzero().flatten())
        cached = live & ~state.recompute
        past = (live & state.recompute).nonzero().flatten()
        if not len(past):  # every live row decodes through the cache: no scatter needed
            return self._cached_step(state, cached).masked_fill_(~live[:, None], 0.0)
        out = torch.zeros(state.batch_size, self.model.config.vocab_size, device=self.device)
        if cached.any():
            out[cached] = self._cached_step(state, cached)[cached]
        out[past] = self._window_forward(state, past)
        return out

    def _cached_step(self, state: DecodeState, cached: torch.Tensor) -> torch.Tensor:
        """Feed each row's last token through the cache; rows not in `cached` feed a dummy token."""
        cache = state.cache
        if cache.length == cache.max_len:
            self._shift_slots(state, cached)
        last = state.tokens.gather(1, (state.length - 1)[:, None])  # (B, 1)
        idx = torch.where(cached[:, None], last, torch.zeros_like(last))
        cache.pad = torch.where(cached, cache.pad, cache.length)  # a dummy sees only itself, at position 0
        logits, _ = self.model(idx, cache=cache)
        self.positions += state.batch_size
        return logits[:, -1]

    def _window_forward(self, state: DecodeState, rows: torch.Tensor) -> torch.Tensor:
        """Reference semantics past the window: the last W tokens of each row, positions 0..W-1;
        only the last position's logits are computed."""
        offs = (state.length[rows] - self.W)[:, None] + torch.arange(self.W, device=self.device)[None]
        windows = state.tokens[rows].gather(1, offs)  # (R, W)
        step = max(1, self.chunk_tokens // self.W)
        outs = [self.model(windows[i:i + step], last=True)[0][:, -1] for i in range(0, windows.size(0), step)]
        self.positions += windows.numel()
        return torch.cat(outs)

    def _shift_slots(self, state: DecodeState, cached: torch.Tensor) -> None:
        """The cache is full: drop the leading slots no cached row can see (positions unchanged)."""
        cache = state.cache
        m = int(cache.pad[cached].min())
        if m == 0:
            raise RuntimeError("KV cache full although every row fits in the window")  # a bug, not an input
        n = cache.length - m
        for buf in (*cache.k, *cache.v):
            buf[:, :, :n] = buf[:, :, m:cache.length].clone()
        cache.pad = (cache.pad - m).clamp(min=0)
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
        if n_max > cache.length:  # make room on the left; positions (slot - pad) do not change
            d = n_max - cache.length
            for buf in (*cache.k, *cache.v):
                buf[:, :, d:d + cache.length] = buf[:, :, :cache.length].clone()
            cache.pad = cache.pad + d
            cache.length = n_max
        small = self.model.new_cache(len(rows), max(n_max, 1))
        small.pad = n_max - n
        if n_max > 0:
            offs = state.start[rows][:, None] + torch.arange(n_max, device=self.device)[None] - small.pad[:, None]
            self.model(state.tokens[rows].gather(1, offs.clamp(min=0)), cache=small, last=True)
            self.positions += len(rows) * n_max
        end = cache.length
        for dst, src in zip((*cache.k, *cache.v), (*small.k, *small.v)):
            dst[rows, :, end - n_max:end] = src[:, :, :n_max]
        cache.pad[rows] = end - n_max + small.pad

    # -- bookkeeping ---------------------------------------------------------------------------

    @staticmethod
    def advance(state: DecodeState, ids: torch.Tensor, eos_id: int | None) -> None:
        """Append ids (B,) to the live rows; a row stops at eos_id or at its budget."""
        live = ~state.done
        b = live.nonzero().flatten()
        state.tokens[b, state.length[b]] = ids[b].to(state.tokens.dtype)
        state.length[b] += 1
        stop = state.length - state.prompt_len >= state.budget
        if eos_id is not None:
            stop |= ids == eos_id
        state.done |= live & stop


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
    """'reference' (exact reference semantics) or 'step-anchored' (fast); see the module docstring."""
    seed: int | None = None
    """Seed of the sampler's random stream."""
    stop_at_eos: bool = True
    """Stop a row at the example terminator "\\n\\n"."""

    def validate(self) -> None:
        check_sampling(self.temperature, self.top_k, self.top_p)
        if self.beam < 1:
            raise ConfigError(f"beam must be >= 1, got {self.beam}")
        if self.window not in WINDOWS:
            raise ConfigError(f"window must be one of {list(WINDOWS)}, got {self.window!r}")
        if not math.isfinite(self.length_penalty):
            raise ConfigError(f"length_penalty must be finite, got {self.length_penalty}")


@dataclass
class Generations:
    """Generated ids per prompt (ending with the terminator when the row stopped there) and costs."""

    ids: list[list[int]]
    positions: int  # token positions the model computed
    steps: int  # decoding steps (forward rounds)


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
             sampler: Sampler | None = None, rows: int | None = None) -> Generations:
    """Decode `prompts`, at most `rows` at a time (default: all in one batch); a finished row takes
    the next waiting prompt. `max_new_tokens` (int or one per prompt) overrides cfg's."""
    cfg = cfg or GenerateConfig()
    cfg.validate()
    if not prompts:
        raise ConfigError("nothing to decode: no prompts")
    budgets = _budgets(cfg.max_new_tokens if max_new_tokens is None else max_new_tokens, len(prompts))
    eos = eos_id if cfg.stop_at_eos else None
    if cfg.beam > 1:
        return beam_search(model, prompts, budgets, width=cfg.beam, length_penalty=cfg.length_penalty,
                           eos_id=eos, window=cfg.window, step_id=step_id)
    sampler = sampler or Sampler(cfg.temperature, cfg.top_k, cfg.top_p, cfg.seed)
    dec = Decoder(model, window=cfg.window, step_id=step_id)
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
        dec.advance(state, sampler(dec.next_logits(state)), eos)
        steps += 1
    return Generations(out, dec.positions, steps)


def beam_search(model, prompts: Sequence[Sequence[int]], budgets: Sequence[int], *, width: int,
                length_penalty: float = 1.0, eos_id: int | None = None, window: str = "reference",
                step_id: int | None = None) -> Generations:
    """Beam search on log-softmax scores, `width` beams per prompt, all prompts in one batch.

    A candidate ending in eos_id among the top `width` becomes a finished hypothesis scored
    sum(log p) / length ** length_penalty; a prompt finishes with `width` hypotheses or at its
    budget (its live beams then count as hypotheses). Width 1 is greedy decoding.
    """
    P, k = len(prompts), width
    dec = Decoder(model, window=window, step_id=step_id)
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


def cli(argv: list[str]) -> int:
    """tinylm generate --checkpoint C --prompt TEXT [options]: print the prompt and its continuation."""
    ap = argparse.ArgumentParser(prog="tinylm generate", description=cli.__doc__)
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
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args(argv)

    from tinylm.checkpoint import load_model

    cfg = GenerateConfig(max_new_tokens=args.max_new_tokens, temperature=args.temperature, top_k=args.top_k,
                         top_p=args.top_p, beam=args.beam, length_penalty=args.length_penalty,
                         window=args.window, seed=args.seed)
    cfg.validate()
    model, tokenizer, _ = load_model(args.checkpoint, args.device)
    prompt = args.prompt.encode().decode("unicode_escape") if "\\" in args.prompt else args.prompt
    ids = tokenizer.encode(prompt, where="--prompt").astype(np.int64).tolist()
    if not ids:
        raise ConfigError("--prompt is empty")
    step_id = step_token_id(tokenizer) if cfg.window == "step-anchored" else None
    result = generate(model, [ids], cfg, eos_id=tokenizer.eos_id, step_id=step_id)
    sys.stdout.write(tokenizer.decode(ids + result.ids[0]))
    sys.stdout.write("\n")
    return 0


def step_token_id(tokenizer) -> int:
    """Id of the "\\n#STEP\\n" token; a tokenizer without one cannot anchor windows on steps."""
    from tinylm.errors import TokenizeError

    try:
        return tokenizer.token_id(STEP_TOKEN)
    except TokenizeError:
        raise ConfigError(f"tokenizer {tokenizer.name} has no \"\\n#STEP\\n\" token: "
                          f"use --window reference") from None
