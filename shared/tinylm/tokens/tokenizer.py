"""Traces <-> token ids: keyword, char and SentencePiece tokenizers behind one interface.

Every tokenizer has `encode`, `encode_examples` (the `.bin` layout: each example followed by the
terminator "\\n\\n"), `decode`, `token_strings`, `token_id`, `eos_id` and `to_dict`; ids come back as
a numpy array of `dtype` (uint8 up to 256 tokens, else uint16). `tokenizer_from_dict` rebuilds any
of them from plain data, so a tokenizer travels inside a JSON manifest or a checkpoint;
`tokenizer_sha256` of that data is its identity, which checkpoints record.

- `keyword_tokenizer("m2")`: the reference TinyPy vocabularies, giving the reference ids exactly.
  The reference matched its tokens with one regex, longest first, and skipped spaces. Here byte
  tables (`bytes.translate`) and numpy index arrays find and place the multi-character tokens and
  map the other characters, with no Python loop per token; text where two token occurrences
  partly overlap (never in real traces) takes the reference's token-by-token scan instead, so
  the ids always agree. `decode` can put TinyPy's canonical spaces back.
- `train_char_tokenizer(texts)`: one token per character seen, plus the terminator.
- `train_sentencepiece(texts, model_type=..., vocab_size=...)`: SentencePiece BPE or unigram,
  trained in memory and configured to keep spaces, tabs and newlines exactly.

Plain text (stories, any document corpus) has no "\\n\\n" terminator of its own: its tokenizers
carry the four `SPECIAL_TOKENS` instead, `<pad>` `<unk>` `<bos>` `<eos>` at ids 0-3
(`pad_id`, `unk_id`, `bos_id`, `eos_id`; None on the TinyPy tokenizers). `encode_examples`
writes each document as `<bos>` ids `<eos>`; text the vocabulary lacks becomes `<unk>` instead of
an error; `decode` leaves `<pad>`, `<bos>` and `<eos>` out; `pad` right-pads a batch of documents
and returns the mask of real tokens.

- `train_text_tokenizer(texts, level="char"|"word", min_frequency=...)`: one token per character,
  or per word (a run of letters with the space before it), digit, symbol or whitespace
  character, kept when seen at least `min_frequency` times. Nothing is cleaned away: digits,
  punctuation and symbols are tokens like letters, and decoding gives the text back exactly.
- `train_sentencepiece(texts, ..., specials=True)`: SentencePiece with the four special tokens.

`tinylm tokenize` (see `cli`) turns a text file of examples into a `.bin` file and back.
"""

from __future__ import annotations

import argparse
import base64
import functools
import hashlib
import io
import itertools
import json
import re
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from tinylm.base.args import ArgumentParser
from tinylm.base.errors import ConfigError, DataError, TokenizeError
from tinylm.base.files import atomic_write_bytes, atomic_write_text
from tinylm.lang.format import EXAMPLE_END, STEP, split_examples

_LETTERS = tuple("abcdefghijklmnopqrstuvwxyz")
_DIGITS = tuple("0123456789")

# The reference vocabularies, in id order. The reference sorted each keyword list by length,
# longest first (a stable sort), numbered the result and matched the tokens in that same order, so
# the id order is also the matching priority.
_M2 = ("# output\n", "# code\n", "\n#STEP\n", "range(", "print(", "while", "elif", "else", "for", "not",
       "# ", "\n\n", "in", "//", "if", "==", "<=", ">=", "!=",
       "&", ";", "?", "|", "@", "^", "$", "\n", "\t", *_LETTERS, *_DIGITS,
       "=", "+", "-", "/", "*", "%", "(", ")", ":", ",", ".", "<", ">")
KEYWORD_VOCABS: dict[str, tuple[str, ...]] = {
    "demo": _M2,
    "m2": _M2,
    "alpha": ("\n#STEP\n", "\n\n", "if", ";", "?", "@", "^", "$", "\n", "\t", *_LETTERS, *_DIGITS,
              "=", "+", "-", ":", "<", ">"),
    "beta": ("\n#STEP\n", "range", "for", "\n\n", "if", "in", ";", "?", "@", "^", "$", "\n", "\t",
             *_LETTERS, *_DIGITS, "=", "+", "-", ":", "<", ">", "(", ")"),
}


def _where(where: str, example: int | None = None, offset: int | None = None) -> str:
    """'traces.txt, example 3, offset 17', leaving out the parts not given."""
    parts = [where, None if example is None else f"example {example}", None if offset is None else f"offset {offset}"]
    return ", ".join(p for p in parts if p)


# ---------------------------------------------------------------------------------------------
# The interface
# ---------------------------------------------------------------------------------------------


class Tokenizer:
    """What every tokenizer offers; subclasses implement the text <-> id mapping."""

    kind: str
    name: str
    vocab_size: int
    eos_id: int | None
    bos_id: int | None = None
    pad_id: int | None = None
    unk_id: int | None = None
    """Where unknown text goes; None: unknown text is a TokenizeError."""

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(np.uint8 if self.vocab_size <= 256 else np.uint16 if self.vocab_size <= 65536 else np.uint32)

    def encode(self, text: str, *, where: str = "") -> np.ndarray:
        """1-D array of ids; an unknown character is a TokenizeError naming `where` and the offset."""
        raise NotImplementedError

    def encode_examples(self, examples: Iterable[str], *, where: str = "") -> np.ndarray:
        """Ids of each example followed by the terminator "\\n\\n", concatenated: the `.bin` layout."""
        raise NotImplementedError

    def decode(self, ids, *, canonical_spaces: bool = True) -> str:
        """The text of `ids`; `canonical_spaces` puts back spaces a keyword vocabulary dropped."""
        raise NotImplementedError

    def token_strings(self, ids) -> list[str]:
        """The text of each id, spaces shown as spaces."""
        raise NotImplementedError

    def token_id(self, token: str) -> int:
        """The id of one token, such as "\\n#STEP\\n"; a TokenizeError if there is none."""
        raise NotImplementedError

    def to_dict(self) -> dict:
        """Plain data (str, int, bool, list, dict) from which `tokenizer_from_dict` rebuilds this tokenizer."""
        raise NotImplementedError

    def pad(self, sequences: Sequence[Sequence[int]], length: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(B, L) int64 ids of `sequences` right-padded with `pad_id` to `length` (default: the
        longest), and the (B, L) bool mask of the real tokens."""
        if self.pad_id is None:
            raise TokenizeError(f"tokenizer {self.name} has no <pad> token")
        L = max((len(s) for s in sequences), default=0) if length is None else length
        if any(len(s) > L for s in sequences):
            raise TokenizeError(f"a sequence is longer than the padded length {L}")
        ids = np.full((len(sequences), L), self.pad_id, dtype=np.int64)
        mask = np.zeros((len(sequences), L), dtype=bool)
        for row, seq in enumerate(sequences):
            ids[row, :len(seq)], mask[row, :len(seq)] = seq, True
        return ids, mask

    def _check_ids(self, ids) -> np.ndarray:
        """`ids` as a flat int64 array; an id outside the vocabulary is a TokenizeError."""
        ids = np.asarray(ids, dtype=np.int64).reshape(-1)
        if ids.size and (ids.min() < 0 or ids.max() >= self.vocab_size):
            bad = ids[(ids < 0) | (ids >= self.vocab_size)][0]
            raise TokenizeError(f"token id {bad} is outside the vocabulary of {self.name} ({self.vocab_size} tokens)")
        return ids

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name}: {self.vocab_size} tokens>"


# ---------------------------------------------------------------------------------------------
# Fixed token lists: the reference keyword vocabularies and char-level vocabularies
# ---------------------------------------------------------------------------------------------


_UNKNOWN, _DROP = 254, 255  # byte values that are never ids on the fast path
_BATCH = 4096  # examples encoded as one text: bounds the fast path's temporary arrays


def _byte_table(mapping: dict[int, int], default: int) -> bytes:
    """A 256-byte table for `bytes.translate`: byte -> mapping.get(byte, default)."""
    return bytes(mapping.get(b, default) for b in range(256))


class VocabTokenizer(Tokenizer):
    """A fixed list of tokens; multi-character tokens match longest first, like the reference regex.

    `drop_spaces` (keyword vocabularies) skips spaces between tokens, as the reference did, and
    lets `decode` restore TinyPy's canonical spaces; char vocabularies keep spaces as tokens.
    """

    def __init__(self, tokens: Sequence[str], *, name: str, kind: str, drop_spaces: bool):
        if len(set(tokens)) != len(tokens) or "" in tokens:
            raise ConfigError(f"tokenizer {name}: tokens must be distinct and non-empty")
        self.kind, self.name, self.drop_spaces = kind, name, drop_spaces
        self.tokens = list(tokens)
        self.vocab_size = len(self.tokens)
        self._ids = {token: i for i, token in enumerate(self.tokens)}
        self._strings = np.array(self.tokens, dtype=object)
        self.eos_id = self._ids.get(EXAMPLE_END)
        # Longest first, ties in id order: the reference's regex alternation order.
        multi = sorted((t for t in self.tokens if len(t) > 1), key=len, reverse=True)
        self._regex = re.compile("|".join([*map(re.escape, multi), "[^ ]" if drop_spaces else r"[\s\S]"]))
        self._keywords = frozenset(t for t in multi if t.isalpha())
        # Joined examples tokenize like separate ones when no token but the terminator holds it.
        self._joinable = self.eos_id is not None and not any(EXAMPLE_END in t for t in multi if t != EXAMPLE_END)
        self._fast = self._fast_tables(multi)

    def _fast_tables(self, multi: list[str]) -> dict | None:
        """Byte tables for encoding ASCII text by array operations (None for big or non-ASCII vocabularies).

        A multi-character token can only start where its first two characters do: `first` and
        `second` number the characters that begin and continue such prefixes, and `prefix`
        maps first * (len(seconds) + 1) + second to the prefix's number.
        """
        firsts = sorted({t[0] for t in multi})
        seconds = sorted({t[1] for t in multi})
        prefixes = sorted({t[:2] for t in multi})
        width = len(seconds) + 1
        if (self.vocab_size > _UNKNOWN or not "".join(self.tokens).isascii()
                or (len(firsts) + 1) * width > 256):
            return None
        singles = {ord(t): i for i, t in enumerate(self.tokens) if len(t) == 1}
        if self.drop_spaces:
            singles.setdefault(ord(" "), _DROP)
        return {
            "single": _byte_table(singles, _UNKNOWN),
            "first": _byte_table({ord(c): i + 1 for i, c in enumerate(firsts)}, 0),
            "second": _byte_table({ord(c): i + 1 for i, c in enumerate(seconds)}, 0),
            "width": width,
            "prefix": _byte_table({(firsts.index(p[0]) + 1) * width + seconds.index(p[1]) + 1: i + 1
                                   for i, p in enumerate(prefixes)}, 0),
            "n_prefixes": len(prefixes),
            "multi": [(self._ids[t], np.frombuffer(t.encode("ascii"), dtype=np.uint8), prefixes.index(t[:2]) + 1)
                      for t in multi],
        }

    # -- encoding ---------------------------------------------------------------------------

    def encode(self, text: str, *, where: str = "") -> np.ndarray:
        ids = self._encode_fast(text)
        if ids is None:  # the reference scan, token by token
            ids = np.array([self._ids.get(t, -1) for t in self._regex.findall(text)], dtype=np.int32)
            if ids.size and ids.min() < 0:
                self._raise_unknown(text, where)
        return ids.astype(self.dtype, copy=False)

    def encode_examples(self, examples: Iterable[str], *, where: str = "") -> np.ndarray:
        examples = list(examples)
        parts = [self._encode_batch(examples[i:i + _BATCH], where, i) for i in range(0, len(examples), _BATCH)]
        return np.concatenate(parts) if parts else np.zeros(0, self.dtype)

    def _encode_batch(self, examples: list[str], where: str, first: int) -> np.ndarray:
        """Examples joined into one text when that tokenizes like separate ones, else one by one."""
        ids = self._encode_fast(EXAMPLE_END.join(examples) + EXAMPLE_END) if self._joinable else None
        if ids is None:  # overlapping tokens or an unknown character: find which example
            ids = np.concatenate([self.encode(e + EXAMPLE_END, where=_where(where, first + i))
                                  for i, e in enumerate(examples)])
        return ids.astype(self.dtype, copy=False)

    def _encode_fast(self, text: str) -> np.ndarray | None:
        """Ids of ASCII `text` by byte-table lookups; None to fall back on the token-by-token scan.

        Every character becomes its single-character id (spaces and the inner characters of
        multi-character tokens a marker to delete), the first character of each placed token
        its id, and one `bytes.translate` deletes the markers. Unknown characters also give None,
        and the scan then names them.
        """
        if self._fast is None or not text.isascii():
            return None
        data = text.encode("ascii")
        placed = self._place_multi(data)
        if placed is None:
            return None
        starts, multi_ids, inner = placed
        out = bytearray(data.translate(self._fast["single"]))
        view = np.frombuffer(out, dtype=np.uint8)
        view[starts] = multi_ids
        view[inner] = _DROP
        out = out.translate(None, bytes([_DROP]))
        return None if _UNKNOWN in out else np.frombuffer(out, dtype=np.uint8)

    def _place_multi(self, data: bytes):
        """Occurrences of multi-character tokens that the reference's left-to-right scan keeps.

        Tokens are placed in priority order; an occurrence inside an already placed token is
        skipped. When no occurrence partly overlaps another (always so in real traces) the placed
        ones are exactly the reference's; otherwise return None. Returns (starts, ids, inner
        positions) as index arrays.
        """
        fast, codes = self._fast, np.frombuffer(data, dtype=np.uint8)
        first = np.frombuffer(data.translate(fast["first"]), dtype=np.uint8)
        second = np.frombuffer(data.translate(fast["second"]), dtype=np.uint8)
        key = first[:-1] * np.uint8(fast["width"]) + second[1:]  # < 256 by construction
        prefix = np.frombuffer(key.tobytes().translate(fast["prefix"]), dtype=np.uint8)
        candidates = np.flatnonzero(prefix)
        by_prefix = np.argsort(prefix[candidates], kind="stable")
        candidates = candidates[by_prefix]
        bounds = np.searchsorted(prefix[candidates], np.arange(1, fast["n_prefixes"] + 2))
        state = np.zeros(len(codes), dtype=np.uint8)  # 0 free, 1 first character of a placed token, 2 inside
        starts, ids, inner = [np.zeros(0, np.intp)], [np.zeros(0, np.uint8)], [np.zeros(0, np.intp)]
        for token_id, chars, group in fast["multi"]:
            at = candidates[bounds[group - 1]:bounds[group]]
            if not len(at):
                continue
            at = at[at <= len(codes) - len(chars)]
            for k in range(2, len(chars)):
                at = at[codes[at + k] == chars[k]]
            seen = state[at[:, None] + np.arange(len(chars))]  # (occurrences, len(token))
            free = ~seen.any(axis=1)
            if not (free | ((seen[:, 0] > 0) & (seen[:, 1:] == 2).all(axis=1))).all():
                return None  # partly overlaps a token placed before
            at = at[free]
            if (np.diff(at) < len(chars)).any():
                return None  # overlaps itself, as in "///"
            rest = (at[:, None] + np.arange(1, len(chars))).ravel()
            state[at], state[rest] = 1, 2
            starts.append(at)
            ids.append(np.full(len(at), token_id, dtype=np.uint8))
            inner.append(rest)
        return np.concatenate(starts), np.concatenate(ids), np.concatenate(inner)

    def _raise_unknown(self, text: str, where: str):
        """Find the first character the reference scan has no token for, and say where it is."""
        for match in self._regex.finditer(text):
            if match.group() not in self._ids:
                at = _where(where, offset=match.start())
                raise TokenizeError(f"{at}: no token for character {match.group()!r} in vocabulary {self.name}")
        raise AssertionError("an unknown token was reported but none was found")

    # -- decoding and lookups ---------------------------------------------------------------

    def decode(self, ids, *, canonical_spaces: bool = True) -> str:
        text = "".join(self._strings[self._check_ids(ids)])
        if self.drop_spaces and canonical_spaces:
            return restore_spaces(text, self._keywords)
        return text

    def token_strings(self, ids) -> list[str]:
        return self._strings[self._check_ids(ids)].tolist()

    def token_id(self, token: str) -> int:
        if token not in self._ids:
            raise TokenizeError(f"no token {token!r} in vocabulary {self.name}")
        return self._ids[token]

    def to_dict(self) -> dict:
        return {"kind": self.kind, "name": self.name, "tokens": self.tokens, "drop_spaces": self.drop_spaces}


def keyword_tokenizer(vocab: str) -> VocabTokenizer:
    """The reference tokenizer of a TinyPy family: "demo" and "m2" (77 tokens), "alpha" (52), "beta" (57)."""
    if vocab not in KEYWORD_VOCABS:
        raise ConfigError(f"unknown keyword vocabulary '{vocab}' (choose from {', '.join(KEYWORD_VOCABS)})")
    return VocabTokenizer(KEYWORD_VOCABS[vocab], name=vocab, kind="keyword", drop_spaces=True)


def train_char_tokenizer(texts: Iterable[str], *, name: str = "char") -> VocabTokenizer:
    """One token per distinct character of `texts` plus the terminator "\\n\\n", in sorted order."""
    chars: set[str] = set()
    for text in texts:
        chars.update(text)
    return VocabTokenizer(sorted(chars | {EXAMPLE_END}), name=name, kind="char", drop_spaces=False)


# ---------------------------------------------------------------------------------------------
# Plain text: char and word vocabularies with special tokens
# ---------------------------------------------------------------------------------------------

SPECIAL_TOKENS = ("<pad>", "<unk>", "<bos>", "<eos>")  # ids 0, 1, 2, 3 of every text tokenizer
PAD_ID, UNK_ID, BOS_ID, EOS_ID = range(4)
# A word is a run of letters with the space before it; any other character (a digit, a symbol,
# whitespace) is a piece of its own, a space before a digit or symbol going with it. Every
# character falls in a piece, so the pieces join back into the text.
_WORD = re.compile(r" ?[^\W\d_]+| ?[^\s]|\s")


class TextTokenizer(Tokenizer):
    """A vocabulary of characters (`level` "char") or words ("word") after the four special tokens."""

    bos_id, pad_id, unk_id = BOS_ID, PAD_ID, UNK_ID

    def __init__(self, tokens: Sequence[str], *, level: str, name: str):
        if level not in ("char", "word"):
            raise ConfigError(f"tokenizer {name}: level must be 'char' or 'word', got {level!r}")
        if tuple(tokens[:4]) != SPECIAL_TOKENS or len(set(tokens)) != len(tokens) or "" in tokens:
            raise ConfigError(f"tokenizer {name}: tokens must start with {SPECIAL_TOKENS} and be distinct")
        self.kind, self.name, self.tokens = level, name, list(tokens)
        self.vocab_size, self.eos_id = len(self.tokens), EOS_ID
        self._ids = {t: i for i, t in enumerate(self.tokens[4:], 4)}  # specials never come from text
        self._strings = np.array(["", *self.tokens[1:2], "", "", *self.tokens[4:]], dtype=object)

    def pieces(self, text: str) -> list[str]:
        return list(text) if self.kind == "char" else _WORD.findall(text)

    def encode(self, text: str, *, where: str = "") -> np.ndarray:
        return np.fromiter((self._ids.get(p, UNK_ID) for p in self.pieces(text)), dtype=self.dtype)

    def encode_examples(self, examples: Iterable[str], *, where: str = "") -> np.ndarray:
        parts = [np.concatenate([[BOS_ID], self.encode(e), [EOS_ID]]) for e in examples]
        return np.concatenate(parts).astype(self.dtype) if parts else np.zeros(0, self.dtype)

    def decode(self, ids, *, canonical_spaces: bool = True) -> str:
        return "".join(self._strings[self._check_ids(ids)])

    def token_strings(self, ids) -> list[str]:
        return [self.tokens[i] for i in self._check_ids(ids)]

    def token_id(self, token: str) -> int:
        if token in SPECIAL_TOKENS:
            return SPECIAL_TOKENS.index(token)
        if token not in self._ids:
            raise TokenizeError(f"no token {token!r} in vocabulary {self.name}")
        return self._ids[token]

    def to_dict(self) -> dict:
        return {"kind": self.kind, "name": self.name, "tokens": self.tokens, "specials": list(SPECIAL_TOKENS)}


def train_text_tokenizer(texts: Iterable[str], *, level: str = "char", min_frequency: int = 1,
                         vocab_size: int | None = None, name: str | None = None) -> TextTokenizer:
    """The characters or words of `texts` seen at least `min_frequency` times, most frequent
    first (ties in string order), at most `vocab_size` tokens counting the four specials."""
    if min_frequency < 1:
        raise ConfigError(f"min_frequency must be >= 1, got {min_frequency}")
    if vocab_size is not None and vocab_size < 5:
        raise ConfigError(f"vocab_size must be at least 5 (4 special tokens and one more), got {vocab_size}")
    split = list if level == "char" else _WORD.findall
    counts: dict[str, int] = {}
    for text in texts:
        for piece in split(text):
            counts[piece] = counts.get(piece, 0) + 1
    kept = sorted((p for p, n in counts.items() if n >= min_frequency and p not in SPECIAL_TOKENS),
                  key=lambda p: (-counts[p], p))
    if vocab_size is not None:
        kept = kept[:vocab_size - 4]
    return TextTokenizer([*SPECIAL_TOKENS, *kept], level=level, name=name or f"{level}-{4 + len(kept)}")


# ---------------------------------------------------------------------------------------------
# Canonical TinyPy spaces, for keyword vocabularies that dropped them
# ---------------------------------------------------------------------------------------------

_BINARY_OPS = frozenset({"=", "+", "-", "*", "/", "//", "%", "<", ">", "<=", ">=", "==", "!="})
_ASSIGNMENT = re.compile(r"[A-Za-z_]\w*=(?!=)")
_HEADER = re.compile(r"(elif|if|while)(.+):")
_FOR = re.compile(r"for([A-Za-z_]\w*)in(.+):")
_LINE = re.compile(r"(@?\t*)([^$]*)(.*)")  # step marker and indent, statement, "$" and the state


def restore_spaces(text: str, keywords: frozenset[str] = frozenset()) -> str:
    """Put TinyPy's canonical spaces back into text whose spaces were dropped.

    `a=b+3` -> `a = b + 3`, `ifa<-3:` -> `if a < -3:`, `forxinrange(1,3):` -> `for x in range(1, 3):`.
    Comment lines (`# code`, `#STEP`) and the state after `$` are left alone. `keywords` are the
    vocabulary's word tokens: `not` is split off a name only where it is one.
    """
    return "\n".join(_restore_line(line, "not" in keywords) for line in text.split("\n"))


@functools.lru_cache(maxsize=1 << 16)
def _restore_line(line: str, split_not: bool) -> str:
    if line.startswith("#"):
        return line
    prefix, statement, state = _LINE.fullmatch(line).groups()
    return prefix + _restore_statement(statement, split_not) + state


def _restore_statement(statement: str, split_not: bool) -> str:
    if _ASSIGNMENT.match(statement):  # before the headers: "ifx=3" assigns to a name "ifx"
        return _restore_expression(statement, split_not)
    if m := _FOR.fullmatch(statement):
        return f"for {m[1]} in {_restore_expression(m[2], split_not)}:"
    if m := _HEADER.fullmatch(statement):
        return f"{m[1]} {_restore_expression(m[2], split_not)}:"
    return _restore_expression(statement, split_not)


_EXPR_TOKEN = re.compile(r"\d+|[A-Za-z_]\w*|//|==|!=|<=|>=|\S")
_EXPR_TOKEN_NOT = re.compile(r"\d+|not|[A-Za-z_]\w*|//|==|!=|<=|>=|\S")


def _restore_expression(expr: str, split_not: bool) -> str:
    """Spaces around binary operators and after commas; none after a unary sign or inside calls."""
    out = []
    operand_next = True  # at the start, after an operator, "(" or ",": a sign here is unary
    for tok in (_EXPR_TOKEN_NOT if split_not else _EXPR_TOKEN).findall(expr):
        if tok in _BINARY_OPS and not operand_next:
            out.append(f" {tok} ")
            operand_next = True
        elif tok == "not" and operand_next:
            out.append("not ")
        elif tok == ",":
            out.append(", ")
            operand_next = True
        else:
            out.append(tok)
            operand_next = tok in ("(", "-", "+")
    return "".join(out)


# ---------------------------------------------------------------------------------------------
# SentencePiece
# ---------------------------------------------------------------------------------------------

_SPACE_PIECE = "\u2581"  # SentencePiece's visible stand-in for a space


class SentencePieceTokenizer(Tokenizer):
    """A trained SentencePiece model (BPE or unigram) that keeps every character, spaces included.

    A model trained with `specials` (it has a bos piece) is a text tokenizer: unknown text
    becomes <unk> and each example is written <bos> ids <eos>. Otherwise (TinyPy traces) the
    terminator is the "\\n\\n" piece and unknown text is an error."""

    kind = "sentencepiece"

    def __init__(self, model_proto: bytes, *, name: str):
        import sentencepiece as spm

        self.name = name
        self.model_proto = bytes(model_proto)
        self.sp = spm.SentencePieceProcessor(model_proto=self.model_proto)
        self.vocab_size = self.sp.get_piece_size()
        if self.sp.bos_id() >= 0:
            self.bos_id, self.eos_id, self.pad_id, self.unk_id = (
                self.sp.bos_id(), self.sp.eos_id(), self.sp.pad_id(), self.sp.unk_id())
            self.pad_id = None if self.pad_id < 0 else self.pad_id   # a model made elsewhere may have none
        else:
            piece = self.sp.piece_to_id(EXAMPLE_END)
            self.eos_id = None if piece == self.sp.unk_id() else piece

    def encode(self, text: str, *, where: str = "") -> np.ndarray:
        ids = self.sp.encode(text)
        if self.unk_id is None and self.sp.unk_id() in ids:
            self._raise_unknown(text, where)
        return np.array(ids, dtype=self.dtype)

    def encode_examples(self, examples: Iterable[str], *, where: str = "") -> np.ndarray:
        if self.bos_id is not None:
            pieces = self.sp.encode(list(examples), add_bos=True, add_eos=True)
            return np.fromiter(itertools.chain.from_iterable(pieces), dtype=self.dtype)
        examples = [e + EXAMPLE_END for e in examples]
        pieces = self.sp.encode(examples)
        unknown = [i for i, ids in enumerate(pieces) if self.sp.unk_id() in ids]
        if unknown:
            self._raise_unknown(examples[unknown[0]], _where(where, unknown[0]))
        return np.fromiter(itertools.chain.from_iterable(pieces), dtype=self.dtype)

    def _raise_unknown(self, text: str, where: str):
        ids, pieces = self.sp.encode(text), self.sp.encode(text, out_type=str)  # unknown pieces keep their text
        offset = sum(map(len, pieces[:ids.index(self.sp.unk_id())]))
        at = _where(where, offset=offset)
        raise TokenizeError(f"{at}: no token for character {text[offset]!r} in vocabulary {self.name}")

    def decode(self, ids, *, canonical_spaces: bool = True) -> str:
        return self.sp.decode(self._check_ids(ids).tolist())

    def token_strings(self, ids) -> list[str]:
        return [p.replace(_SPACE_PIECE, " ") for p in self.sp.id_to_piece(self._check_ids(ids).tolist())]

    def token_id(self, token: str) -> int:
        piece = self.sp.piece_to_id(token.replace(" ", _SPACE_PIECE))
        if piece == self.sp.unk_id() and token != self.sp.id_to_piece(piece):
            raise TokenizeError(f"no token {token!r} in vocabulary {self.name}")
        return piece

    def to_dict(self) -> dict:
        return {"kind": self.kind, "name": self.name,
                "model_proto": base64.b64encode(self.model_proto).decode("ascii")}


class HFJsonTokenizer(Tokenizer):
    """A HuggingFace `tokenizers` JSON (tokenizer.json) used as it is, as a text tokenizer: its ids,
    its pre-tokenizer and decoder. The special tokens are found by name (`HF_SPECIALS`, the first
    present of each role); <bos> and <eos> are required, since every document is written
    <bos> ids <eos>. Needs the `tokenizers` package (the `hf` extra)."""

    kind = "hf_json"

    def __init__(self, json_text: str, *, name: str):
        try:
            from tokenizers import Tokenizer as HFTokenizer
        except ImportError:
            raise ConfigError("tokenizer kind hf_json needs the tokenizers package: pip install 'tinylm[hf]'") from None
        self.name, self.json_text = name, json_text
        try:
            self.hf = HFTokenizer.from_str(json_text)
        except Exception as exc:   # tokenizers raises its own exception type for a malformed file
            raise DataError(f"tokenizer {name}: not a tokenizers JSON ({exc})") from None
        self.vocab_size = self.hf.get_vocab_size(with_added_tokens=True)
        vocab = self.hf.get_vocab(with_added_tokens=True)
        found = {role: next((vocab[t] for t in names if t in vocab), None) for role, names in HF_SPECIALS.items()}
        if found["bos"] is None or found["eos"] is None:
            raise DataError(f"tokenizer {name}: a text tokenizer needs a bos and an eos token (one of "
                            f"{HF_SPECIALS['bos']} and one of {HF_SPECIALS['eos']})")
        self.bos_id, self.eos_id, self.pad_id, self.unk_id = found["bos"], found["eos"], found["pad"], found["unk"]

    def encode(self, text: str, *, where: str = "") -> np.ndarray:
        return np.array(self.hf.encode(text, add_special_tokens=False).ids, dtype=self.dtype)

    def encode_examples(self, examples: Iterable[str], *, where: str = "") -> np.ndarray:
        batch = self.hf.encode_batch(list(examples), add_special_tokens=False)
        parts = [np.concatenate([[self.bos_id], e.ids, [self.eos_id]]) for e in batch]
        return np.concatenate(parts).astype(self.dtype) if parts else np.zeros(0, self.dtype)

    def decode(self, ids, *, canonical_spaces: bool = True) -> str:
        return self.hf.decode(self._check_ids(ids).tolist(), skip_special_tokens=True)

    def token_strings(self, ids) -> list[str]:
        return [self.hf.decode([i], skip_special_tokens=False) for i in self._check_ids(ids).tolist()]

    def token_id(self, token: str) -> int:
        found = self.hf.token_to_id(token)
        if found is None:
            raise TokenizeError(f"no token {token!r} in vocabulary {self.name}")
        return found

    def to_dict(self) -> dict:
        return {"kind": self.kind, "name": self.name, "json": self.json_text}


HF_SPECIALS = {"bos": ("<bos>", "<s>", "<|startoftext|>", "[BOS]"), "eos": ("<eos>", "</s>", "<|endoftext|>", "[EOS]"),
               "pad": ("<pad>", "[PAD]"), "unk": ("<unk>", "[UNK]")}
"""hf_json: the token names that play each special role, tried in order."""


def train_sentencepiece(texts: Iterable[str], *, model_type: str, vocab_size: int,
                        user_defined_symbols: Sequence[str] | None = None,
                        split_by_whitespace: bool = True, seed: int = 0, specials: bool = False,
                        name: str | None = None) -> SentencePieceTokenizer:
    """Train SentencePiece `model_type` ("bpe" or "unigram") in memory, deterministically.

    Nothing is normalised: spaces, tabs and newlines stay characters of their own, every
    character of `texts` gets a piece, and `user_defined_symbols` are always single pieces.
    Without `specials` (TinyPy traces): the symbols default to the example terminator and the
    step separator, 0 is <unk>, no bos/eos/pad. With `specials` (plain text): no symbols by
    default, ids 0-3 are <pad> <unk> <bos> <eos> (`SPECIAL_TOKENS`), and a corpus too small for
    `vocab_size` gets as many pieces as it has.
    """
    import sentencepiece as spm

    if model_type not in ("bpe", "unigram"):
        raise ConfigError(f"model_type must be 'bpe' or 'unigram', got {model_type!r}")
    if not 2 <= vocab_size <= 1 << 16:
        raise ConfigError(f"vocab_size must be between 2 and 65536, got {vocab_size}")
    texts = [t for t in texts if t]
    if not texts:
        raise DataError("cannot train a SentencePiece model on no text")
    if user_defined_symbols is None:
        user_defined_symbols = () if specials else (EXAMPLE_END, STEP)
    ids = (dict(pad_id=0, unk_id=1, bos_id=2, eos_id=3, pad_piece="<pad>", unk_piece="<unk>", bos_piece="<bos>",
                eos_piece="<eos>", hard_vocab_limit=False) if specials else dict(unk_id=0, bos_id=-1, eos_id=-1, pad_id=-1))
    spm.set_random_generator_seed(seed)
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(texts), model_writer=model, model_type=model_type, vocab_size=vocab_size,
        user_defined_symbols=list(user_defined_symbols), normalization_rule_name="identity",
        remove_extra_whitespaces=False, add_dummy_prefix=False, split_by_whitespace=split_by_whitespace,
        allow_whitespace_only_pieces=True, character_coverage=1.0, max_sentence_length=max(map(len, texts)) * 4 + 16,
        num_threads=1, minloglevel=2, **ids,
    )
    return SentencePieceTokenizer(model.getvalue(), name=name or f"sp-{model_type}-{vocab_size}")


# ---------------------------------------------------------------------------------------------
# Saving and loading
# ---------------------------------------------------------------------------------------------


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
