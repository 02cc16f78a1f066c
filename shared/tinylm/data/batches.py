"""Token shards and the batches cut from them.

A dataset folder holds `train.bin` and `val.bin` (token ids, each example followed by the
terminator token "\\n\\n") and `manifest.json` (`tokenizer`, `vocab_size`, `dtype`, `block_size`).
The `.bin` files are memory-mapped, never loaded whole.

A training row is a *window* of `block_size + 1` consecutive tokens starting at offset `s`:
inputs `x = tokens[s : s+T]`, targets `y = tokens[s+1 : s+T+1]`. Two kinds of windows:

- random: `s` uniform over every offset where the window fits (independently per row);
- example-aligned: `s` is the first token of an example (offset 0, or just after a terminator),
  so the model sees prompts at position 0, as it will when it is evaluated;
- step-aligned: `s` is just after a trace step boundary "\\n#STEP\\n", the window a
  step-anchored decoder (`tinylm.decode.decoder`) re-anchors to: the previous step, then the one to write.

A row whose window runs past the end of the data is padded: padded inputs are the terminator,
padded targets are -100 (ignored by the loss).

Packed or not. Windows are cut from the stream of examples as it is (packed: a window runs on
into the next example). Unpacked (`pack=False`, for documents of varying length such as
stories), each row is one example from its start: every target after its terminator is -100 and
every input after it is the tokenizer's `<pad>`, so padding never counts in a loss, a mean or a
perplexity, and (the attention being causal) never changes the logits of the real tokens. An
example longer than the window is cut at the window's end.

`first_examples` keeps only the first N examples of a split (a training-data cap for data-scaling
studies): the split then ends with example N's terminator, so no window reads a token past it.

Loss masks (`mask`):

- "all": every real target token counts.
- "trace": only the tracing the model does when evaluated: targets from the window's first step
  boundary among the inputs up to and including the first terminator. The program the window opens
  with (a prompt, or the previous step of a step-aligned window) is context, never a target, and so
  is whatever follows the example's end.
- "traces": "trace" for every example the window holds: a target counts once a step boundary
  input of its own example lies at or before it in the window, up to and including that example's
  terminator. A packed window runs on into the next example; its program is context, its trace is
  trained (under "trace" the positions past the first terminator are computed and thrown away).
- "step": only the next trace step counts. Let `b` be the last input position holding the step
  boundary token "\\n#STEP\\n" (`x[b] == STEP`). Counted targets are `y[b], y[b+1], ..., y[e]`
  where `e` is the first position `>= b` whose target is a step boundary or a terminator (that
  token is counted: the model learns where the step ends). When the window ends first, the step's
  targets inside the window are counted. A row with no step boundary among its inputs counts
  nothing. With example-aligned windows this trains "given the program and every earlier step,
  write the next step".
- "next-step": only the step right after the window's opening one counts: the targets from the
  first step boundary among the inputs to the end of that step (its boundary or terminator
  included). A window at an example's start trains the prompt -> first step; a window at a step's
  start, that step -> the next. A row whose inputs reach a terminator before any boundary counts
  nothing. With this mask the step-aligned rows draw from the split's *transitions*
  (`transition_starts`): every example's start and every step start but an example's last, so each
  step of each example, the first included, is the target of one pool entry (the reference's
  fine-tuning sampler walks an example's steps in this way, in order; here they are drawn).

Batches are a pure function of (seed, step): `BatchStream` draws the global batch of step `i`
from `numpy.random.default_rng([seed, i])`, and each rank takes its own contiguous slice of the
rows. So N ranks see exactly the rows one process would see, resuming needs only the step
number, and gradient accumulation splits the same rows into micro-batches.

A curriculum is a list of stages (dataset, last step); step `i` draws from the first stage
whose `until_step` exceeds `i`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from tinylm.base.errors import DataError, TinylmError, TokenizeError
from tinylm.lang.format import STEP

IGNORE = -100  # target value the loss skips


@dataclass
class TokenSplit:
    """One memory-mapped split and where its examples start."""

    tokens: np.ndarray   # (N,) token ids, memory-mapped
    starts: np.ndarray   # (E,) int64 offsets of each example's first token
    step_starts: np.ndarray | None = None  # offsets just after each step boundary, found on first use
    transitions: np.ndarray | None = None  # window offsets of every step transition, found on first use

    def __len__(self) -> int:
        return len(self.tokens)


@dataclass
class TokenDataset:
    """A dataset folder: both splits, its manifest and the ids the loss masks need."""

    folder: Path
    manifest: dict
    train: TokenSplit
    val: TokenSplit
    eos_id: int          # terminator "\n\n" (or a text tokenizer's <eos>), ends every example
    step_id: int | None  # "\n#STEP\n", the trace step boundary (None if the vocabulary lacks it)
    pad_id: int | None = None  # a text tokenizer's <pad>: the inputs of unpacked rows after their example

    @property
    def vocab_size(self) -> int:
        return int(self.manifest["vocab_size"])


def offsets_after(tokens: np.ndarray, token_id: int, chunk: int = 1 << 24) -> np.ndarray:
    """Every offset just after an occurrence of `token_id`, read in chunks of the memory map."""
    found = [np.zeros(0, dtype=np.int64)]
    for lo in range(0, len(tokens), chunk):
        hits = np.flatnonzero(np.asarray(tokens[lo:lo + chunk]) == token_id)
        found.append(hits.astype(np.int64) + lo + 1)
    after = np.concatenate(found)
    return after[after < len(tokens)]


def example_starts(tokens: np.ndarray, eos_id: int) -> np.ndarray:
    """Offsets of every example's first token: 0 and each position just after a terminator."""
    return np.concatenate([np.zeros(1, dtype=np.int64), offsets_after(tokens, eos_id)])


def check_ids(tokens: np.ndarray, vocab_size: int, path: Path, chunk: int = 1 << 24) -> None:
    """Every id below `vocab_size`, read in chunks of the memory map; else a DataError at the first one."""
    for lo in range(0, len(tokens), chunk):
        part = np.asarray(tokens[lo:lo + chunk])
        if part.max() >= vocab_size:
            at = lo + int(np.argmax(part >= vocab_size))
            raise DataError(f"{path}: token id {tokens[at]} at offset {at} is outside the manifest's "
                            f"vocabulary (vocab_size {vocab_size})")


def open_split(path: Path, dtype: str, eos_id: int, vocab_size: int) -> TokenSplit:
    if not path.is_file():
        raise DataError(f"{path}: missing (build the dataset first: tinylm data build {path.parent})")
    itemsize, size = np.dtype(dtype).itemsize, path.stat().st_size
    if size % itemsize:
        raise DataError(f"{path}: {size} bytes is not a whole number of {dtype} ids ({itemsize} bytes each)")
    if size < 2 * itemsize:
        raise DataError(f"{path}: holds {size // itemsize} tokens; need at least 2")
    tokens = np.memmap(path, dtype=np.dtype(dtype), mode="r")
    check_ids(tokens, vocab_size, path)
    return TokenSplit(tokens=tokens, starts=example_starts(tokens, eos_id))


def first_examples(split: TokenSplit, n: int) -> TokenSplit:
    """The split's first `n` examples (1 <= n <= the examples it holds), ending at example n's terminator."""
    if not 1 <= n <= len(split.starts):
        raise ValueError(f"cannot keep {n} examples of a split holding {len(split.starts)}")
    end = int(split.starts[n]) if n < len(split.starts) else len(split.tokens)
    return TokenSplit(tokens=split.tokens[:end], starts=split.starts[:n])


def read_manifest(folder: str | Path) -> dict:
    """A dataset folder's manifest.json, its keys checked: `tokenizer` (a mapping), `vocab_size` (a
    positive integer) and `dtype` (uint8, uint16 or uint32, wide enough for vocab_size)."""
    folder = Path(folder)
    path = folder / "manifest.json"
    if not folder.is_dir():
        raise DataError(f"{folder}: no such dataset folder (build it with: tinylm data build {folder})")
    if not path.is_file():
        raise DataError(f"{path}: missing; is {folder} a built dataset folder?")
    try:
        manifest = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: malformed JSON: {exc}") from None
    if not isinstance(manifest, dict):
        raise DataError(f"{path}: expected a JSON object, got {type(manifest).__name__}")
    missing = [k for k in ("tokenizer", "vocab_size", "dtype") if k not in manifest]
    if missing:
        raise DataError(f"{path}: missing keys {missing}")
    tokenizer, vocab_size, dtype = manifest["tokenizer"], manifest["vocab_size"], manifest["dtype"]
    if not isinstance(tokenizer, dict):
        raise DataError(f"{path}: tokenizer must be a mapping (a Tokenizer.to_dict()), got {type(tokenizer).__name__}")
    if not isinstance(vocab_size, int) or isinstance(vocab_size, bool) or vocab_size < 1:
        raise DataError(f"{path}: vocab_size must be a positive integer, got {vocab_size!r}")
    if dtype not in ("uint8", "uint16", "uint32"):
        raise DataError(f"{path}: dtype {dtype!r} is not uint8, uint16 or uint32")
    if vocab_size > np.iinfo(dtype).max + 1:
        raise DataError(f"{path}: dtype {dtype} cannot hold the ids of vocab_size {vocab_size}")
    return manifest


def open_dataset(folder: str | Path) -> TokenDataset:
    """Map a dataset folder's splits; read the terminator and step ids from its tokenizer."""
    from tinylm.tokens.load import tokenizer_from_dict

    folder = Path(folder)
    manifest = read_manifest(folder)
    where = folder / "manifest.json"
    try:
        tokenizer = tokenizer_from_dict(manifest["tokenizer"])
    except TinylmError as exc:
        raise DataError(f"{where}: {exc}") from None
    if tokenizer.vocab_size != manifest["vocab_size"]:
        raise DataError(f"{where}: vocab_size {manifest['vocab_size']} but its tokenizer {tokenizer.name} "
                        f"has {tokenizer.vocab_size} tokens")
    eos_id = tokenizer.eos_id
    if eos_id is None:
        raise DataError(f"{folder}: its tokenizer has no terminator token '\\n\\n'")
    try:
        step_id = tokenizer.token_id(STEP)
    except TokenizeError:  # a vocabulary without a step token: "step" masks are unavailable
        step_id = None
    splits = {name: open_split(folder / f"{name}.bin", manifest["dtype"], eos_id, tokenizer.vocab_size)
              for name in ("train", "val")}
    return TokenDataset(folder=folder, manifest=manifest, eos_id=eos_id, step_id=step_id,
                        pad_id=tokenizer.pad_id, **splits)


# ----------------------------------------------------------------------------- windows and masks

def read_windows(split: TokenSplit, starts: np.ndarray, block_size: int, pad_id: int
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Inputs and targets, each (B, T) int64, for windows starting at `starts`; padded past the end."""
    n = len(split.tokens)
    idx = np.asarray(starts, dtype=np.int64)[:, None] + np.arange(block_size + 1)  # (B, T+1)
    real = idx < n
    window = np.asarray(split.tokens[np.minimum(idx, n - 1)], dtype=np.int64)
    x = np.where(real[:, :-1], window[:, :-1], pad_id)
    y = np.where(real[:, 1:], window[:, 1:], IGNORE)
    return x, y


def step_targets(x: np.ndarray, y: np.ndarray, step_id: int, eos_id: int) -> np.ndarray:
    """`y` with every target outside the next trace step set to -100 (see the module docstring)."""
    B, T = x.shape
    pos = np.arange(T)
    is_step = x == step_id                                            # (B, T)
    has_step = is_step.any(axis=1)
    b = T - 1 - np.argmax(is_step[:, ::-1], axis=1)                   # last step boundary among inputs
    ends = ((y == step_id) | (y == eos_id)) & (pos >= b[:, None])     # candidate step ends
    e = np.where(ends.any(axis=1), np.argmax(ends, axis=1), T - 1)    # first end at or after b
    keep = has_step[:, None] & (pos >= b[:, None]) & (pos <= e[:, None])
    return np.where(keep, y, IGNORE)


def next_step_targets(x: np.ndarray, y: np.ndarray, step_id: int, eos_id: int) -> np.ndarray:
    """`y` with every target outside the step after the window's opening one set to -100 (see the
    module docstring)."""
    B, T = x.shape
    pos = np.arange(T)
    is_step = x == step_id
    has_step = is_step.any(axis=1)
    b = np.argmax(is_step, axis=1)                                    # first step boundary among inputs
    crossed = ((x == eos_id) & (pos < b[:, None])).any(axis=1)       # another example's boundary
    ends = ((y == step_id) | (y == eos_id)) & (pos >= b[:, None])
    e = np.where(ends.any(axis=1), np.argmax(ends, axis=1), T - 1)
    keep = (has_step & ~crossed)[:, None] & (pos >= b[:, None]) & (pos <= e[:, None])
    return np.where(keep, y, IGNORE)


def trace_targets(x: np.ndarray, y: np.ndarray, step_id: int, eos_id: int) -> np.ndarray:
    """`y` with every target before the first step boundary input or after the first terminator
    target set to -100 (see the module docstring)."""
    begun = np.cumsum(x == step_id, axis=1) > 0                      # at or after the first boundary
    ended = np.cumsum(y == eos_id, axis=1) - (y == eos_id) > 0        # strictly after the first terminator
    return np.where(begun & ~ended, y, IGNORE)


def traces_targets(x: np.ndarray, y: np.ndarray, step_id: int, eos_id: int) -> np.ndarray:
    """`y` with every target that precedes its own example's first step boundary input in the
    window set to -100 (see the module docstring)."""
    steps_seen = np.cumsum(x == step_id, axis=1)
    # boundaries seen when the target's example began: the count at its last terminator input
    at_start = np.maximum.accumulate(np.where(x == eos_id, steps_seen, 0), axis=1)
    return np.where(steps_seen > at_start, y, IGNORE)


MASKS = {"step": step_targets, "next-step": next_step_targets, "trace": trace_targets, "traces": traces_targets}
"""The loss masks that read trace steps (every other target counts under "all")."""


STATE_OPEN, STATE_CLOSES, LINE_MARKER = "$", ("|", "\n", STEP, "\n\n"), "@"
"""The tokens that open a trace state, end it, and mark the line that runs (every trace format)."""


def state_targets(y: torch.Tensor, open_id: int, close_ids: torch.Tensor, marker_id: int) -> torch.Tensor:
    """(B, T) bool: the targets of a trace state, from the `$` that opens it up to the token before the
    `|`, newline, step boundary or terminator that ends it, and the `@` targets that mark the line
    that runs. A row opening inside a state starts counting at its next `$`."""
    pos = torch.arange(y.shape[1]).expand_as(y)
    last_open = torch.where(y == open_id, pos, -1).cummax(dim=1).values
    last_close = torch.where(torch.isin(y, close_ids), pos, -1).cummax(dim=1).values
    return (last_open > last_close) | (y == marker_id)


def unpacked_rows(x: np.ndarray, y: np.ndarray, eos_id: int, pad_id: int) -> tuple[np.ndarray, np.ndarray]:
    """Each row cut after its first terminator target: later inputs `pad_id`, later targets -100."""
    after = np.cumsum(y == eos_id, axis=1) - (y == eos_id) > 0    # strictly after the first terminator target
    return np.where(after, pad_id, x), np.where(after, IGNORE, y)


def make_batch(dataset: TokenDataset, split: TokenSplit, starts: np.ndarray, block_size: int,
               mask: str = "all", pack: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """(x, y) host tensors for windows at `starts`, with the loss mask applied to `y`; unpacked
    (`pack=False`), each row ends at its example's terminator and is padded after it."""
    x, y = read_windows(split, starts, block_size, pad_id=dataset.eos_id)
    if not pack:
        if dataset.pad_id is None:
            raise DataError(f"{dataset.folder}: its tokenizer has no <pad> token; unpacked rows need one")
        x, y = unpacked_rows(x, y, dataset.eos_id, dataset.pad_id)
    if mask in MASKS:
        if dataset.step_id is None:
            raise DataError(f"{dataset.folder}: its vocabulary has no step token; {mask!r} masks need one")
        masked = MASKS[mask]
        y = masked(x, y, dataset.step_id, dataset.eos_id)
    return torch.from_numpy(x), torch.from_numpy(y)


def split_step_starts(dataset: TokenDataset, split: TokenSplit) -> np.ndarray:
    """The split's step-aligned window offsets, found once and kept on the split."""
    if split.step_starts is None:
        if dataset.step_id is None:
            raise DataError(f"{dataset.folder}: its vocabulary has no step token; step-aligned windows need one")
        split.step_starts = offsets_after(split.tokens, dataset.step_id)
    return split.step_starts


def transition_starts(dataset: TokenDataset, split: TokenSplit) -> np.ndarray:
    """Window offsets of every step transition of the split, found once and kept on the split: each
    example's start (prompt -> first step) and each step start followed by another step of the same
    example (step -> next step). An example of n steps has n of them."""
    if split.transitions is None:
        steps = split_step_starts(dataset, split)
        following = np.append(steps[1:], np.iinfo(np.int64).max)        # the next step start after each
        example_after = np.append(split.starts, len(split.tokens))[np.searchsorted(split.starts, steps, "right")]
        split.transitions = np.union1d(split.starts, steps[following < example_after])
    return split.transitions


def step_pool(dataset: TokenDataset, split: TokenSplit, mask: str) -> np.ndarray:
    """Where step-aligned rows start: the transitions under the "next-step" mask, else every step start."""
    return transition_starts(dataset, split) if mask == "next-step" else split_step_starts(dataset, split)


def draw_starts(split: TokenSplit, rows: int, block_size: int, aligned_fraction: float,
                rng: np.random.Generator, step_fraction: float = 0.0,
                step_pool: np.ndarray | None = None) -> np.ndarray:
    """`rows` window offsets: round(aligned_fraction * rows) example-aligned, round(step_fraction *
    rows) step-aligned (drawn from `step_pool`), the rest random.

    Which rows get which kind is itself drawn, so each kind is spread over ranks and micro-batches.
    """
    n = len(split.tokens)
    last = max(n - block_size - 1, 0)                     # last offset where a full window fits

    def fitting(pool: np.ndarray) -> np.ndarray:          # pools are sorted
        inside = pool[: np.searchsorted(pool, last, side="right")]
        return inside if len(inside) else pool

    aligned_pool = fitting(split.starts)
    offsets = rng.integers(0, last + 1, size=rows)
    kind = rng.permutation(rows)
    n_aligned = round(aligned_fraction * rows)
    picks = aligned_pool[rng.integers(0, len(aligned_pool), size=rows)]
    starts = np.where(kind < n_aligned, picks, offsets)
    if step_fraction > 0:
        steps = fitting(step_pool)
        step_picks = steps[rng.integers(0, len(steps), size=rows)]
        is_step = (kind >= n_aligned) & (kind < n_aligned + round(step_fraction * rows))
        starts = np.where(is_step, step_picks, starts)
    return starts.astype(np.int64)


def validation_starts(split: TokenSplit, block_size: int, max_tokens: int | None = None,
                      aligned_fraction: float = 0.0, step_fraction: float = 0.0,
                      step_pool: np.ndarray | None = None) -> np.ndarray:
    """A fixed validation sample with training's mix of window kinds, spread evenly over the split.

    Of n = ceil(max_tokens / block_size) windows (None or 0: as many as tile the split),
    round(aligned_fraction * n) start at examples and round(step_fraction * n) after step
    boundaries, each kind taken at evenly spaced indices of its pool; the rest tile the split from
    its start, each target token once. A model trained only on aligned windows is thus validated on
    the windows it will see, not on windows starting mid-line.
    """
    tiles = np.arange(0, len(split.tokens) - 1, block_size, dtype=np.int64)
    n = -(-max_tokens // block_size) if max_tokens else len(tiles)
    n_aligned, n_step = round(aligned_fraction * n), round(step_fraction * n) if step_pool is not None else 0

    def spread(pool: np.ndarray, k: int) -> np.ndarray:
        return pool[np.linspace(0, len(pool) - 1, k).round().astype(np.int64)] if k and len(pool) else pool[:0]

    parts = [spread(split.starts, n_aligned), spread(step_pool, n_step) if n_step else tiles[:0],
             tiles[: n - n_aligned - n_step]]
    return np.concatenate(parts).astype(np.int64)


# ----------------------------------------------------------------------------- the batch stream

@dataclass
class Stage:
    """One curriculum stage: draw from `dataset` for every step below `until_step` (None: to the end)."""

    dataset: TokenDataset
    until_step: int | None = None


class BatchStream:
    """This rank's micro-batches for each optimizer step; its position is the whole of its state.

    The global batch of step `i` has `batch_size` rows drawn with `default_rng([seed, i])`; rank
    `r` of `W` takes rows `[r*B/W, (r+1)*B/W)` and cuts them into `grad_accum` micro-batches.
    """

    def __init__(self, stages: list[Stage], block_size: int, batch_size: int, grad_accum: int = 1,
                 aligned_fraction: float = 0.0, mask: str = "all", seed: int = 0,
                 rank: int = 0, world_size: int = 1, step_fraction: float = 0.0, pack: bool = True):
        if batch_size % (world_size * grad_accum):
            raise DataError(f"batch_size {batch_size} is not divisible by world size {world_size} "
                            f"x grad_accum {grad_accum}")
        self.stages = stages
        self.block_size = block_size
        self.batch_size = batch_size
        self.grad_accum = grad_accum
        self.aligned_fraction = aligned_fraction
        self.step_fraction = step_fraction
        self.mask = mask
        self.pack = pack
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.position = 0  # the step whose batch comes next

    def stage(self, step: int) -> Stage:
        for stage in self.stages:
            if stage.until_step is None or step < stage.until_step:
                return stage
        return self.stages[-1]

    def global_starts(self, step: int) -> np.ndarray:
        """Window offsets of every row of step `step`'s global batch, identical on every rank."""
        dataset = self.stage(step).dataset
        rng = np.random.default_rng([self.seed, step])
        pool = step_pool(dataset, dataset.train, self.mask) if self.step_fraction > 0 else None
        return draw_starts(dataset.train, self.batch_size, self.block_size, self.aligned_fraction, rng,
                           self.step_fraction, pool)

    def next(self) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """The `grad_accum` micro-batches (x, y) of this rank for the next step; advances the position."""
        step = self.position
        per_rank = self.batch_size // self.world_size
        mine = self.global_starts(step)[self.rank * per_rank:(self.rank + 1) * per_rank]
        dataset = self.stage(step).dataset
        self.position += 1
        return [make_batch(dataset, dataset.train, rows, self.block_size, self.mask, self.pack)
                for rows in np.split(mine, self.grad_accum)]

    def state_dict(self) -> dict:
        return {"position": self.position, "seed": self.seed, "batch_size": self.batch_size}

    def load_state_dict(self, state: dict) -> None:
        if state["seed"] != self.seed or state["batch_size"] != self.batch_size:
            raise DataError(f"sampler state was saved with seed {state['seed']} and batch_size "
                            f"{state['batch_size']}; this run has {self.seed} and {self.batch_size}")
        self.position = int(state["position"])
