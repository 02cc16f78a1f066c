"""`tinylm data`: the build (`tinylm.data.datasets`) and its stages one at a time on text files.

The stages also run one at a time on text files, sharing the code above:
`tinylm data generate|trace|filter|prepare` (see `cli`); `prepare` dedups and decontaminates
as the build does.

`tinylm data rename` makes the renamed-variables OOD suite from an evaluation of a built
dataset's test split: the hard-matched examples, with names that dataset's train split never
holds (`tinylm.lang.rename`), re-traced and filtered as the build would.
"""


from __future__ import annotations

import argparse
import contextlib
import json
import math
import random
import re
import sys
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from tinylm.base.args import ArgumentParser
from tinylm.base.config import load_config
from tinylm.base.errors import ConfigError, DataError, TokenizeError
from tinylm.base.files import atomic_path, atomic_write_json
from tinylm.data.datasets import (
    StreamRun,
    build,
    build_manifest,
    encode_chunk,
    filter_mask,
    make_tokenizer,
    pack_chunk,
    process_programs,
    split_file_name,
    streams_of,
    trace_chunk,
)
from tinylm.data.mixture import stream_programs
from tinylm.data.shards import (
    default_workers,
    make_executor,
    ordered_map,
    spec_file,
    window,
    worker_tokenizer,
)
from tinylm.data.spec import DatasetSpec, load_spec
from tinylm.data.splits import Assigner, KeySet, SplitOutput, load_banned
from tinylm.lang.format import EXAMPLE_END, STEP, iter_examples, split_examples

STAGED_OVERSAMPLE = 1.5     # `data generate` on a dataset folder: programs per requested example



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
    outputs = [SplitOutput(name, folder / split_file_name(name), count, heldout=name != "train")
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
    manifest = build_manifest(folder, spec, [main], tokenizer, {"main": outputs}, {"main": stats}, sources, workers,
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
    from tinylm.tokens.load import tokenizer_from_dict

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
    from tinylm.tokens.load import tokenizer_from_dict

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
