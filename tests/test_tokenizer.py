"""Tokenizers: reference ids on the golden data, exact round trips, errors, saving and the CLI.

Only the first two tests read the golden data; the rest run on the committed fixtures (traces made
by the project's own tracer, tests/fixtures)."""

from __future__ import annotations

import gzip
import json
import random
import re

import numpy as np
import pytest
import torch
from conftest import fixture_examples, golden_dir, golden_examples, golden_vocab

from tinylm import cli as tinylm_cli
from tinylm.base.errors import TokenizeError
from tinylm.lang.format import split_examples
from tinylm.tokens import tokenizer as tokenizer_module
from tinylm.tokens.load import tokenizer_from_dict, write_bin
from tinylm.tokens.text import train_sentencepiece
from tinylm.tokens.tokenizer import KEYWORD_VOCABS, keyword_tokenizer, restore_spaces, train_char_tokenizer

GOLDEN = [("demo", "demo"), ("nightly_m2", "m2"), ("release2026_alpha", "alpha")]


def reference_ids(vocab: list[str], text: str) -> list[int]:
    """The reference tokenizer, token by token: one regex, tokens in id order, spaces skipped."""
    regex = re.compile("|".join(map(re.escape, vocab)) + "|[^ ]+?")
    ids = {token: i for i, token in enumerate(vocab)}
    return [ids[token] for token in regex.findall(text)]


def golden_ids(folder: str) -> np.ndarray:
    return np.frombuffer(gzip.open(golden_dir(folder) / "token_ids.bin.gz").read(), dtype=np.uint8)


@pytest.fixture(scope="module")
def m2_traces() -> list[str]:
    return fixture_examples("nightly", "traces")


# -- keyword tokenizers ------------------------------------------------------------------------


@pytest.mark.parametrize("folder,vocab", GOLDEN)
def test_keyword_tokenizer_gives_the_reference_ids(folder, vocab):
    tok = keyword_tokenizer(vocab)
    assert tok.tokens == golden_vocab(folder)
    ids = tok.encode_examples(golden_examples(folder, "traces.txt.gz"))
    assert ids.dtype == np.uint8
    assert ids.tobytes() == golden_ids(folder).tobytes()


@pytest.mark.parametrize("folder,vocab", GOLDEN)
def test_decoding_restores_the_traces(folder, vocab):
    tok = keyword_tokenizer(vocab)
    traces = golden_examples(folder, "traces.txt.gz")
    ids = golden_ids(folder)
    assert tok.decode(ids) == "".join(t + "\n\n" for t in traces)
    spaceless = tok.decode(ids, canonical_spaces=False)
    text = "".join(t + "\n\n" for t in traces)
    assert spaceless == "".join(tok.tokens[i] for i in reference_ids(tok.tokens, text))
    assert spaceless.replace(" ", "") == text.replace(" ", "")  # only "# code" and "# " keep a space


def test_batches_of_examples_join_seamlessly(monkeypatch):
    monkeypatch.setattr(tokenizer_module, "_BATCH", 7)
    traces = fixture_examples("demo", "traces")
    tok = keyword_tokenizer("demo")
    expected = reference_ids(tok.tokens, "".join(t + "\n\n" for t in traces))
    assert tok.encode_examples(traces).tolist() == expected
    traces[22] += "~"
    with pytest.raises(TokenizeError, match=f"^example 22, offset {len(traces[22]) - 1}: no token for character '~'"):
        tok.encode_examples(traces)


def test_vocabulary_sizes_and_terminator():
    sizes = {name: keyword_tokenizer(name).vocab_size for name in KEYWORD_VOCABS}
    assert sizes == {"demo": 77, "m2": 77, "alpha": 52, "beta": 57}
    for name in KEYWORD_VOCABS:
        tok = keyword_tokenizer(name)
        assert tok.eos_id == tok.token_id("\n\n")
        assert tok.token_strings([tok.token_id("\n#STEP\n")]) == ["\n#STEP\n"]


@pytest.mark.parametrize("vocab", ["m2", "alpha", "beta"])
def test_overlapping_tokens_follow_the_reference_scan(vocab):
    """Texts built to make tokens overlap, and random token soup, against the token-by-token reference."""
    tok = keyword_tokenizer(vocab)
    tokens = list(KEYWORD_VOCABS[vocab])
    texts = ["\n\n#STEP\n", "inot", "ifor", "a <== b", "elselif", "forange(", "\n\n\n\n", "///", "x = 1\n\n\n"]
    rng = random.Random(0)
    texts += ["".join(rng.choice(tokens + [" ", "in", "e", "f"]) for _ in range(60)) for _ in range(150)]
    encodable = []
    for text in texts:
        try:
            expected = reference_ids(tokens, text)
        except KeyError:  # a piece the reference has no token for
            with pytest.raises(TokenizeError):
                tok.encode(text)
            continue
        assert tok.encode(text).tolist() == expected, repr(text)
        encodable.append(text)
    joined = [i for e in encodable for i in reference_ids(tokens, e + "\n\n")]
    assert tok.encode_examples(encodable).tolist() == joined


def test_unknown_character_names_character_example_and_offset():
    tok = keyword_tokenizer("alpha")
    with pytest.raises(TokenizeError, match=r"traces.txt, example 1, offset 6: no token for character '\*'"):
        tok.encode_examples(["a = 1", "b = 2 * 3"], where="traces.txt")
    with pytest.raises(TokenizeError, match=r"^offset 4: no token for character '\\r'"):
        tok.encode("a=1\n\r")
    with pytest.raises(TokenizeError, match="^offset 5: no token for character 'é'"):  # not ASCII: the slow path
        keyword_tokenizer("m2").encode("a = 1é")
    with pytest.raises(TokenizeError, match="no token 'print\\('"):
        tok.token_id("print(")
    with pytest.raises(TokenizeError, match="outside the vocabulary"):
        tok.decode([52])


def test_canonical_spaces():
    cases = ["a = b + 3", "if a < 3:", "while -5 <= a:", "for x in range(1, 3):", "print(x)", "# code",
             "a = -5", "a = b - 5", "a = 5 - -5", "b = a * -3", "\telif a != b:", "else:", "@\tc = a // 2$a?-1;b?2",
             "@^$a?5|# 29&# -3", "if not a == b:", "x = (a + b) % 7"]
    keywords = frozenset(t for t in KEYWORD_VOCABS["m2"] if t.isalpha())
    for line in cases:
        stripped = "".join(line.split(" ")).replace("#code", "# code").replace("#2", "# 2").replace("#-", "# -")
        assert restore_spaces(stripped, keywords) == line
    assert restore_spaces("ifx=3") == "ifx = 3"  # an assignment to a name starting with "if"
    tok = keyword_tokenizer("m2")
    text = "a = 5\nfor i in range(-2, a):\n\tprint(i)"
    assert tok.decode(tok.encode(text)) == text


# -- char and SentencePiece tokenizers ----------------------------------------------------------


def test_char_tokenizer_round_trip_and_determinism(m2_traces):
    tok = train_char_tokenizer(m2_traces)
    assert tok.tokens == sorted(tok.tokens) and " " in tok.tokens
    assert tok.eos_id == tok.token_id("\n\n")
    ids = tok.encode_examples(m2_traces)
    assert tok.decode(ids) == "".join(t + "\n\n" for t in m2_traces)
    again = train_char_tokenizer(list(reversed(m2_traces)))
    assert again.tokens == tok.tokens
    assert np.array_equal(again.encode_examples(m2_traces), ids)
    with pytest.raises(TokenizeError, match="example 1, offset 2: no token for character 'Z'"):
        tok.encode_examples(["a", "a Z"])


@pytest.mark.parametrize("model_type", ["bpe", "unigram"])
def test_sentencepiece_round_trip_and_determinism(model_type, m2_traces):
    train, test = m2_traces[:20], m2_traces[20:]
    tok = train_sentencepiece(train, model_type=model_type, vocab_size=120)
    assert tok.vocab_size == 120 and tok.dtype == np.uint8
    ids = tok.encode_examples(test)
    assert tok.decode(ids) == "".join(t + "\n\n" for t in test)
    for text in ["  a  =\t b\n\n\n", "\n#STEP\n", " ", ""]:
        assert tok.decode(tok.encode(text)) == text
    assert tok.encode("\n#STEP\n").tolist() == [tok.token_id("\n#STEP\n")]
    assert tok.eos_id == tok.token_id("\n\n") and (ids == tok.eos_id).sum() == len(test)
    again = train_sentencepiece(train, model_type=model_type, vocab_size=120)
    assert again.model_proto == tok.model_proto
    assert np.array_equal(again.encode_examples(test), ids)
    with pytest.raises(TokenizeError, match="example 1, offset 4: no token for character 'é'"):
        tok.encode_examples(["a = 1", "b = é"])


def test_dtype_follows_vocabulary_size():
    small = train_char_tokenizer(["".join(map(chr, range(100, 354)))])  # 254 characters + terminator
    large = train_char_tokenizer(["".join(map(chr, range(100, 400)))])
    assert (small.vocab_size, small.dtype) == (255, np.uint8)
    assert (large.vocab_size, large.dtype) == (301, np.uint16)
    text = "".join(map(chr, range(399, 99, -1)))
    ids = large.encode(text)
    assert ids.dtype == np.uint16 and large.decode(ids) == text


def test_to_dict_round_trip_through_json_and_torch(tmp_path, m2_traces):
    tokenizers = [keyword_tokenizer("alpha"), train_char_tokenizer(m2_traces),
                  train_sentencepiece(m2_traces[:10], model_type="bpe", vocab_size=100)]
    for tok in tokenizers:
        ids = tok.encode_examples(m2_traces[:5]) if tok.name != "alpha" else tok.encode("a = -1\n\n")
        from_json = tokenizer_from_dict(json.loads(json.dumps(tok.to_dict())))
        torch.save({"tokenizer": tok.to_dict()}, tmp_path / "t.pt")
        from_torch = tokenizer_from_dict(torch.load(tmp_path / "t.pt", weights_only=True)["tokenizer"])
        for other in (from_json, from_torch):
            assert (other.kind, other.name, other.vocab_size, other.eos_id) == \
                (tok.kind, tok.name, tok.vocab_size, tok.eos_id)
            assert other.decode(ids) == tok.decode(ids)
            assert np.array_equal(other.encode(tok.decode(ids)), tok.encode(tok.decode(ids)))


# -- files and the command line -----------------------------------------------------------------


def test_cli_writes_the_bin_and_decodes_it(tmp_path, m2_traces, capsys):
    src, out, back = tmp_path / "traces.txt", tmp_path / "out.bin", tmp_path / "back.txt"
    src.write_text("".join(t + "\n\n" for t in m2_traces))
    assert tinylm_cli.main(["tokenize", "--vocab", "m2", str(src), str(out)]) == 0
    expected = keyword_tokenizer("m2").encode_examples(m2_traces)
    assert out.read_bytes() == expected.tobytes()
    assert f"{len(expected)} tokens" in capsys.readouterr().out
    assert tinylm_cli.main(["tokenize", "--vocab", "m2", "--decode", str(out), str(back)]) == 0
    assert back.read_text() == src.read_text()
    assert split_examples(src.read_text()) == m2_traces


def test_cli_error_leaves_no_partial_file(tmp_path, capsys):
    src, out = tmp_path / "traces.txt", tmp_path / "out.bin"
    src.write_text("a = 1\n\nb = 2 ~ 3\n\n")
    assert tinylm_cli.main(["tokenize", "--vocab", "alpha", str(src), str(out)]) == 2
    assert "example 1, offset 6: no token for character '~'" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["traces.txt"]


def test_write_bin_is_little_endian_uint16(tmp_path):
    write_bin(tmp_path / "x.bin", np.array([1, 258], dtype=np.uint16))
    assert (tmp_path / "x.bin").read_bytes() == b"\x01\x00\x02\x01"
