"""The text layout every trace format shares: the example terminator, the step marker, the splitter.

An example (a program, or its trace) never holds a blank line, and each one in a file or a token
stream is followed by `EXAMPLE_END`, a blank line; the tokenizers give it its own id, the end of
sequence. A trace is the program, then one step per line event, each step opened by `STEP`;
the prompt of a trace is the text up to and including the first `PROMPT_END`.

`split_examples(text)` is the one rule for reading examples back: the pieces between blank lines,
without their outer newlines, empty ones dropped (so extra blank lines are ignored and the last
example may end the file without one); `iter_examples(path)` streams a file by the same rule.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from tinylm.base.errors import DataError

EXAMPLE_END = "\n\n"
"""Follows every example: in programs.txt, traces.txt, test suites and the token streams."""
STEP = "\n#STEP\n"
"""Opens each step of a trace; a token of every keyword vocabulary."""
PROMPT_END = STEP.lstrip("\n")
"""The prompt given to a model ends with the first `#STEP` line."""


def split_examples(text: str) -> list[str]:
    """The examples of a text, each followed by a blank line (see the module docstring)."""
    return [p.strip("\n") for p in text.split(EXAMPLE_END) if p.strip("\n")]


def iter_examples(path: str | Path, chunk_chars: int = 1 << 22) -> Iterator[str]:
    """`split_examples` of a file's text, read `chunk_chars` characters at a time."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    rest = ""
    with open(path, encoding="utf-8") as f:
        while chunk := f.read(chunk_chars):
            # Cut inside the last blank line: no example straddles the cut, none is split.
            complete, _, rest = (rest + chunk).rpartition(EXAMPLE_END)
            yield from split_examples(complete)
    yield from split_examples(rest)
