"""The snippet family (the 2026 alpha and beta grammars): names from a fixed part of each length's
name space, numbers from one hash half, if blocks (and for loops in beta); drafts that fail the
spec's filters are dropped for another (tinylm.lang.generate)."""

from __future__ import annotations

import functools
import hashlib
import keyword
import math
import random
from collections.abc import Callable

from tinylm.lang.nightly import Doomed, LineRunner
from tinylm.lang.spec import SnippetSpec

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
    runner = LineRunner(cap)
    try:
        for line in lines:
            runner.feed(line)
        runner.finish()
    except Doomed:
        return False
    return True


def snippet_draw(knobs: SnippetSpec) -> Callable[[random.Random], str | None]:
    """One draft per call: a program, or None when it fails the filters."""
    return lambda rng: _Snippet(knobs, rng).run()
