"""Traces <-> token ids: the tokenizer interface and the TinyPy vocabularies.

Every tokenizer has `encode`, `encode_examples` (the `.bin` layout: each example followed by the
terminator "\\n\\n"), `decode`, `token_strings`, `token_id`, `eos_id` and `to_dict`; ids come back as
a numpy array of `dtype` (uint8 up to 256 tokens, else uint16). `tinylm.tokens.load` rebuilds any
of them from that plain data, so a tokenizer travels inside a JSON manifest or a checkpoint; the
text and SentencePiece tokenizers are in `tinylm.tokens.text`.

- `keyword_tokenizer("m2")`: the reference TinyPy vocabularies, giving the reference ids exactly.
  The reference matched its tokens with one regex, longest first, and skipped spaces. Here byte
  tables (`bytes.translate`) and numpy index arrays find and place the multi-character tokens and
  map the other characters, with no Python loop per token; text where two token occurrences
  partly overlap (never in real traces) takes the reference's token-by-token scan instead, so
  the ids always agree. `decode` can put TinyPy's canonical spaces back (`restore_spaces`).
- `train_char_tokenizer(texts)`: one token per character seen, plus the terminator.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Sequence

import numpy as np

from tinylm.base.errors import ConfigError, TokenizeError
from tinylm.lang.format import EXAMPLE_END

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


