"""Spec -> programs: the TinyPy program generators, seeded and splittable.

`generate_programs(spec, seed, start, count)` returns programs `start .. start+count-1` of the
stream that `(spec, seed)` defines. Programs are made in chunks of `CHUNK` consecutive indices;
chunk `c` draws from its own `random.Random` seeded by a hash of `(seed, c)`, so program `i`
depends only on `(spec, seed, i)` and any split of a range across processes yields the same
programs. The families are here (demo), in tinylm.lang.nightly and in tinylm.lang.snippet. A
program that a family's filters reject is redrawn from the same chunk stream; a spec
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
import random
from collections.abc import Callable

from tinylm.base.errors import ConfigError
from tinylm.lang.nightly import nightly_draw
from tinylm.lang.snippet import snippet_draw
from tinylm.lang.spec import GeneratorSpec

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


_MAKERS: dict[str, Callable[[GeneratorSpec], Maker]] = {
    "demo": _demo_maker,
    "nightly": lambda spec: functools.partial(_first_kept, nightly_draw(spec.nightly)),
    "snippet": lambda spec: functools.partial(_first_kept, snippet_draw(spec.snippet)),
}
