"""Renamed variables: the rewrite touches names only, a renamed program traces like the original with
the names replaced, fresh names avoid what training saw, and `tinylm data rename` builds the suite."""

from __future__ import annotations

import json
import random
import re
from pathlib import Path

import numpy as np
import pytest
import yaml

from tinylm.base.errors import DataError
from tinylm.cli import main
from tinylm.data.datasets import build
from tinylm.data.stages import name_problem, training_words
from tinylm.lang.format import split_examples
from tinylm.lang.generate import generate_programs
from tinylm.lang.rename import RESERVED, fresh_names, program_names, rename_program
from tinylm.lang.spec import preset
from tinylm.lang.trace import iter_examples, trace_program
from tinylm.tokens.load import tokenizer_from_dict
from tinylm.tokens.tokenizer import keyword_tokenizer

STEP = "\n#STEP\n"
FORMATS = {"demo": "demo", "nightly": "m2", "alpha": "2026", "beta": "2026"}


def replace_words(text: str, mapping: dict[str, str]) -> str:
    """A plain word-for-word rewrite of a trace (for programs that call no variable 'code', 'print' or 'range')."""
    return "\n".join(line if line == "# code" else re.sub(r"[a-z]+", lambda m: mapping.get(m.group(), m.group()), line)
                     for line in text.split("\n"))


@pytest.mark.parametrize("name", list(FORMATS))
def test_a_renamed_program_traces_as_the_original_with_the_names_replaced(name):
    rng = random.Random(0)
    checked = 0
    for program in generate_programs(preset(name), 4, 0, 200):
        original = trace_program(program, FORMATS[name]).text
        if original is None or {"code", "print", "range"} & set(program_names(program)):
            continue
        mapping = fresh_names(program_names(program), set(program_names(program)), rng, [2, 3, 4])
        renamed = trace_program(rename_program(program, mapping), FORMATS[name]).text
        assert renamed.count(STEP) == original.count(STEP)                                 # same steps
        assert re.findall(r"-?[0-9]+", renamed) == re.findall(r"-?[0-9]+", original)      # same values
        assert renamed == replace_words(original, mapping)
        assert set(program_names(renamed.split(STEP)[0])) == set(mapping.values())
        checked += 1
    assert checked > 80


def test_rename_touches_no_keyword_number_header_or_longer_name():
    program = "# code\ncode = 10\nab = 2\nfor a in range(ab):\n\tif a < code:\n\t\tprint(a)\n\telif a > 1:\n\t\tab = a\nprint(ab)"
    assert program_names(program) == ["code", "ab", "a"]
    assert rename_program(program, {"a": "zq", "code": "x"}) == \
        "# code\nx = 10\nab = 2\nfor zq in range(ab):\n\tif zq < x:\n\t\tprint(zq)\n\telif zq > 1:\n\t\tab = zq\nprint(ab)"


def test_variables_called_print_and_range_are_renamed_but_the_builtins_stay():
    program = "print = 2\nfor range in range(print):\n\tx = range * print\nif x > 0:\n\tx = 1"
    assert program_names(program) == ["print", "range", "x"]
    assert rename_program(program, {"print": "p", "range": "r"}) == \
        "p = 2\nfor r in range(p):\n\tx = r * p\nif x > 0:\n\tx = 1"
    assert rename_program("x = 1\nprint(x)", {"x": "y"}) == "y = 1\nprint(y)"


def test_the_output_section_of_a_nightly_program_is_kept():
    program = next(p for p in generate_programs(preset("nightly", nightly={"emit_output": True}), 0, 0, 50)
                   if "# output" in p)
    names = program_names(program)
    renamed = rename_program(program, {n: n * 2 for n in names})
    cut = program.index("# output")
    assert renamed.endswith(program[cut:]) and program_names(renamed) == [n * 2 for n in names]


@pytest.mark.parametrize("mapping, message", [({"a": "b"}, "merge two variables"), ({"a": "c", "b": "c"}, "merge"),
                                              ({"a": "if"}, "not a lower-case name"), ({"a": "range"}, "not a"),
                                              ({"a": "A1"}, "not a lower-case name")])
def test_a_rename_that_would_change_the_program_is_refused(mapping, message):
    with pytest.raises(ValueError, match=message):
        rename_program("a = 1\nb = a + 2", mapping)


def test_fresh_names_are_seeded_new_and_of_the_given_lengths():
    names, taken = ["a", "b", "c", "d"], {"qq", "zz"}
    first = fresh_names(names, taken, random.Random(5), [2], allowed=lambda n: "x" not in n)
    assert first == fresh_names(names, taken, random.Random(5), [2], allowed=lambda n: "x" not in n)
    assert list(first) == names and len(set(first.values())) == 4
    assert all(len(n) == 2 and n not in taken and n not in RESERVED and "x" not in n for n in first.values())
    with pytest.raises(DataError, match="no fresh name for 'c'"):
        fresh_names(names, set("abcdefghijklmnopqrstuvwx"), random.Random(0), [1])


def test_keyword_vocabularies_must_spell_a_name_letter_by_letter():
    tokenizer = keyword_tokenizer("m2")
    assert name_problem(tokenizer, "fx") is None
    assert "reads 'fin' as 'f' 'in', not letter by letter" in name_problem(tokenizer, "fin")
    assert "reads 'gift'" in name_problem(keyword_tokenizer("alpha"), "gift")


# ----------------------------------------------------------------------------------------------
# The stage on a built dataset


def build_tiny(root: Path, **changes) -> Path:
    (root / "pyproject.toml").write_text("")
    folder = root / "datasets" / "d"
    folder.mkdir(parents=True)
    (folder / "dataset.yaml").write_text(yaml.safe_dump({
        "generator": {"preset": "demo", "overrides": {"demo": {"names": ["a", "b", "c"], "max_digit": 3}}},
        "trace_format": "demo", "block_size": 128, "splits": {"train": 400, "val": 20, "test": 60},
        "seed": 1, "shard_size": 128, **changes}))
    build(folder, workers=1)
    return folder


@pytest.fixture
def built(tmp_path) -> Path:
    return build_tiny(tmp_path)


@pytest.mark.parametrize("tokenizer", [{"kind": "char", "sample": 100},
                                       {"kind": "sentencepiece", "vocab_size": 100, "sample": 100}])
def test_training_words_hold_every_name_of_the_train_split_with_any_tokenizer(tmp_path, tokenizer):
    folder = build_tiny(tmp_path, tokenizer=tokenizer, block_size=0,
                        generator={"preset": "demo", "overrides": {"demo": {"names": ["ab", "bc", "cab"]}}})
    manifest = json.loads((folder / "manifest.json").read_text())
    assert training_words(folder, manifest, tokens_per_read=5000) == {"ab", "bc", "cab", "code", "if", "while"}


def fake_results(suite: Path, out: Path, hard: set[int]) -> None:
    """An evaluation's results.jsonl (the fields the stage reads) with `hard` scored hard."""
    lines = []
    for i, example in enumerate(iter_examples(suite)):
        cut = example.index("#STEP\n") + len("#STEP\n")
        record = {"id": i, "class": "hard" if i in hard else "failure", "prompt": example[:cut], "target": example[cut:]}
        lines.append(json.dumps(record))
    out.write_text("\n".join(lines[::-1]) + "\n")  # any order: the stage sorts by id


def canonical(program: str) -> str:
    """The program with its names replaced by z, zz, zzz... in order of appearance."""
    return rename_program(program, {n: "z" * (i + 1) for i, n in enumerate(program_names(program))})


def test_the_renamed_suite_holds_fresh_traces_of_hard_matched_programs_with_names_training_never_saw(built, capsys):
    results, out = built / "results.jsonl", built / "ood_renamed.txt"
    hard = set(range(0, 60, 2))
    fake_results(built / "test.txt", results, hard)
    argv = ["data", "rename", str(results), str(built / "test.txt"), str(out), "--dataset", str(built), "--seed", "2",
            "--lengths", "1"]  # single letters: 23 are unseen, and a slip onto a, b or c would be likely
    assert main(argv) == 0
    assert "renamed examples of 30 hard-matched" in capsys.readouterr().out
    originals = [e for i, e in enumerate(iter_examples(built / "test.txt")) if i in hard]
    renamed = list(iter_examples(out))
    assert len(renamed) == 30
    manifest = json.loads((built / "manifest.json").read_text())
    train = split_examples(tokenizer_from_dict(manifest["tokenizer"]).decode(np.fromfile(built / "train.bin", np.uint8)))
    seen = {n for t in train for n in program_names(t.split(STEP)[0])}
    assert seen == {"a", "b", "c"}
    shapes = {canonical(o.split(STEP)[0]): o for o in originals}
    for example in renamed:
        program = example.split(STEP)[0]
        assert example == trace_program(program, "demo").text
        assert not set(program_names(program)) & seen
        original = shapes[canonical(program)]  # the hard example it renames
        assert example.count(STEP) == original.count(STEP)
        assert re.findall(r"-?[0-9]+", example) == re.findall(r"-?[0-9]+", original)
    assert main(argv) == 0 and list(iter_examples(out)) == renamed  # same seed, same bytes


def test_rename_errors_are_one_line(built, capsys, tmp_path):
    results = tmp_path / "results.jsonl"
    fake_results(built / "test.txt", results, {0, 1})
    other = tmp_path / "other.jsonl"
    other.write_text("{\"id\": 0, \"class\": \"hard\"}\n")
    base = [str(results), str(built / "test.txt"), str(tmp_path / "out.txt")]
    cases = [(base + ["--dataset", str(tmp_path / "nope")], "no manifest.json"),
             ([str(tmp_path / "absent.jsonl"), *base[1:], "--dataset", str(built)], "absent.jsonl: no such file"),
             ([str(other), *base[1:], "--dataset", str(built)], "line 1: not an evaluation record"),
             ([base[0], str(built / "dataset.yaml"), base[2], "--dataset", str(built)], "is not example 59 of"),
             (base + ["--dataset", str(built), "--lengths", "2,x"], "--lengths: expected comma-separated integers"),
             (base + ["--dataset", str(built), "--lengths", "0"], "--lengths must be name lengths >= 1"),
             (base + ["--dataset", str(built), "--lengths", "1", "--seed", "0"] + ["--workers", "2"], "unrecognized")]
    for argv, message in cases:
        assert main(["data", "rename", *argv]) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and message in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "out.txt").exists()
