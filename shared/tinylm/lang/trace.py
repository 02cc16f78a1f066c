"""Programs → execution traces, in the three reference trace formats, by our own interpreter.

The reference traced a program by wrapping it in `def func():`, running it under
`sys.settrace` on CPython 3.11 and writing one step per trace event. We interpret the parsed
program instead (program text is never exec'd) and reproduce those events exactly:

- a line event before every statement, with the state before the statement runs;
- `while`: an event at every condition check (so n iterations give n + 1 events);
- `for`: an event before the range is built and after each iteration (n + 1 events);
- `elif` has an event when it is tested, `else:` never has one;
- a final return step `@^$state` after the last statement.

A step is the whole program with the current line marked `@line$state`. The state is
`frame.f_locals` rendered `name?value;...`. In CPython 3.11 that dict lives as long as the frame
and each event merges the bound fast locals into it, so names keep the order in which they were
first seen bound, which (one binding per line) is the order of their first assignment at run time,
not `co_varnames` order. Unbound names are absent.

Formats (`FORMATS`):
- `demo` (2025 demo tracer): any value outside ±10 drops the program;
- `m2` (2025 nightly tracer): no value cap; the `# output` section is stripped before tracing
  and each state is followed by `|` and the output printed so far as `# v` items joined by `&`;
- `2026` (2026 generator-tracer): any value outside ±999 drops the program.
The `# code` header of the 2025 programs is just the program's first line; it is traced as is.
(The m2 script cut the text at `# output` and then dropped one more character, the newline before
it; a program without that section is traced whole here, where the script would have cut its last
character.)

Runtime errors drop a program and come back as a short kind: `zero_division`, `unbound_name`,
`value_out_of_range`, `zero_range_step`, `not_callable` (print/range rebound as variables),
`step_cap` (more line events than the cap, for runaway loops) or `syntax`.

Speed: each line's text before and after its step mark is built once per program, so a step is
one `list.extend` of three strings; the state string is rebuilt only after a binding or a print;
expressions are compiled to closures once per distinct expression (parse shares expression nodes
across programs, and caches each distinct line); the interpreter is one loop over a stack of
blocks, without nested functions or per-program objects beyond the step list.
"""

from __future__ import annotations

import contextlib
import gc
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from tinylm.base.args import ArgumentParser
from tinylm.base.errors import ConfigError, TinyPySyntaxError
from tinylm.base.files import atomic_path
from tinylm.lang.format import EXAMPLE_END, STEP, iter_examples
from tinylm.lang.parse import (
    BINARY_OPS,
    COMPARE_OPS,
    Assign,
    BinOp,
    Const,
    For,
    If,
    Name,
    Neg,
    Print,
    Program,
    While,
    clear_cache,
    parse_program,
)


@dataclass(frozen=True)
class TraceFormat:
    cap: int | None
    """Largest absolute value a variable may hold; None for no cap."""
    output: bool
    """Append `|` and the printed output to each state, and strip the `# output` section."""


FORMATS = {
    "demo": TraceFormat(cap=10, output=False),
    "m2": TraceFormat(cap=None, output=True),
    "2026": TraceFormat(cap=999, output=False),
}
STEP_CAP = 10_000
"""Default limit on trace steps per program; the reference generators stay far below it."""

ERROR_KINDS = ("syntax", "zero_division", "unbound_name", "value_out_of_range", "zero_range_step",
               "not_callable", "step_cap")


class TraceResult(NamedTuple):
    text: str | None
    """The training example: the program, then one `\\n#STEP\\n` step per event; None on error."""
    error: str | None


class RunResult(NamedTuple):
    outputs: list[str]
    """What each executed print wrote (without newline), up to an error if any."""
    error: str | None


# ---------------------------------------------------------------------------------------------
# Expressions → closures of the variable dict. A missing name raises KeyError (unbound).

_COMPILED: dict = {}
_COMPILED_LIMIT = 1 << 18


def _compile(e) -> Callable[[dict], int]:
    t = type(e)
    if t is Const:
        v = e.value
        return lambda env: v
    if t is Name:
        n = e.id
        return lambda env: env[n]
    if t is Neg:
        f = _compiled(e.operand)
        return lambda env: -f(env)
    op = (BINARY_OPS if t is BinOp else COMPARE_OPS)[e.op]
    left, right = e.left, e.right
    # The shapes the generators emit most, without a nested call per operand.
    if type(left) is Name and type(right) is Const:
        n, v = left.id, right.value
        return lambda env: op(env[n], v)
    if type(left) is Const and type(right) is Name:
        v, n = left.value, right.id
        return lambda env: op(v, env[n])
    if type(left) is Name and type(right) is Name:
        a, b = left.id, right.id
        return lambda env: op(env[a], env[b])
    if type(left) is Const and type(right) is Const:
        a, b = left.value, right.value
        return lambda env: op(a, b)  # not folded: 1 // 0 must fail when (and only if) it runs
    f, g = _compiled(left), _compiled(right)
    return lambda env: op(f(env), g(env))


def _compiled(e) -> Callable[[dict], int]:
    """The closure for an expression node, cached by node identity."""
    f = _COMPILED.get(e)
    if f is None:
        if len(_COMPILED) >= _COMPILED_LIMIT:
            _COMPILED.clear()
        f = _COMPILED[e] = _compile(e)
    return f


def reset_caches() -> None:
    """Forget parsed lines and compiled expressions (for benchmarks that want a cold start)."""
    clear_cache()
    _COMPILED.clear()


# ---------------------------------------------------------------------------------------------
# The interpreter


_INF = float("inf")


class _Fault(Exception):
    """A runtime error of the traced program, with its kind."""

    def __init__(self, kind: str):
        self.kind = kind


def _layout(lines: list[str], text: str) -> tuple[list[str], list[str]]:
    """For each line i, the step text before its state and after it; entry len(lines) is the return.

    `text` is the lines joined by newlines. A step for line i is pre[i] + state + post[i], with
    pre[i] = "\\n#STEP\\n" + the lines before i + "@" + lines[i] + "$" and post[i] = the rest of the
    text after lines[i]; the return step is the whole text, then "\\n@^$" + state.
    """
    pre, post = [], []
    start = 0
    for line in lines:
        end = start + len(line)
        pre.append(f"{STEP}{text[:start]}@{line}$")
        post.append(text[end:])
        start = end + 1
    pre.append(f"{STEP}{text}\n@^$")
    post.append("")
    return pre, post


def _range(loop: While | For, env: dict[str, int], shadow_range: bool) -> Iterator[int] | None:
    """The values a For loop takes (None for a While), as `range(*args)` gives them."""
    if type(loop) is While:
        return None
    if shadow_range and "range" not in env:
        raise _Fault("unbound_name")  # `range` bound as a variable is a local
    args = [(_COMPILED.get(a) or _compiled(a))(env) for a in loop.args]
    if shadow_range:
        raise _Fault("not_callable")
    if len(args) == 3 and args[2] == 0:
        raise _Fault("zero_range_step")
    return iter(range(*args))


def _execute(program: Program, fmt: TraceFormat, step_cap: int, layout: tuple[list[str], list[str]],
             parts: list[str], printed: list[str]) -> None:
    """Run a program: append its step texts to `parts` and what it prints to `printed`.

    Raises _Fault, ZeroDivisionError or KeyError (an unbound name).

    One loop over an explicit stack of blocks, with no nested functions: closures would turn
    every local into a cell and cost more per program than a short demo program takes to run.
    (The generators' `_LineRunner` is the other interpreter: it runs programs while they are
    written, to drop failing drafts; the operators' meaning is `parse.BINARY_OPS`/`COMPARE_OPS`.)
    """
    env: dict[str, int] = {}
    shown: dict[str, str] = {}  # name -> "name?value", in env's order
    pre, post = layout
    extend = parts.extend
    compiled = _COMPILED.get
    hi = fmt.cap if fmt.cap is not None else _INF
    lo = -hi
    show_output = fmt.output
    shadow_print = "print" in program.shadowed
    shadow_range = "range" in program.shadowed
    steps = 0
    output = "|" if show_output else ""  # what m2 shows after the state: '|' and '# v' items joined by '&'
    fill = output  # the text after '$': the state, then `output`
    dirty = False  # a binding or a print since `fill` was built
    stmts, k, n = program.body, 0, len(program.body)  # the running block, its next statement
    loop = None  # the While or For whose body `stmts` is; None for the program or a branch
    values = None  # the range iterator of `loop` when it is a For
    frames: list[tuple] = []  # the enclosing blocks, as (stmts, k, loop, values) to resume
    while True:
        if k < n:
            s = stmts[k]
            k += 1
        elif loop is not None:
            s = loop  # a loop's event after each iteration
        elif frames:
            stmts, k, loop, values = frames.pop()
            n = len(stmts)
            continue
        else:
            break
        steps += 1
        if steps > step_cap:
            raise _Fault("step_cap")
        if dirty:
            fill = ";".join(shown.values()) + output
            dirty = False
        i = s.line
        extend((pre[i], fill, post[i]))
        t = type(s)
        if t is Assign:
            value = (compiled(s.value) or _compiled(s.value))(env)
            if value > hi or value < lo:
                raise _Fault("value_out_of_range")
            name = s.target
            env[name] = value
            shown[name] = f"{name}?{value}"
            dirty = True
        elif t is If:
            body = s.body if (compiled(s.test) or _compiled(s.test))(env) else s.orelse
            if body:
                frames.append((stmts, k, loop, values))
                stmts, k, n, loop, values = body, 0, len(body), None, None
        elif t is Print:
            if shadow_print and "print" not in env:
                raise _Fault("unbound_name")  # `print` bound as a variable is a local
            value = (compiled(s.value) or _compiled(s.value))(env)
            if shadow_print:
                raise _Fault("not_callable")
            printed.append(str(value))
            if show_output:
                output += ("# " if len(printed) == 1 else "&# ") + printed[-1]
                dirty = True
        else:  # a loop, entered or at the end of an iteration: run its body again or leave it
            if s is not loop:
                frames.append((stmts, k, loop, values))
                stmts, n, loop, values = s.body, len(s.body), s, _range(s, env, shadow_range)
            if t is While:
                again = (compiled(s.test) or _compiled(s.test))(env)
            else:
                value = next(values, None)
                again = value is not None
                if again:
                    if value > hi or value < lo:
                        raise _Fault("value_out_of_range")
                    name = s.target
                    env[name] = value
                    shown[name] = f"{name}?{value}"
                    dirty = True
            if again:
                k = 0
            else:
                stmts, k, loop, values = frames.pop()
                n = len(stmts)
    steps += 1
    if steps > step_cap:
        raise _Fault("step_cap")
    if dirty:
        fill = ";".join(shown.values()) + output
    extend((pre[-1], fill, post[-1]))  # the return event


def _error_kind(exc: BaseException) -> str:
    if isinstance(exc, _Fault):
        return exc.kind
    if isinstance(exc, ZeroDivisionError):
        return "zero_division"
    return "unbound_name"  # KeyError from a name lookup


@contextlib.contextmanager
def _paused_gc() -> Iterator[None]:
    """Pause Python's cyclic garbage collector (reference counting still frees everything).

    Tracing makes many small objects and no reference cycles, while the parse and closure caches
    keep hundreds of thousands of objects alive: every collection would scan them again, which
    costs about a third of the time on a fresh stream of nightly programs.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _format(fmt: str) -> TraceFormat:
    spec = FORMATS.get(fmt)
    if spec is None:
        raise ConfigError(f"unknown trace format '{fmt}'; expected one of {', '.join(FORMATS)}")
    return spec


def _trace(program: str | Program, spec: TraceFormat, step_cap: int) -> tuple[str | None, str | None]:
    """(trace, None) or (None, error kind): `trace_program` as a plain tuple, cheaper to make."""
    text = None  # the traced text, when it is the input as given
    if type(program) is not Program:
        try:
            text, program = program, parse_program(program)
        except TinyPySyntaxError:
            return None, "syntax"
        if spec.output and program.code_end < len(program.lines):
            text = None
    lines = program.lines[: program.code_end] if spec.output else program.lines
    if text is None:
        text = "\n".join(lines)
    parts = [text]
    try:
        _execute(program, spec, step_cap, _layout(lines, text), parts, [])
    except (_Fault, ZeroDivisionError, KeyError) as exc:
        return None, _error_kind(exc)
    return "".join(parts), None


def trace_program(program: str | Program, fmt: str, *, step_cap: int = STEP_CAP) -> TraceResult:
    """Trace one program in format `fmt` ('demo', 'm2' or '2026')."""
    return TraceResult(*_trace(program, _format(fmt), step_cap))


def run_program(program: str | Program, *, cap: int | None = None, step_cap: int = STEP_CAP) -> RunResult:
    """Run a program without tracing; `cap` bounds values like a trace format's cap (None: no cap)."""
    if type(program) is not Program:
        try:
            program = parse_program(program)
        except TinyPySyntaxError:
            return RunResult([], "syntax")
    printed: list[str] = []
    blank = [""] * (len(program.lines) + 1)  # steps are built and dropped: simpler than a second runner
    try:
        _execute(program, TraceFormat(cap=cap, output=False), step_cap, (blank, blank), [], printed)
    except (_Fault, ZeroDivisionError, KeyError) as exc:
        return RunResult(printed, _error_kind(exc))
    return RunResult(printed, None)


def trace_texts(programs: Iterable[str | Program], fmt: str, *,
                step_cap: int = STEP_CAP) -> tuple[list[str], Counter]:
    """Trace many programs; return the traces of those that ran and a Counter of error kinds."""
    spec = _format(fmt)
    traces: list[str] = []
    errors: Counter = Counter()
    with _paused_gc():
        for program in programs:
            text, error = _trace(program, spec, step_cap)
            if error is None:
                traces.append(text)
            else:
                errors[error] += 1
    return traces, errors


def trace_file(in_path: str | Path, out_path: str | Path, fmt: str, *,
               step_cap: int = STEP_CAP) -> Counter:
    """Trace every program of `in_path` into `out_path` (atomically); counts 'programs', 'traced'
    and each error kind."""
    counts: Counter = Counter()
    with atomic_path(out_path) as tmp, open(tmp, "w", encoding="utf-8") as out, _paused_gc():
        for program in iter_examples(in_path):
            text, error = trace_program(program, fmt, step_cap=step_cap)
            counts["programs"] += 1
            if error is None:
                counts["traced"] += 1
                out.write(text + EXAMPLE_END)
            else:
                counts[error] += 1
    return counts


def cli(argv: list[str]) -> int:
    parser = ArgumentParser(prog="tinylm trace", description="Trace TinyPy programs into execution traces.")
    parser.add_argument("--format", required=True, choices=list(FORMATS), help="trace format")
    parser.add_argument("--step-cap", type=int, default=STEP_CAP, help="drop programs with more steps than this")
    parser.add_argument("programs", help="input: programs separated by blank lines")
    parser.add_argument("traces", help="output: traces separated by blank lines")
    args = parser.parse_args(argv)
    counts = trace_file(args.programs, args.traces, args.format, step_cap=args.step_cap)
    print(f"traced {counts['traced']:,} of {counts['programs']:,} programs -> {args.traces}")
    for kind in ERROR_KINDS:
        if counts[kind]:
            print(f"  dropped ({kind}): {counts[kind]:,}")
    return 0
