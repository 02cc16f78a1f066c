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

A folder whose `dataset.yaml` says `kind: text` is a text corpus, built by `tinylm.data.corpus`
(`build` hands it over; `load_dataset_spec` reads either kind).
"""

from __future__ import annotations

import concurrent.futures as futures
import contextlib
import hashlib
import json
import math
import shutil
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tinylm.base.config import to_dict
from tinylm.base.errors import DataError, TinylmError, TokenizeError
from tinylm.base.files import atomic_path, atomic_write_json, run_metadata
from tinylm.data.mixture import Mixture, stream_programs, stream_seed
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
from tinylm.data.spec import (
    DatasetSpec,
    TokenizerConfig,
    load_spec,
)
from tinylm.data.splits import Assigner, Chunk, SplitOutput, load_banned
from tinylm.lang.format import EXAMPLE_END, STEP

ALPHABET = "".join(chr(c) for c in range(32, 127)) + "\t\n"  # learned vocabularies cover all of it



# ----------------------------------------------------------------------------------------------
# Streams and tokenizers


@dataclass
class Stream:
    """One generator with its seed, feeding `splits` (name, count) in order, kept by the filter at
    `block_size` (and, with `beyond` > 0, only where two consecutive steps exceed `beyond`)."""

    name: str
    generator: Any             # tinylm.lang.spec.GeneratorSpec
    seed: int
    splits: list[tuple[str, int]]
    block_size: int
    beyond: int = 0


def streams_of(spec: DatasetSpec) -> list[Stream]:
    main = Stream("main", spec.generator.resolve(), spec.seed,
                  [("test", spec.splits.test), ("val", spec.splits.val), ("train", spec.splits.train)],
                  spec.block_size)
    ood = [Stream(f"ood_{s.name}", s.generator.resolve(), stream_seed(spec.seed, s.name),
                  [(f"ood_{s.name}", s.count)], spec.block_size if s.block_size is None else s.block_size,
                  s.beyond) for s in spec.ood]
    return [main, *ood]


def make_tokenizer(cfg: TokenizerConfig, sample: Callable[[int], list[str]]):
    """The tokenizer of `cfg`; a learned one is trained on `sample(cfg.sample)` traces."""
    from tinylm.tokens.text import train_sentencepiece
    from tinylm.tokens.tokenizer import keyword_tokenizer, train_char_tokenizer

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


def filter_mask(traces: list[str], ids: np.ndarray, tokenizer, block_size: int, fmt: str,
                beyond: int = 0) -> np.ndarray:
    """Which traces the determinism filter keeps at `block_size` (0: all), counting from the
    boundary token the reference used for the format; `beyond` > 0 keeps only traces with two
    consecutive steps longer than that (see tinylm.data.filter)."""
    if block_size == 0 and beyond == 0:
        return np.ones(len(traces), dtype=bool)
    from tinylm.data.filter import FORMAT_BOUNDARIES, keep_mask, keep_text

    boundary = FORMAT_BOUNDARIES[fmt]
    limit = block_size or np.iinfo(np.int64).max
    try:
        boundary_id = tokenizer.token_id(boundary)
    except TokenizeError:  # a learned vocabulary may split the boundary: count the tokens between
        def count(text: str) -> int:
            return len(tokenizer.encode(text))
        return np.fromiter((keep_text(t, boundary=boundary, count_tokens=count, block_size=limit, beyond=beyond)
                            for t in traces), dtype=bool, count=len(traces))
    return keep_mask(ids, boundary_id=boundary_id, end_id=tokenizer.eos_id, block_size=limit, beyond=beyond)


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


def process_programs(programs: list[str], fmt: str, tokenizer, block_size: int, where: str = "",
                     beyond: int = 0) -> Chunk:
    """Trace, tokenize, filter and key a list of programs, timing each stage in CPU seconds (which a
    loaded machine does not inflate)."""
    clock = time.process_time()
    traces, errors = trace_chunk(programs, fmt)
    t_trace = time.process_time()
    ids, offsets = encode_chunk(traces, tokenizer, where)
    t_tokenize = time.process_time()
    keep = filter_mask(traces, ids, tokenizer, block_size, fmt, beyond)
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
    beyond: int = 0


def run_shard(job: ShardJob) -> str:
    """Compute one shard and write it atomically; returns its path."""
    try:
        clock = time.process_time()
        programs, drawn = stream_programs(job.generator, job.seed, job.start, job.count)
        seconds = time.process_time() - clock
        chunk = process_programs(programs, job.trace_format, worker_tokenizer(job.tokenizer), job.block_size,
                                 where=f"programs {job.start}..{job.start + job.count - 1}", beyond=job.beyond)
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
# The build


def shard_dir(folder: Path, stream: Stream, spec: DatasetSpec, tokenizer: dict, code: str) -> Path:
    what = {"generator": to_dict(stream.generator), "seed": stream.seed, "trace_format": spec.trace_format,
            "block_size": stream.block_size, "tokenizer": tokenizer, "shard_size": spec.shard_size, "code": code}
    if stream.beyond:
        what["beyond"] = stream.beyond
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
    from tinylm.tokens.load import tokenizer_from_dict

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
    outputs = {s.name: [SplitOutput(name, folder / split_file_name(name), count, heldout=name != "train")
                        for name, count in s.splits] for s in streams}
    with contextlib.ExitStack() as stack:
        for out in (o for outs in outputs.values() for o in outs):
            out.file = stack.enter_context(open(stack.enter_context(atomic_path(out.path)), "wb"))
        executor = stack.enter_context(make_executor(workers))
        for stream in streams:
            def make_job(k: int, stream=stream) -> ShardJob:
                return ShardJob(str(dirs[stream.name] / f"{k:06d}.npz"), stream.generator, stream.seed,
                                k * spec.shard_size, spec.shard_size, spec.trace_format, tok_dict,
                                stream.block_size, stream.beyond)
            runs[stream.name] = run_stream(stream, outputs[stream.name], spec, assigner, executor,
                                           window(workers), make_job)
        assigner.save_keys(folder)
    manifest = build_manifest(folder, spec, streams, tokenizer, outputs, runs, sources, workers, time.time() - clock)
    atomic_write_json(folder / "manifest.json", manifest)
    if not keep_shards:
        shutil.rmtree(folder / "shards", ignore_errors=True)
    return manifest


def split_file_name(split: str) -> str:
    return f"{split}.bin" if split in ("train", "val") else f"{split}.txt"


def build_manifest(folder: Path, spec: DatasetSpec, streams: list[Stream], tokenizer, outputs: dict,
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


