"""The OOD suites of research projects 1 and 2 shift exactly one property: measured on real builds of
datasets/nightly-mini and datasets/nightly-mini-no-while (at small counts), every property of every
suite is checked against the range the training split covers, with CPython running each program as
the oracle."""

from __future__ import annotations

import ast
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml
from conftest import REPO, assert_one_shift, build_small, built_programs, inside_range, property_ranges
from test_generate import block_peak, code_lines, line_states, loop_runs, max_depth


def _values(program: str) -> list[int]:
    """Every value a variable holds while CPython runs the program, the final ones included."""
    return [v for _, values in line_states(program) for v in values.values() if isinstance(v, int)]


def _names(program: str) -> list[str]:
    tree = ast.parse("\n".join(code_lines(program)))
    return sorted({n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and n.id != "print"})


def _in_if_blocks(program: str) -> list[int]:
    """1 for each if/while statement placed inside an if body, else nothing."""
    tree = ast.parse("\n".join(code_lines(program)))
    return [1 for node in ast.walk(tree) if isinstance(node, ast.If)
            for child in node.body + node.orelse if isinstance(child, (ast.If, ast.While))
            and child not in node.orelse[:1]]  # an elif is the if's own else branch


# property -> what it measures on one program (a list: a program may hold several loops)
PROPERTIES: dict[str, Callable[[str], list]] = {
    "lines": lambda p: [len(code_lines(p))],
    "depth": lambda p: [max_depth("\n".join(code_lines(p)))],
    "sub-blocks": lambda p: [block_peak(p)],
    "iterations": lambda p: [n for n, _ in loop_runs(p) if n >= 0],
    "loop steps": lambda p: [s for _, steps in loop_runs(p) for s in steps],
    "values": lambda p: [abs(v) for v in _values(p)],
    "literals": lambda p: [int(n.value) for n in ast.walk(ast.parse("\n".join(code_lines(p))))
                           if isinstance(n, ast.Constant)],
    "name length": lambda p: [len(n) for n in _names(p)],
    "name letters": lambda p: sorted({c for n in _names(p) for c in n}),
}
SHIFTED = {
    "longer-snippets": "lines",
    "more-while-iterations": "iterations",
    "wider-while-steps": "loop steps",
    "more-sub-blocks": "sub-blocks",
    "deeper-nesting": "depth",
    "beyond-128": "lines",   # research project 2's: longer snippets whose step pairs exceed 128 tokens
}
# research project 1's CPU grammar has no loops, so neither has any of its suites
NO_WHILE_SHIFTED = {suite: SHIFTED[suite] for suite in ("longer-snippets", "more-sub-blocks", "deeper-nesting")}


@pytest.fixture(scope="module")
def mini_build(tmp_path_factory) -> Path:
    # the 3-sub-block suite draws slowly: small shards
    return build_small(tmp_path_factory.mktemp("data") / "nightly-mini", "datasets/nightly-mini",
                       {"train": 1500, "val": 20, "test": 200}, ood_count=120, shard_size=120)


@pytest.fixture(scope="module")
def no_while_build(tmp_path_factory) -> Path:
    return build_small(tmp_path_factory.mktemp("data") / "nightly-mini-no-while", "datasets/nightly-mini-no-while",
                       {"train": 1500, "val": 20, "test": 200}, ood_count=120, shard_size=120)


def _assert_one_shift_under_training_nesting(build: Path, suite: str, shifted: str) -> list[str]:
    ood, train = assert_one_shift(build, suite, PROPERTIES, shifted)
    # the nesting rules of training: where training puts blocks inside if bodies, so may a suite
    assert not any(_in_if_blocks(p) for p in ood) or any(_in_if_blocks(p) for p in train)
    return ood


@pytest.mark.parametrize("suite", list(SHIFTED))
def test_each_ood_suite_shifts_its_property_and_keeps_every_other_in_range(mini_build, suite):
    _assert_one_shift_under_training_nesting(mini_build, suite, SHIFTED[suite])


@pytest.mark.parametrize("suite", list(NO_WHILE_SHIFTED))
def test_each_loop_free_suite_shifts_its_property_and_holds_no_loop(no_while_build, suite):
    ood = _assert_one_shift_under_training_nesting(no_while_build, suite, NO_WHILE_SHIFTED[suite])
    programs = ood + built_programs(no_while_build)["train"]
    assert not any(isinstance(node, ast.While) for p in programs for node in ast.walk(ast.parse("\n".join(code_lines(p)))))


def test_the_renamed_suite_uses_trained_letters_in_unseen_names(mini_build, tmp_path):
    """The renamed-variables suite of research project 1: every test program, names of two letters
    that training spells only one at a time; every other property unchanged."""
    import json

    from tinylm.data.stages import stage_rename
    from tinylm.lang.trace import iter_examples

    test = mini_build / "test.txt"
    results = tmp_path / "results.jsonl"
    results.write_text("".join(json.dumps({"id": i, "class": "failure", "prompt": "", "target": example}) + "\n"
                               for i, example in enumerate(iter_examples(test))))
    out = tmp_path / "renamed.txt"
    stage_rename(results, test, out, mini_build, seed=0, lengths=[2], solved_only=False, trained_letters=True)
    programs = built_programs(mini_build)
    train = property_ranges(programs["train"], PROPERTIES)
    renamed = [e.split("\n#STEP\n")[0] for e in iter_examples(out)]
    assert len(renamed) >= 150
    measured = property_ranges(renamed, PROPERTIES)
    assert measured["name length"] == {2} and train["name length"] == {1}
    assert measured["name letters"] <= train["name letters"]
    for name in set(PROPERTIES) - {"name length", "name letters"}:
        assert inside_range(measured[name], train[name]), name


@pytest.mark.parametrize("project, dataset, built, scored", [
    ("research_project_1", "nightly-mini-no-while", set(NO_WHILE_SHIFTED), set(NO_WHILE_SHIFTED)),
    ("research_project_2", "nightly-mini", set(SHIFTED), {"beyond-128"}),
])
def test_the_ood_builds_are_the_committed_specs(project, dataset, built, scored):
    """Guard: the suites measured above are the ones research projects 1 and 2 score."""
    spec = yaml.safe_load((REPO / "datasets" / dataset / "dataset.yaml").read_text())
    assert {s["name"] for s in spec["ood"]} == built
    config = yaml.safe_load((REPO / project / "configs/cpu.yaml").read_text())
    assert config["datasets"][dataset]["spec"] == f"datasets/{dataset}"
    assert scored <= {Path(v).stem.removeprefix("ood_") for v in config["eval"]["suites"].values()}


@pytest.mark.parametrize("project", ["research_project_3", "research_project_5"])
def test_projects_that_start_from_research_project_1s_model_score_its_grammar(project):
    """Research projects 3 and 5 fine-tune research project 1's main model: their data and suites are
    its loop-free grammar's, not the probes' nightly-mini."""
    base = yaml.safe_load((REPO / "research_project_1/configs/cpu.yaml").read_text())["train"]["data"]["dataset"]
    config = yaml.safe_load((REPO / project / "configs/cpu.yaml").read_text())
    assert base == "nightly-mini-no-while"
    assert config["datasets"][base]["spec"] == f"datasets/{base}"
    assert all(path.startswith(f"{base}/") for path in config["eval"]["suites"].values())
    assert not {"more-while-iterations", "wider-while-steps"} & {Path(v).stem.removeprefix("ood_")
                                                                for v in config["eval"]["suites"].values()}
