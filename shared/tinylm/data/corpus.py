"""Text corpora: local plain-text, JSONL or TinyStories files -> documents -> val.bin, train.bin.

`tinylm data build datasets/NAME` builds a folder whose `dataset.yaml` says `kind: text`
(a `TextDatasetSpec`):

    documents (streamed from the source) -> tokenizer (learned from the first training documents)
    -> shards of `shard_size` documents, encoded in worker processes -> val.bin, train.bin

Source formats (`source.format`), each read line by line, never whole:
- `tinystories`: the TinyStories files as distributed (TinyStoriesV2-GPT4-train.txt): stories
  separated by lines holding only `<|endoftext|>`; a story may hold blank lines;
- `txt`: any text file, documents separated by blank lines;
- `jsonl`: one JSON object per line, the document in its `source.field` (default `text`).
`source.path` is a file or a glob of files (read in sorted order), relative to the repository
root. Nothing is downloaded: point `path` at a file on disk, and pin it with `source.sha256` (the
build refuses a file whose SHA-256 differs); the manifest records the SHA-256 it read either way.
`source.generate` writes the corpus first, from the seeded story grammar of `tinylm.data.stories`,
into the folder's `corpus.txt` (TinyStories layout), so a dataset can be built with no file at all.

Splits. The first `splits.val` documents are the validation split, a fixed set whatever else
changes; the documents after them are the training split (the first `splits.train` of them, or
all). Documents are stripped of surrounding whitespace; empty ones are skipped.

Tokenizer (`tokenizer.kind`): `sentencepiece` (BPE or unigram, `vocab_size` pieces), `char` or
`word` (`min_frequency`, at most `vocab_size` tokens), all with `<pad> <unk> <bos> <eos>` at ids
0-3 (`tinylm.tokens.tokenizer`), learned from the first `tokenizer.sample` training documents (never
from validation); or `sentencepiece_file`, an existing SentencePiece `.model` (`tokenizer.path`) with
its own bos and eos pieces, used as it is. Each document is written `<bos>` ids `<eos>`, as uint8 ids
up to 256 tokens, uint16 up to 65,536, else uint32 (`dtype` in the manifest).

Shards: shard k holds documents [k*S, (k+1)*S) of the stream, encoded by a worker and saved
atomically as `shards/text.<fingerprint>/NNNNNN.npy`; a killed build keeps its finished shards
and the learned tokenizer, and resumes. The main process writes the shards in index order, so the
same spec gives the same bytes with any `--workers`. Outputs are written under temporary names
and renamed when complete, the manifest last.
"""

from __future__ import annotations

import glob
import hashlib
import itertools
import json
import re
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
from tqdm import tqdm

from tinylm.base.config import load_config, to_dict
from tinylm.base.errors import ConfigError, DataError
from tinylm.base.files import atomic_path, atomic_write_json, find_repo_root, resolve_path, run_metadata

END_OF_TEXT = "<|endoftext|>"
CORPUS = "corpus.txt"  # where `source.generate` writes the corpus, in the dataset folder
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


@dataclass
class StoriesConfig:
    """A corpus written by the story grammar of `tinylm.data.stories`."""

    stories: int = 20000
    seed: int = 0


@dataclass
class TextSource:
    """Where the documents come from."""

    path: str = ""
    """A file or glob of files, from the repository root (empty with `generate`)."""
    format: Literal["tinystories", "txt", "jsonl"] = "tinystories"
    """How documents are separated (see the module docstring)."""
    field: str = "text"
    """jsonl: the key holding each document."""
    sha256: str | None = None
    """The SHA-256 the source must have (of its files' bytes, in order); None: not checked."""
    generate: StoriesConfig | None = None
    """Write the corpus from the story grammar into the folder's corpus.txt, and read that."""


FILE_TOKENIZERS = ("sentencepiece_file", "hf_json")
"""Tokenizer kinds read from a file (`tokenizer.path`) instead of learned."""


@dataclass
class TextTokenizerConfig:
    """The learned tokenizer; every kind has <pad> <unk> <bos> <eos>."""

    kind: Literal["sentencepiece", "char", "word", "sentencepiece_file", "hf_json"] = "sentencepiece"
    """sentencepiece, char, word: learned from the sample; sentencepiece_file, hf_json: an existing
    SentencePiece model or HuggingFace `tokenizers` JSON (`path`)."""
    path: str | None = None
    """sentencepiece_file: a SentencePiece .model file with bos and eos pieces; hf_json: a
    tokenizer.json with bos and eos tokens (`tinylm.tokens.text.HF_SPECIALS`). Used as they
    are (relative paths from the repository root; their vocabulary replaces vocab_size)."""
    model_type: Literal["bpe", "unigram"] = "bpe"
    """SentencePiece model type."""
    vocab_size: int = 512
    """SentencePiece: pieces (fewer when the sample holds fewer); char/word: at most this many tokens."""
    min_frequency: int = 1
    """char/word: a character or word seen fewer times in the sample is <unk>."""
    sample: int = 20000
    """Learned from the first `sample` training documents."""


@dataclass
class TextSplits:
    val: int = 500
    """The first `val` documents: the fixed validation split."""
    train: int | None = None
    """Training documents, those after the validation ones; None: all."""


@dataclass
class TextDatasetSpec:
    """A text dataset folder's `dataset.yaml`."""

    kind: Literal["text"] = "text"
    source: TextSource = field(default_factory=TextSource)
    tokenizer: TextTokenizerConfig = field(default_factory=TextTokenizerConfig)
    splits: TextSplits = field(default_factory=TextSplits)
    shard_size: int = 10000
    """Documents per shard: the unit of parallel work and of resume."""

    def validate(self) -> None:
        src, tok = self.source, self.tokenizer
        if bool(src.path) == (src.generate is not None):
            raise ConfigError("'source': give either 'path' (a local file) or 'generate' (the story grammar)")
        if src.generate is not None and (src.generate.stories < 2 or src.generate.seed < 0):
            raise ConfigError("'source.generate': stories must be >= 2 and seed >= 0")
        if src.sha256 is not None and not _SHA256.match(src.sha256):
            raise ConfigError(f"'source.sha256' must be 64 lower-case hex digits, got {src.sha256!r}")
        if not src.field:
            raise ConfigError("'source.field' must name a key")
        if (tok.kind in FILE_TOKENIZERS) != (tok.path is not None):
            raise ConfigError("'tokenizer.path' goes with tokenizer.kind: sentencepiece_file (a .model file) or "
                              "hf_json (a tokenizer.json), and only with them")
        low = 16 if tok.kind == "sentencepiece" else 5
        if tok.kind not in FILE_TOKENIZERS and not low <= tok.vocab_size <= 65536:
            raise ConfigError(f"'tokenizer.vocab_size' must be in [{low}, 65536], got {tok.vocab_size}")
        for key, value in [("tokenizer.min_frequency", tok.min_frequency), ("tokenizer.sample", tok.sample),
                           ("splits.val", self.splits.val), ("shard_size", self.shard_size)]:
            if value < 1:
                raise ConfigError(f"'{key}' must be >= 1, got {value}")
        if self.splits.train is not None and self.splits.train < 1:
            raise ConfigError(f"'splits.train' must be >= 1 or null, got {self.splits.train}")


def load_text_spec(path: Path, overrides: list[str] | tuple = ()) -> TextDatasetSpec:
    return load_config(TextDatasetSpec, path, overrides)


# ----------------------------------------------------------------------------------------------
# Documents


def source_files(spec: TextDatasetSpec, folder: Path, yaml_path: Path) -> list[Path]:
    """The source's files, the generated corpus written first if the spec asks for one."""
    if spec.source.generate is not None:
        from tinylm.data.stories import write_tinystories

        corpus = folder / CORPUS
        if not corpus.is_file():
            write_tinystories(corpus, spec.source.generate.stories, spec.source.generate.seed)
        return [corpus]
    pattern = resolve_path(spec.source.path, yaml_path)
    files = sorted(Path(p) for p in glob.glob(str(pattern))) if glob.has_magic(str(pattern)) else [pattern]
    files = [f for f in files if f.is_file()]
    if not files:
        raise DataError(f"{pattern}: no such file (source.path of {yaml_path})")
    return files


def file_sha256(files: list[Path]) -> str:
    digest = hashlib.sha256()
    for path in files:
        with open(path, "rb") as f:
            while chunk := f.read(1 << 22):
                digest.update(chunk)
    return digest.hexdigest()


def _lines(path: Path) -> Iterator[str]:
    try:
        with open(path, encoding="utf-8", newline="") as f:
            yield from f
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not UTF-8 text ({exc})") from None


def iter_documents(files: list[Path], fmt: str, key: str = "text") -> Iterator[str]:
    """The documents of the files in order, stripped, empty ones skipped (streamed line by line)."""
    for path in files:
        if fmt == "jsonl":
            for n, line in enumerate(_lines(path), 1):
                if not line.strip():
                    continue
                try:
                    text = json.loads(line)[key]
                except (json.JSONDecodeError, KeyError, TypeError, IndexError) as exc:
                    raise DataError(f"{path}, line {n}: not a JSON object with a '{key}' field ({exc})") from None
                if not isinstance(text, str):
                    raise DataError(f"{path}, line {n}: '{key}' is {type(text).__name__}, not a string")
                if text.strip():
                    yield text.strip()
            continue
        doc: list[str] = []
        for line in _lines(path):
            if (line.strip() == END_OF_TEXT) if fmt == "tinystories" else not line.strip():
                if "".join(doc).strip():
                    yield "".join(doc).strip()
                doc = []
            else:
                doc.append(line)
        if "".join(doc).strip():
            yield "".join(doc).strip()


# ----------------------------------------------------------------------------------------------
# Tokenizer and shards


def load_sentencepiece_file(path: Path):
    """An existing SentencePiece model as a text tokenizer; DataError unless it has bos and eos pieces."""
    from tinylm.tokens.text import SentencePieceTokenizer

    if not path.is_file():
        raise DataError(f"{path}: no such SentencePiece model (tokenizer.path)")
    try:
        tokenizer = SentencePieceTokenizer(path.read_bytes(), name=path.stem)
    except RuntimeError as exc:
        raise DataError(f"{path}: not a SentencePiece model ({exc})") from None
    if tokenizer.bos_id is None or tokenizer.eos_id is None or tokenizer.eos_id < 0:
        raise DataError(f"{path}: a text tokenizer needs bos and eos pieces (trained with --bos_id and --eos_id)")
    return tokenizer


def load_hf_json(path: Path):
    """An existing `tokenizers` JSON as a text tokenizer; DataError unless it has bos and eos tokens."""
    from tinylm.tokens.text import HFJsonTokenizer

    if not path.is_file():
        raise DataError(f"{path}: no such tokenizers JSON (tokenizer.path)")
    try:
        return HFJsonTokenizer(path.read_text(), name=path.stem)
    except DataError as exc:
        raise DataError(f"{path}: {exc}") from None


def make_text_tokenizer(cfg: TextTokenizerConfig, texts: list[str]):
    from tinylm.tokens.text import train_sentencepiece, train_text_tokenizer

    if cfg.kind == "sentencepiece":
        return train_sentencepiece(texts, model_type=cfg.model_type, vocab_size=cfg.vocab_size, specials=True)
    return train_text_tokenizer(texts, level=cfg.kind, min_frequency=cfg.min_frequency, vocab_size=cfg.vocab_size)


def text_tokenizer(folder: Path, spec: TextDatasetSpec, files: list[Path], digest: str, code: str):
    """The learned tokenizer, trained once per (source, tokenizer config, code) and kept under shards/."""
    from tinylm.tokens.load import tokenizer_from_dict

    if spec.tokenizer.kind == "sentencepiece_file":
        return load_sentencepiece_file(resolve_path(spec.tokenizer.path, folder / "dataset.yaml"))
    if spec.tokenizer.kind == "hf_json":
        return load_hf_json(resolve_path(spec.tokenizer.path, folder / "dataset.yaml"))
    what = json.dumps({"tokenizer": to_dict(spec.tokenizer), "source": digest, "format": spec.source.format,
                       "field": spec.source.field, "val": spec.splits.val, "code": code}, sort_keys=True)
    saved = folder / "shards" / f"tokenizer.{hashlib.sha256(what.encode()).hexdigest()[:12]}.json"
    if saved.is_file():
        return tokenizer_from_dict(json.loads(saved.read_text()))
    documents = iter_documents(files, spec.source.format, spec.source.field)
    sample = list(itertools.islice(documents, spec.splits.val, spec.splits.val + spec.tokenizer.sample))
    if not sample:
        raise DataError(f"{files[0]}: no training documents after the {spec.splits.val} validation ones "
                        f"to learn the tokenizer from (lower splits.val)")
    tokenizer = make_text_tokenizer(spec.tokenizer, sample)
    atomic_write_json(saved, tokenizer.to_dict())
    return tokenizer


@dataclass
class TextShard:
    """Documents [index * shard_size, ...) to encode into `path` (None: the shard is on disk already)."""

    path: str
    documents: list[str] | None
    tokenizer: dict


def encode_shard(job: TextShard) -> str:
    """Encode a shard's documents and save (ids, per-document offsets) atomically; returns its path."""
    from tinylm.data.shards import worker_tokenizer

    if job.documents is not None:
        tokenizer = worker_tokenizer(job.tokenizer)
        parts = [tokenizer.encode_examples([d]) for d in job.documents]
        offsets = np.concatenate([[0], np.cumsum([len(p) for p in parts])]).astype(np.int64)
        with atomic_path(job.path) as tmp, open(tmp, "wb") as f:
            np.savez(f, ids=np.concatenate(parts).astype(tokenizer.dtype), offsets=offsets)
    return job.path


def _shard_jobs(documents: Iterator[str], folder: Path, tok: dict, size: int) -> Iterator[TextShard]:
    for k in itertools.count():
        batch = list(itertools.islice(documents, size))
        if not batch:
            return
        path = folder / f"{k:06d}.npz"
        yield TextShard(str(path), None if path.is_file() else batch, tok)


@dataclass
class TextSplit:
    """One output file being filled with whole documents."""

    name: str
    path: Path
    need: int | None
    file: object = None
    examples: int = 0
    tokens: int = 0

    @property
    def full(self) -> bool:
        return self.need is not None and self.examples >= self.need

    def write(self, ids: np.ndarray, offsets: np.ndarray, first: int, stop: int) -> int:
        """Write documents first..stop-1 of a shard (as many as the split still takes); returns the stop used."""
        if self.need is not None:
            stop = min(stop, first + self.need - self.examples)
        piece = ids[offsets[first]:offsets[stop]]
        self.file.write(piece.astype(piece.dtype.newbyteorder("<"), copy=False).tobytes())
        self.examples += stop - first
        self.tokens += len(piece)
        return stop

    def summary(self) -> dict:
        return {"file": self.path.name, "requested": self.need, "examples": self.examples, "tokens": self.tokens}


def build_text(folder: str | Path, workers: int | None = None, keep_shards: bool = False,
               overrides: list[str] | tuple = ()) -> dict:
    """Build a text dataset folder from its `dataset.yaml`; returns the manifest."""
    from tinylm.data.shards import (
        FORMAT,
        code_fingerprint,
        default_workers,
        make_executor,
        ordered_map,
        remove_stale,
        spec_file,
        window,
    )

    clock = time.time()
    yaml_path = spec_file(folder)
    spec = load_text_spec(yaml_path, overrides)
    folder = yaml_path.parent
    files = source_files(spec, folder, yaml_path)
    digest = file_sha256(files)
    if spec.source.sha256 is not None and digest != spec.source.sha256:
        raise DataError(f"{files[0]}: SHA-256 {digest} is not the {spec.source.sha256} that source.sha256 pins")
    code = code_fingerprint()
    tokenizer = text_tokenizer(folder, spec, files, digest, code)
    tok = tokenizer.to_dict()
    what = {"source": digest, "format": spec.source.format, "field": spec.source.field, "tokenizer": tok,
            "shard_size": spec.shard_size, "code": code}
    shards = folder / "shards" / f"text.{hashlib.sha256(json.dumps(what, sort_keys=True).encode()).hexdigest()[:12]}"
    remove_stale(folder, {shards})
    workers = workers or default_workers()
    val = TextSplit("val", folder / "val.bin", spec.splits.val)
    train = TextSplit("train", folder / "train.bin", spec.splits.train)
    read = 0
    with atomic_path(val.path) as val_tmp, atomic_path(train.path) as train_tmp, \
            open(val_tmp, "wb") as val.file, open(train_tmp, "wb") as train.file, make_executor(workers) as executor:
        documents = iter_documents(files, spec.source.format, spec.source.field)
        results = ordered_map(executor, encode_shard, _shard_jobs(documents, shards, tok, spec.shard_size),
                              window(workers))
        total = spec.splits.val + spec.splits.train if spec.splits.train else None
        bar = tqdm(total=total, desc=folder.name, unit="doc", disable=None, leave=False, dynamic_ncols=True)
        for path in results:
            with np.load(path, allow_pickle=False) as z:
                ids, offsets = z["ids"], z["offsets"]
            n, at = len(offsets) - 1, 0
            read += n
            bar.update(n)
            if not val.full:
                at = val.write(ids, offsets, 0, n)
            if at < n and not train.full:
                train.write(ids, offsets, at, n)
            if train.full:
                break
        results.close()
        bar.close()
        if val.examples < val.need or train.examples < 1 or (train.need is not None and not train.full):
            raise DataError(f"{files[0]}: {read} documents; the splits need {val.need} for val and "
                            f"{train.need or 'at least 1'} for train")
    manifest = {
        "format": FORMAT, "kind": "text", "name": folder.name, "tokenizer": tok,
        "vocab_size": int(tokenizer.vocab_size), "dtype": str(np.dtype(tokenizer.dtype)),
        "splits": {s.name: s.summary() for s in (val, train)},
        "source": {"files": [_shown(f, folder) for f in files], "format": spec.source.format, "sha256": digest,
                   "bytes": sum(f.stat().st_size for f in files), "documents_read": read},
        "config": to_dict(spec),
        "timings": {"wall_seconds": round(time.time() - clock, 3), "workers": workers},
        "meta": run_metadata(),
    }
    atomic_write_json(folder / "manifest.json", manifest)
    if not keep_shards:
        shutil.rmtree(folder / "shards", ignore_errors=True)
    return manifest


def _shown(path: Path, folder: Path) -> str:
    """A source file as the manifest names it: from the repository root when inside it."""
    root = find_repo_root(folder)
    try:
        return str(path.resolve().relative_to(root.resolve())) if root else str(path)
    except ValueError:
        return str(path)
