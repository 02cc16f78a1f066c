"""The TinyPy language: parse a program's text into the small AST that the tracer interprets,
and the operators' meaning (`BINARY_OPS`, `COMPARE_OPS`) that every TinyPy interpreter uses.

TinyPy is the subset of Python the generators emit, one statement per line, nested with tabs:

    stmt    := NAME "=" expr | "print(" expr ")"
             | ("if" | "elif" | "while") expr CMP expr ":" | "else:"
             | "for" NAME "in" "range(" expr ["," expr ["," expr]] ")" ":"
    expr    := term (("+" | "-") term)*
    term    := unary (("*" | "//" | "%") unary)*
    unary   := "-" unary | INT | NAME | "(" expr ")"
    CMP     := "<" | ">" | "<=" | ">=" | "==" | "!="

NAME is lowercase letters (not a Python keyword); INT has no leading zeros. Comment lines are the
`# code` header on the first line and the `# output` section the 2025 nightly programs end with
(`# output` then one `# value` line per printed value). Anything else raises `TinyPySyntaxError`
with the 1-based line and column and what was expected there.

Spaces between tokens are free, as in Python. `Program` keeps the original lines, because a trace
copies them verbatim. Statement nodes carry `line`, the 0-based index of their line in
`Program.lines`. A line's parse is cached by its text, with and without its indentation (so the
few thousand distinct lines of the 2025 generators are each parsed once per process), which makes
expression nodes shared between programs: never modify them. The common line shapes are read by
one regex each; the rest by a small recursive-descent parser that also produces the error messages.
"""

from __future__ import annotations

import keyword
import operator
import re
from dataclasses import dataclass

from tinylm.base.errors import TinyPySyntaxError

# ---------------------------------------------------------------------------------------------
# AST


@dataclass(slots=True, eq=False)
class Const:
    value: int


@dataclass(slots=True, eq=False)
class Name:
    id: str


@dataclass(slots=True, eq=False)
class Neg:
    operand: Expr


@dataclass(slots=True, eq=False)
class BinOp:
    op: str  # one of + - * // %
    left: Expr
    right: Expr


@dataclass(slots=True, eq=False)
class Compare:
    op: str  # one of < > <= >= == !=
    left: Expr
    right: Expr


Expr = Const | Name | Neg | BinOp

# What the operators mean, for every TinyPy interpreter (the tracer's, the generators' runner):
# Python's own on ints, so `//` and `%` floor and a zero divisor raises ZeroDivisionError.
BINARY_OPS = {"+": operator.add, "-": operator.sub, "*": operator.mul, "//": operator.floordiv,
              "%": operator.mod}
COMPARE_OPS = {"<": operator.lt, ">": operator.gt, "<=": operator.le, ">=": operator.ge,
               "==": operator.eq, "!=": operator.ne}


@dataclass(slots=True, eq=False)
class Assign:
    line: int
    target: str
    value: Expr


@dataclass(slots=True, eq=False)
class Print:
    line: int
    value: Expr


@dataclass(slots=True, eq=False)
class If:
    """`if`/`elif` chain as Python's AST has it: an `elif` is an `If` alone in `orelse`."""

    line: int
    test: Compare
    body: list
    orelse: list


@dataclass(slots=True, eq=False)
class While:
    line: int
    test: Compare
    body: list


@dataclass(slots=True, eq=False)
class For:
    line: int
    target: str
    args: tuple  # 1 to 3 expressions, as range() takes them
    body: list


Stmt = Assign | Print | If | While | For


@dataclass(slots=True, eq=False)
class Program:
    lines: list[str]
    """Every line of the text, comments included, exactly as given."""
    body: list
    code_end: int
    """Index of the `# output` line, or len(lines): lines[:code_end] is what the m2 tracer runs."""
    shadowed: frozenset = frozenset()
    """Which of the builtins `print` and `range` the program also binds as variables (rare, legal)."""

    @property
    def text(self) -> str:
        return "\n".join(self.lines)

    @property
    def code_text(self) -> str:
        """The program without its `# output` section."""
        return "\n".join(self.lines[: self.code_end])


# ---------------------------------------------------------------------------------------------
# Tokens of one line (indentation already removed): plain strings, told apart by their first
# character (digit: integer, letter: word, else operator), ending with "" for the line end.

_TOKEN = re.compile(r"[ ]*([0-9]+|[a-z]+|//|<=|>=|==|!=|[-+*%<>=(),:])")
# The same with any other word or character as one token, to say what is wrong where.
_ANY_TOKEN = re.compile(r"[ ]*([0-9]+|[A-Za-z_]\w*|//|<=|>=|==|!=|[^ ])")
_KEYWORDS = frozenset(keyword.kwlist)
_COMPARISONS = frozenset(COMPARE_OPS)
_PRECEDENCE = {"+": 1, "-": 1, "*": 2, "//": 2, "%": 2}


class _LineError(Exception):
    """A syntax error at token `index` of the current line's statement text."""

    def __init__(self, message: str, index: int):
        self.message = message
        self.index = index

    def column(self, text: str) -> int:
        """The 0-based column of the failing token in `text`."""
        starts = [m.start(1) for m in _ANY_TOKEN.finditer(text)]
        return starts[self.index] if self.index < len(starts) else len(text.rstrip(" "))


def _tokenize(text: str) -> list[str]:
    tokens = _TOKEN.findall(text)
    if sum(map(len, tokens)) != len(text) - text.count(" "):
        _reject_characters(text)
    if "0" in text:
        for i, tok in enumerate(tokens):
            if tok[0] == "0" and len(tok) > 1:
                raise _LineError(f"expected an integer without leading zeros, found '{tok}'", i)
    tokens.append("")
    return tokens


def _reject_characters(text: str):
    """Raise for the first token of `text` that is not TinyPy (some character went unmatched)."""
    for i, tok in enumerate(_ANY_TOKEN.findall(text)):
        if tok[0].isalpha() or tok[0] == "_":
            if not tok.isascii() or not tok.isalpha() or not tok.islower():
                raise _LineError(f"expected a name of lowercase letters, found '{tok}'", i)
        elif not _TOKEN.fullmatch(tok):
            raise _LineError(f"expected a TinyPy number, name or operator, found '{tok}'", i)
    raise AssertionError(f"unmatched text in {text!r}")


def _fail(tokens: list[str], i: int, expected: str):
    found = f"'{tokens[i]}'" if tokens[i] else "end of line"
    raise _LineError(f"expected {expected}, found {found}", i)


def _expect(tokens: list[str], i: int, tok: str, expected: str | None = None) -> int:
    if tokens[i] != tok:
        _fail(tokens, i, expected or f"'{tok}'")
    return i + 1


def _is_name(tok: str) -> bool:
    return tok[:1].isalpha() and tok not in _KEYWORDS


def _expr(tokens: list[str], i: int, min_precedence: int = 1) -> tuple[Expr, int]:
    """Precedence climbing: `+ -` bind looser than `* // %`, all left-associative."""
    node, i = _unary(tokens, i)
    while True:
        op = tokens[i]
        precedence = _PRECEDENCE.get(op, 0)
        if precedence < min_precedence:
            return node, i
        right, i = _expr(tokens, i + 1, precedence + 1)
        node = BinOp(op, node, right)


def _unary(tokens: list[str], i: int) -> tuple[Expr, int]:
    tok = tokens[i]
    if tok[:1].isdigit():
        return Const(int(tok)), i + 1
    if _is_name(tok):
        return Name(tok), i + 1
    if tok == "-":
        operand, i = _unary(tokens, i + 1)
        return Neg(operand), i
    if tok == "(":
        node, i = _expr(tokens, i + 1)
        return node, _expect(tokens, i, ")")
    _fail(tokens, i, "a number, a name, '-' or '('")


def _condition(tokens: list[str], i: int) -> tuple[Compare, int]:
    left, i = _expr(tokens, i)
    op = tokens[i]
    if op not in _COMPARISONS:
        _fail(tokens, i, "a comparison (< > <= >= == !=)")
    right, i = _expr(tokens, i + 1)
    if tokens[i] in _COMPARISONS:
        _fail(tokens, i, "':' (one comparison per condition)")
    return Compare(op, left, right), i


# A line's statement parses to a "form": a header tuple without line number or body.
#   ("assign", target, expr) ("print", expr) ("if", cond) ("elif", cond) ("else",)
#   ("while", cond) ("for", target, args)
_BUILTINS = frozenset(("print", "range"))
MAX_DEPTH = 100
"""Nesting limit (CPython's tokenizer allows 100 indentation levels); it also bounds the tracer's recursion."""
_NOTHING_SHADOWED: frozenset[str] = frozenset()


# One regex for each of the shapes the generators emit most, with atoms `[-]number` or `[-]name`:
# `x = a`, `x = a op b`, `if a cmp b:` (also elif, while) and `print(a)`. Anything else, and any
# atom that is a keyword or has leading zeros, goes through the general parser below.
_ATOM = r"(-?)([0-9]+|[a-z]+)"
_SIMPLE_ASSIGN = re.compile(rf"([a-z]+) *= *{_ATOM}(?: *(\+|-|\*|//|%) *{_ATOM})? *")
_SIMPLE_TEST = re.compile(rf"(if|elif|while) +{_ATOM} *(<=|>=|==|!=|<|>) *{_ATOM} *: *")
_SIMPLE_PRINT = re.compile(rf"print *\( *{_ATOM} *\) *")


def _simple_atom(sign: str, tok: str) -> Expr | None:
    if tok[0].isdigit():
        if tok[0] == "0" and len(tok) > 1:
            return None
        node = Const(int(tok))
    elif tok in _KEYWORDS:
        return None
    else:
        node = Name(tok)
    return Neg(node) if sign else node


def _parse_simple(text: str) -> tuple | None:
    """The form of a line of one of the common shapes, or None."""
    m = _SIMPLE_ASSIGN.fullmatch(text)
    if m is not None:
        target, sign, tok, op, sign2, tok2 = m.groups()
        left = _simple_atom(sign, tok)
        if target in _KEYWORDS or left is None:
            return None
        if op is None:
            return ("assign", target, left)
        right = _simple_atom(sign2, tok2)
        return None if right is None else ("assign", target, BinOp(op, left, right))
    m = _SIMPLE_TEST.fullmatch(text)
    if m is not None:
        kind, sign, tok, op, sign2, tok2 = m.groups()
        left, right = _simple_atom(sign, tok), _simple_atom(sign2, tok2)
        return None if left is None or right is None else (kind, Compare(op, left, right))
    m = _SIMPLE_PRINT.fullmatch(text)
    if m is not None:
        value = _simple_atom(*m.groups())
        return None if value is None else ("print", value)
    return None


def _parse_form(text: str) -> tuple:
    form = _parse_simple(text)
    if form is not None:
        return form
    tokens = _tokenize(text)
    first = tokens[0]
    if first in ("if", "elif", "while"):
        cond, i = _condition(tokens, 1)
        form, i = (first, cond), _expect(tokens, i, ":")
    elif first == "else":
        form, i = ("else",), _expect(tokens, 1, ":")
    elif first == "for":
        if not _is_name(tokens[1]):
            _fail(tokens, 1, "a variable name")
        i = _expect(tokens, 2, "in")
        i = _expect(tokens, i, "range", "'range('")
        arg, i = _expr(tokens, _expect(tokens, i, "("))
        args = [arg]
        while tokens[i] == "," and len(args) < 3:
            arg, i = _expr(tokens, i + 1)
            args.append(arg)
        i = _expect(tokens, i, ")", "')' (range takes 1 to 3 arguments)" if len(args) == 3 else "',' or ')'")
        form, i = ("for", tokens[1], tuple(args)), _expect(tokens, i, ":")
    elif first == "print" and tokens[1] == "(":
        value, i = _expr(tokens, 2)
        form, i = ("print", value), _expect(tokens, i, ")")
    else:
        if not _is_name(first):
            _fail(tokens, 0, "a statement" if first == "" else "a variable name")
        value, i = _expr(tokens, _expect(tokens, 1, "="))
        form = ("assign", first, value)
    if tokens[i]:
        _fail(tokens, i, "end of line")
    return form

_FORM_CACHE: dict[str, tuple | _LineError] = {}
_FORM_CACHE_LIMIT = 1 << 18
_LINE_CACHE: dict[str, tuple] = {}


def clear_cache() -> None:
    """Forget the parsed lines (for benchmarks that want a cold start)."""
    _FORM_CACHE.clear()
    _LINE_CACHE.clear()


def _form(text: str) -> tuple:
    """The cached parse of one line's statement text (errors are cached too)."""
    form = _FORM_CACHE.get(text)
    if form is None:
        try:
            form = _parse_form(text)
        except _LineError as exc:
            form = exc
        if len(_FORM_CACHE) >= _FORM_CACHE_LIMIT:
            _FORM_CACHE.clear()
        _FORM_CACHE[text] = form
    if type(form) is _LineError:
        raise form
    return form


def _line(line: str, i: int) -> tuple:
    """(depth, kind, a, b) of a code line: its tab count and its form padded to three fields; cached
    by the whole line. Raises TinyPySyntaxError, at 1-based line i + 1, for a line that is no statement."""
    entry = _LINE_CACHE.get(line)
    if entry is not None:
        return entry
    rest = line.lstrip("\t")
    depth = len(line) - len(rest)
    if not rest or rest[0] == " ":
        what = "a statement, found a blank line" if line == "" else "tabs for indentation, found a space"
        raise TinyPySyntaxError(f"expected {what}", i + 1, depth + 1)
    try:
        form = _form(rest)
    except _LineError as exc:
        raise TinyPySyntaxError(exc.message, i + 1, depth + exc.column(rest) + 1) from None
    entry = (depth, *form, None, None)[:4]
    if len(_LINE_CACHE) >= _FORM_CACHE_LIMIT:
        _LINE_CACHE.clear()
    _LINE_CACHE[line] = entry
    return entry


# ---------------------------------------------------------------------------------------------
# Lines to blocks


def _comment_kind(lines: list[str], i: int) -> str | None:
    """'header', 'output' or None for a line starting with '#'; raises on any other comment."""
    line = lines[i]
    if i == 0 and line == "# code":
        return "header"
    if line == "# output":
        return "output"
    expected = "'# code' (the only comment before the code)" if i == 0 else "a statement ('#' starts only the '# code' header and the '# output' section)"
    raise TinyPySyntaxError(f"expected {expected}, found '{line}'", i + 1, 1)


def _check_output_section(lines: list[str], start: int) -> None:
    for i in range(start + 1, len(lines)):
        if not lines[i].startswith("# "):
            raise TinyPySyntaxError(f"expected an output line '# <value>', found '{lines[i]}'", i + 1, 1)


def parse_program(text: str) -> Program:
    """Parse a TinyPy program; raise TinyPySyntaxError(message, line, column) if it is not one."""
    lines = text.split("\n")
    code_end = len(lines)
    root: list = []
    blocks = [root]  # blocks[d]: the statement list that a line indented d tabs appends to
    chains: list[If | None] = [None]  # chains[d]: the If that an elif/else at depth d continues
    top = 0  # len(blocks) - 1: the deepest depth a line may have
    opener = None  # the line of the compound statement whose body must come next
    shadowed: set[str] = set()
    cached = _LINE_CACHE.get
    for i, line in enumerate(lines):
        entry = cached(line)
        if entry is None:
            if line[:1] == "#":
                if _comment_kind(lines, i) == "output":
                    code_end = i
                    _check_output_section(lines, i)
                    break
                continue
            entry = _line(line, i)
        depth, kind, a, b = entry
        if opener is not None:
            if depth != top:
                raise TinyPySyntaxError(f"expected an indented block after line {opener + 1}", i + 1, depth + 1)
            if depth >= MAX_DEPTH:  # (a deeper line at any other place is an unexpected indent)
                raise TinyPySyntaxError(f"expected at most {MAX_DEPTH - 1} levels of indentation", i + 1, depth + 1)
            opener = None
        elif depth != top:
            if depth > top:
                raise TinyPySyntaxError("expected a statement at an enclosing indentation, found an unexpected indent", i + 1, depth + 1)
            del blocks[depth + 1:], chains[depth + 1:]
            top = depth
        if kind == "assign" or kind == "print":
            blocks[depth].append(Assign(i, a, b) if kind == "assign" else Print(i, a))
            chains[depth] = None
            if kind == "assign" and a in _BUILTINS:
                shadowed.add(a)
            continue
        if kind == "elif" or kind == "else":
            chain = chains[depth]
            if chain is None:
                raise TinyPySyntaxError(f"expected 'if' before '{kind}' at this indentation", i + 1, depth + 1)
            if kind == "elif":
                node = chains[depth] = If(i, a, [], [])
                chain.orelse.append(node)
                body = node.body
            else:
                chains[depth] = None
                body = chain.orelse
        else:
            if kind == "if":
                node = chains[depth] = If(i, a, [], [])
            else:
                chains[depth] = None
                node = While(i, a, []) if kind == "while" else For(i, a, b, [])
                if kind == "for" and a in _BUILTINS:
                    shadowed.add(a)
            blocks[depth].append(node)
            body = node.body
        opener = i
        blocks.append(body)
        chains.append(None)
        top += 1
    if opener is not None:
        raise TinyPySyntaxError(f"expected an indented block after line {opener + 1}", code_end + 1, 1)
    if not root:
        raise TinyPySyntaxError("expected at least one statement", code_end + 1, 1)
    return Program(lines, root, code_end, frozenset(shadowed) if shadowed else _NOTHING_SHADOWED)
