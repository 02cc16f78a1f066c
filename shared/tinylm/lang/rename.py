"""Programs -> programs with their variables renamed: the renamed-variables OOD suite.

`rename_program(program, mapping)` rewrites a TinyPy program's variable names, token by token:
the program is parsed (`tinylm.lang.parse`), and on each code line every maximal run of
lower-case letters is a keyword, the `print` of a print statement, the `range` of a `for` header,
or a variable name; only names are rewritten, so a keyword, a number or a piece of a longer name
is never touched. Comment lines (`# code`, the `# output` section) are kept as they are. The
tracer reports variables in the order they were first bound, never by name, so tracing the
renamed program gives the original trace with the names replaced.

`fresh_names(names, taken, rng, lengths)` draws a new name for each of `names` that is not in
`taken` (say, every name of a training split), not a keyword and not `print` or `range`.
"""

from __future__ import annotations

import keyword
import random
import re
from collections.abc import Callable, Collection, Iterable, Sequence

from tinylm.base.errors import DataError
from tinylm.lang.parse import For, If, Print, While, parse_program

LETTERS = "abcdefghijklmnopqrstuvwxyz"
RESERVED = frozenset(keyword.kwlist) | {"print", "range"}
"""Words a fresh name may not be: Python keywords, and the two builtins TinyPy calls."""
MAX_DRAWS = 1000
"""Draws per name before `fresh_names` gives up."""
_WORD = re.compile(r"[a-z]+")


def _statement_lines(body: list, kinds: dict[int, type]) -> dict[int, type]:
    """Line index -> statement type, for every statement of a parsed body."""
    for node in body:
        kinds[node.line] = type(node)
        if isinstance(node, If):
            _statement_lines(node.orelse, kinds)
        if isinstance(node, (If, While, For)):
            _statement_lines(node.body, kinds)
    return kinds


def _name_spans(program: str) -> tuple[list[str], list[tuple[int, int, int]]]:
    """The program's lines, and (line, start, end) of every variable name on them."""
    parsed = parse_program(program)
    kinds = _statement_lines(parsed.body, {})
    spans = []
    for i, kind in kinds.items():
        words = [m for m in _WORD.finditer(parsed.lines[i]) if m.group() not in keyword.kwlist]
        if kind is Print:        # print(...): the first word is the statement, not a variable
            words = words[1:]
        elif kind is For:        # for NAME in range(...): the word after the target is the call
            words = words[:1] + words[2:]
        spans += [(i, m.start(), m.end()) for m in words]
    return parsed.lines, sorted(spans)


def program_names(program: str) -> list[str]:
    """The program's variable names, in order of first appearance."""
    lines, spans = _name_spans(program)
    return list(dict.fromkeys(lines[i][a:b] for i, a, b in spans))


def rename_program(program: str, mapping: dict[str, str]) -> str:
    """`program` with each variable name in `mapping` replaced by its value (other names stay).

    Raises ValueError if a new name is not a lower-case name, is reserved, or would merge two
    variables (the same new name twice, or a name the program keeps); TinyPySyntaxError if the
    program is not TinyPy."""
    lines, spans = _name_spans(program)
    names = set(lines[i][a:b] for i, a, b in spans)
    new = [mapping.get(name, name) for name in names]
    for name in mapping.values():
        if not (_WORD.fullmatch(name) and name not in RESERVED):
            raise ValueError(f"{name!r} is not a lower-case name outside {sorted(RESERVED)}")
    if len(set(new)) != len(new):
        raise ValueError(f"renaming {sorted(names)} with {mapping} would merge two variables")
    lines = list(lines)
    for i, a, b in reversed(spans):  # right to left: earlier offsets stay valid
        line = lines[i]
        lines[i] = line[:a] + mapping.get(line[a:b], line[a:b]) + line[b:]
    return "\n".join(lines)


def fresh_names(names: Iterable[str], taken: Collection[str], rng: random.Random, lengths: Sequence[int],
                allowed: Callable[[str], bool] | None = None) -> dict[str, str]:
    """A distinct new name for each of `names`, in order: `rng` draws a length from `lengths`, then
    that many letters, until the name is outside `taken` and `RESERVED`, new to this mapping and
    `allowed` (say, spelled letter by letter by a tokenizer). DataError after `MAX_DRAWS` draws."""
    mapping: dict[str, str] = {}
    for name in names:
        for _ in range(MAX_DRAWS):
            candidate = "".join(rng.choice(LETTERS) for _ in range(rng.choice(lengths)))
            if (candidate not in taken and candidate not in RESERVED and candidate not in mapping.values()
                    and (allowed is None or allowed(candidate))):
                mapping[name] = candidate
                break
        else:
            raise DataError(f"no fresh name for '{name}' in {MAX_DRAWS} draws of lengths {list(lengths)} "
                            f"({len(taken)} names taken); allow longer names")
    return mapping
