"""The TinyPy parser: every golden and generated program parses, to the tree Python's own parser
builds; everything outside the language fails with the line, the column and what was expected."""

from __future__ import annotations

import ast

import pytest
from conftest import golden_examples

from tinylm.base.errors import TinyPySyntaxError
from tinylm.lang import parse as tp
from tinylm.lang.parse import parse_program

GOLDEN = ["demo", "nightly_m2", "release2026_alpha"]
_OPS = {"+": ast.Add, "-": ast.Sub, "*": ast.Mult, "//": ast.FloorDiv, "%": ast.Mod}
_CMP = {"<": ast.Lt, ">": ast.Gt, "<=": ast.LtE, ">=": ast.GtE, "==": ast.Eq, "!=": ast.NotEq}


def to_python(node) -> ast.AST:
    """Our tree as Python's ast would spell it (statements carry their 1-based line)."""
    t = type(node)
    if t is tp.Const:
        return ast.Constant(node.value)
    if t is tp.Name:
        return ast.Name(node.id, ast.Load())
    if t is tp.Neg:
        return ast.UnaryOp(ast.USub(), to_python(node.operand))
    if t is tp.BinOp:
        return ast.BinOp(to_python(node.left), _OPS[node.op](), to_python(node.right))
    if t is tp.Compare:
        return ast.Compare(to_python(node.left), [_CMP[node.op]()], [to_python(node.right)])
    body = [to_python(s) for s in getattr(node, "body", [])]
    if t is tp.Assign:
        out = ast.Assign([ast.Name(node.target, ast.Store())], to_python(node.value))
    elif t is tp.Print:
        out = ast.Expr(ast.Call(ast.Name("print", ast.Load()), [to_python(node.value)], []))
    elif t is tp.If:
        out = ast.If(to_python(node.test), body, [to_python(s) for s in node.orelse])
    elif t is tp.While:
        out = ast.While(to_python(node.test), body, [])
    else:
        call = ast.Call(ast.Name("range", ast.Load()), [to_python(a) for a in node.args], [])
        out = ast.For(ast.Name(node.target, ast.Store()), call, body, [])
    out.lineno = node.line + 1
    return out


def assert_same_as_python(text: str) -> None:
    program = parse_program(text)
    ours = ast.Module([to_python(s) for s in program.body], [])
    theirs = ast.parse(program.code_text)
    assert ast.dump(ours) == ast.dump(theirs)
    lines = [(type(n).__name__, n.lineno) for n in ast.walk(ours) if isinstance(n, ast.stmt)]
    assert lines == [(type(n).__name__, n.lineno) for n in ast.walk(theirs) if isinstance(n, ast.stmt)]
    assert program.lines == text.split("\n")


@pytest.mark.parametrize("folder", GOLDEN)
def test_golden_programs_parse_like_python(folder):
    for text in golden_examples(folder, "programs.txt.gz"):
        assert_same_as_python(text)


@pytest.mark.parametrize("preset_name", ["demo", "nightly", "alpha", "beta"])
def test_generated_programs_parse_like_python(preset_name):
    from tinylm.lang import generate, spec

    for text in generate.generate_programs(spec.preset(preset_name), seed=1, start=0, count=1000):
        assert_same_as_python(text)


@pytest.mark.parametrize("text", [
    "a = (1 + b) * -(-c) // 3 % 2 - d",
    "if a <= b:\n\tx = 1\nelif a >= b:\n\tx = 2\nelif a == b:\n\tx = 3\nelse:\n\tx = 4",
    "for i in range(a, b + 1, -2):\n\tfor j in range(3):\n\t\twhile i != j:\n\t\t\ti = i - 1",
    "if a < b:\n\tif b < c:\n\t\tx = 1\n\telse:\n\t\tx = 2\nelse:\n\tx = 3",
    "if a < b:\n\tx = 1\nelse:\n\tif b < c:\n\t\tx = 2",
    "print(a)\nprint = 3\nrange = print",
    "x=1+2\ny  =  x  *  3   ",
    "# code\na = 1\nprint(a)\n# output\n# 1",
])
def test_constructs_parse_like_python(text):
    assert_same_as_python(text)


def test_output_section_is_kept_but_not_code():
    program = parse_program("# code\na = 1\nprint(a)\n# output\n# 1")
    assert program.code_end == 3
    assert program.code_text == "# code\na = 1\nprint(a)"
    assert program.text == "# code\na = 1\nprint(a)\n# output\n# 1"
    assert parse_program("a = 1").code_end == 1


def test_shadowed_builtins():
    assert parse_program("a = 1").shadowed == frozenset()
    assert parse_program("print = 1\nfor range in range(2):\n\tprint(1)").shadowed == {"print", "range"}


@pytest.mark.parametrize("text,line,column,expected", [
    ("a = 3 +", 1, 8, "expected a number, a name, '-' or '(', found end of line"),
    ("a = 1\nb = 2 * * 3", 2, 9, "expected a number"),
    ("if a < b < c:\n\tx = 1", 1, 10, "one comparison per condition"),
    ("if a < b\n\tx = 1", 1, 9, "expected ':'"),
    ("if a:\n\tx = 1", 1, 5, "expected a comparison"),
    ("a = 03", 1, 5, "without leading zeros"),
    ("A = 3", 1, 1, "name of lowercase letters"),
    ("a_b = 3", 1, 1, "name of lowercase letters"),
    ("a = 3.5", 1, 6, "expected a TinyPy number, name or operator, found '.'"),
    ("a = 2 ** 3", 1, 8, "expected a number"),
    ("a = 3 / 2", 1, 7, "found '/'"),
    ("a = 1\n\t\tb = 4", 2, 3, "unexpected indent"),
    ("if a < 3:\nb = 2", 2, 1, "expected an indented block after line 1"),
    ("if a < 3:", 2, 1, "expected an indented block after line 1"),
    ("if a < 3:\n\tb = 1\n\t\tc = 1", 3, 3, "unexpected indent"),
    ("else:\n\ta = 1", 1, 1, "expected 'if' before 'else'"),
    ("while a < 3:\n\ta = 1\nelse:\n\ta = 2", 3, 1, "expected 'if' before 'else'"),
    ("if a < 3:\n\ta = 1\nb = 1\nelif a < 2:\n\ta = 2", 4, 1, "expected 'if' before 'elif'"),
    ("a == 3", 1, 3, "expected '=', found '=='"),
    ("if = 3", 1, 4, "expected a number"),
    ("for = 3", 1, 5, "expected a variable name"),
    ("while = 3", 1, 7, "expected a number"),
    ("for i in range(1, 2, 3, 4):\n\ta = 1", 1, 23, "range takes 1 to 3 arguments"),
    ("for i in range():\n\ta = 1", 1, 16, "expected a number"),
    ("for i in (1, 2):\n\ta = 1", 1, 10, "expected 'range('"),
    ("for i in range(3)\n\ta = 1", 1, 18, "expected ':'"),
    ("print(1, 2)", 1, 8, "expected ')'"),
    ("print 1", 1, 7, "expected '=', found '1'"),
    ("a = b(1)", 1, 6, "expected end of line"),
    ("a = 1 \t", 1, 7, "found '\t'"),
    ("    a = 1", 1, 1, "expected tabs for indentation"),
    ("a = 1\n\nb = 2", 2, 1, "blank line"),
    ("a = 1\n# a comment\nb = 2", 2, 1, "'# output' section"),
    ("# output\n# 1", 1, 1, "at least one statement"),
    ("# cod\na = 1", 1, 1, "'# code'"),
    ("# code", 2, 1, "at least one statement"),
    ("a = 1\n# output\nb = 1", 3, 1, "an output line"),
    ("a = (1 + 2", 1, 11, "expected ')'"),
    ("a = not b", 1, 5, "expected a number"),
    ("a += 1", 1, 3, "expected '='"),
    ("a = 1; b = 2", 1, 6, "found ';'"),
])
def test_malformed_programs_name_line_and_column(text, line, column, expected):
    with pytest.raises(TinyPySyntaxError) as info:
        parse_program(text)
    assert (info.value.line, info.value.column) == (line, column), str(info.value)
    assert expected in str(info.value)
    assert str(info.value).startswith(f"line {line}, column {column}: ")


def nested_ifs(levels: int) -> str:
    return "\n".join("\t" * d + "if 1 < 2:" for d in range(levels)) + "\n" + "\t" * levels + "a = 1"


def test_nesting_limit():
    with pytest.raises(TinyPySyntaxError, match="levels of indentation") as info:
        parse_program(nested_ifs(tp.MAX_DEPTH))
    assert (info.value.line, info.value.column) == (tp.MAX_DEPTH + 1, tp.MAX_DEPTH + 1)
    from tinylm.lang.trace import trace_program

    assert trace_program(nested_ifs(tp.MAX_DEPTH - 1), "demo").error is None


def test_errors_are_repeatable_from_the_cache():
    for _ in range(2):
        with pytest.raises(TinyPySyntaxError, match="line 2, column 9"):
            parse_program("a = 1\n\tx = 3 +")
