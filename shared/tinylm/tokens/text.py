"""Text -> token ids for plain text and learned vocabularies: char/word vocabularies with special
tokens, SentencePiece, and a Hugging Face tokenizer.json (the interface: tinylm.tokens.tokenizer).

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
"""

from __future__ import annotations

import base64
import io
import itertools
import re
from collections.abc import Iterable, Sequence

import numpy as np

from tinylm.base.errors import ConfigError, DataError, TokenizeError
from tinylm.lang.format import EXAMPLE_END, STEP
from tinylm.tokens.tokenizer import Tokenizer, _where

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
