"""Tokenizers as plain data and token files: `tokenizer_from_dict` rebuilds any tokenizer from its
`to_dict()` (a JSON manifest's or a checkpoint's), `tokenizer_sha256` is its identity (which
checkpoints record), `write_bin` writes ids; and `tinylm tokenize` turns a text file of examples into
a `.bin` file and back.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
from pathlib import Path

import numpy as np

from tinylm.base.args import ArgumentParser
from tinylm.base.errors import DataError
from tinylm.base.files import atomic_write_bytes, atomic_write_text
from tinylm.lang.format import split_examples
from tinylm.tokens.text import HFJsonTokenizer, SentencePieceTokenizer, TextTokenizer
from tinylm.tokens.tokenizer import KEYWORD_VOCABS, Tokenizer, VocabTokenizer, keyword_tokenizer


def tokenizer_from_dict(d: dict) -> Tokenizer:
    """Rebuild a tokenizer from `Tokenizer.to_dict()` output."""
    try:
        if d["kind"] in ("char", "word") and "specials" in d:
            return TextTokenizer(d["tokens"], level=d["kind"], name=d["name"])
        if d["kind"] in ("keyword", "char"):
            return VocabTokenizer(d["tokens"], name=d["name"], kind=d["kind"], drop_spaces=d["drop_spaces"])
        if d["kind"] == "sentencepiece":
            return SentencePieceTokenizer(base64.b64decode(d["model_proto"]), name=d["name"])
        if d["kind"] == "hf_json":
            return HFJsonTokenizer(d["json"], name=d["name"])
    except (KeyError, TypeError, ValueError, RuntimeError) as exc:  # RuntimeError: sentencepiece's bad proto
        raise DataError(f"malformed tokenizer description (missing or bad {exc})") from None
    raise DataError(f"unknown tokenizer kind {d['kind']!r} (expected keyword, char, word, sentencepiece or hf_json)")


def tokenizer_sha256(d: dict) -> str:
    """The identity of a tokenizer description (`Tokenizer.to_dict()`): SHA-256 of its canonical JSON.
    Two tokenizers of the same size but other tokens or ids get different identities."""
    return hashlib.sha256(json.dumps(d, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def write_bin(path: str | Path, ids: np.ndarray) -> None:
    """Write ids as a flat little-endian array (uint8 or uint16), atomically."""
    ids = np.asarray(ids)
    if ids.dtype not in (np.uint8, np.uint16):
        raise DataError(f"{path}: token ids must be uint8 or uint16, got {ids.dtype}")
    atomic_write_bytes(path, ids.astype(ids.dtype.newbyteorder("<"), copy=False).tobytes())


# ---------------------------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------------------------


def _load_tokenizer(args: argparse.Namespace) -> Tokenizer:
    if args.tokenizer is None:
        return keyword_tokenizer(args.vocab)
    path = Path(args.tokenizer)
    if not path.is_file():
        raise DataError(f"{path}: no such tokenizer file")
    try:
        return tokenizer_from_dict(json.loads(path.read_text()))
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}: not a JSON tokenizer description ({exc})") from None


def cli(argv: list[str]) -> int:
    """`tinylm tokenize [--vocab m2 | --tokenizer tok.json] [--decode] INPUT OUTPUT`."""
    parser = ArgumentParser(prog="tinylm tokenize", description=(
        "Encode a text file of examples separated by blank lines into a .bin of token ids "
        "(each example followed by the terminator), or with --decode turn a .bin back into text."))
    parser.add_argument("input")
    parser.add_argument("output")
    parser.add_argument("--vocab", default="m2", help=f"keyword vocabulary: {', '.join(KEYWORD_VOCABS)}")
    parser.add_argument("--tokenizer", help="JSON file holding a Tokenizer.to_dict() (overrides --vocab)")
    parser.add_argument("--decode", action="store_true", help="read a .bin and write its text")
    args = parser.parse_args(argv)
    tokenizer = _load_tokenizer(args)
    source = Path(args.input)
    if not source.is_file():
        raise DataError(f"{source}: no such file")
    if args.decode:
        raw = source.read_bytes()
        if len(raw) % tokenizer.dtype.itemsize:
            raise DataError(f"{source}: size {len(raw)} is not a whole number of {tokenizer.dtype} ids")
        ids = np.frombuffer(raw, dtype=tokenizer.dtype.newbyteorder("<"))
        atomic_write_text(args.output, tokenizer.decode(ids))
        print(f"{args.output}: {len(ids)} tokens decoded with {tokenizer.name}")
        return 0
    try:
        examples = split_examples(source.read_text(encoding="utf-8"))
    except UnicodeDecodeError as exc:
        raise DataError(f"{source}: not UTF-8 text ({exc})") from None
    ids = tokenizer.encode_examples(examples, where=str(source))
    write_bin(args.output, ids)
    print(f"{args.output}: {len(ids)} tokens ({ids.dtype}), {len(examples)} examples, "
          f"vocabulary {tokenizer.name} ({tokenizer.vocab_size} tokens)")
    return 0
