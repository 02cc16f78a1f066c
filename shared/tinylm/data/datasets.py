"""Dataset builds: a folder's committed `dataset.yaml` -> train.bin, val.bin, test.txt, OOD suites.

`tinylm data build datasets/NAME` runs the whole chain in a pool of worker processes:

    generate -> trace -> tokenize -> filter -> key     (per shard, in the workers)
    dedup -> decontaminate -> split -> write           (in order, in the main process)

A *stream* is one generator with its seed: the main stream (feeding test, val, train, in that
order) and one stream per OOD suite. The generator is one preset, or a `Mixture` of presets in
given proportions (a `generator.mix` section). Stream programs are cut into shards of
`shard_size` consecutive program indices; shard k holds programs [k*S, (k+1)*S), and program i
depends only on (spec, seed, i). Each shard is written atomically to
`shards/<stream>.<fingerprint>/NNNNNN.npz` (keys, traces, token ids, stage counts), so a killed
build resumes without redoing finished shards, and shards of a changed config are never reused.

The main process reads shards strictly in index order, whatever the number of workers, and hands
each kept example to the first split still short of its count; once every count is met the
stream stops (so generation oversamples exactly as much as errors, the filter and duplicates
require). Same YAML and seed -> identical bytes with 1 or N workers. Only one shard is in memory
at a time; program keys live in a `KeySet` (8 bytes a program).

Dedup and decontamination use `program_key` of the program part of a trace (the text before the
first "\\n#STEP\\n"), cut to its first 8 bytes. Within a dataset every program appears at most once
(first occurrence wins). A folder listed in `decontaminate` must be built first; its key files
ban its training programs from this dataset's held-out splits (val, test, OOD) and its held-out
programs from this dataset's train split.

Outputs (written under temporary names, renamed when the build completes; manifest last):
`train.bin`, `val.bin` (token ids, each example followed by the terminator "\\n\\n"),
`test.txt`, `ood_<suite>.txt` (traces, each followed by a blank line), `keys_train.npy`,
`keys_heldout.npy` (sorted 64-bit program keys) and `manifest.json`.

The stages also run one at a time on text files, sharing the code above:
`tinylm data generate|trace|filter|prepare` (see `cli`); `prepare` dedups and decontaminates
as the build does.

`tinylm data rename` makes the renamed-variables OOD suite from an evaluation of a built
dataset's test split: the hard-matched examples, with names that dataset's train split never
holds (`tinylm.lang.rename`), re-traced and filtered as the build would.

A folder whose `dataset.yaml` says `kind: text` is a text corpus, built by `tinylm.data.corpus`
(`build` hands it over; `load_dataset_spec` reads either kind).
"""

from __future__ import annotations

import argparse
import concurrent.futures as futures
import contextlib
import hashlib
import json
import math
import random
import re
import shutil
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from tinylm.base.args import ArgumentParser
from tinylm.base.config import load_config, to_dict
from tinylm.base.errors import ConfigError, DataError, TinylmError, TokenizeError
from tinylm.base.files import atomic_path, atomic_write_json, resolve_path, run_metadata
from tinylm.data.shards import (
    FORMAT,
    code_fingerprint,
    default_workers,
    is_text_spec,
    make_executor,
    ordered_map,
    remove_stale,
    spec_file,
    window,
    worker_tokenizer,
)
from tinylm.lang.format import EXAMPLE_END, STEP, iter_examples, split_examples

ALPHABET = "".join(chr(c) for c in range(32, 127)) + "\t\n"  # learned vocabularies cover all of it
STAGED_OVERSAMPLE = 1.5     # `data generate` on a dataset folder: programs per requested example
_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]*$")


# ----------------------------------------------------------------------------------------------
# The dataset spec: one dataclass per section of dataset.yaml


@dataclass
class MixComponent:
    """One generator of a mixture, and its share of the stream."""

    preset: str = "demo"
    """A name from `tinylm.lang.spec.PRESETS`."""
    weight: float = 1.0
    """Relative share of the stream's programs (> 0)."""
    overrides: dict[str, Any] = field(default_factory=dict)
    """Knobs changed on top of the preset (nested mappings or dotted keys)."""


@dataclass
class GeneratorConfig:
    """Which generator produces a stream's programs: one preset, or a mixture of several."""

    preset: str = "demo"
    """A name from `tinylm.lang.spec.PRESETS` (not read with `mix`)."""
    overrides: dict[str, Any] = field(default_factory=dict)
    """Knobs changed on top of the preset (nested mappings or dotted keys; not read with `mix`)."""
    mix: list[MixComponent] | None = None
    """Generators drawn in proportion to their weights instead of one preset (see `Mixture`)."""

    def resolve(self, where: str = "generator"):
        """The validated `GeneratorSpec`, or a `Mixture` of them; errors name `where`'s keys."""
        if self.mix is None:
            return _resolve_preset(self.preset, self.overrides, where)
        if self.preset != GeneratorConfig.preset or self.overrides:
            raise ConfigError(f"'{where}': give either 'preset' (with 'overrides') or 'mix', not both")
        if not self.mix:
            raise ConfigError(f"'{where}.mix' must list at least one generator")
        generators = []
        for k, part in enumerate(self.mix):
            if not (math.isfinite(part.weight) and part.weight > 0):
                raise ConfigError(f"'{where}.mix[{k}].weight' must be a number > 0, got {part.weight}")
            generators.append(_resolve_preset(part.preset, part.overrides, f"{where}.mix[{k}]"))
            if generators[-1].header != generators[0].header:
                raise ConfigError(f"'{where}.mix[{k}].preset': its header line {generators[-1].header!r} differs "
                                  f"from {generators[0].header!r} of '{where}.mix[0]' (components share one)")
        return Mixture([p.preset for p in self.mix], [p.weight for p in self.mix], generators)


def _resolve_preset(name: str, overrides: dict, where: str):
    from tinylm.lang.spec import preset

    try:
        return preset(name, **overrides)
    except ConfigError as exc:
        raise ConfigError(f"'{where}': {exc}") from None


@dataclass
class TokenizerConfig:
    """How token ids are made: a fixed keyword vocabulary, or one learned from the first traces."""

    kind: Literal["keyword", "char", "sentencepiece"] = "keyword"
    vocab: str = "demo"
    """Keyword vocabulary name (kind: keyword)."""
    model_type: Literal["bpe", "unigram"] = "bpe"
    """SentencePiece model type (kind: sentencepiece)."""
    vocab_size: int = 512
    """SentencePiece vocabulary size (kind: sentencepiece)."""
    sample: int = 10000
    """char/sentencepiece: learned from the first `sample` traces of the main stream (plus every
    printable ASCII character, so that a character rare in the sample still has a token)."""


@dataclass
class SplitSizes:
    """Examples per split of the main stream; filled in the order test, val, train."""

    train: int = 20000
    val: int = 2000
    test: int = 1000


@dataclass
class OODSuite:
    """An out-of-distribution test suite: another preset, written to `ood_<name>.txt`."""

    name: str = ""
    generator: GeneratorConfig = field(default_factory=GeneratorConfig)
    count: int = 1000


@dataclass
class DatasetSpec:
    """A dataset folder's `dataset.yaml`."""

    generator: GeneratorConfig = field(default_factory=GeneratorConfig)
    trace_format: Literal["demo", "m2", "2026"] = "demo"
    """Trace format given to `tinylm.lang.trace`."""
    block_size: int = 128
    """Determinism filter context (tokens); 0 keeps every trace."""
    tokenizer: TokenizerConfig = field(default_factory=TokenizerConfig)
    splits: SplitSizes = field(default_factory=SplitSizes)
    ood: list[OODSuite] = field(default_factory=list)
    seed: int = 0
    """Main stream seed; an OOD suite's seed is derived from it and the suite's name."""
    decontaminate: list[str] = field(default_factory=list)
    """Built dataset folders (relative to the repository root) this one must not overlap."""
    shard_size: int = 10000
    """Programs per shard: the unit of parallel work and of resume."""
    max_oversample: float = 20.0
    """Give up when a stream needs more than this many programs per requested example."""

    def validate(self) -> None:
        for key, value, low in [("block_size", self.block_size, 0), ("splits.train", self.splits.train, 0),
                                ("splits.val", self.splits.val, 0), ("splits.test", self.splits.test, 0),
                                ("shard_size", self.shard_size, 1), ("seed", self.seed, 0),
                                ("tokenizer.sample", self.tokenizer.sample, 1),
                                ("tokenizer.vocab_size", self.tokenizer.vocab_size, 2),
                                ("max_oversample", self.max_oversample, 1)]:
            if value < low:
                raise ConfigError(f"'{key}' must be >= {low}, got {value}")
        names = [suite.name for suite in self.ood]
        for i, suite in enumerate(self.ood):
            if not _NAME.match(suite.name) or names.count(suite.name) > 1:
                raise ConfigError(f"'ood[{i}].name' must be a unique lower-case name, got {suite.name!r}")
            if suite.count < 1:
                raise ConfigError(f"'ood[{i}].count' must be >= 1, got {suite.count}")
        self.generator.resolve("generator")
        for i, suite in enumerate(self.ood):
            suite.generator.resolve(f"ood[{i}].generator")
        if self.tokenizer.kind == "keyword":
            from tinylm.tokens.tokenizer import keyword_tokenizer

            try:
                keyword_tokenizer(self.tokenizer.vocab)
            except ConfigError as exc:
                raise ConfigError(f"'tokenizer.vocab': {exc}") from None





def load_spec(folder: str | Path, overrides: list[str] | tuple = ()) -> DatasetSpec:
    """Read and validate a TinyPy dataset folder's `dataset.yaml` (with dotted overrides)."""
    path = spec_file(folder)
    if is_text_spec(path):
        raise ConfigError(f"{path}: a text dataset (kind: text); only 'tinylm data build' applies to it")
    return load_config(DatasetSpec, path, overrides)


def load_dataset_spec(folder: str | Path, overrides: list[str] | tuple = ()):
    """The spec of a TinyPy (`DatasetSpec`) or text (`tinylm.data.corpus.TextDatasetSpec`) dataset folder."""
    path = spec_file(folder)
    if is_text_spec(path):
        from tinylm.data.corpus import load_text_spec

        return load_text_spec(path, overrides)
    return load_config(DatasetSpec, path, overrides)


# ----------------------------------------------------------------------------------------------
# Streams and tokenizers


@dataclass
class Stream:
    """One generator with its seed, feeding `splits` (name, count) in order."""

    name: str
    generator: Any             # tinylm.lang.spec.GeneratorSpec
    seed: int
    splits: list[tuple[str, int]]


def stream_seed(seed: int, suite: str) -> int:
    """An OOD suite's seed: a 31-bit hash of the dataset seed and the suite name."""
    digest = hashlib.blake2b(f"{seed}:{suite}".encode(), digest_size=4).digest()
    return int.from_bytes(digest, "little") & 0x7FFFFFFF


MIX_BLOCK = 256
"""Programs per mixture block; part of the determinism contract (changing it changes every mixture)."""


@dataclass
class Mixture:
    """Generators sharing one stream in proportion to their weights (a `generator.mix` section).

    The stream is cut into blocks of `MIX_BLOCK` program indices. The programs of component k in
    blocks 0..b-1 number floor(b * MIX_BLOCK * F[k]) - floor(b * MIX_BLOCK * F[k-1]), F being the
    cumulative share of the weights, so every block holds each component's share (rounded, the
    rounding carried to later blocks); a hash of (seed, block) shuffles which index gets which
    component. Component k's programs are consecutive programs of its own stream, seeded by
    `stream_seed(seed, "mix[k]")`: program i depends only on (mixture, seed, i), every component's
    program is generated once, and any range of a stream holds the weights' proportions to
    within one program per component and block.
    """

    presets: list[str]
    weights: list[float]
    generators: list[Any]      # tinylm.lang.spec.GeneratorSpec, one per component

    def _drawn_before(self, block: int) -> np.ndarray:
        """(K,) programs of each component in blocks [0, block)."""
        total = sum(self.weights)
        shares = [sum(self.weights[:k + 1]) / total for k in range(len(self.weights) - 1)] + [1.0]
        return np.diff([0] + [math.floor(block * MIX_BLOCK * f) for f in shares])

    def _block_order(self, seed: int, block: int) -> np.ndarray:
        """(MIX_BLOCK,) the component of each index of a block."""
        counts = self._drawn_before(block + 1) - self._drawn_before(block)
        order = [k for k, n in enumerate(counts) for _ in range(n)]
        digest = hashlib.blake2b(f"mix:{seed}:{block}".encode(), digest_size=16).digest()
        random.Random(int.from_bytes(digest, "little")).shuffle(order)
        return np.asarray(order, dtype=np.int64)

    def programs(self, seed: int, start: int, count: int) -> tuple[list[str], list[int]]:
        """Programs start..start+count-1 of the stream and how many came from each component."""
        from tinylm.lang.generate import generate_programs

        first, end = start // MIX_BLOCK, start + count
        blocks = range(first, -(-end // MIX_BLOCK))
        order = np.concatenate([np.zeros(0, np.int64), *(self._block_order(seed, b) for b in blocks)])
        before = self._drawn_before(first) + np.bincount(order[:start - first * MIX_BLOCK], minlength=len(self.weights))
        order = order[start - first * MIX_BLOCK:end - first * MIX_BLOCK]
        parts, drawn = [], []
        for k, generator in enumerate(self.generators):
            n = int((order == k).sum())
            parts.append(iter(generate_programs(generator, stream_seed(seed, f"mix[{k}]"), int(before[k]), n)))
            drawn.append(n)
        return [next(parts[k]) for k in order], drawn


def stream_programs(generator, seed: int, start: int, count: int) -> tuple[list[str], list[int]]:
    """Programs start..start+count-1 of a stream (one generator or a `Mixture`), and how many
    came from each of its components."""
    if isinstance(generator, Mixture):
        return generator.programs(seed, start, count)
    from tinylm.lang.generate import generate_programs

    return generate_programs(generator, seed, start, count), [count]


def streams_of(spec: DatasetSpec) -> list[Stream]:
    main = Stream("main", spec.generator.resolve(), spec.seed,
                  [("test", spec.splits.test), ("val", spec.splits.val), ("train", spec.splits.train)])
    ood = [Stream(f"ood_{s.name}", s.generator.resolve(), stream_seed(spec.seed, s.name),
                  [(f"ood_{s.name}", s.count)]) for s in spec.ood]
    return [main, *ood]


def make_tokenizer(cfg: TokenizerConfig, sample: Callable[[int], list[str]]):
    """The tokenizer of `cfg`; a learned one is trained on `sample(cfg.sample)` traces."""
    from tinylm.tokens.tokenizer import keyword_tokenizer, train_char_tokenizer, train_sentencepiece

    if cfg.kind == "keyword":
        return keyword_tokenizer(cfg.vocab)
    texts = sample(cfg.sample) + [ALPHABET]  # every printable character gets a token, seen or not
    if cfg.kind == "char":
        return train_char_tokenizer(texts)
    return train_sentencepiece(texts, model_type=cfg.model_type, vocab_size=cfg.vocab_size)


# ----------------------------------------------------------------------------------------------
# Per-example work: trace, tokenize, filter, key. Shared by the build's workers and the stages.


def program_keys(traces: list[str]) -> np.ndarray:
    """uint64 keys of the programs the traces start with (the text before the first step): the
    first 8 bytes of `program_key` (collisions are ~1e-6 likely among 10M programs)."""
    from tinylm.lang.generate import program_key

    digests = b"".join(program_key(t[:t.find(STEP)] if STEP in t else t)[:8] for t in traces)
    return np.frombuffer(digests, dtype="<u8").astype(np.uint64)


def trace_chunk(programs: list[str], fmt: str) -> tuple[list[str], Counter]:
    """Traces of the programs that run, and the count of each error kind among the others."""
    from tinylm.lang.trace import trace_texts

    return trace_texts(programs, fmt)


def encode_chunk(traces: list[str], tokenizer, where: str = "") -> tuple[np.ndarray, np.ndarray]:
    """Token ids of the traces in the .bin layout (each followed by the terminator), and the
    (n+1,) offsets where each trace's ids start."""
    ids = np.asarray(tokenizer.encode_examples(traces, where=where), dtype=tokenizer.dtype)
    ends = np.flatnonzero(ids == tokenizer.eos_id) + 1
    if len(ends) != len(traces) or (len(ids) and ends[-1] != len(ids)):  # a terminator merged or inside
        parts = [np.asarray(tokenizer.encode_examples([t], where=where), dtype=tokenizer.dtype) for t in traces]
        return np.concatenate([np.zeros(0, tokenizer.dtype), *parts]), _offsets(len(x) for x in parts)
    return ids, np.concatenate([[0], ends]).astype(np.int64)


def filter_mask(traces: list[str], ids: np.ndarray, tokenizer, block_size: int, fmt: str) -> np.ndarray:
    """Which traces the determinism filter keeps at `block_size` (0: all), counting from the
    boundary token the reference used for the format."""
    if block_size == 0:
        return np.ones(len(traces), dtype=bool)
    from tinylm.data.filter import FORMAT_BOUNDARIES, keep_mask, keep_text

    boundary = FORMAT_BOUNDARIES[fmt]
    try:
        boundary_id = tokenizer.token_id(boundary)
    except TokenizeError:  # a learned vocabulary may split the boundary: count the tokens between
        def count(text: str) -> int:
            return len(tokenizer.encode(text))
        return np.fromiter((keep_text(t, boundary=boundary, count_tokens=count, block_size=block_size)
                            for t in traces), dtype=bool, count=len(traces))
    return keep_mask(ids, boundary_id=boundary_id, end_id=tokenizer.eos_id, block_size=block_size)


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


def _offsets(lengths: Iterable[int]) -> np.ndarray:
    return np.concatenate([[0], np.cumsum(np.fromiter(lengths, dtype=np.int64))]).astype(np.int64)


def _select(blob: np.ndarray, offsets: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The pieces of a flat array whose mask is set, and their offsets."""
    lengths = np.diff(offsets)
    return blob[np.repeat(mask, lengths)], _offsets(lengths[mask])


def pack_chunk(traces: list[str], ids: np.ndarray, id_offsets: np.ndarray, keep: np.ndarray,
               stats: dict) -> Chunk:
    """The kept traces with their keys and ids, packed flat."""
    kept = [t for t, k in zip(traces, keep) if k]
    blobs = [(t + EXAMPLE_END).encode() for t in kept]
    ids, id_offsets = _select(ids, id_offsets, keep)
    return Chunk(keys=program_keys(kept), text=np.frombuffer(b"".join(blobs), dtype=np.uint8),
                 text_offsets=_offsets(map(len, blobs)), ids=ids, id_offsets=id_offsets, stats=stats)


def process_programs(programs: list[str], fmt: str, tokenizer, block_size: int, where: str = "") -> Chunk:
    """Trace, tokenize, filter and key a list of programs, timing each stage in CPU seconds (which a
    loaded machine does not inflate)."""
    clock = time.process_time()
    traces, errors = trace_chunk(programs, fmt)
    t_trace = time.process_time()
    ids, offsets = encode_chunk(traces, tokenizer, where)
    t_tokenize = time.process_time()
    keep = filter_mask(traces, ids, tokenizer, block_size, fmt)
    t_filter = time.process_time()
    stats = {"programs": len(programs), "trace_errors": dict(errors), "filtered_out": int((~keep).sum()),
             "program_bytes": sum(map(len, programs)), "trace_bytes": sum(map(len, traces)),
             "tokens": len(ids), "seconds": {"trace": t_trace - clock, "tokenize": t_tokenize - t_trace,
                                             "filter": t_filter - t_tokenize}}
    chunk = pack_chunk(traces, ids, offsets, keep, stats)
    stats["seconds"]["pack"] = time.process_time() - t_filter
    return chunk


# ----------------------------------------------------------------------------------------------
# Shards: one job = generate + process one range of program indices; saved atomically as .npz


@dataclass
class ShardJob:
    """Programs [start, start + count) of a stream, and how to process them into the shard at `path`."""

    path: str
    generator: Any
    seed: int
    start: int
    count: int
    trace_format: str
    tokenizer: dict
    block_size: int


def run_shard(job: ShardJob) -> str:
    """Compute one shard and write it atomically; returns its path."""
    try:
        clock = time.process_time()
        programs, drawn = stream_programs(job.generator, job.seed, job.start, job.count)
        seconds = time.process_time() - clock
        chunk = process_programs(programs, job.trace_format, worker_tokenizer(job.tokenizer), job.block_size,
                                 where=f"programs {job.start}..{job.start + job.count - 1}")
    except TinylmError as exc:  # re-raised as a DataError, which pickles back to the main process
        raise DataError(str(exc)) from None
    chunk.stats["seconds"] = {"generate": seconds, **chunk.stats["seconds"]}
    chunk.stats["components"] = drawn
    save_chunk(job.path, chunk)
    return job.path


def save_chunk(path: str | Path, chunk: Chunk) -> None:
    stats = np.frombuffer(json.dumps(chunk.stats).encode(), dtype=np.uint8)
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.savez(f, keys=chunk.keys, text=chunk.text, text_offsets=chunk.text_offsets, ids=chunk.ids,
                 id_offsets=chunk.id_offsets, stats=stats)


def load_chunk(path: str | Path) -> Chunk:
    with np.load(path, allow_pickle=False) as z:
        return Chunk(keys=z["keys"], text=z["text"], text_offsets=z["text_offsets"], ids=z["ids"],
                     id_offsets=z["id_offsets"], stats=json.loads(z["stats"].tobytes()))


# ----------------------------------------------------------------------------------------------
# Dedup, decontamination and the split assignment


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


# ----------------------------------------------------------------------------------------------
# The build


def shard_dir(folder: Path, stream: Stream, spec: DatasetSpec, tokenizer: dict, code: str) -> Path:
    what = {"generator": to_dict(stream.generator), "seed": stream.seed, "trace_format": spec.trace_format,
            "block_size": spec.block_size, "tokenizer": tokenizer, "shard_size": spec.shard_size, "code": code}
    digest = hashlib.sha256(json.dumps(what, sort_keys=True).encode()).hexdigest()[:12]
    return folder / "shards" / f"{stream.name}.{digest}"


def sample_traces(stream: Stream, spec: DatasetSpec, count: int) -> list[str]:
    """The first `count` traces of a stream (programs that fail to trace are skipped)."""
    traces: list[str] = []
    start = 0
    while len(traces) < count:
        if start >= count * spec.max_oversample:
            raise DataError(f"only {len(traces)} of {count} programs traced to learn the tokenizer from")
        traces += trace_chunk(stream_programs(stream.generator, stream.seed, start, spec.shard_size)[0],
                              spec.trace_format)[0]
        start += spec.shard_size
    return traces[:count]


def build_tokenizer(folder: Path, spec: DatasetSpec, main: Stream, code: str):
    """Keyword tokenizers are fixed; a learned one is trained once and kept under shards/."""
    from tinylm.tokens.tokenizer import tokenizer_from_dict

    if spec.tokenizer.kind == "keyword":
        return make_tokenizer(spec.tokenizer, lambda n: [])
    what = json.dumps({"tokenizer": to_dict(spec.tokenizer), "generator": to_dict(main.generator),
                       "seed": main.seed, "trace_format": spec.trace_format, "code": code}, sort_keys=True)
    saved = folder / "shards" / f"tokenizer.{hashlib.sha256(what.encode()).hexdigest()[:12]}.json"
    if saved.is_file():
        return tokenizer_from_dict(json.loads(saved.read_text()))
    tokenizer = make_tokenizer(spec.tokenizer, lambda n: sample_traces(main, spec, n))
    atomic_write_json(saved, tokenizer.to_dict())
    return tokenizer


@dataclass
class StreamRun:
    """Counts of one stream: per stage, per error kind, and the CPU seconds the workers spent in each stage."""

    shards: int = 0
    counts: Counter = field(default_factory=Counter)
    trace_errors: Counter = field(default_factory=Counter)
    seconds: Counter = field(default_factory=Counter)
    bytes: Counter = field(default_factory=Counter)
    drawn: Counter = field(default_factory=Counter)     # programs generated per mixture component

    def add(self, stats: dict) -> None:
        self.shards += 1
        self.drawn.update(dict(enumerate(stats["components"])))
        self.counts["generated"] += stats["programs"]
        self.counts["filtered_out"] += stats["filtered_out"]
        self.trace_errors.update(stats["trace_errors"])
        self.seconds.update(stats["seconds"])
        self.bytes.update({"programs": stats["program_bytes"], "traces": stats["trace_bytes"]})

    def summary(self) -> dict:
        counts = self.counts
        return {"shards": self.shards, "generated": counts["generated"],
                "trace_errors": dict(sorted(self.trace_errors.items())),
                "traced": counts["generated"] - sum(self.trace_errors.values()),
                "filtered_out": counts["filtered_out"], "duplicates": counts["duplicates"],
                "contaminated": counts["contaminated"], "kept": counts["kept"], "surplus": counts["surplus"],
                "bytes": dict(self.bytes), "cpu_seconds": {k: round(v, 3) for k, v in self.seconds.items()}}


def run_stream(stream: Stream, outputs: list[SplitOutput], spec: DatasetSpec, assigner: Assigner,
               executor: futures.Executor, in_flight: int, make_job: Callable[[int], ShardJob]) -> StreamRun:
    """Fill `outputs` from the stream's shards, read in index order; stop when every count is met."""
    from tqdm import tqdm

    run = StreamRun()
    need = sum(out.need for out in outputs)
    limit = max(1, math.ceil(need * spec.max_oversample / spec.shard_size))
    jobs = (make_job(k) for k in range(limit))
    with tqdm(total=need, desc=stream.name, unit="ex", disable=None, leave=False) as bar:
        def wanted(in_flight: int) -> bool:
            # Examples the shards in flight should still bring, at the yield seen so far.
            counts = run.counts
            rate = counts["kept"] / counts["generated"] if counts["generated"] else 1.0
            return counts["kept"] + in_flight * spec.shard_size * rate < need

        results = ordered_map(executor, _cached_or_run, jobs, in_flight, wanted)
        for path in results:
            if not any(out.remaining > 0 for out in outputs):
                break
            chunk = load_chunk(path)
            run.add(chunk.stats)
            before = run.counts["kept"]
            assigner.assign(chunk, outputs, run.counts)
            bar.update(run.counts["kept"] - before)
            if not any(out.remaining > 0 for out in outputs):
                break  # now, not after asking for a next shard that would be computed for nothing
        results.close()
    if any(out.remaining > 0 for out in outputs):
        short = ", ".join(f"{o.name} {o.examples}/{o.need}" for o in outputs if o.remaining > 0)
        c = run.counts
        raise DataError(f"stream '{stream.name}': after {c['generated']} programs only {short} examples "
                        f"({sum(run.trace_errors.values())} failed to trace, {c['filtered_out']} filtered out, "
                        f"{c['duplicates']} duplicates, {c['contaminated']} contaminated); lower the split sizes, "
                        f"or raise max_oversample or block_size")
    return run


def _cached_or_run(job: ShardJob) -> str:
    return job.path if Path(job.path).is_file() else run_shard(job)


def build(folder: str | Path, workers: int | None = None, keep_shards: bool = False,
          overrides: list[str] | tuple = ()) -> dict:
    """Build a dataset folder from its `dataset.yaml`; returns the manifest."""
    clock = time.time()
    folder = Path(folder)
    yaml_path = spec_file(folder)
    if is_text_spec(yaml_path):
        from tinylm.data.corpus import build_text

        return build_text(folder, workers, keep_shards, overrides)
    spec = load_spec(folder, overrides)
    folder = yaml_path.parent
    banned_heldout, banned_train, sources = load_banned(spec, yaml_path, [folder])
    streams = streams_of(spec)
    code = code_fingerprint()
    tokenizer = build_tokenizer(folder, spec, streams[0], code)
    tok_dict = tokenizer.to_dict()
    dirs = {s.name: shard_dir(folder, s, spec, tok_dict, code) for s in streams}
    remove_stale(folder, set(dirs.values()))
    workers = workers or default_workers()
    assigner = Assigner(banned_train=banned_train, banned_heldout=banned_heldout)
    runs: dict[str, StreamRun] = {}
    outputs = {s.name: [SplitOutput(name, folder / _file_name(name), count, heldout=name != "train")
                        for name, count in s.splits] for s in streams}
    with contextlib.ExitStack() as stack:
        for out in (o for outs in outputs.values() for o in outs):
            out.file = stack.enter_context(open(stack.enter_context(atomic_path(out.path)), "wb"))
        executor = stack.enter_context(make_executor(workers))
        for stream in streams:
            def make_job(k: int, stream=stream) -> ShardJob:
                return ShardJob(str(dirs[stream.name] / f"{k:06d}.npz"), stream.generator, stream.seed,
                                k * spec.shard_size, spec.shard_size, spec.trace_format, tok_dict, spec.block_size)
            runs[stream.name] = run_stream(stream, outputs[stream.name], spec, assigner, executor,
                                           window(workers), make_job)
        assigner.save_keys(folder)
    manifest = _manifest(folder, spec, streams, tokenizer, outputs, runs, sources, workers, time.time() - clock)
    atomic_write_json(folder / "manifest.json", manifest)
    if not keep_shards:
        shutil.rmtree(folder / "shards", ignore_errors=True)
    return manifest


def _file_name(split: str) -> str:
    return f"{split}.bin" if split in ("train", "val") else f"{split}.txt"


def _manifest(folder: Path, spec: DatasetSpec, streams: list[Stream], tokenizer, outputs: dict,
              runs: dict, sources: list, workers: int, wall: float) -> dict:
    seconds = Counter()
    for run in runs.values():
        seconds.update(run.seconds)
    return {
        "format": FORMAT,
        "name": folder.name,
        "tokenizer": tokenizer.to_dict(),
        "vocab_size": int(tokenizer.vocab_size),
        "dtype": str(np.dtype(tokenizer.dtype)),
        "block_size": spec.block_size,
        "trace_format": spec.trace_format,
        "seed": spec.seed,
        "splits": {out.name: out.summary() for outs in outputs.values() for out in outs},
        "stages": {name: run.summary() for name, run in runs.items()},
        "streams": {s.name: _stream_entry(s, runs[s.name]) for s in streams},
        "decontaminated_against": sources,
        "keys": ["keys_train.npy", "keys_heldout.npy"],
        "config": to_dict(spec),
        "timings": {"wall_seconds": round(wall, 3), "workers": workers,
                    "cpu_seconds": {k: round(v, 3) for k, v in seconds.items()}},
        "meta": run_metadata(),
    }


def _stream_entry(stream: Stream, run: StreamRun) -> dict:
    """A stream's generator in the manifest; a mixture lists its components, with the programs
    drawn from each when the build generated them."""
    mix = stream.generator
    if not isinstance(mix, Mixture):
        return {"seed": stream.seed, "generator": to_dict(mix)}
    return {"seed": stream.seed, "mix": [
        {"preset": name, "weight": weight, "seed": stream_seed(stream.seed, f"mix[{k}]"),
         **({"drawn": run.drawn[k]} if run.shards else {}), "generator": to_dict(generator)}
        for k, (name, weight, generator) in enumerate(zip(mix.presets, mix.weights, mix.generators))]}


# ----------------------------------------------------------------------------------------------
# Stages on text files: generate -> trace -> filter -> prepare


def batched(items: Iterable, size: int) -> Iterator[list]:
    batch = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


@dataclass
class StageJob:
    """A batch of examples and what to do with it (picklable, for the worker pool)."""

    kind: Literal["generate", "trace", "filter", "prepare"]
    items: Any
    spec: DatasetSpec
    generator: Any = None
    tokenizer: dict | None = None
    where: str = ""


def run_stage_job(job: StageJob):
    """One batch of a stage, in a worker."""
    spec = job.spec
    if job.kind == "generate":
        seed, start, count = job.items
        programs = stream_programs(job.generator, seed, start, count)[0]
        return "".join(p.strip("\n") + EXAMPLE_END for p in programs)
    if job.kind == "trace":
        traces, errors = trace_chunk(job.items, spec.trace_format)
        return "".join(t + EXAMPLE_END for t in traces), errors
    tokenizer = worker_tokenizer(job.tokenizer)
    ids, offsets = encode_chunk(job.items, tokenizer, where=job.where)
    if job.kind == "filter":
        keep = filter_mask(job.items, ids, tokenizer, spec.block_size, spec.trace_format)
        return "".join(t + EXAMPLE_END for t, k in zip(job.items, keep) if k), int((~keep).sum())
    return pack_chunk(job.items, ids, offsets, np.ones(len(job.items), dtype=bool), {})


def _stage_map(jobs: Iterable[StageJob], workers: int) -> Iterator:
    with make_executor(workers) as executor:
        yield from ordered_map(executor, run_stage_job, jobs, window(workers))


def stage_generate(target: str, out: Path, count: int | None, seed: int | None, start: int, workers: int) -> str:
    """Programs of a named preset, or of a dataset folder's main stream, one per blank-line block."""
    from tinylm.lang.spec import PRESETS, preset

    if target not in PRESETS and ("/" in target or target.endswith((".yaml", ".yml")) or Path(target).is_dir()):
        spec = load_spec(target)
        generator = spec.generator.resolve()
        seed = spec.seed if seed is None else seed
        count = count or math.ceil(STAGED_OVERSAMPLE * (spec.splits.train + spec.splits.val + spec.splits.test))
    else:
        spec, generator, seed = DatasetSpec(), preset(target), seed or 0
        if count is None:
            raise ConfigError("--count is required with a preset name")
    ranges = [(seed, s, min(spec.shard_size, start + count - s)) for s in range(start, start + count, spec.shard_size)]
    with atomic_path(out) as tmp, open(tmp, "w") as f:
        for text in _stage_map((StageJob("generate", r, spec, generator) for r in ranges), workers):
            f.write(text)
    return f"wrote {count} programs (seed {seed}, indices {start}..{start + count - 1}) to {out}"


def _text_jobs(kind: str, src: Path, spec: DatasetSpec, tokenizer: dict | None = None) -> Iterator[StageJob]:
    """The examples of a text file in batches of `shard_size`, as stage jobs."""
    for i, batch in enumerate(batched(iter_examples(src), spec.shard_size)):
        yield StageJob(kind, batch, spec, tokenizer=tokenizer, where=f"{src}, batch of examples from {i * spec.shard_size}")


def _stage_spec(spec_path: str | None, overrides: list[str]) -> tuple[DatasetSpec, Path | None]:
    """The settings of `--spec` (or the defaults) with overrides, and the dataset.yaml they came from."""
    if spec_path is None:
        return load_config(DatasetSpec, None, overrides), None
    return load_spec(spec_path, overrides), spec_file(spec_path)


def stage_trace(src: Path, out: Path, spec: DatasetSpec, workers: int) -> str:
    errors, kept = Counter(), 0
    with atomic_path(out) as tmp, open(tmp, "w") as f:
        jobs = _text_jobs("trace", src, spec)
        for text, errs in _stage_map(jobs, workers):
            f.write(text)
            errors.update(errs)
            kept += text.count(EXAMPLE_END)
    detail = ", ".join(f"{k} {v}" for k, v in sorted(errors.items())) or "none"
    return f"traced {kept} programs to {out}; errors: {detail}"


def _sample_file(src: Path, n: int) -> list[str]:
    return [t for _, t in zip(range(n), iter_examples(src))]


def stage_filter(src: Path, out: Path, spec: DatasetSpec, workers: int) -> str:
    tok = make_tokenizer(spec.tokenizer, lambda n: _sample_file(src, n)).to_dict()
    dropped, kept = 0, 0
    with atomic_path(out) as tmp, open(tmp, "w") as f:
        jobs = _text_jobs("filter", src, spec, tok)
        for text, n in _stage_map(jobs, workers):
            f.write(text)
            dropped += n
            kept += text.count(EXAMPLE_END)
    return f"kept {kept} traces, dropped {dropped} (block_size {spec.block_size}) to {out}"


def stage_prepare(src: Path, folder: Path, spec: DatasetSpec, workers: int, yaml_path: Path | None = None) -> str:
    """Dedup, decontaminate, split and tokenize kept traces into a dataset folder (main splits
    only; no OOD). `yaml_path` is the dataset.yaml `spec` came from: `decontaminate` paths are
    read from there, and may name neither its folder nor `folder`."""
    clock = time.time()
    own = [folder] if yaml_path is None else [folder, yaml_path.parent]
    banned_heldout, banned_train, sources = load_banned(spec, yaml_path, own)
    tokenizer = make_tokenizer(spec.tokenizer, lambda n: _sample_file(src, n))
    tok = tokenizer.to_dict()
    main = streams_of(spec)[0]
    outputs = [SplitOutput(name, folder / _file_name(name), count, heldout=name != "train")
               for name, count in main.splits]
    assigner, counts = Assigner(banned_train=banned_train, banned_heldout=banned_heldout), Counter()
    with contextlib.ExitStack() as stack:
        for o in outputs:
            o.file = stack.enter_context(open(stack.enter_context(atomic_path(o.path)), "wb"))
        jobs = _text_jobs("prepare", src, spec, tok)
        for chunk in _stage_map(jobs, workers):
            if not any(o.remaining > 0 for o in outputs):
                break
            assigner.assign(chunk, outputs, counts)
        assigner.save_keys(folder)
    stats = StreamRun(counts=counts)
    manifest = _manifest(folder, spec, [main], tokenizer, {"main": outputs}, {"main": stats}, sources, workers,
                         time.time() - clock)
    atomic_write_json(folder / "manifest.json", manifest)
    short = [f"{o.name} {o.examples}/{o.need}" for o in outputs if o.remaining > 0]
    if short:
        print(f"warning: {src} ran out of examples: {', '.join(short)}", file=sys.stderr)
    return f"wrote {', '.join(f'{o.name} {o.examples}' for o in outputs)} examples to {folder}"


# ----------------------------------------------------------------------------------------------
# The renamed-variables suite: an evaluation's hard-matched examples, renamed and re-traced


def read_hard_matched(results: Path, suite: Path, also: tuple[str, ...] = ()) -> list[str]:
    """The examples an evaluation's `results.jsonl` scored hard (or one of the classes `also`), in
    suite order, checked against the suite they came from (`tinylm.evaluate.scoring.read_suite` numbers its examples)."""
    for path in (results, suite):
        if not path.is_file():
            raise DataError(f"{path}: no such file")
    try:
        examples = split_examples(suite.read_text())
    except UnicodeDecodeError:
        raise DataError(f"{suite}: not a text file of examples") from None
    hard = []
    for n, line in enumerate(results.read_text().splitlines(), 1):
        try:
            record = json.loads(line)
            i, cls, text = record["id"], record["class"], record["prompt"] + record["target"]
        except (json.JSONDecodeError, KeyError, TypeError) as exc:
            raise DataError(f"{results}, line {n}: not an evaluation record ({exc})") from None
        if not (isinstance(i, int) and 0 <= i < len(examples) and examples[i] == text):
            raise DataError(f"{results}, line {n}: example {i} is not example {i} of {suite}")
        if cls == "hard" or cls in also:
            hard.append((i, text))
    return [text for _, text in sorted(hard)]


def name_problem(tokenizer, name: str) -> str | None:
    """Why `tokenizer` cannot write variable `name` as its datasets write names, or None. Keyword
    and char vocabularies spell names letter by letter, so a name holding a keyword token is out
    ('fin' reads 'f' 'in')."""
    try:
        pieces = tokenizer.token_strings(tokenizer.encode(name))
    except TokenizeError as exc:
        return str(exc)
    if tokenizer.kind != "sentencepiece" and pieces != list(name):
        return f"vocabulary {tokenizer.name} reads '{name}' as {' '.join(map(repr, pieces))}, not letter by letter"
    return None


def training_words(folder: Path, manifest: dict, tokens_per_read: int = 1 << 26) -> set[str]:
    """Every run of lower-case letters in a built dataset's train.bin (its programs' names, and
    words like 'if' and 'code'), a slice of whole examples at a time. Keyword and char
    vocabularies spell a name with one token per letter, so there a run of single-letter tokens
    is a name, found without decoding (25x faster); SentencePiece pieces are decoded."""
    from tinylm.tokens.tokenizer import tokenizer_from_dict

    tokenizer = tokenizer_from_dict(manifest["tokenizer"])
    strings = tokenizer.token_strings(np.arange(tokenizer.vocab_size))
    letter = np.array([ord(t) if len(t) == 1 and t.islower() else ord(" ") for t in strings], dtype=np.uint8)
    ids = np.memmap(folder / "train.bin", dtype=manifest["dtype"], mode="r")
    words: set[str] = set()
    start = 0
    while start < len(ids):
        piece = ids[start:start + tokens_per_read]
        ends = np.flatnonzero(piece == tokenizer.eos_id)
        stop = int(ends[-1]) + 1 if len(ends) and start + len(piece) < len(ids) else len(piece)
        if tokenizer.kind == "sentencepiece":
            words.update(re.findall(r"[a-z]+", tokenizer.decode(piece[:stop])))
        else:
            words.update(w.decode() for w in set(letter[piece[:stop]].tobytes().split()))
        start += stop
    return words


def stage_rename(results: Path, suite: Path, out: Path, dataset: Path, seed: int,
                 lengths: list[int], solved_only: bool = True, trained_letters: bool = False) -> str:
    """The renamed-variables suite: each hard-matched example of `results` (an evaluation of
    `suite`; every example when not `solved_only`) with its variables renamed to names of `lengths`
    letters that never occur in the dataset's train split and that its tokenizer spells (with
    `trained_letters`, spelled only with letters of the training names: new words of trained
    tokens), re-traced in the dataset's format and filtered at its block size; dropped if its
    program is in the train split or twice in the suite."""
    from tinylm.lang.rename import fresh_names, program_names, rename_program
    from tinylm.tokens.tokenizer import tokenizer_from_dict

    if not (dataset / "manifest.json").is_file():
        raise DataError(f"{dataset}: no manifest.json; build the dataset first (tinylm data build {dataset})")
    if not lengths or min(lengths) < 1:
        raise ConfigError(f"--lengths must be name lengths >= 1, got {lengths}")
    manifest = json.loads((dataset / "manifest.json").read_text())
    tokenizer = tokenizer_from_dict(manifest["tokenizer"])
    hard = read_hard_matched(results, suite, () if solved_only else ("soft", "failure"))
    taken = training_words(dataset, manifest)
    letters = set("".join(taken)) if trained_letters else None
    rng = random.Random(seed)
    programs = []
    for text in hard:
        program = text.split(STEP, 1)[0]
        mapping = fresh_names(program_names(program), taken, rng, lengths,
                              allowed=lambda name: name_problem(tokenizer, name) is None
                              and (letters is None or set(name) <= letters))
        programs.append(rename_program(program, mapping))
    chunk = process_programs(programs, manifest["trace_format"], tokenizer, manifest["block_size"],
                             where=f"{out} (renamed)")
    banned = KeySet([np.load(dataset / "keys_train.npy", allow_pickle=False)]).contains(chunk.keys)
    _, first = np.unique(chunk.keys, return_index=True)
    keep = np.zeros(len(chunk), dtype=bool)
    keep[first] = True
    keep &= ~banned
    with atomic_path(out) as tmp:
        tmp.write_bytes(chunk.text[np.repeat(keep, np.diff(chunk.text_offsets))].tobytes())
    stats = chunk.stats
    return (f"wrote {int(keep.sum())} renamed examples of {len(hard)} hard-matched to {out} (dropped: "
            f"{sum(stats['trace_errors'].values())} failed to trace, {stats['filtered_out']} filtered out, "
            f"{int(banned.sum())} in train, {len(chunk) - len(first)} duplicates)")


# ----------------------------------------------------------------------------------------------
# Command line


def _name_lengths(text: str) -> list[int]:
    """'2,3' -> [2, 3]."""
    try:
        return [int(n) for n in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers such as 2,3, got {text!r}") from None


def _parsers() -> tuple[ArgumentParser, dict[str, ArgumentParser]]:
    """The `tinylm data` parser and one parser per subcommand (parsed on their own, so that
    key=value overrides may follow options)."""
    parser = ArgumentParser(prog="tinylm data", description="Build a dataset folder, or run one data stage.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=ArgumentParser)
    b = sub.add_parser("build", help="dataset.yaml -> train.bin, val.bin, test.txt, OOD suites, manifest")
    b.add_argument("folder")
    b.add_argument("--keep-shards", action="store_true", help="keep shards/ after a successful build")
    g = sub.add_parser("generate", help="programs of a preset, or of a dataset folder's main stream")
    g.add_argument("spec", metavar="SPEC_OR_PRESET")
    g.add_argument("out")
    g.add_argument("--count", type=int, help=f"default for a folder: {STAGED_OVERSAMPLE} x its split sizes")
    g.add_argument("--seed", type=int)
    g.add_argument("--start", type=int, default=0, help="index of the first program")
    for name, help_ in [("trace", "programs -> traces"), ("filter", "traces -> kept traces"),
                        ("prepare", "kept traces -> dataset folder (train.bin, val.bin, test.txt, manifest)")]:
        s = sub.add_parser(name, help=help_)
        s.add_argument("src")
        s.add_argument("out")
        s.add_argument("--spec", help="dataset folder whose settings to use (default: built-in defaults)")
    for name, s in sub.choices.items():
        s.add_argument("--workers", type=int, default=None, help="processes (default: all cores)")
        if name != "generate":
            s.add_argument("overrides", nargs="*", metavar="key=value", help="dotted dataset.yaml overrides")
    r = sub.add_parser("rename", help="an evaluation's hard-matched examples, variables renamed, re-traced")
    r.add_argument("results", metavar="EVAL_RESULTS.jsonl", help="results.jsonl of an evaluation of SUITE")
    r.add_argument("suite", metavar="SUITE.txt", help="the suite that evaluation scored")
    r.add_argument("out", metavar="OUT.txt")
    r.add_argument("--dataset", required=True, help="built dataset folder the model trained on")
    r.add_argument("--seed", type=int, default=0)
    r.add_argument("--lengths", type=_name_lengths, default=[1, 2, 3, 4, 5],
                   help="comma-separated lengths of the new names (default: 1,2,3,4,5)")
    return parser, sub.choices


def cli(argv: list[str]) -> int:
    parser, commands = _parsers()
    if not argv or argv[0] not in commands:
        parser.parse_args(argv)  # prints help, or fails naming the valid commands
    args = commands[argv[0]].parse_intermixed_args(argv[1:])
    command = argv[0]
    if command == "rename":
        print(stage_rename(Path(args.results), Path(args.suite), Path(args.out), Path(args.dataset), args.seed,
                           args.lengths))
        return 0
    if args.workers is not None and args.workers < 1:
        raise ConfigError(f"--workers must be >= 1, got {args.workers}")
    workers = args.workers or default_workers()
    if command == "build":
        manifest = build(args.folder, workers, args.keep_shards, args.overrides)
        splits = ", ".join(f"{k} {v['examples']}" for k, v in manifest["splits"].items())
        print(f"built {args.folder}: {splits} in {manifest['timings']['wall_seconds']:.1f}s")
        return 0
    if command == "generate":
        print(stage_generate(args.spec, Path(args.out), args.count, args.seed, args.start, workers))
        return 0
    spec, yaml_path = _stage_spec(args.spec, args.overrides)
    if command == "prepare":
        print(stage_prepare(Path(args.src), Path(args.out), spec, workers, yaml_path))
        return 0
    stage = {"trace": stage_trace, "filter": stage_filter}[command]
    print(stage(Path(args.src), Path(args.out), spec, workers))
    return 0
