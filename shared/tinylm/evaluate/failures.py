"""Where a trace that is not an exact match first goes wrong: the line of its first wrong character,
named by what that line asks of the model.

Every trace format here (demo, m2, 2026) writes a step as a copy of the program in which the line
about to run is marked with "@" and followed by "$" and the state before it runs; the last step
marks "^" (the end) instead of a line, and m2 writes the printed output after a "|" there. So the
first wrong line of a step is one of:

- the **marker**: the model put the "@" on another line (or on none): it ran the wrong line, an `if`
  whose condition it got wrong, or a loop it left or entered wrongly;
- a **state** value on the marked line, named by the statement the previous step marked, whose
  effect the state shows: an assignment with an operator (`a = 2 - a`, `b += 1`), a plain
  assignment or copy (`a = 3`, `a = b`), a block header (`if`, `while`, `for`, ...), a `print`, or
  the first step (no statement before it);
- the printed **output** after the state (m2);
- the **program copy**: a line that is not marked, or the code of the marked line.

A generation whose steps all match but end too soon or go on has its own two kinds.

    tinylm failures OUT/id/results.jsonl [--out failures.json]
"""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

from tinylm.base.args import ArgumentParser
from tinylm.base.errors import DataError
from tinylm.base.files import atomic_write_json
from tinylm.lang.format import STEP

_HEADER = re.compile(r"^(if|elif|else|while|for)\b")
_OPERATOR = re.compile(r"^\w+ (?:[-+*/%]|//)= |^\w+ = .*\S (?:[-+*/%]|//) \S")


def statement_kind(line: str) -> str:
    """What a program line does, by the kinds a state error is named after."""
    code = line.strip()
    if _HEADER.match(code):
        return "a block header"
    if code.startswith("print("):
        return "a print"
    if _OPERATOR.match(code):
        return "an assignment with an operator"
    return "a plain assignment or copy"


def _marked_line(step: str | None) -> str | None:
    """A step's marked line (with its "@" and state), or None without a step or a mark."""
    return next((line for line in (step or "").split("\n") if line.startswith("@")), None)


def _line_kind(want: str, got: str, previous_marked: str | None) -> str:
    if want.startswith("@") != got.startswith("@"):
        return "marker"
    if not want.startswith("@"):
        return "program copy"
    want_code, _, want_rest = want.partition("$")
    got_code, _, got_rest = got.partition("$")
    if want_code != got_code:
        return "marker" if "@^" in (want_code, got_code) else "program copy"
    if want_rest.split("|", 1)[0] != got_rest.split("|", 1)[0]:
        if previous_marked is None:
            return "state at the first step"
        return f"state after {statement_kind(previous_marked[1:].split('$', 1)[0])}"
    return "output"


def first_error(target: str, generated: str) -> dict | None:
    """The first wrong line of a generation (cut at its terminator) against its target: its kind,
    step, both versions of the line and the statement the previous step marked; None if equal."""
    if generated == target:
        return None
    want_steps, got_steps = target.split(STEP), generated.split(STEP)
    for k, want_step in enumerate(want_steps):
        if k >= len(got_steps):
            return {"kind": "trace ends early", "step": k, "target_line": want_step.split("\n")[0],
                    "generated_line": "", "previous_marked_line": None}
        if got_steps[k] == want_step:
            continue
        want_lines, got_lines = want_step.split("\n"), got_steps[k].split("\n")
        j = next((i for i, (w, g) in enumerate(zip(want_lines, got_lines)) if w != g), min(len(want_lines), len(got_lines)))
        want = want_lines[j] if j < len(want_lines) else ""
        got = got_lines[j] if j < len(got_lines) else ""
        previous = _marked_line(want_steps[k - 1]) if k else None
        last = k == len(got_steps) - 1 and j == len(got_lines) - 1
        if j >= len(got_lines) or (last and want.startswith(got)):  # stopped, or ran out of budget, inside this line
            kind = "trace ends early"
        elif j >= len(want_lines):
            kind = "program copy"
        else:
            kind = _line_kind(want, got, previous)
        return {"kind": kind, "step": k, "target_line": want, "generated_line": got, "previous_marked_line": previous}
    return {"kind": "trace does not end", "step": len(want_steps), "target_line": "",
            "generated_line": got_steps[len(want_steps)].split("\n")[0], "previous_marked_line": None}


def failure_kinds(records: list[dict]) -> dict[str, int]:
    """How many of a suite's scored examples that are not exact matches fail first at each kind of
    line, most frequent first."""
    counts = Counter(first_error(r["target"], r["generated"])["kind"] for r in records if r["class"] != "hard")
    return dict(counts.most_common())


def failures_report(results: str | Path) -> dict:
    """Every example of a suite's results.jsonl that is not an exact match, with its first wrong line."""
    path = Path(results)
    if not path.is_file():
        raise DataError(f"{path}: no such results file (an evaluation writes OUT/<suite>/results.jsonl)")
    try:
        records = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    except json.JSONDecodeError as e:
        raise DataError(f"{path}: not a results.jsonl ({e})") from None
    missing = [r.get("id") for r in records if not {"target", "generated", "class"} <= r.keys()]
    if missing:
        raise DataError(f"{path}: example {missing[0]} lacks target, generated or class")
    examples = [{"id": r["id"], **first_error(r["target"], r["generated"])} for r in records if r["class"] != "hard"]
    return {"source": str(path), "n": len(records), "not_hard": len(examples),
            "rule": "the line of the first wrong character: the @ marker, a state value (named by the statement "
                    "the previous step marked), the printed output, or the program copy (tinylm.evaluate.failures)",
            "kinds": dict(Counter(e["kind"] for e in examples).most_common()), "examples": examples}


def cli(argv: list[str]) -> int:
    """tinylm failures: where each trace of a suite's results.jsonl that is not an exact match first goes wrong."""
    ap = ArgumentParser(prog="tinylm failures", description=cli.__doc__)
    ap.add_argument("results", help="OUT/<suite>/results.jsonl of tinylm eval (or a project's 3_eval stage)")
    ap.add_argument("--out", help="write every failing example's first wrong line here (JSON)")
    args = ap.parse_args(argv)
    report = failures_report(args.results)
    print(f"{report['not_hard']} of {report['n']} examples are not exact matches; their first wrong line:")
    for kind, count in report["kinds"].items():
        print(f"  {count:6d}  {kind}")
    if args.out:
        atomic_write_json(Path(args.out), report)
    return 0
