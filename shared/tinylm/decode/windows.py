"""Window semantics: what a model trained on W = block_size tokens sees of a longer sequence.

- `reference` (the default of `tinylm generate`) reproduces the reference evaluator exactly: to
  predict token L+1 the model sees tokens max(0, L-W)..L with positions restarting at 0. While a
  row fits in W it decodes one token per step through the KV cache. Past W every step moves every
  position, so nothing cached stays valid (not even for relative encodings: a cached key of a deep
  layer remembers tokens that have left the window); such a row recomputes its last W tokens each
  step (`DecodeState.recompute`), batched with the other rows past W.
- `step-anchored` (fast, not the reference's semantics; the evaluation default): when a row's
  window is full it is re-anchored at the start of the previous trace step (just after the
  second-to-last "\\n#STEP\\n" token), positions restarting at 0, and re-prefilled from there once;
  the cache then serves every token until the window is full again, about one step later. The
  determinism filter keeps only traces whose consecutive steps fit in W together, so the model
  always sees the step it is copying from. If even that does not fit (a runaway generation), the
  anchor falls back to the start of the current step, then to the last W/2 tokens.
- `rolling` (fast, not the reference's semantics; relative encodings only): sliding-window
  attention, every token attends to the last W slots (itself included) in every layer, through a
  cache that drops its oldest slots when full. No prefill ever repeats, but a deep layer's key
  carries information from up to n_layer * (W - 1) tokens back, a context the model never saw in
  training (BENCHMARKS.md compares the three on the demo model).

Each is a small strategy object the decoder (tinylm.decode.decoder) asks at the points where they
differ: a row admitted with a prompt already past W, a row that outgrows W while decoding, how
many tokens a row may still take before that (which bounds a speculative draft), and which leading
cache slots no row needs any more.
"""

from __future__ import annotations

import torch

from tinylm.base.errors import ConfigError
from tinylm.model.gpt import ABSOLUTE_POSITIONS

WINDOWS = ("reference", "step-anchored", "rolling")


class Window:
    """The reference semantics: a row past the window recomputes its last W tokens every step."""

    name = "reference"
    band: int | None = None  # sliding-window attention width (rolling only)

    def __init__(self, size: int):
        self.size = size

    def admit(self, state, rows: torch.Tensor) -> None:
        """Rows `rows` were admitted with a prompt longer than the window."""
        state.recompute[rows] = True

    def outgrown(self, state, rows: torch.Tensor) -> torch.Tensor:
        """Rows `rows` outgrew the window; returns those whose cache must be prefilled again."""
        state.recompute[rows] = True
        return rows[:0]

    def room(self, state, speculate: int) -> torch.Tensor:
        """(B,) tokens each row may still take before the window semantics change."""
        return self.size - (state.length - state.start)

    def needed_from(self, cache, cached: torch.Tensor) -> int:
        """The first cache slot any row in `cached` may still attend to."""
        return int(cache.pad[cached].min())


class StepAnchoredWindow(Window):
    """A full window restarts at the previous trace step, prefilled once from there."""

    name = "step-anchored"

    def __init__(self, size: int, step_id: int | None):
        if step_id is None:
            raise ConfigError("window='step-anchored' needs the id of the \"\\n#STEP\\n\" token (step_id)")
        super().__init__(size)
        self.step_id = step_id

    def anchor(self, state, b: int) -> int:
        """Row b's window start: the previous step, else the current step, else the last W/2 tokens."""
        L = int(state.length[b])
        bounds = (state.tokens[b, :L - 1] == self.step_id).nonzero().flatten().tolist()
        for s in ([bounds[-2] + 1] if len(bounds) >= 2 else []) + ([bounds[-1] + 1] if bounds else []):
            if L - s <= self.size:
                return s
        return L - self.size // 2

    def admit(self, state, rows: torch.Tensor) -> None:
        for b in rows.tolist():
            state.start[b] = self.anchor(state, b)

    def outgrown(self, state, rows: torch.Tensor) -> torch.Tensor:
        self.admit(state, rows)
        return rows


class RollingWindow(Window):
    """Sliding-window attention over the last W slots; nothing is ever recomputed."""

    name = "rolling"

    def __init__(self, size: int):
        super().__init__(size)
        self.band = size

    def admit(self, state, rows: torch.Tensor) -> None:
        pass  # the prefill keeps the last W - 1 tokens

    def outgrown(self, state, rows: torch.Tensor) -> torch.Tensor:
        return rows[:0]

    def room(self, state, speculate: int) -> torch.Tensor:
        return torch.full_like(state.length, speculate + 1)

    def needed_from(self, cache, cached: torch.Tensor) -> int:
        return max(super().needed_from(cache, cached), cache.length - (self.size - 1))


def check_window(model, window: str) -> None:
    """A known window name; the rolling window needs positions that go on past block_size."""
    if window not in WINDOWS:
        raise ConfigError(f"window must be one of {list(WINDOWS)}, got {window!r}")
    if window == "rolling" and model.config.pos_encoding in ABSOLUTE_POSITIONS:
        raise ConfigError(f"window='rolling' needs a relative positional encoding; this model has "
                          f"{model.config.pos_encoding} positions, which stop at block_size: use "
                          f"'reference' or 'step-anchored'")


def make_window(model, name: str, size: int, step_id: int | None = None) -> Window:
    """The strategy of window `name` holding `size` tokens, checked against the model."""
    check_window(model, name)
    if size < 2:
        raise ConfigError(f"window size must be at least 2, got {size}")
    if size > model.config.block_size and model.config.pos_encoding in ABSOLUTE_POSITIONS:
        raise ConfigError(f"a context of {size} tokens is past this model's block_size "
                          f"{model.config.block_size}, where its {model.config.pos_encoding} positions stop "
                          f"(longer contexts need a relative encoding)")
    if name == "step-anchored":
        return StepAnchoredWindow(size, step_id)
    return RollingWindow(size) if name == "rolling" else Window(size)
