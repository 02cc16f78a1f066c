"""Where a generation first goes wrong: each kind made by one edit of a real trace, in every format."""

import json

import pytest

from tinylm.base.errors import DataError
from tinylm.cli import main
from tinylm.evaluate.failures import failure_kinds, failures_report, first_error, statement_kind
from tinylm.evaluate.scoring import split_example
from tinylm.lang.trace import trace_program

PROGRAM = "# code\na = 2\nb = a * 3\nif b > 4:\n\tprint(b)\nc = b"


def target(program: str = PROGRAM, fmt: str = "m2") -> str:
    return split_example(trace_program(program, fmt).text)[1]


def edit_step(trace: str, k: int, old: str, new: str) -> str:
    """The trace with `old` replaced by `new` in step k only (steps split at #STEP)."""
    steps = trace.split("\n#STEP\n")
    assert old in steps[k], (old, steps[k])
    steps[k] = steps[k].replace(old, new, 1)
    return "\n#STEP\n".join(steps)


def test_an_exact_generation_has_no_error():
    assert first_error(target(), target()) is None


@pytest.mark.parametrize(
    ("k", "old", "new", "kind", "previous"),
    [
        (0, "@a = 2$|", "@a = 2$a?1|", "state at the first step", None),  # no statement ran before it
        (2, "$a?2;b?6|", "$a?2;b?5|", "state after an assignment with an operator", "@b = a * 3$a?2|"),
        (5, "@^$a?2;b?6;c?6|", "@^$a?2;b?6;c?2|", "state after a plain assignment or copy", "@c = b$a?2;b?6|# 6"),
    ],
)
def test_a_wrong_state_is_named_by_the_statement_that_made_it(k, old, new, kind, previous):
    want = target()
    got = edit_step(want, k, old, new)
    error = first_error(want, got)
    assert (error["kind"], error["step"]) == (kind, k)
    assert error["previous_marked_line"] == previous
    assert error["target_line"] != error["generated_line"]


def test_a_state_after_a_block_header_a_print_and_the_output():
    want = target()
    after_if = edit_step(want, 3, "@\tprint(b)$a?2;b?6|", "@\tprint(b)$a?2;b?4|")
    assert first_error(want, after_if)["kind"] == "state after a block header"
    after_print = edit_step(want, 4, "@c = b$a?2;b?6|# 6", "@c = b$a?2;b?0|# 6")
    assert first_error(want, after_print)["kind"] == "state after a print"
    output = edit_step(want, 4, "@c = b$a?2;b?6|# 6", "@c = b$a?2;b?6|# 7")
    assert first_error(want, output)["kind"] == "output"


def test_a_marker_on_another_line_is_a_marker_error():
    want = target()
    skipped = edit_step(want, 3, "if b > 4:\n@\tprint(b)$a?2;b?6|\nc = b",
                        "if b > 4:\n\tprint(b)\n@c = b$a?2;b?6|")  # the if's body skipped
    error = first_error(want, skipped)
    assert (error["kind"], error["step"]) == ("marker", 3)
    assert (error["target_line"], error["generated_line"]) == ("@\tprint(b)$a?2;b?6|", "\tprint(b)")
    early_end = edit_step(want, 5, "c = b\n@^$a?2;b?6;c?6|", "@c = b\n^$a?2;b?6;c?6|")
    assert first_error(want, early_end)["kind"] == "marker"


def test_a_wrong_copy_and_a_wrong_length():
    want = target()
    assert first_error(want, edit_step(want, 2, "\tprint(b)", "\tprint(a)"))["kind"] == "program copy"
    assert first_error(want, edit_step(want, 1, "@b = a * 3$", "@b = a + 3$"))["kind"] == "program copy"
    steps = want.split("\n#STEP\n")
    assert first_error(want, "\n#STEP\n".join(steps[:3]))["kind"] == "trace ends early"
    assert first_error(want, want[:-20])["kind"] == "trace ends early"  # stopped inside the last step
    assert first_error(want, want + "\n#STEP\n" + steps[-1])["kind"] == "trace does not end"


@pytest.mark.parametrize("fmt", ["demo", "2026"])
def test_the_other_formats_have_the_same_kinds(fmt):
    program = "a = 2\nb = a - 3\nb = b" if fmt == "2026" else "# code\na = 2\nb = a\nb = b"
    want = target(program, fmt)
    wrong = edit_step(want, 2, "b?2", "b?9") if fmt == "demo" else edit_step(want, 2, "b?-1", "b?-2")
    error = first_error(want, wrong)
    assert error["step"] == 2
    assert error["kind"] == ("state after a plain assignment or copy" if fmt == "demo"
                             else "state after an assignment with an operator")


@pytest.mark.parametrize(
    ("line", "kind"),
    [("a = 2 - a", "an assignment with an operator"), ("\tb = c // 3", "an assignment with an operator"),
     ("b += 1", "an assignment with an operator"), ("a = -3", "a plain assignment or copy"),
     ("a = b", "a plain assignment or copy"), ("\tif a < -2:", "a block header"), ("else:", "a block header"),
     ("for i in range(3):", "a block header"), ("print(a - 1)", "a print")],
)
def test_statement_kinds(line, kind):
    assert statement_kind(line) == kind


def test_the_report_counts_every_example_not_matched_exactly(tmp_path):
    want = target()
    state = edit_step(want, 2, "$a?2;b?6|", "$a?2;b?5|")
    marker = edit_step(want, 3, "@\tprint(b)$a?2;b?6|\nc = b", "\tprint(b)\n@c = b$a?2;b?6|")
    records = [{"id": i, "target": want, "generated": g, "class": c}
               for i, (g, c) in enumerate([(want, "hard"), (state, "failure"), (marker, "soft"), (state, "failure")])]
    assert failure_kinds(records) == {"state after an assignment with an operator": 2, "marker": 1}
    results = tmp_path / "results.jsonl"
    results.write_text("".join(json.dumps(r) + "\n" for r in records))
    report = failures_report(results)
    assert (report["n"], report["not_hard"]) == (4, 3)
    assert [e["id"] for e in report["examples"]] == [1, 2, 3]
    out = tmp_path / "failures.json"
    assert main(["failures", str(results), "--out", str(out)]) == 0
    assert json.loads(out.read_text())["kinds"] == report["kinds"]


def test_a_missing_or_foreign_results_file_is_one_error(tmp_path, capsys):
    with pytest.raises(DataError, match="no such results file"):
        failures_report(tmp_path / "results.jsonl")
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"id": 3, "class": "hard"}) + "\n")
    assert main(["failures", str(bad), "--out", str(tmp_path / "f.json")]) == 2
    assert "example 3 lacks target" in capsys.readouterr().err
    assert not (tmp_path / "f.json").exists()
