"""The program generators: presets match the reference statistics, streams split deterministically,
every knob loads from YAML, and bad specs fail with a message naming the key."""

from __future__ import annotations

import ast
import contextlib
import dataclasses
import io
import statistics
import sys
from collections import Counter

import pytest
import yaml

from tinylm.base.config import from_dict, to_dict
from tinylm.base.errors import ConfigError
from tinylm.lang.generate import CHUNK, generate_programs, program_key
from tinylm.lang.nightly import Doomed, LineRunner
from tinylm.lang.snippet import _lcg_name, _team
from tinylm.lang.spec import PRESETS, GeneratorSpec, preset

# ---------------------------------------------------------------------------------------------
# Measuring programs, as golden/DISTRIBUTIONS.md does


class _Abort(Exception):
    pass


def survives(program: str, cap: int = 999) -> bool:
    """Run the program as the reference generators did; False on an error or a value beyond the cap."""
    body = [line for line in program.split("\n") if not line.startswith("#")]
    namespace: dict = {}
    exec(compile("def f():\n" + "\n".join("\t" + line for line in body), "<program>", "exec"), namespace)
    steps = 0

    def tracer(frame, event, arg):
        nonlocal steps
        if frame.f_code.co_name != "f":
            return None
        steps += 1
        if steps > 5000 or any(abs(v) > cap for v in frame.f_locals.values()):
            raise _Abort
        return tracer

    sys.settrace(tracer)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            namespace["f"]()
        return True
    except (_Abort, ArithmeticError, NameError):
        return False
    finally:
        sys.settrace(None)


def percent(counter: Counter) -> dict:
    total = sum(counter.values())
    return {key: 100 * n / total for key, n in counter.items()}


def measure(programs: list[str]) -> dict:
    lines, depth, kinds, ops, comparisons, name_lengths = (Counter() for _ in range(6))
    literals, names, with_while = [], set(), 0
    for program in programs:
        code = [line for line in program.split("\n") if not line.lstrip().startswith("#")]
        lines[len(code)] += 1
        depth[max(len(line) - len(line.lstrip("\t")) for line in code)] += 1
        nodes = list(ast.walk(ast.parse(program)))
        with_while += any(isinstance(node, ast.While) for node in nodes)
        for node in nodes:
            if isinstance(node, ast.stmt):
                kinds[type(node).__name__] += 1
            elif isinstance(node, ast.BinOp):
                ops[type(node.op).__name__] += 1
            elif isinstance(node, ast.Compare):
                comparisons[type(node.ops[0]).__name__] += 1
            elif isinstance(node, ast.Constant):
                literals.append(node.value)
            elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
                names.add(node.id)
                name_lengths[len(node.id)] += 1
    return {
        "lines": percent(lines), "depth": percent(depth), "statements": percent(kinds),
        "ops": percent(ops), "comparisons": percent(comparisons), "name_lengths": percent(name_lengths),
        "literals": (min(literals), statistics.median(literals), max(literals)),
        "while": 100 * with_while / len(programs), "names": names,
    }


# Every percentage within 3 points of the reference's (README; the largest gap measured is 2.5,
# nightly's line counts). Samples of 3,000-4,000 programs put ~1 point of noise on a 30% bucket.
POINTS = 3.0


def assert_close(measured: dict, reference: dict, tolerance: float, what: str) -> None:
    for key in set(measured) | set(reference):
        got, want = measured.get(key, 0.0), reference.get(key, 0.0)
        assert abs(got - want) <= tolerance, f"{what}[{key}]: {got:.1f}% vs reference {want:.1f}%"


# Reference figures from golden/DISTRIBUTIONS.md (measured on the reference generators' output).
DEMO = {
    "lines": {4: 70.3, 6: 29.7}, "depth": {1: 70.3, 2: 29.7},
    "statements": {"Assign": 71.8, "If": 21.8, "While": 6.5}, "ops": {"Add": 100.0},
    "comparisons": {"Lt": 100.0}, "name_lengths": {1: 100.0},
}
NIGHTLY = {
    "lines": {6: 8.9, 7: 5.8, 8: 3.6, 9: 3.9, 10: 3.7, 11: 3.4, 12: 3.2, 13: 3.3, 14: 2.9, 15: 3.3,
              16: 33.7, 17: 11.1, 18: 2.9, 19: 4.7, 20: 3.8, 21: 0.8, 22: 0.4, 23: 0.2},
    "depth": {0: 14.6, 1: 55.8, 2: 29.6},
    "statements": {"Assign": 81.7, "Expr": 7.3, "If": 6.6, "While": 4.4},
    "ops": {"Add": 19.9, "FloorDiv": 27.6, "Mod": 19.5, "Mult": 6.1, "Sub": 27.0},
    "comparisons": {"Eq": 8.1, "Gt": 22.2, "GtE": 18.1, "Lt": 22.2, "LtE": 17.5, "NotEq": 11.8},
    "name_lengths": {1: 100.0},
}
ALPHA = {
    "lines": {5: 35.1, 6: 32.9, 7: 16.8, 8: 8.3, 9: 3.2, 10: 3.7}, "depth": {0: 1.4, 1: 11.1, 2: 87.5},
    "statements": {"Assign": 63.2, "If": 36.8}, "ops": {"Add": 48.9, "Sub": 51.1},
    "comparisons": {"Gt": 50.3, "Lt": 49.7},
    "name_lengths": {1: 19.6, 2: 19.4, 3: 20.5, 4: 20.4, 5: 20.1},
}


def survivors(name: str, count: int, trace_format: str) -> list[str]:
    """The programs the trace stage keeps (the reference statistics are of those)."""
    try:
        from tinylm.lang.trace import trace_program
    except ImportError:
        return [p for p in generate_programs(preset(name), 11, 0, count) if survives(p)]
    programs = generate_programs(preset(name), 11, 0, count)
    return [p for p in programs if trace_program(p, trace_format).error is None]


def test_demo_matches_reference_statistics():
    programs = generate_programs(preset("demo"), 11, 0, 4000)
    assert all(p.startswith("# code\n") for p in programs)
    stats = measure(programs)
    for key, want in DEMO.items():
        assert_close(stats[key], want, POINTS, key)
    assert stats["literals"] == (0, 4, 9)
    assert abs(stats["while"] - 29.7) <= POINTS
    assert stats["names"] == {"a", "b", "c"}


def test_nightly_programs_run_and_match_reference_statistics():
    programs = generate_programs(preset("nightly"), 11, 0, 3000)
    assert all(survives(p) for p in programs[:400])   # CPython agrees that they run
    stats = measure(programs)
    for key, want in NIGHTLY.items():
        assert_close(stats[key], want, POINTS, key)
    low, median, high = stats["literals"]
    assert (low, high) == (0, 999) and abs(median - 444) <= 40
    assert abs(stats["while"] - 56.5) <= POINTS
    assert len(stats["names"]) == 26


def test_alpha_survivors_match_reference_statistics():
    programs = survivors("alpha", 4000, "2026")
    assert not any(p.startswith("#") for p in programs)
    stats = measure(programs)
    for key, want in ALPHA.items():
        assert_close(stats[key], want, POINTS, key)
    low, median, high = stats["literals"]
    assert (low, high) == (0, 999) and abs(median - 478) <= 40
    assert stats["while"] == 0
    # The reference found 5,629 distinct names in 3,002 programs: 1.88 per program.
    assert 1.6 <= len(stats["names"]) / len(programs) <= 2.1


# ---------------------------------------------------------------------------------------------
# Presets that have no reference figures: check what each one changes


def programs_of(name: str, count: int = 150) -> list[str]:
    return generate_programs(preset(name), 5, 0, count)


def signed_literals(program: str) -> list[int]:
    nodes = list(ast.walk(ast.parse(program)))
    negated = {id(n.operand) for n in nodes if isinstance(n, ast.UnaryOp)}
    return [-n.value if id(n) in negated else n.value for n in nodes if isinstance(n, ast.Constant)]


def max_depth(program: str) -> int:
    return max(len(line) - len(line.lstrip("\t")) for line in program.split("\n"))


def ifs_per_level(program: str, heads: tuple[str, ...] = ("if ",)) -> int:
    """The most blocks of these kinds opened at one indentation level of the program."""
    levels = Counter(len(line) - len(line.lstrip("\t")) for line in program.split("\n")
                     if line.lstrip("\t").startswith(heads))
    return max(levels.values(), default=0)


def test_blocks_per_level_count_if_blocks_only_as_the_reference():
    """At most 2 `if`s per level in distribution whatever the `for` loops beside them; the denser
    suite has 3 or more `if`s at some level."""
    beta = programs_of("beta-rq1", 300)
    assert max(ifs_per_level(p) for p in beta) == 2
    assert any(ifs_per_level(p, ("if ", "for ")) > 2 for p in beta)   # for loops beside them do not count
    assert min(ifs_per_level(p) for p in programs_of("beta-ood-denser-snippets", 100)) >= 3


def test_beta_adds_small_for_loops():
    loops = [n for p in programs_of("beta") for n in ast.walk(ast.parse(p)) if isinstance(n, ast.For)]
    assert loops and {node.iter.args[0].value for node in loops} == {1, 2, 3}
    assert all(max_depth(p) <= 2 for p in programs_of("beta"))


def operator_share(programs: list[str]) -> Counter:
    return Counter(type(n.op).__name__ for p in programs for n in ast.walk(ast.parse(p))
                   if isinstance(n, ast.BinOp))


def test_nightly_stages_cap_literals_and_favour_modulo_keeping_loops():
    for stage, cap in ((1, 10), (2, 100), (3, 999)):
        programs = programs_of(f"nightly-stage{stage}", 200)
        # Operands and conditions stay within the cap; a loop's bound is computed, as in the reference.
        operands = [n.value for p in programs for node in ast.walk(ast.parse(p))
                    if isinstance(node, (ast.BinOp, ast.If)) for n in ast.walk(node) if isinstance(n, ast.Constant)]
        assert cap // 2 < max(operands) <= cap
        assert sum("while " in p for p in programs) > 60
        ops = operator_share(programs)
        assert ops["Mod"] > 1.5 * ops["Add"] and ops["FloorDiv"] > ops["Sub"]
    ops = operator_share(programs_of("nightly-stage4", 200))
    assert ops["Mod"] < 1.2 * ops["Add"]


def test_ood_presets_change_what_they_name():
    assert {len(p.split("\n")) for p in programs_of("alpha-ood-longer-snippets")} <= set(range(11, 21))
    long_names = programs_of("beta-ood-longer-names")
    assigned = {n.id for p in long_names for n in ast.walk(ast.parse(p)) if isinstance(n, ast.Name)
                and isinstance(n.ctx, ast.Store)}
    assert {len(name) for name in assigned} == set(range(6, 11))
    assert all(max_depth(p) >= 3 for p in programs_of("beta-ood-deeper-nesting"))
    assert any(max_depth(p) == 3 for p in programs_of("nightly-ood-deeper-nesting"))
    for p in programs_of("alpha-ood-mixed-ops", 100):   # both operators executed, CPython says
        ran = {n for n, _ in line_states(p)}
        body = code_lines(p)
        executed = [body[n - 2] for n in ran if 2 <= n < len(body) + 2]
        assert any(" + " in line for line in executed) and any(" - " in line for line in executed)
    dense = programs_of("alpha-ood-denser-snippets", 100)
    assert all(max(Counter(max_depth(line) for line in p.split("\n") if "if " in line).values()) >= 3
               for p in dense)
    # Hidden numbers and names never occur in the in-distribution presets, and vice versa.
    for name, team in (("alpha-rq1", "seen"), ("alpha-ood-hidden-numbers", "hidden")):
        assert {_team(v) for p in programs_of(name) for v in signed_literals(p)} == {team}
    seen = {_lcg_name(k, i) for k in (2, 3) for i in range(int(26**k * 0.01))}
    hidden = {n.id for p in programs_of("beta-ood-hidden-variables") for n in ast.walk(ast.parse(p))
              if isinstance(n, ast.Name)}
    assert hidden and min(map(len, hidden)) >= 2 and not hidden & seen


# ---------------------------------------------------------------------------------------------
# The nightly OOD suites and the CPU-sized presets: each suite's defining property, measured


def code_lines(program: str) -> list[str]:
    return [line for line in program.split("\n") if not line.startswith("#")]


def block_peak(program: str) -> int:
    """Most if/while statements directly inside one block (elif and else continue their if)."""
    lines = code_lines(program)
    depth = [len(line) - len(line.lstrip("\t")) for line in lines]
    held = Counter()
    for i, line in enumerate(lines):
        if line.lstrip().startswith(("if ", "while ")):
            held[max((j for j in range(i) if depth[j] == depth[i] - 1), default=-1)] += 1
    return max(held.values(), default=0)


def line_states(program: str) -> list[tuple[int, dict]]:
    """CPython runs the program: (line number, the variables then) at every line event, the first code
    line being line 2 (the code runs as the body of a function), then (-1, the final variables)."""
    body = code_lines(program)
    namespace: dict = {}
    exec(compile("def f():\n" + "\n".join("\t" + line for line in body), "<program>", "exec"), namespace)
    states: list[tuple[int, dict]] = []

    def tracer(frame, event, arg):
        if frame.f_code.co_name != "f":
            return None
        if event in ("line", "return"):
            states.append((frame.f_lineno if event == "line" else -1, dict(frame.f_locals)))
        return tracer

    sys.settrace(tracer)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            namespace["f"]()
    finally:
        sys.settrace(None)
    return states


def loop_runs(program: str) -> list[tuple[int, list[int]]]:
    """Per while loop that CPython runs: (iterations, |change| of its control per iteration)."""
    tree = ast.parse("\n".join(code_lines(program)))
    tests = {node.lineno + 1: [n.id for n in ast.walk(node.test) if isinstance(n, ast.Name)]
             for node in ast.walk(tree) if isinstance(node, ast.While)}
    checks: dict[int, list[dict]] = {line: [] for line in tests}
    for line, values in line_states(program):
        if line in checks:
            checks[line].append(values)
    runs = []
    for line, states in checks.items():
        steps = [abs(b[name] - a[name]) for a, b in zip(states, states[1:]) for name in tests[line]
                 if a[name] != b[name]]
        runs.append((len(states) - 1, steps))
    return runs


def nightly_suite(name: str, count: int) -> list[str]:
    programs = generate_programs(preset(name), 6, 0, count)
    assert all(survives(p) for p in programs[:50])
    return programs


def test_ood_longer_snippets_have_27_to_30_lines():
    lengths = Counter(len(code_lines(p)) for p in nightly_suite("nightly-ood-longer-snippets", 300))
    assert set(lengths) == {27, 28, 29, 30}


def test_ood_more_while_iterations_run_11_to_15_times_give_or_take_one():
    runs = [run for p in nightly_suite("nightly-ood-more-while-iterations", 300) for run in loop_runs(p)]
    assert len(runs) >= 300
    iterations = Counter(n for n, _ in runs)
    assert min(iterations) >= 10 and max(iterations) <= 16 and sum(iterations.values()) == len(runs)
    assert all(iterations[n] > 10 for n in range(11, 16))


def test_ood_wider_while_steps_step_21_to_40():
    programs = nightly_suite("nightly-ood-wider-while-steps", 300)
    runs = [run for p in programs for run in loop_runs(p)]
    assert len(runs) >= 300
    steps = Counter(step for _, run_steps in runs for step in run_steps)
    assert min(steps) == 21 and max(steps) == 40 and len(steps) == 20


def test_ood_more_sub_blocks_hold_three_or_four_blocks_in_some_block():
    peaks = Counter(block_peak(p) for p in nightly_suite("nightly-ood-more-sub-blocks", 100))
    assert set(peaks) == {3, 4}
    assert max(block_peak(p) for p in programs_of("nightly", 300)) == 2


def test_ood_deeper_nesting_reaches_depth_three():
    programs = nightly_suite("nightly-ood-deeper-nesting", 300)
    assert any(max_depth(p) == 3 for p in programs) and all(max_depth(p) <= 3 for p in programs)


# What each CPU-scale OOD suite measures, and its range there and in nightly-cpu: never overlapping.
CPU_SUITES = {
    "longer-snippets": (lambda p: [len(code_lines(p))], range(4, 9), range(9, 13), 100),
    "more-while-iterations": (lambda p: [n for n, _ in loop_runs(p)], range(0, 5), range(5, 10), 100),
    "wider-while-steps": (lambda p: [s for _, steps in loop_runs(p) for s in steps], None, range(4, 8), 100),
    "more-sub-blocks": (lambda p: [block_peak(p)], range(0, 3), range(3, 5), 40),
    "deeper-nesting": (lambda p: [max_depth("\n".join(code_lines(p)))], range(0, 3), range(3, 4), 40),
}


@pytest.mark.parametrize("suite", list(CPU_SUITES))
def test_cpu_ood_suites_do_not_overlap_nightly_cpu(suite):
    measure, in_range, out_range, count = CPU_SUITES[suite]
    ood = [v for p in generate_programs(preset(f"nightly-cpu-ood-{suite}"), 6, 0, count) for v in measure(p)]
    assert ood and set(ood) <= set(out_range)
    if in_range is None:  # steps: nightly-cpu also has * and // loops, whose factors are not steps
        spec = preset("nightly-cpu")
        assert spec.nightly.while_max_step < out_range[0]
        in_range = range(1, spec.nightly.while_max_step + 1)
        cpu = preset("nightly-cpu", nightly={"while_updates": ["+", "-"]})
    else:
        cpu = preset("nightly-cpu")
    ids = [v for p in generate_programs(cpu, 6, 0, 300) for v in measure(p)]
    assert set(ids) <= set(in_range) and len(set(ids)) > 1


def test_nightly_cpu_traces_are_short_and_keep_every_statement_kind():
    from tinylm.data.filter import BOUNDARY_TOKENS, EXAMPLE_END, keep_ids
    from tinylm.lang.trace import trace_program
    from tinylm.tokens.tokenizer import keyword_tokenizer

    programs = generate_programs(preset("nightly-cpu"), 6, 0, 600)
    tokenizer = keyword_tokenizer("m2")
    boundary = tokenizer.token_id(BOUNDARY_TOKENS["m2"])
    lengths, longest_step, kept = [], 0, 0
    for program in programs:
        ids = tokenizer.encode(trace_program(program, "m2").text + EXAMPLE_END)
        lengths.append(ids.size)
        marks = [i for i, t in enumerate(ids.tolist()) if t == boundary] + [ids.size]
        longest_step = max(longest_step, max(b - a for a, b in zip(marks, marks[1:])))
        kept += keep_ids(ids, boundary, 256)
    assert 250 <= statistics.mean(lengths) <= 400 and longest_step < 120 and kept == len(programs)
    kinds = Counter(type(n).__name__ for p in programs for n in ast.walk(ast.parse(p)))
    assert all(kinds[k] for k in ("While", "If", "Add", "Sub", "Mult", "FloorDiv", "Mod", "Call"))
    assert any("elif " in p for p in programs) and any("else:" in p for p in programs)
    assert {len(code_lines(p)) for p in programs} == set(range(4, 9))


def test_grammar_b_is_one_letter_names_numbers_in_99_and_a_sign_per_line():
    programs = generate_programs(preset("grammar-b"), 6, 0, 400)
    assert all(survives(p, cap=99) for p in programs)   # values stay in +-99 when run
    nodes = [n for p in programs for n in ast.walk(ast.parse(p))]
    assert {len(n.id) for n in nodes if isinstance(n, ast.Name)} == {1}
    assert {type(n).__name__ for n in nodes if isinstance(n, ast.stmt)} == {"Assign", "If"}
    literals = [v for p in programs for v in signed_literals(p)]
    assert min(literals) == -99 and max(literals) == 99
    # The right operand of + and - is a name or a literal in 0..99; operators vary within programs.
    assert not any(isinstance(n, ast.BinOp) and isinstance(n.right, ast.UnaryOp) for n in nodes)
    mixed = [p for p in programs if " + " in p and " - " in p]
    assert 0.1 * len(programs) < len(mixed) < 0.9 * len(programs)
    assert {len(code_lines(p)) for p in programs} == set(range(5, 11))


def test_every_program_of_every_preset_parses():
    for name in PRESETS:
        for program in generate_programs(preset(name), 2, 0, 25):
            ast.parse(program)
            assert program == program.strip("\n") and "\n\n" not in program


# ---------------------------------------------------------------------------------------------
# Determinism: program i depends only on (spec, seed, i)


@pytest.mark.parametrize("name", ["demo", "nightly-stage2", "nightly-cpu", "beta", "grammar-b"])
def test_any_split_of_a_range_gives_the_same_programs(name):
    spec = preset(name, nightly={"run_filter": False})
    whole = generate_programs(spec, 7, 100, 3 * CHUNK)
    cuts = [100, 101, 100 + CHUNK - 1, 100 + CHUNK + 5, 100 + 2 * CHUNK, 100 + 3 * CHUNK]
    pieces = [p for a, b in zip(cuts, cuts[1:]) for p in generate_programs(spec, 7, a, b - a)]
    assert pieces == whole
    assert generate_programs(spec, 7, 100, 3 * CHUNK) == whole
    assert generate_programs(spec, 8, 100, 3 * CHUNK) != whole
    assert generate_programs(spec, 7, 0, 0) == []


def test_redrawn_programs_keep_the_split_contract():
    spec = preset("nightly")
    whole = generate_programs(spec, 7, CHUNK - 3, 6)
    assert generate_programs(spec, 7, CHUNK - 3, 2) + generate_programs(spec, 7, CHUNK - 1, 4) == whole


def test_program_key_is_a_stable_short_digest():
    assert program_key("a = 1") == program_key("a = 1") != program_key("a = 2")
    assert len(program_key("a = 1")) == 16
    assert program_key("a = 1").hex() == "fec2d2ff4c3b3c0a858a3942c8873129"


# ---------------------------------------------------------------------------------------------
# Config: every knob from YAML; clear errors

# A valid non-default value for every knob; the test fails when a knob is added without one.
NEW_VALUES = {
    "family": "nightly", "header": "# program",
    "demo": {"names": ["x", "y"], "max_digit": 5, "while_probability": 0.5},
    "nightly": {
        "names": ["p", "q", "r", "s", "t"], "max_literal": 50, "max_value": 500, "operators": ["+", "-"],
        "operator_weights": [2.0, 1.0], "comparisons": ["<", "=="], "negative_init_probability": 0.5,
        "max_initializations": 1, "min_length": 4, "max_length": 12, "min_code_lines": 5, "max_code_lines": 20,
        "max_depth": 3, "min_depth": 1, "max_sub_blocks": 3, "min_sub_blocks": 1,
        "nest_in_if": True, "unindent_speed": 0.2, "while_loops": False, "while_updates": ["+"],
        "while_min_iterations": 2, "while_max_iterations": 4, "while_min_step": 2, "while_max_step": 5,
        "read_security": True, "write_security": False, "final_print": False, "cap_literals": True, "run_filter": False,
        "emit_output": True,
    },
    "snippet": {
        "min_lines": 3, "max_lines": 12, "max_depth": 3, "min_depth": 1, "max_blocks_per_level": 3,
        "min_blocks_peak": 1, "for_loops": True, "for_max_range": 5, "min_name_length": 2, "max_name_length": 3,
        "variable_diversity": 0.5, "hidden_variables": True, "name_reuse_probability": 0.1,
        "weight_reads_by_writes": True, "max_digits": 2, "number_lengths": "by_digits", "unsigned_right": True,
        "number_team": "hidden", "mixed_ops": True, "require_both_ops": False,
    },
}
# Knobs whose test value cannot go with the values above (while_loops off, for_loops on): set alone.
ALONE_VALUES = {"nightly": {"require_while": True}, "snippet": {"max_value": 99}}


def test_every_knob_is_settable_from_yaml():
    spec = from_dict(GeneratorSpec, yaml.safe_load(yaml.safe_dump(NEW_VALUES)))
    defaults = to_dict(GeneratorSpec())
    assert to_dict(spec) == NEW_VALUES | {section: NEW_VALUES[section] | {k: defaults[section][k] for k in knobs}
                                          for section, knobs in ALONE_VALUES.items()}
    for section in ("demo", "nightly", "snippet"):
        fields = {f.name for f in dataclasses.fields(getattr(spec, section))}
        values = NEW_VALUES[section] | ALONE_VALUES.get(section, {})
        assert fields == set(values), f"give every {section} knob a test value"
        assert all(values[k] != defaults[section][k] for k in fields)
    for section, knobs in ALONE_VALUES.items():
        alone = from_dict(GeneratorSpec, yaml.safe_load(yaml.safe_dump({section: knobs})))
        assert {k: getattr(getattr(alone, section), k) for k in knobs} == knobs


def test_knob_changes_reach_the_programs():
    spec = preset("nightly", nightly={"names": list("pqrs"), "operators": ["*"], "operator_weights": [1]})
    programs = generate_programs(spec, 1, 0, 100)
    names = {n.id for p in programs for n in ast.walk(ast.parse(p)) if isinstance(n, ast.Name)}
    assert names <= {"p", "q", "r", "s", "print"}
    assert preset("demo", header="").header == ""
    assert not generate_programs(preset("demo", header=""), 1, 0, 1)[0].startswith("#")
    assert preset("nightly", **{"nightly.max_length": 20}).nightly.max_length == 20


def test_presets_round_trip_through_yaml():
    for name in PRESETS:
        spec = preset(name)
        assert from_dict(GeneratorSpec, yaml.safe_load(yaml.safe_dump(to_dict(spec)))) == spec


def test_unknown_key_fails_naming_it():
    with pytest.raises(ConfigError, match="unknown key 'nightly.max_lenght'"):
        from_dict(GeneratorSpec, {"nightly": {"max_lenght": 3}})
    with pytest.raises(ConfigError, match="unknown key 'nightly.bogus'"):
        preset("nightly", nightly={"bogus": 1})


def test_unknown_preset_lists_the_known_ones():
    with pytest.raises(ConfigError, match=r"unknown generator preset 'gamma' \(known: demo, nightly,"):
        preset("gamma")


@pytest.mark.parametrize("section, key, value, message", [
    ("demo", "while_probability", 1.5, r"'demo.while_probability' must be in \[0.0, 1.0\], got 1.5"),
    ("nightly", "max_depth", 9, r"'nightly.max_depth' must be in \[0, 8\], got 9"),
    ("nightly", "max_length", 3, r"'nightly.max_length' must be in \[5, 200\], got 3"),
    ("nightly", "operators", ["**"], r"'nightly.operators' must be a non-empty list drawn from"),
    ("nightly", "operator_weights", [1, 2], r"one weight >= 0 per operator"),
    ("snippet", "variable_diversity", 0.0, r"'snippet.variable_diversity' must be in \[0.0001, 1.0\]"),
    ("snippet", "number_team", "odd", r"'snippet.number_team' must be one of \['any', 'seen', 'hidden'\]"),
    ("nightly", "min_sub_blocks", 3, r"'nightly.min_sub_blocks' must be in \[0, 2\], got 3"),
    ("nightly", "min_depth", 3, r"'nightly.min_depth' must be in \[0, 2\], got 3"),
    ("nightly", "while_min_iterations", 11, r"'nightly.while_min_iterations' must be in \[1, 10\], got 11"),
    ("nightly", "while_min_step", 21, r"'nightly.while_min_step' must be in \[1, 20\], got 21"),
    ("nightly", "max_code_lines", 300, r"'nightly.max_code_lines' must be in \[1, 200\], got 300"),
    ("snippet", "max_name_length", 11, r"'snippet.max_name_length' must be in \[1, 10\], got 11"),
    ("snippet", "min_name_length", 6, r"'snippet.min_name_length' must be in \[1, 5\], got 6"),
])
def test_out_of_range_knob_names_key_and_range(section, key, value, message):
    with pytest.raises(ConfigError, match=message):
        from_dict(GeneratorSpec, {section: {key: value}})


@pytest.mark.parametrize("data, message", [
    ({"nightly": {"min_code_lines": 9, "max_code_lines": 8}}, r"'nightly.max_code_lines' must be in \[9, 200\]"),
    ({"nightly": {"require_while": True, "while_loops": False}}, r"'nightly.require_while' needs"),
    ({"nightly": {"max_literal": 5, "while_min_step": 6}}, r"'nightly.while_min_step' must be in \[1, 5\]"),
    ({"snippet": {"max_value": 99, "for_loops": True}}, r"'snippet.max_value' needs 'snippet.for_loops' false"),
])
def test_knobs_that_contradict_each_other_fail(data, message):
    with pytest.raises(ConfigError, match=message):
        from_dict(GeneratorSpec, data)


def test_filters_that_nothing_passes_fail_instead_of_looping(monkeypatch):
    import tinylm.lang.generate as generate

    monkeypatch.setattr(generate, "MAX_DRAWS", 30)
    with pytest.raises(ConfigError, match="no program passed the generator's filters in 30 draws"):
        generate_programs(preset("nightly", nightly={"min_code_lines": 100}), 1, 0, 1)


def test_emit_output_appends_the_output_section():
    programs = generate_programs(preset("nightly", nightly={"emit_output": True}), 3, 0, 20)
    plain = generate_programs(preset("nightly"), 3, 0, 20)
    for program, bare in zip(programs, plain):
        code, output = program.split("\n# output\n# ")
        assert code == bare and output
        assert output.split("\n# ")[-1].lstrip("-").isdigit()


@pytest.mark.parametrize("name", ["nightly", "nightly-ood-deeper-nesting", "nightly-cpu"])
def test_line_runner_agrees_with_the_tracer(name):
    """The generator runs programs itself while writing them: it must agree with the tracer."""
    from tinylm.lang.trace import run_program

    verdicts = Counter()
    spec = preset(name, nightly={"run_filter": False})
    cap = spec.nightly.max_value
    for program in generate_programs(spec, 4, 0, 300):
        body = program.split("\n")[1:]
        runner = LineRunner(cap)
        outputs, error = run_program("\n".join(body), cap=cap)
        try:
            for line in body:
                runner.feed(line)
            runner.finish()
        except Doomed:
            verdicts["failed"] += 1
            assert error is not None, program
            continue
        verdicts["ran"] += 1
        assert error is None and outputs == runner.printed, program
    assert min(verdicts.values()) > 30


def test_without_running_programs_may_fail_but_still_print():
    programs = generate_programs(preset("nightly", nightly={"run_filter": False}), 3, 0, 300)
    assert all("print(" in p for p in programs)
    assert 0.15 < sum(map(survives, programs)) / len(programs) < 0.5
