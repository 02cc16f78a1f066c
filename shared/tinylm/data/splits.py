"""Where a built example goes: program keys deduplicated and decontaminated (`KeySet`, sorted
64-bit keys), each kept example handed to the first split still short of its count (`Assigner`),
and the split files written under temporary names (`SplitOutput`). tinylm.data.datasets runs
them in program order, which makes a build's bytes independent of its number of workers."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tinylm.base.errors import ConfigError, DataError
from tinylm.base.files import atomic_path, resolve_path
from tinylm.data.spec import DatasetSpec


@dataclass
class Chunk:
    """Kept examples of a run of programs, packed flat; what a shard file holds."""

    keys: np.ndarray          # (n,) uint64 program keys
    text: np.ndarray          # (bytes,) uint8: each trace followed by "\n\n"
    text_offsets: np.ndarray  # (n+1,) int64
    ids: np.ndarray           # (tokens,) token ids: each trace's ids followed by the terminator
    id_offsets: np.ndarray    # (n+1,) int64
    stats: dict               # programs, trace_errors, filtered_out, bytes, seconds per stage

    def __len__(self) -> int:
        return len(self.keys)



def _found(sorted_keys: np.ndarray, table: np.ndarray) -> np.ndarray:
    """Which of the sorted `sorted_keys` occur in the sorted `table` (sorted queries keep each binary
    search near the previous one: about 3x faster than random ones on a large table)."""
    if len(table) == 0:
        return np.zeros(len(sorted_keys), dtype=bool)
    idx = np.minimum(np.searchsorted(table, sorted_keys), len(table) - 1)
    return table[idx] == sorted_keys


def _unique_sorted(keys: np.ndarray) -> np.ndarray:
    return keys[np.concatenate([[True], keys[1:] != keys[:-1]])] if len(keys) else keys


def _merge(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Union of two sorted key arrays: a stable sort of two sorted runs is one linear merge."""
    return _unique_sorted(np.sort(np.concatenate([a, b]), kind="stable"))


def isin_sorted(keys: np.ndarray, table: np.ndarray) -> np.ndarray:
    """Boolean mask: which of `keys` (any order) occur in the sorted array `table`."""
    return KeySet([table]).contains(keys)


class KeySet:
    """A growing set of uint64 keys, kept as sorted arrays whose sizes shrink down the list.

    Adding n keys merges the small tail arrays (amortized O(n log N), each merge linear); a lookup
    is one binary search per array (about log2 of the number of adds). 8 bytes a key: 10M programs
    take 80 MB, where a Python set would take about 1 GB.
    """

    def __init__(self, levels: list[np.ndarray] | None = None) -> None:
        self.levels: list[np.ndarray] = levels or []

    def add(self, keys: np.ndarray) -> None:
        new = _unique_sorted(np.sort(keys))
        while self.levels and len(self.levels[-1]) <= len(new):
            new = _merge(self.levels.pop(), new)
        self.levels.append(new)

    def contains(self, keys: np.ndarray) -> np.ndarray:
        order = np.argsort(keys)
        ordered = keys[order]
        found = np.zeros(len(keys), dtype=bool)
        for level in self.levels:
            found |= _found(ordered, level)
        mask = np.empty(len(keys), dtype=bool)
        mask[order] = found
        return mask

    def sorted(self) -> np.ndarray:
        merged = np.zeros(0, np.uint64)
        for level in reversed(self.levels):  # smallest first
            merged = _merge(level, merged)
        return merged


@dataclass
class SplitOutput:
    """One output file being filled: ids (.bin) or text (.txt)."""

    name: str
    path: Path
    need: int
    heldout: bool
    file: Any = None
    examples: int = 0
    tokens: int = 0

    @property
    def remaining(self) -> int:
        return self.need - self.examples

    def write(self, chunk: Chunk, positions: np.ndarray) -> None:
        mask = np.zeros(len(chunk), dtype=bool)
        mask[positions] = True
        id_mask = np.repeat(mask, np.diff(chunk.id_offsets))
        self.tokens += int(id_mask.sum())
        if self.path.suffix == ".bin":
            self.file.write(chunk.ids[id_mask].tobytes())
        else:
            self.file.write(chunk.text[np.repeat(mask, np.diff(chunk.text_offsets))].tobytes())
        self.examples += len(positions)

    def summary(self) -> dict:
        return {"file": self.path.name, "requested": self.need, "examples": self.examples, "tokens": self.tokens}


@dataclass
class Assigner:
    """Hands examples, in order, to the first split still short; every key is taken at most once."""

    train_keys: KeySet = field(default_factory=KeySet)
    heldout_keys: KeySet = field(default_factory=KeySet)
    banned_train: np.ndarray = field(default_factory=lambda: np.zeros(0, np.uint64))    # other datasets' held-out
    banned_heldout: np.ndarray = field(default_factory=lambda: np.zeros(0, np.uint64))  # other datasets' train

    def select(self, keys: np.ndarray, start: int, out: SplitOutput) -> tuple[np.ndarray, int, int]:
        """Positions (from `start` on) of the next examples `out` takes; the stop position; how many
        examined examples were banned by decontamination."""
        seg = keys[start:]
        banned = isin_sorted(seg, self.banned_heldout if out.heldout else self.banned_train)
        ok = ~banned & ~self.train_keys.contains(seg) & ~self.heldout_keys.contains(seg)
        candidates = np.flatnonzero(ok)
        _, first = np.unique(seg[candidates], return_index=True)  # first occurrence inside the chunk
        taken = np.sort(candidates[first])[:out.remaining]
        stop = int(taken[-1]) + 1 if len(taken) == out.remaining else len(seg)
        return start + taken, start + stop, int(banned[:stop].sum())

    def save_keys(self, folder: Path) -> None:
        """keys_train.npy, keys_heldout.npy: sorted keys, for datasets that decontaminate against this one."""
        for role, keys in [("train", self.train_keys), ("heldout", self.heldout_keys)]:
            with atomic_path(folder / f"keys_{role}.npy") as tmp, open(tmp, "wb") as f:
                np.save(f, keys.sorted(), allow_pickle=False)

    def assign(self, chunk: Chunk, outputs: list[SplitOutput], stats: Counter) -> None:
        position = 0
        for out in outputs:
            if out.remaining <= 0:
                continue
            taken, stop, banned = self.select(chunk.keys, position, out)
            (self.heldout_keys if out.heldout else self.train_keys).add(chunk.keys[taken])
            out.write(chunk, taken)
            stats["kept"] += len(taken)
            stats["contaminated"] += banned
            stats["duplicates"] += stop - position - len(taken) - banned
            position = stop
        stats["surplus"] += len(chunk) - position


def load_banned(spec: DatasetSpec, yaml_path: Path | None, own: list[Path]) -> tuple[np.ndarray, np.ndarray, list]:
    """Union of the train keys and of the held-out keys of every folder in `decontaminate`
    (paths resolved from `yaml_path`); listing one of the dataset's `own` folders is an error."""
    train, heldout, sources = [np.zeros(0, np.uint64)], [np.zeros(0, np.uint64)], []
    for entry in spec.decontaminate:
        other = resolve_path(entry, yaml_path)
        if other.resolve() in {folder.resolve() for folder in own}:
            raise ConfigError(f"{yaml_path or 'config'}: 'decontaminate' lists the dataset itself ({entry})")
        for role, found in [("train", train), ("heldout", heldout)]:
            path = other / f"keys_{role}.npy"
            if not path.is_file():
                raise DataError(f"{path}: not found; build that dataset first (tinylm data build {entry})")
            found.append(np.load(path, allow_pickle=False))
        sources.append({"dataset": entry, "train": len(train[-1]), "heldout": len(heldout[-1])})
    return KeySet(train).sorted(), KeySet(heldout).sorted(), sources
