"""Spec -> programs: the TinyPy program generators, seeded and splittable.

`generate_programs(spec, seed, start, count)` returns programs `start .. start+count-1` of the
stream that `(spec, seed)` defines. Programs are made in chunks of `CHUNK` consecutive indices;
chunk `c` draws from its own `random.Random` seeded by a hash of `(seed, c)`, so program `i`
depends only on `(spec, seed, i)` and any split of a range across processes yields the same
programs. A program that a family's filters reject is redrawn from the same chunk stream; a spec
whose filters reject `MAX_DRAWS` drafts in a row is an error rather than an endless loop.

Programs carry no trailing newline. Some programs fail at run time (a name read before any
assignment, a division by zero, a value beyond the cap). The reference generators executed each
program and kept the ones that ran. The nightly family runs each program while writing it and,
with `run_filter` (the default), draws another on failure; this is needed because the `m2` trace
format has no value cap. The snippet family does the same when its `max_value` is set (grammar
B keeps values within 99 either way, which no trace format checks); otherwise the trace stage
drops failing programs (the `demo` and `2026` formats cap values).

`program_key(text)` is the 16-byte digest used to deduplicate programs within and across datasets.
"""

from __future__ import annotations

import functools
import hashlib
import keyword
import math
import random
import re
from bisect import bisect
from collections.abc import Callable
from itertools import accumulate

from tinylm.base.errors import ConfigError
from tinylm.lang.parse import BINARY_OPS, COMPARE_OPS
from tinylm.lang.spec import GeneratorSpec, NightlySpec, SnippetSpec

CHUNK = 256
"""Programs per seeded chunk; part of the determinism contract (changing it changes every dataset)."""

Maker = Callable[[random.Random], str]

MAX_DRAWS = 100_000
"""Drafts in a row that a family's filters may reject before the spec counts as unsatisfiable."""


def program_key(text: str) -> bytes:
    """Stable 16-byte digest of a program's text, for deduplication."""
    return hashlib.blake2b(text.encode(), digest_size=16).digest()


def _chunk_rng(seed: int, chunk: int) -> random.Random:
    digest = hashlib.blake2b(f"tinypy:{seed}:{chunk}".encode(), digest_size=16).digest()
    return random.Random(int.from_bytes(digest, "little"))


def generate_programs(spec: GeneratorSpec, seed: int, start: int, count: int) -> list[str]:
    """Programs start..start+count-1 of the stream of (spec, seed); see the module docstring."""
    if start < 0 or count < 0:
        raise ConfigError(f"program range must be non-negative, got start={start}, count={count}")
    if count == 0:
        return []
    make = _MAKERS[spec.family](spec)
    prefix = spec.header + "\n" if spec.header else ""
    programs: list[str] = []
    end = start + count
    for chunk in range(start // CHUNK, (end - 1) // CHUNK + 1):
        base = chunk * CHUNK
        rng = _chunk_rng(seed, chunk)
        made = [make(rng) for _ in range(min(end, base + CHUNK) - base)]
        programs += made[max(start, base) - base:]
    return [prefix + p for p in programs] if prefix else programs


def _first_kept(draw: Callable[[random.Random], str | None], rng: random.Random) -> str:
    """The first draft that `draw` keeps (None: rejected), drawing from the same stream."""
    for _ in range(MAX_DRAWS):
        program = draw(rng)
        if program is not None:
            return program
    raise ConfigError(f"no program passed the generator's filters in {MAX_DRAWS:,} draws in a row; "
                      "loosen them")


# ---------------------------------------------------------------------------------------------
# demo: `if d < d:` + two statements (a counting while loop, maybe) + one assignment


def _demo_maker(spec: GeneratorSpec) -> Maker:
    knobs = spec.demo
    digits = [str(d) for d in range(knobs.max_digit + 1)]
    # Every line the family can write, built once: a program is then four picks.
    heads = [f"if {a} < {b}:\n" for a in digits for b in digits]
    assigns = [f"{v} = {d}" for v in knobs.names for d in digits]
    inner = [f"\t{line}\n" for line in assigns]
    loops = [f"\t{v} = 0\n\twhile {v} < {d}:\n\t\t{v} = {v} + 1\n" for v in knobs.names for d in digits]
    n_heads, n_lines, p_while = len(heads), len(assigns), knobs.while_probability

    def make(rng: random.Random) -> str:
        r = rng.random
        head = heads[int(r() * n_heads)]
        first = loops[int(r() * n_lines)] if r() < p_while else inner[int(r() * n_lines)]
        return head + first + inner[int(r() * n_lines)] + assigns[int(r() * n_lines)]

    return make


# ---------------------------------------------------------------------------------------------
# nightly: the 2025 grammar, grown statement by statement inside a stack of open blocks

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


class _Doomed(Exception):
    """The program fails when run: an unbound name, a division by zero, a value beyond the cap."""


STEP_LIMIT = 10_000
"""Lines a program may run (loop bodies count once per iteration) before it counts as runaway."""


class _LineRunner:
    """Runs a nightly (or if-only snippet) program while it is written, one line at a time, as the
    reference ran it.

    `feed(line)` runs each line once its block is known to run. A live `while` loop is held
    until its body is complete (the next line at its depth, or `finish()`), then run. Any failure
    raises `_Doomed` at once: a program that fails early fails whatever follows, so the writer can
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
                raise _Doomed
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
                raise _Doomed

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
                raise _Doomed from None
        if abs(value) > self.cap:
            raise _Doomed
        self.values[name] = value


class _Nightly:
    """Writes one nightly program, running it as it goes; `run()` returns its text.

    With `run_filter`, `run()` raises `_Doomed` as soon as the program is sure to fail.
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
        self.runner = _LineRunner(knobs.max_value)
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
        except _Doomed:
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


def _nightly_maker(spec: GeneratorSpec) -> Maker:
    knobs = spec.nightly

    def draw(rng: random.Random) -> str | None:
        writer = _Nightly(knobs, rng)
        try:
            program = writer.run()
        except _Doomed:
            return None   # as the reference: drop a program that fails when run, draw another
        if not writer.passes_filters():
            return None
        if knobs.emit_output:
            program += "\n# output\n# " + "\n# ".join(writer.runner.printed)
        return program

    return functools.partial(_first_kept, draw)


# ---------------------------------------------------------------------------------------------
# snippet (2026 alpha/beta): names from a fixed part of each length's name space

_LCG_START = 123456789
HIDDEN_FROM = 0.1
"""Hidden names come from past this fraction of each name space's cycle (beyond every seen part)."""


# Full period over 26^L for every L (Hull-Dobell): a - 1 divisible by 2, 13 and 4; increment 1.
_LCG_A = math.lcm(2, 13, 4) + 1


def _lcg_name(length: int, position: int) -> str:
    """The name at `position` of the full-period cycle over all names of `length` letters."""
    # Jump ahead: x_n = a^n x_0 + (a^n - 1) / (a - 1), computed mod m (a - 1) to divide exactly.
    m, a = 26**length, _LCG_A
    p = pow(a, position, m * (a - 1))
    x = (p * (_LCG_START % m) + (p - 1) // (a - 1)) % m
    letters = []
    for _ in range(length):
        x, digit = divmod(x, 26)
        letters.append(chr(97 + digit))
    return "".join(reversed(letters))


@functools.lru_cache(maxsize=1 << 16)
def _team(value: int) -> str:
    """Which half of the numbers `value` falls in: 'seen' or 'hidden' (a fixed hash split)."""
    h = hashlib.blake2b(value.to_bytes(8, "little", signed=True), digest_size=1).digest()[0]
    return "hidden" if h & 1 else "seen"


class _Snippet:
    """Writes one alpha/beta program; `run()` returns its text, or None if a filter rejects it."""

    def __init__(self, knobs: SnippetSpec, rng: random.Random):
        self.k, self.rng, self.r = knobs, rng, rng.random
        self.lines: list[str] = []
        self.assigned: list[str] = []
        self.loop_names: list[str] = []
        self.blocks_at = [0] * (knobs.max_depth + 1)
        self.ops_used: set[str] = set()
        self.op = ("+", "-")[int(self.r() * 2)]   # the program's one operator unless mixed_ops

    # Draws below use int(random() * n): uniform enough here and several times faster than randrange.

    def name(self) -> str:
        k, r = self.k, self.r
        shortest = max(k.min_name_length, 2 if k.hidden_variables else 1)
        while True:
            length = shortest + int(r() * (k.max_name_length - shortest + 1))
            if length == 1:
                return chr(97 + int(r() * 26))
            m = 26**length
            if k.hidden_variables:
                first = int(m * HIDDEN_FROM) + 2
                position = first + int(r() * (m - first))
            else:
                position = int(r() * max(1, int(m * k.variable_diversity)))
            name = _lcg_name(length, position)
            if not keyword.iskeyword(name):
                return name

    def number(self, unsigned: bool = False) -> str:
        k, r = self.k, self.r
        sign = -1 if r() < 0.5 and not unsigned else 1
        digits = 1 + int(r() * k.max_digits)
        # uniform: 0 .. 10^max_digits - 1; by_digits (as the reference): 10^(d-1) - 1 .. 10^d - 2;
        # symmetric: 1 - 10^max_digits .. 10^max_digits - 1, the sign then changing nothing.
        top = 10**k.max_digits
        if k.number_lengths == "by_digits":
            low, high = 10 ** (digits - 1) - 1, 10**digits - 1
        elif k.number_lengths == "symmetric" and not unsigned:
            low, high = 1 - top, top
        else:
            low, high = 0, top
        while True:
            value = sign * (low + int(r() * (high - low)))
            if k.number_team == "any" or _team(value) == k.number_team:
                return str(value)

    def operand(self, unsigned: bool = False) -> str:
        if self.assigned and self.r() < 0.5:
            return self.assigned[int(self.r() * len(self.assigned))]
        return self.number(unsigned)

    def operands(self, unsigned_right: bool = False) -> tuple[str, str]:
        if self.assigned:
            return self.operand(), self.operand(unsigned_right)
        return self.number(), self.number(unsigned_right)

    def assignment(self, depth: int) -> None:
        k, r = self.k, self.r
        if self.assigned and r() < k.name_reuse_probability:
            target = self.assigned[int(r() * len(self.assigned))]
        else:
            target = self.name()
            while target in self.loop_names:
                target = self.name()
        u = r()
        if u < 0.15 or (u < 0.3 and not self.assigned):
            value = self.number()
        elif u < 0.3:
            value = self.assigned[int(r() * len(self.assigned))]
        else:
            left, right = self.operands(k.unsigned_right)
            op = ("+", "-")[int(r() * 2)] if k.mixed_ops else self.op
            self.ops_used.add(op)
            value = f"{left} {op} {right}"
        self.lines.append("\t" * depth + f"{target} = {value}")
        if k.weight_reads_by_writes or target not in self.assigned:
            self.assigned.append(target)   # once per assignment when reads follow writes

    def open_block(self, kind: str, depth: int) -> None:
        if kind == "if":
            self.blocks_at[depth] += 1   # the reference's "blocks per level" counts if blocks only
            left, right = self.operands()
            self.lines.append("\t" * depth + f"if {left} {('<', '>')[int(self.r() * 2)]} {right}:")
            return
        name = self.name()
        while name in self.assigned or name in self.loop_names:
            name = self.name()
        self.loop_names.append(name)
        self.lines.append("\t" * depth + f"for {name} in range({self.rng.randint(1, self.k.for_max_range)}):")

    def next_actions(self, depth: int, block_lines: int) -> list[str]:
        """The reference's skeleton rule: what may come next at this depth and length."""
        k, count = self.k, len(self.lines)
        opens = ["if", "for"] if k.for_loops else ["if"]
        if count >= k.max_lines:
            return ["assign", "end"] if depth and not block_lines else ["end"]
        ending = count >= k.min_lines
        if depth == 0:
            options = ["assign", *opens] + (["end"] if ending else [])
        elif depth < k.max_depth:
            options = ["assign", *opens] + (["unindent"] if block_lines else []) + (["end"] if ending else [])
        else:
            options = ["assign"] + (["unindent"] if block_lines else []) + (["end"] if ending else [])
        choice = options[int(self.r() * len(options))]
        if choice == "end" and not block_lines and depth:
            return ["assign", "end"]   # never leave a block empty
        return [choice]

    def run(self) -> str | None:
        block_lines = [0]   # lines written directly in each open block
        deepest = 0
        while True:
            depth = len(block_lines) - 1
            deepest = max(deepest, depth)
            for action in self.next_actions(depth, block_lines[-1]):
                if action == "end":
                    return self.accept(deepest)
                if action == "unindent":
                    block_lines.pop()
                    continue
                block_lines[-1] += 1
                if action == "assign":
                    self.assignment(depth)
                else:
                    self.open_block(action, depth)
                    block_lines.append(0)

    def accept(self, deepest: int) -> str | None:
        k, peak = self.k, max(self.blocks_at)
        if len(self.lines) > k.max_lines or deepest < k.min_depth:
            return None
        if not k.min_blocks_peak <= peak <= k.max_blocks_per_level:
            return None
        if k.mixed_ops and k.require_both_ops and (len(self.ops_used) < 2 or len(_executed_ops(self.lines)) < 2):
            return None
        if k.max_value and not _runs(self.lines, k.max_value):
            return None
        return "\n".join(self.lines)


def _executed_ops(lines: list[str]) -> set[str]:
    """The operators of the assignments a snippet executes (its trace's marked lines): a line in an
    `if` that is never taken writes an operator but never runs it."""
    from tinylm.lang.format import STEP
    from tinylm.lang.trace import trace_program

    result = trace_program("\n".join(lines), "2026")
    if result.text is None:
        return set()
    ops = set()
    for step in result.text.split(STEP)[1:]:
        line = step[step.index("@") + 1:].split("$")[0] if "@" in step else ""
        parts = line.split(" = ", 1)[-1].split(" ")
        if " = " in line and len(parts) == 3:
            ops.add(parts[1])
    return ops


def _runs(lines: list[str], cap: int) -> bool:
    """Whether an if-only program runs without an unbound name or a value beyond +-cap."""
    runner = _LineRunner(cap)
    try:
        for line in lines:
            runner.feed(line)
        runner.finish()
    except _Doomed:
        return False
    return True


def _snippet_maker(spec: GeneratorSpec) -> Maker:
    knobs = spec.snippet
    return functools.partial(_first_kept, lambda rng: _Snippet(knobs, rng).run())


_MAKERS: dict[str, Callable[[GeneratorSpec], Maker]] = {
    "demo": _demo_maker,
    "nightly": _nightly_maker,
    "snippet": _snippet_maker,
}
