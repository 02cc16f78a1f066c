"""Research project 6's OOD suites shift exactly one property: measured on a real build of
datasets/alpha2026-cpu (at small counts), every property of every suite is checked against the range
the training split covers, as tests/test_ood_suites.py does for research project 1."""

from __future__ import annotations

import ast
import math
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import assert_one_shift, build_small, built_programs, inside_range, property_ranges
from test_generate import code_lines, ifs_per_level, max_depth

from tinylm.lang.snippet import _executed_ops, _lcg_name, _team


def _tree(program: str) -> ast.Module:
    return ast.parse("\n".join(code_lines(program)))


def _names(program: str) -> set[str]:
    return {n.id for n in ast.walk(_tree(program)) if isinstance(n, ast.Name)}


def _numbers(program: str) -> list[int]:
    """Every literal, a unary minus taken with its number (-7 is one literal)."""
    nodes = list(ast.walk(_tree(program)))
    negated = {id(n.operand) for n in nodes if isinstance(n, ast.UnaryOp) and isinstance(n.operand, ast.Constant)}
    return [-n.value if id(n) in negated else n.value for n in nodes if isinstance(n, ast.Constant)]


SEEN_TWO_LETTER = {_lcg_name(2, i) for i in range(max(1, int(26**2 * 0.01)))}   # alpha-rq1: 1% of the space

# property -> what it measures on one program (a list; a set-valued property is compared as a set)
PROPERTIES: dict[str, Callable[[str], list]] = {
    "lines": lambda p: [len(code_lines(p))],
    "depth": lambda p: [max_depth("\n".join(code_lines(p)))],
    "ifs per level": lambda p: [ifs_per_level("\n".join(code_lines(p)))],
    "number size": lambda p: [abs(v) for v in _numbers(p)],
    "number half": lambda p: sorted({_team(v) for v in _numbers(p)}),
    "name length": lambda p: [len(n) for n in _names(p)],
    "2-letter names seen": lambda p: sorted({n in SEEN_TWO_LETTER for n in _names(p) if len(n) == 2}),
    "operators executed": lambda p: [len(_executed_ops(code_lines(p)))],
}
SHIFTED = {
    "longer-snippets": "lines",
    "deeper-nesting": "depth",
    "denser-snippets": "ifs per level",
    "hidden-numbers": "number half",
    "hidden-variables": "2-letter names seen",
    "mixed-ops": "operators executed",
    "longer-names": "name length",
}


@pytest.fixture(scope="module")
def mini_build(tmp_path_factory) -> Path:
    return build_small(tmp_path_factory.mktemp("data") / "alpha2026-cpu", "datasets/alpha2026-cpu",
                       {"train": 1500, "val": 20, "test": 50}, ood_count=120, shard_size=120)


@pytest.mark.parametrize("suite", list(SHIFTED))
def test_each_2026_ood_suite_shifts_its_property_and_keeps_every_other_in_range(mini_build, suite):
    assert_one_shift(mini_build, suite, PROPERTIES, SHIFTED[suite])


def test_the_any_names_suite_draws_names_past_the_seen_share_and_nothing_else_moves(mini_build):
    """Research project 6's RQ2 suite: the training grammar with names from the whole name space."""
    programs = built_programs(mini_build)
    train = property_ranges(programs["train"], PROPERTIES)
    ood = [p.split("\n#STEP\n")[0] for p in (mini_build / "ood_any-names.txt").read_text().split("\n\n") if p.strip()]
    measured = property_ranges(ood, PROPERTIES)
    assert measured["2-letter names seen"] == {False, True} and train["2-letter names seen"] == {True}
    unseen = {n for p in ood for n in _names(p) if len(n) == 2 and n not in SEEN_TWO_LETTER}
    assert len(unseen) > 50 and math.isclose(len(SEEN_TWO_LETTER), 6)
    for name in set(PROPERTIES) - {"2-letter names seen"}:
        assert inside_range(measured[name], train[name]), name
