"""The nightly family (the 2025 grammar, reference `tinypy_generator_nightly_arccp.py`): a program
grown statement by statement inside a stack of open blocks, run while it is written, so that a
draft that fails when run (or fails the spec's filters) is dropped for another (tinylm.lang.generate)."""

from __future__ import annotations

import math
import random
import re
from bisect import bisect
from collections.abc import Callable
from itertools import accumulate

from tinylm.lang.parse import BINARY_OPS, COMPARE_OPS
from tinylm.lang.spec import NightlySpec

ROOT, INIT, DIRECT, SIMPLE, IF, ELIF, ELSE, WHILE, UPDATE, DISPLAY, UNINDENT, END = range(12)
_FLAT = (INIT, DIRECT, SIMPLE, DISPLAY)
_LOOP_COMPARISONS = ("<", ">", "<=", ">=")
_NUMBER = re.compile(r"\d+")


class _Block:
    """An open block: what it may read and write, and what it holds so far."""

    __slots__ = ("kind", "readable", "writable", "update", "blocks", "after_if", "lines")

    def __init__(self, kind: int, readable: list[str], writable: list[str], update=None):
        self.kind = kind            # ROOT, IF or WHILE
        self.readable = readable    # names assigned in this block or an enclosing one
        self.writable = writable    # names this block may assign
        self.update = update        # (control, rhs) of a while loop's pending update, or None
        self.blocks = 0             # blocks opened directly inside
        self.after_if = False       # the previous statement closed an if/elif (elif/else may follow)
        self.lines = 0              # lines written inside, nested blocks included


class Doomed(Exception):
    """The program fails when run: an unbound name, a division by zero, a value beyond the cap."""


STEP_LIMIT = 10_000
"""Lines a program may run (loop bodies count once per iteration) before it counts as runaway."""


class LineRunner:
    """Runs a nightly (or if-only snippet) program while it is written, one line at a time, as the
    reference ran it.

    `feed(line)` runs each line once its block is known to run. A live `while` loop is held
    until its body is complete (the next line at its depth, or `finish()`), then run. Any failure
    raises `Doomed` at once: a program that fails early fails whatever follows, so the writer can
    drop it without writing the rest, and the programs kept are exactly those that run.
    `printed` is the output so far.

    It is not the tracer's interpreter (`tinylm.lang.trace`), which runs a whole parsed program
    and writes its steps: this one runs a program before it is finished, and where a draft stops
    decides how much of the chunk's random stream it used, so it is part of which programs a seed
    gives. Both take the operators' meaning from `tinylm.lang.parse`.
    """

    def __init__(self, cap: int):
        self.cap = cap
        self.values: dict[str, int] = {}
        self.printed: list[str] = []
        self.live = [True]      # per open block: does it run
        self.taken = [False]    # per open block: has a branch of its current if-chain run
        self.loop: tuple[int, str, list[str]] | None = None   # depth, condition, body of a held loop
        self.steps = 0

    def value(self, term: str) -> int:
        if term[0].isalpha():
            if term not in self.values:
                raise Doomed
            return self.values[term]
        return int(term)

    def feed(self, line: str) -> None:
        text = line.lstrip("\t")
        depth = len(line) - len(text)
        if self.loop is not None:
            if depth > self.loop[0]:
                self.loop[2].append(line)
                return
            self.run_loop()
        del self.live[depth + 1:], self.taken[depth + 1:]
        if text.endswith(":"):
            self.open(text[:-1], depth)
        elif self.live[depth] and text.startswith("print("):
            self.printed.append(str(self.value(text[6:-1])))
        elif self.live[depth]:
            self.assign(*text.split(" = "))

    def finish(self) -> None:
        if self.loop is not None:
            self.run_loop()

    def open(self, header: str, depth: int) -> None:
        keyword, _, condition = header.partition(" ")
        runs = self.live[depth]
        if runs and keyword == "while":
            self.loop = (depth, condition, [])
        elif runs and keyword == "if":
            runs = self.taken[depth] = self.test(condition)
        elif runs and keyword == "elif":
            runs = not self.taken[depth] and self.test(condition)   # not tested after a taken branch
            self.taken[depth] |= runs
        elif runs and keyword == "else":
            runs = not self.taken[depth]
        self.live.append(runs)
        self.taken.append(False)

    def run_loop(self) -> None:
        depth, condition, body = self.loop
        self.loop = None
        while self.test(condition):
            del self.live[depth + 1:], self.taken[depth + 1:]
            self.live.append(True)
            self.taken.append(False)
            for line in body:
                self.feed(line)
            self.finish()   # a loop nested last in the body
            self.steps += len(body) + 1
            if self.steps > STEP_LIMIT:
                raise Doomed

    def test(self, condition: str) -> bool:
        left, comparison, right = condition.split(" ")
        return COMPARE_OPS[comparison](self.value(left), self.value(right))

    def assign(self, name: str, expression: str) -> None:
        terms = expression.split(" ")
        value = self.value(terms[0])
        if len(terms) == 3:
            try:
                value = BINARY_OPS[terms[1]](value, self.value(terms[2]))
            except ZeroDivisionError:
                raise Doomed from None
        if abs(value) > self.cap:
            raise Doomed
        self.values[name] = value


class _Nightly:
    """Writes one nightly program, running it as it goes; `run()` returns its text.

    With `run_filter`, `run()` raises `Doomed` as soon as the program is sure to fail.
    """

    def __init__(self, knobs: NightlySpec, rng: random.Random):
        self.k = knobs
        self.rng = rng
        self.r = rng.random
        self.names = knobs.names
        self.literal_count = knobs.max_literal + 1
        self.lines: list[str] = []
        self.assigned: list[str] = []   # every name assigned so far, in any block
        self.stack = [_Block(ROOT, [], list(knobs.names))]
        self.weights = list(accumulate(knobs.operator_weights))
        self.runner = LineRunner(knobs.max_value)
        self.failed = False     # the program fails when run (kept only without run_filter)
        self.deepest = 0        # deepest indentation level reached
        self.peak_blocks = 0    # most blocks opened directly inside one block
        self.has_while = False

    # -- choices ---------------------------------------------------------------------------

    def literal(self) -> str:
        return str(int(self.r() * self.literal_count))

    def readable(self) -> list[str]:
        return self.stack[-1].readable if self.k.read_security else self.assigned

    def writable(self, allowed: list[str] | None = None) -> list[str]:
        """`allowed` (default: the block's writable names), or any name without write security."""
        return (allowed or self.stack[-1].writable) if self.k.write_security else self.names

    def operand(self) -> str:
        readable = self.readable()
        if readable and self.r() < 0.5:
            return readable[int(self.r() * len(readable))]
        return self.literal()

    def pick(self, items):
        return items[int(self.r() * len(items))]

    def note(self, name: str, everywhere: bool = True) -> None:
        if name not in self.stack[-1].readable:
            self.stack[-1].readable.append(name)
        if everywhere and name not in self.assigned:
            self.assigned.append(name)

    def emit(self, text: str) -> None:
        self.lines.append("\t" * (len(self.stack) - 1) + text)
        self.run_line(self.lines[-1])

    def run_line(self, line: str | None) -> None:
        """Run a line just written (None: the program's end) unless the program already failed."""
        if self.failed:
            return
        try:
            if line is None:
                self.runner.finish()
            else:
                self.runner.feed(line)
        except Doomed:
            if self.k.run_filter:
                raise
            self.failed = True

    def push(self, kind: int, writable: list[str], update=None) -> None:
        top = self.stack[-1]
        self.stack.append(_Block(kind, list(top.readable), writable, update))
        self.deepest = max(self.deepest, len(self.stack) - 1)

    def count_block(self, top: _Block) -> None:
        top.blocks += 1
        self.peak_blocks = max(self.peak_blocks, top.blocks)

    # -- planning: which statement comes next ----------------------------------------------

    def plan(self) -> list[int]:
        k, top, depth, line = self.k, self.stack[-1], len(self.stack) - 1, len(self.lines) + 1
        if line <= self.initializations:
            return [INIT]
        if line > k.max_length:
            if depth == 0:
                return [END]
            if top.update:
                return [UPDATE, UNINDENT]
            return [UNINDENT] if top.lines else [self.pick(_FLAT)]
        if depth and self.r() > self.stay ** top.lines:
            return [UPDATE, UNINDENT] if top.update else [UNINDENT]
        options = [INIT, DIRECT, SIMPLE]
        if depth < k.max_depth and top.blocks < k.max_sub_blocks and (top.kind != IF or k.nest_in_if):
            options.append(IF)
            if top.after_if:
                options += [ELIF, ELSE]
            # A loop takes up to three names (control, step, bound) and leaves one for its body.
            if k.while_loops and top.kind != WHILE and len(top.writable) >= 4:
                options.append(WHILE)
        if top.update:
            options.append(UPDATE)
        if depth == 0 and line > k.min_length:
            options.append(END)
        action = self.pick(options)
        return [DISPLAY, END] if action == END else [action]

    # -- statements --------------------------------------------------------------------------

    def initialization(self) -> None:
        name = self.pick(self.stack[-1].writable)
        sign = "-" if self.r() < self.k.negative_init_probability else ""
        self.emit(f"{name} = {sign}{self.literal()}")
        # As in the reference, a literal initialization makes a name readable only in its block.
        self.note(name, everywhere=False)

    def direct_assignment(self) -> None:
        readable = self.readable()
        value = self.pick(readable) if readable else self.literal()
        name = self.pick(self.writable())
        self.note(name)
        self.emit(f"{name} = {value}")

    def expression(self) -> str:
        left, right = self.operand(), self.operand()
        op = self.k.operators[bisect(self.weights, self.r() * self.weights[-1])]
        return f"{left} {op} {right}"

    def simple_assignment(self) -> None:
        value = self.expression()
        name = self.pick(self.writable())
        self.note(name)
        self.emit(f"{name} = {value}")

    def condition(self) -> str:
        left, right = self.operand(), self.operand()
        return f"{left} {self.pick(self.k.comparisons)} {right}"

    def open_if(self, action: int) -> None:
        top = self.stack[-1]
        if action == IF:
            self.emit(f"if {self.condition()}:")
            self.count_block(top)
            top.after_if = True
        elif action == ELIF:
            self.emit(f"elif {self.condition()}:")
        else:
            self.emit("else:")
            top.after_if = False
        top.lines += 1
        self.push(IF, list(top.writable))

    def intermediate(self, writable: list[str]) -> None:
        """A filler assignment inside a loop prologue or update: `x = a` or `x = a op b`."""
        value = self.operand()
        if self.r() < 0.5:
            value += f" {self.pick(self.k.operators)} {self.operand()}"
        name = self.pick(self.writable(writable))
        self.note(name)
        self.emit(f"{name} = {value}")

    def display(self) -> None:
        readable = self.readable()
        value = self.pick(readable) if readable and self.r() < 0.95 else self.literal()
        self.emit(f"print({value})")

    def unindent(self) -> None:
        child = self.stack.pop()
        self.stack[-1].lines += child.lines

    def execute(self, action: int) -> None:
        top, before = self.stack[-1], len(self.lines)
        if action in (IF, ELIF, ELSE):
            self.open_if(action)
            return
        if action == UNINDENT:
            self.unindent()
            return
        if action == WHILE:
            self.open_while()
        elif action == UPDATE:
            self.while_update()
        else:
            (self.initialization, self.direct_assignment, self.simple_assignment,
             self.display)[_FLAT.index(action)]()
        top.lines += len(self.lines) - before
        top.after_if = False

    # -- while loops: a prologue that sets control, step and bound, then the loop -----------

    def loop_numbers(self, update: str) -> tuple[int, int, int]:
        """Start value, step and bound so that the loop runs about a chosen number of times."""
        k, rng = self.k, self.rng
        cap, fewest, iterations = k.max_literal, k.while_min_iterations, k.while_max_iterations
        max_step = min(k.while_max_step, cap)
        if update in "+-":
            start = rng.randint(0, cap)
            # Step 1 four times as likely as each other step, as in the reference.
            steps = range(k.while_min_step, max_step + 1)
            step = rng.choices(steps, [4 if s == 1 else 1 for s in steps])[0]
            n = rng.randint(fewest, iterations)
            if update == "+":
                return start, step, rng.randint(start + (n - 1) * step, start + n * step)
            return start, step, rng.randint(start - n * step, start - (n - 1) * step)
        start = rng.randint(1, cap)
        steps = range(max(k.while_min_step, 2), max(max_step, 2) + 1)
        step = rng.choices(steps, [4 if s == 10 else 1 for s in steps])[0]
        if update == "//":
            # Fewer iterations are likelier when the start is small against the step.
            rate, counts = 0.1 * step / start, range(fewest, iterations + 1)
        else:
            rate, counts = 0.01 * start * step, range(max(1, fewest // 2), max(1, iterations // 2) + 1)
        n = rng.choices(counts, [math.exp(-rate * (i - 1)) for i in counts])[0]
        if update == "//":
            return start, step, rng.randint(start // step**n, start // step ** (n - 1))
        return start, step, rng.randint(start * step ** (n - 1), start * step**n)

    def open_while(self) -> None:
        top, pick, r = self.stack[-1], self.pick, self.r
        update = pick(self.k.while_updates)
        comparison = pick(_LOOP_COMPARISONS)
        control = pick(top.writable)
        start, step, bound = self.loop_numbers(update)
        if update == "//" and bound == 0:
            comparison = comparison[0]  # a strict bound of 0, or the loop would never end
        prologue, critical = [(control, str(start))], [control]
        terms = []
        for value in (step, bound):
            if r() < 0.5:
                name = pick([v for v in top.writable if v not in critical])
                critical.append(name)
                prologue.append((name, str(value)))
                terms.append(name)
            else:
                terms.append(str(value))
        step_term, bound_term = terms
        self.rng.shuffle(prologue)
        fillers = self.rng.randint(0, 2)
        writable = list(top.writable)
        for i, (name, value) in enumerate(prologue):
            self.emit(f"{name} = {value}")
            writable.remove(name)
            self.note(name)
            n = fillers if i == len(prologue) - 1 else self.rng.randint(0, fillers)
            fillers -= n
            for _ in range(n):
                self.intermediate(writable)
        increasing = update in "+*"
        if (comparison[0] == "<") == increasing:
            self.emit(f"while {control} {comparison} {bound_term}:")
        else:
            self.emit(f"while {bound_term} {comparison} {control}:")
        self.count_block(top)
        self.has_while = True
        self.push(WHILE, writable, (control, f"{control} {update} {step_term}"))

    def while_update(self) -> None:
        top = self.stack[-1]
        control, rhs = top.update
        top.update = None
        if self.r() < 0.5:
            self.emit(f"{control} = {rhs}")
            return
        # Through a temporary, with fillers between; the control is free until reassigned.
        temporary = self.pick(top.writable)
        self.emit(f"{temporary} = {rhs}")
        writable = [v for v in top.writable if v != temporary] + [control]
        for _ in range(self.rng.randint(1, 2)):
            self.intermediate(writable)
        self.emit(f"{control} = {temporary}")

    # -- the program -------------------------------------------------------------------------

    def passes_filters(self) -> bool:
        """Whether the finished program passes the length, depth, sub-block and while filters."""
        k, lines = self.k, len(self.lines)
        return (k.min_code_lines <= lines and (not k.max_code_lines or lines <= k.max_code_lines)
                and self.deepest >= k.min_depth and self.peak_blocks >= k.min_sub_blocks
                and (self.has_while or not k.require_while)
                and not (k.cap_literals and any(abs(int(n)) > k.max_value
                                                for line in self.lines for n in _NUMBER.findall(line))))

    def run(self) -> str:
        k = self.k
        self.initializations = self.rng.randint(0, k.max_initializations)
        self.stay = 1 / (1 + k.unindent_speed)
        while True:
            for action in self.plan():
                if action == END:
                    self.run_line(None)
                    if k.final_print and not self.runner.printed:
                        self.display()
                    return "\n".join(self.lines)
                self.execute(action)


def nightly_draw(knobs: NightlySpec) -> Callable[[random.Random], str | None]:
    """One draft per call: a program, or None when it fails when run or fails the filters."""

    def draw(rng: random.Random) -> str | None:
        writer = _Nightly(knobs, rng)
        try:
            program = writer.run()
        except Doomed:
            return None   # as the reference: drop a program that fails when run, draw another
        if not writer.passes_filters():
            return None
        if knobs.emit_output:
            program += "\n# output\n# " + "\n# ".join(writer.runner.printed)
        return program

    return draw
