"""The determinism filter makes the reference's keep/drop decisions, on ids and on text.

The reference's decisions are not in the golden data, so they come from `reference_keeps`, a
transcription of the reference filter loop; on the golden traces the transcription's tokenizer
first reproduces the golden token ids. The file and CLI test runs on the committed fixtures."""

from __future__ import annotations

import gzip
import re

import numpy as np
import pytest
from conftest import fixture_examples, golden_dir, golden_examples, golden_vocab

from tinylm.data.filter import BOUNDARY_TOKENS, cli, filter_file, keep_ids, keep_mask, keep_text

GOLDEN = [("demo", "demo"), ("nightly_m2", "m2"), ("release2026_alpha", "alpha")]


def reference_tokenize(vocab: list[str]):
    """The reference tokenizer's scan: vocabulary tokens longest first, any other run skipped as
    in `'|[^ ]+?'` (spaces fall between matches)."""
    ordered = sorted(vocab, key=len, reverse=True)
    regex = re.compile("|".join(re.escape(t) for t in ordered) + "|[^ ]+?")
    return regex.findall


def reference_pairs(tokens: list[str], boundary: str) -> list[int]:
    """The reference loop's pair lengths, transcribed: boundaries plus the end, two apart."""
    boundaries = [i for i, t in enumerate(tokens) if t == boundary]
    boundaries.append(len(tokens))
    return [boundaries[i] - boundaries[i - 2] for i in range(2, len(boundaries))]


def reference_keeps(tokens: list[str], boundary: str, block_size: int) -> bool:
    return all(pair <= block_size for pair in reference_pairs(tokens, boundary))


def golden_ids(folder: str) -> np.ndarray:
    with gzip.open(golden_dir(folder) / "token_ids.bin.gz", "rb") as f:
        return np.frombuffer(f.read(), dtype=np.uint8)


@pytest.mark.parametrize("folder,vocab", GOLDEN)
def test_decisions_match_reference_on_golden(folder, vocab):
    tokens = golden_vocab(folder)
    tokenize = reference_tokenize(tokens)
    traces = golden_examples(folder, "traces.txt.gz")
    ids = golden_ids(folder)
    boundary = BOUNDARY_TOKENS[vocab]
    boundary_id, end_id = tokens.index(boundary), tokens.index("\n\n")
    index = {t: i for i, t in enumerate(tokens)}
    tokenized = [tokenize(t + "\n\n") for t in traces]
    example_ids = [np.array([index[t] for t in ts]) for ts in tokenized]
    # Our reference transcription reproduces the golden ids, so its decisions are the reference's.
    assert np.array_equal(np.concatenate(example_ids), ids)
    # Block sizes across the spread of each example's longest pair, and exactly at one of them.
    longest = [max(reference_pairs(ts, boundary), default=0) for ts in tokenized]
    sizes = {int(q) for q in np.percentile(longest, [10, 30, 50, 70, 90])} | {longest[0], longest[0] - 1}
    for block_size in sorted(sizes):
        expected = np.array([reference_keeps(ts, boundary, block_size) for ts in tokenized])
        assert 0 < expected.sum() < len(expected) or block_size in (longest[0], longest[0] - 1)
        mask = keep_mask(ids, boundary_id=boundary_id, end_id=end_id, block_size=block_size)
        assert np.array_equal(mask, expected), block_size
        assert [keep_ids(e, boundary_id, block_size) for e in example_ids] == expected.tolist()
        # selecting the other way: some pair longer than block_size <=> dropped at block_size
        beyond = keep_mask(ids, boundary_id=boundary_id, end_id=end_id, block_size=10**9, beyond=block_size)
        assert np.array_equal(beyond, ~expected), block_size
    # Text decisions with a token-count function, at the median (the costly path: a sample of it).
    block_size = int(np.median(longest))
    by_text = [keep_text(t, boundary=boundary, count_tokens=lambda s: len(tokenize(s)), block_size=block_size)
               for t in traces[:100]]
    assert by_text == [reference_keeps(ts, boundary, block_size) for ts in tokenized[:100]]
    beyond_text = [keep_text(t, boundary=boundary, count_tokens=lambda s: len(tokenize(s)), block_size=10**9,
                             beyond=block_size) for t in traces[:100]]
    assert beyond_text == [not k for k in by_text]


def test_keep_mask_small_cases():
    # B = boundary (1), E = end (2), other tokens 0.
    B, E = 1, 2
    ids = np.array([B, 0, 0, B, 0, B, 0, E,   B, 0, E,   0, B, 0, 0, 0, 0, B, E])
    # example 1: boundaries 0, 3, 5, end 8 -> pairs 5, 5; example 2: 0, end 3 -> none;
    # example 3: boundaries 1, 6, end 8 -> pair 7.
    assert keep_mask(ids, boundary_id=B, end_id=E, block_size=5).tolist() == [True, True, False]
    assert keep_mask(ids, boundary_id=B, end_id=E, block_size=7).tolist() == [True, True, True]
    assert keep_mask(ids, boundary_id=B, end_id=E, block_size=4).tolist() == [False, True, False]
    # beyond: only examples with a pair longer than it (example 2 has no pair at all)
    assert keep_mask(ids, boundary_id=B, end_id=E, block_size=7, beyond=5).tolist() == [False, False, True]
    assert keep_mask(ids, boundary_id=B, end_id=E, block_size=7, beyond=4).tolist() == [True, False, True]
    assert keep_mask(ids, boundary_id=B, end_id=E, block_size=6, beyond=4).tolist() == [True, False, False]
    assert keep_mask(np.array([], dtype=np.uint8), boundary_id=B, end_id=E, block_size=4).size == 0


def test_filter_file_and_cli(tmp_path, capsys):
    from tinylm.tokens.tokenizer import KEYWORD_VOCABS

    traces = fixture_examples("demo", "traces")
    src = tmp_path / "traces.txt"
    src.write_text("".join(t + "\n\n" for t in traces))
    tokenize = reference_tokenize(list(KEYWORD_VOCABS["demo"]))
    tokenized = [tokenize(t + "\n\n") for t in traces]
    block_size = int(np.median([max(reference_pairs(ts, "# code\n")) for ts in tokenized]))
    expected = [t for t, ts in zip(traces, tokenized) if reference_keeps(ts, "# code\n", block_size)]
    assert 0 < len(expected) < len(traces)
    counts = filter_file(src, tmp_path / "kept.txt", vocab="demo", block_size=block_size)
    assert counts == {"examples": len(traces), "kept": len(expected)}
    assert (tmp_path / "kept.txt").read_text() == "".join(t + "\n\n" for t in expected)
    assert cli(["--block-size", str(block_size), "--vocab", "demo", str(src), str(tmp_path / "cli.txt")]) == 0
    assert f"kept {len(expected)} of {len(traces)}" in capsys.readouterr().out
    assert (tmp_path / "cli.txt").read_text() == (tmp_path / "kept.txt").read_text()


def test_filter_cli_errors(tmp_path):
    from tinylm.cli import main

    assert main(["filter", "--block-size", "128", "--vocab", "demo", str(tmp_path / "none.txt"),
                 str(tmp_path / "out.txt")]) == 2
    (tmp_path / "t.txt").write_text("a = 1\n#STEP\n@a = 1$\n\n")
    assert main(["filter", "--block-size", "0", "--vocab", "alpha", str(tmp_path / "t.txt"),
                 str(tmp_path / "out.txt")]) == 2
