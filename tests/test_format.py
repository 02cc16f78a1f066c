"""The trace text layout: every reader of a file of examples splits it by the one rule."""

from __future__ import annotations

from tinylm.evaluate import scoring as evaluate
from tinylm.lang.format import EXAMPLE_END, STEP, iter_examples, split_examples
from tinylm.lang.trace import trace_program
from tinylm.tokens.tokenizer import keyword_tokenizer

# Stray newlines before, between and after the examples, as a hand-edited file might hold.
PROGRAMS = ["# code\na = 1\nb = a + 2", "# code\nc = 3\nprint(c)"]
MESSY = "\n" + PROGRAMS[0] + "\n\n\n\n" + PROGRAMS[1] + "\n\n\n"


def test_split_examples_drops_stray_blank_lines_and_streams_alike_in_any_chunks(tmp_path):
    assert split_examples(MESSY) == PROGRAMS
    assert split_examples("".join(p + EXAMPLE_END for p in PROGRAMS)) == PROGRAMS
    assert split_examples(PROGRAMS[0]) == PROGRAMS[:1] and split_examples("\n\n\n") == []
    path = tmp_path / "programs.txt"
    path.write_text(MESSY)
    for chunk_chars in range(1, len(MESSY) + 2):
        assert list(iter_examples(path, chunk_chars)) == PROGRAMS, chunk_chars


def test_the_test_suite_reader_numbers_examples_as_the_file_stages_do(tmp_path):
    traces = [trace_program(p, "m2").text for p in PROGRAMS]
    suite = tmp_path / "test.txt"
    suite.write_text("\n" + traces[0] + "\n\n\n\n" + traces[1] + "\n\n\n")
    examples = evaluate.read_suite(suite, keyword_tokenizer("m2"))
    assert [e.prompt + e.target for e in examples] == traces == list(iter_examples(suite))
    assert all(e.prompt.endswith(STEP) and e.prompt.count(STEP) == 1 for e in examples)

