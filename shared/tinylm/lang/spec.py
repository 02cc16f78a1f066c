"""Generator specs: every knob of the TinyPy program generators, and the named presets.

A `GeneratorSpec` picks a `family` and carries one knob section per family; only the section of
the chosen family is read by `tinylm.lang.generate`. The families reproduce the reference
generators:

- `demo`: the 2024 demo generator. One `if d < d:` block holding two assignments (the first
  replaced, with probability `while_probability`, by a counting `while` loop), then one
  assignment. Three names, digits 0-9.
- `nightly`: the 2025 full grammar. Single-letter names, literals up to `max_literal`,
  `+ - * // %` assignments, if/elif/else with six comparisons, `while` loops built to run a
  target number of iterations, at most `max_depth` levels and `max_sub_blocks` blocks per block,
  and a final `print`. Filters redraw programs outside `min_code_lines..max_code_lines`, never
  reaching `min_depth`, with no block holding `min_sub_blocks` blocks, or (`require_while`)
  without a loop; the `while_min_*` knobs are minimums of how loops are built.
- `snippet`: the 2026 alpha (if only) and beta (`for ... in range(k)` too) generators. Names of
  1-5 letters drawn from a fixed fraction of each length's name space, numbers in +-999, one
  `+` or `-` per program. The same skeleton with one-letter names, numbers in +-99 and an
  operator per line is the 2025 grammar B.

`preset(name, **overrides)` returns a validated spec; presets are small deltas on a base, listed
in `PRESETS`. Overrides are nested mappings or dotted keys: `preset("nightly", nightly={"max_length":
20})` and `preset("nightly", **{"nightly.max_length": 20})` are the same.

The presets, by reference dataset:

- `demo`, `nightly` (dataset-35), `alpha`, `beta` (2026 release) and the 2026 `-rq1` bases.
- `nightly-stage1..4` (dataset-32, the curriculum): literals up to 10, 100, 999, with the
  two-operand assignments' operators weighted `+ - * // %` = 3/3/5/7/14 in stages 1-3 (loop
  prologues and updates keep uniform operators, as there); while loops at every stage; values
  within +-999 throughout; stage 4 is `nightly`.
- `nightly-ood-*` (dataset-34 and dataset-41, the 2025 OOD suites): longer-snippets 27-30 lines;
  more-while-iterations 11-15 iterations; wider-while-steps steps 21-40; more-sub-blocks 3-4
  blocks directly in some block; deeper-nesting 3 levels with blocks inside if bodies (ours;
  dataset-41 has no such suite). The two loop suites have a loop in every program and only
  `+`/`-` updates: the reference's wider-steps suite has just these, its more-iterations suite
  also `*` loops from 1-3 doubling 6-8 times, which these knobs do not express.
- `nightly-cpu`: sized for a CPU. The nightly grammar and m2 vocabulary with names a-f,
  literals 0-9, values within +-99, 4-8 lines, loops of 1-3 iterations and steps 1-3, and
  blocks that close sooner (`unindent_speed` 0.5): traces of ~350 m2 tokens, steps under ~80.
  Its `-ood-*` suites each move one range past the ID one: 9-12 lines, 6-8 iterations (runs of
  5-9 against 0-4), steps 4-7, 3-4 sub-blocks (at the longer-snippets lengths, the shortest that
  fit them), depth 3.
- `nightly-mini`: the CPU grammar of research project 1's probes and of research project 2
  (research projects 1, 3 and 5 train it without loops, `nightly.while_loops: false`).
  `nightly-cpu` on four names (a-d), literals and values within +-5, loops that add or subtract and
  run at most 2 times (give or take one), 4-6 code lines, at most one block directly inside any
  block, and if bodies that may open blocks (as loop bodies do), so that depth 3 and two blocks side
  by side fit its 4-6 lines. Its `-ood-*` suites shift one property each and keep every other in
  the training range: 9-12 lines, 6-8 iterations, steps 4-5, two blocks in one block, depth 3.
- `alpha/beta-ood-*` (2026 research question 1): longer-snippets 11-20 lines, deeper-nesting,
  denser-snippets, hidden-numbers, hidden-variables, mixed-ops, and longer-names (6-10 letters,
  against 1-5).
- `grammar-b` (dataset-53, research project 4's robustness over training): the 2026 skeleton with
  26 one-letter names, literals in +-99 (right operands of `+`/`-` in 0..99), `+` or `-` per line,
  operands weighted by how often a name was assigned, values within +-99, 5-10 lines, depth 2.
  Its traces average ~310 alpha tokens, so it needs no CPU-sized variant.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from tinylm.base.config import deep_merge, from_dict, to_dict
from tinylm.base.errors import ConfigError

LETTERS = "abcdefghijklmnopqrstuvwxyz"
ARITHMETIC = ("+", "-", "*", "//", "%")
COMPARISONS = ("<", ">", "<=", ">=", "!=", "==")
WHILE_UPDATES = ("+", "-", "//", "*")


def _check_range(key: str, value: float, low: float, high: float) -> None:
    if not low <= value <= high:
        raise ConfigError(f"'{key}' must be in [{low}, {high}], got {value}")


def _check_subset(key: str, values: list, allowed: tuple) -> None:
    bad = [v for v in values if v not in allowed]
    if bad or not values:
        raise ConfigError(f"'{key}' must be a non-empty list drawn from {list(allowed)}, got {values}")


def _check_names(key: str, names: list[str], minimum: int) -> None:
    if len(names) < minimum or len(set(names)) != len(names):
        raise ConfigError(f"'{key}' must hold at least {minimum} distinct names, got {names}")
    for name in names:
        if not (name.isidentifier() and name.islower() and name.isascii()):
            raise ConfigError(f"'{key}': {name!r} is not a lower-case ASCII identifier")


@dataclass
class DemoSpec:
    """Knobs of the demo family (reference `1_tinypy_generator_2.0.py`)."""

    names: list[str] = field(default_factory=lambda: ["a", "b", "c"])
    """Variable names, chosen uniformly."""
    max_digit: int = 9
    """Literals are drawn uniformly from 0..max_digit."""
    while_probability: float = 0.3
    """Chance that the if-block opens with a counting while loop instead of an assignment."""

    def validate(self) -> None:
        _check_names("demo.names", self.names, 1)
        _check_range("demo.max_digit", self.max_digit, 1, 999)
        _check_range("demo.while_probability", self.while_probability, 0.0, 1.0)


@dataclass
class NightlySpec:
    """Knobs of the nightly family (reference `tinypy_generator_nightly_arccp.py`)."""

    names: list[str] = field(default_factory=lambda: list(LETTERS))
    """Variable names; every one of them can be written."""
    max_literal: int = 999
    """Literals (and while-loop start values) are drawn from 0..max_literal."""
    max_value: int = 999
    """Bound on |value| a program must respect; the trace stage drops programs that exceed it."""
    operators: list[str] = field(default_factory=lambda: list(ARITHMETIC))
    """Operators of two-operand assignments."""
    operator_weights: list[float] = field(default_factory=lambda: [1.0] * 5)
    """Relative weight of each entry of `operators`."""
    comparisons: list[str] = field(default_factory=lambda: list(COMPARISONS))
    """Comparisons of if/elif conditions, chosen uniformly."""
    negative_init_probability: float = 0.15
    """Chance that an initialization assigns a negative literal."""
    max_initializations: int = 3
    """Programs open with 0..max_initializations literal assignments (uniform)."""
    min_length: int = 5
    """The program may end once this many lines are written."""
    max_length: int = 15
    """Past this many lines every open block is closed and the program ends."""
    min_code_lines: int = 0
    """Programs with fewer lines are redrawn (the final print counts, the header not; 0: no minimum)."""
    max_code_lines: int = 0
    """Programs with more lines are redrawn (closing blocks past `max_length` adds some; 0: no maximum)."""
    max_depth: int = 2
    """Deepest indentation level."""
    min_depth: int = 0
    """Programs that never reach this indentation level are redrawn."""
    max_sub_blocks: int = 2
    """Most blocks (if or while) opened directly inside one block."""
    min_sub_blocks: int = 0
    """Programs in which no block directly holds this many blocks are redrawn (0: no minimum)."""
    nest_in_if: bool = False
    """Whether if/elif/else bodies may open blocks (the reference keeps them flat)."""
    unindent_speed: float = 0.09
    """A block of n lines is closed before the next statement with probability 1 - (1 + s)^-n."""
    while_loops: bool = True
    """Whether while loops are generated."""
    require_while: bool = False
    """Redraw programs without a while loop."""
    while_updates: list[str] = field(default_factory=lambda: list(WHILE_UPDATES))
    """How a loop's control variable moves each iteration."""
    while_min_iterations: int = 1
    """Loops are built to run while_min_iterations..while_max_iterations times, give or take one
    (half as many for `*` updates; a `//` loop stops early when its control reaches 0)."""
    while_max_iterations: int = 10
    """See `while_min_iterations`."""
    while_min_step: int = 1
    """Smallest step of a `+`/`-` update, or factor of a `*`/`//` update (factors are at least 2)."""
    while_max_step: int = 20
    """Largest step (or factor) of a loop's control-variable update (at most `max_literal`)."""
    read_security: bool = False
    """True: read only names assigned in the enclosing blocks; False: any name assigned so far."""
    write_security: bool = True
    """True: never overwrite a running loop's control, step or bound variable."""
    final_print: bool = True
    """End with `print(...)` when the program prints nothing else."""
    cap_literals: bool = False
    """Redraw programs holding a literal beyond +-max_value (a loop's bound can lie past max_literal
    where the loop never runs, so the value filter does not see it)."""
    run_filter: bool = True
    """Run each program (values capped at `max_value`) and redraw those that fail, as the reference did."""
    emit_output: bool = False
    """Append the `# output` section: `# output`, then `# value` per printed value."""

    def validate(self) -> None:
        _check_names("nightly.names", self.names, 4)
        _check_range("nightly.max_literal", self.max_literal, 1, 10**6)
        _check_range("nightly.max_value", self.max_value, 1, 10**9)
        _check_subset("nightly.operators", self.operators, ARITHMETIC)
        if len(self.operator_weights) != len(self.operators) or min(self.operator_weights) < 0 \
                or sum(self.operator_weights) <= 0:
            raise ConfigError("'nightly.operator_weights' must give one weight >= 0 per operator, "
                              f"not all zero; got {self.operator_weights} for {self.operators}")
        _check_subset("nightly.comparisons", self.comparisons, COMPARISONS)
        _check_range("nightly.negative_init_probability", self.negative_init_probability, 0.0, 1.0)
        _check_range("nightly.max_initializations", self.max_initializations, 0, 20)
        _check_range("nightly.min_length", self.min_length, 1, 200)
        _check_range("nightly.max_length", self.max_length, self.min_length, 200)
        _check_range("nightly.min_code_lines", self.min_code_lines, 0, 200)
        if self.max_code_lines:
            _check_range("nightly.max_code_lines", self.max_code_lines, max(self.min_code_lines, 1), 200)
        _check_range("nightly.max_depth", self.max_depth, 0, 8)
        _check_range("nightly.min_depth", self.min_depth, 0, self.max_depth)
        _check_range("nightly.max_sub_blocks", self.max_sub_blocks, 0, 20)
        _check_range("nightly.min_sub_blocks", self.min_sub_blocks, 0, self.max_sub_blocks)
        _check_range("nightly.unindent_speed", self.unindent_speed, 0.0, 10.0)
        if self.require_while and not self.while_loops:
            raise ConfigError("'nightly.require_while' needs 'nightly.while_loops': no program could pass")
        _check_subset("nightly.while_updates", self.while_updates, WHILE_UPDATES)
        _check_range("nightly.while_max_iterations", self.while_max_iterations, 1, 100)
        _check_range("nightly.while_min_iterations", self.while_min_iterations, 1, self.while_max_iterations)
        _check_range("nightly.while_max_step", self.while_max_step, 2, 100)
        _check_range("nightly.while_min_step", self.while_min_step, 1,
                     min(self.while_max_step, self.max_literal))


@dataclass
class SnippetSpec:
    """Knobs of the 2026 alpha/beta family (reference `tinypy_code_tracing_generator*.py`)."""

    min_lines: int = 5
    """The program may end once this many lines are written."""
    max_lines: int = 10
    """Programs longer than this are redrawn."""
    max_depth: int = 2
    """Deepest indentation level."""
    min_depth: int = 0
    """Programs that never reach this level are redrawn (OOD deeper nesting)."""
    max_blocks_per_level: int = 2
    """Programs opening more `if` blocks than this at some level are redrawn (`for` blocks do not
    count, as in the reference)."""
    min_blocks_peak: int = 0
    """Programs whose busiest level opens fewer `if` blocks than this are redrawn (OOD denser snippets)."""
    for_loops: bool = False
    """Beta: `for name in range(k)` blocks besides if blocks."""
    for_max_range: int = 3
    """k of `range(k)` is drawn from 1..for_max_range."""
    min_name_length: int = 1
    """Names have min_name_length..max_name_length letters (length uniform)."""
    max_name_length: int = 5
    """See `min_name_length`."""
    variable_diversity: float = 0.2
    """Fraction of each length's name space (>= 2 letters) that names are drawn from."""
    hidden_variables: bool = False
    """Draw names of >= 2 letters from outside the seen part of the name space (OOD)."""
    name_reuse_probability: float = 0.3
    """Chance that an assignment writes an existing name rather than a fresh one."""
    weight_reads_by_writes: bool = False
    """Name operands pick an assigned name in proportion to its assignments (not uniformly)."""
    max_digits: int = 3
    """Numbers have at most this many digits."""
    number_lengths: Literal["uniform", "by_digits", "symmetric"] = "uniform"
    """uniform: a sign, then 0..10^max_digits - 1; by_digits: a sign, the digit count uniform, then
    the value; symmetric: uniform over -(10^max_digits - 1)..10^max_digits - 1."""
    unsigned_right: bool = False
    """Literal right operands of `+`/`-` assignments are never negative."""
    number_team: Literal["any", "seen", "hidden"] = "any"
    """Keep only numbers of one hash half: seen for training, hidden for OOD tests."""
    mixed_ops: bool = False
    """Choose `+` or `-` per line rather than one operator per program."""
    require_both_ops: bool = True
    """With `mixed_ops`, redraw programs that do not execute both `+` and `-` (an operator written
    in a branch never taken does not count)."""
    max_value: int = 0
    """Run each program and redraw those whose values leave +-max_value (0: leave values to the
    trace format's cap). Not with `for_loops`."""

    def validate(self) -> None:
        _check_range("snippet.min_lines", self.min_lines, 1, 100)
        _check_range("snippet.max_lines", self.max_lines, self.min_lines, 200)
        _check_range("snippet.max_depth", self.max_depth, 0, 10)
        _check_range("snippet.min_depth", self.min_depth, 0, self.max_depth)
        _check_range("snippet.max_blocks_per_level", self.max_blocks_per_level, 1, 100)
        _check_range("snippet.min_blocks_peak", self.min_blocks_peak, 0, self.max_blocks_per_level)
        _check_range("snippet.for_max_range", self.for_max_range, 1, 100)
        _check_range("snippet.max_name_length", self.max_name_length, 1 + self.hidden_variables, 10)
        _check_range("snippet.min_name_length", self.min_name_length, 1, self.max_name_length)
        _check_range("snippet.variable_diversity", self.variable_diversity, 0.0001, 1.0)
        _check_range("snippet.name_reuse_probability", self.name_reuse_probability, 0.0, 1.0)
        _check_range("snippet.max_digits", self.max_digits, 1, 6)
        _check_range("snippet.max_value", self.max_value, 0, 10**9)
        if self.max_value and self.for_loops:
            raise ConfigError("'snippet.max_value' needs 'snippet.for_loops' false: the generator runs "
                              "if-only programs")


@dataclass
class GeneratorSpec:
    """Which generator family to run, with what knobs; the `generator` section of a dataset."""

    family: Literal["demo", "nightly", "snippet"] = "demo"
    """Which generator runs; only its knob section is read."""
    header: str = "# code"
    """First line of every program ('' for none)."""
    demo: DemoSpec = field(default_factory=DemoSpec)
    nightly: NightlySpec = field(default_factory=NightlySpec)
    snippet: SnippetSpec = field(default_factory=SnippetSpec)

    def validate(self) -> None:
        if "\n" in self.header or (self.header and not self.header.startswith("#")):
            raise ConfigError(f"'header' must be '' or one comment line starting with '#', "
                              f"got {self.header!r}")
        for section in (self.demo, self.nightly, self.snippet):
            section.validate()


# Presets: each a delta on a base (None: the dataclass defaults). Values are nested mappings.
_STAGE_LITERALS = {1: 10, 2: 100, 3: 999}
_STAGE_WEIGHTS = [3.0, 3.0, 5.0, 7.0, 14.0]   # + - * // % of two-operand assignments, stages 1-3
# The loop suites, as the reference's: every program has a loop, and loops add or subtract (a `*` or
# `//` loop cannot run 11 times or take wide steps within +-999).
_ADDITIVE_LOOPS = {"while_updates": ["+", "-"], "require_while": True}
_CPU = {"names": list("abcdef"), "max_literal": 9, "max_value": 99, "max_initializations": 2,
        "min_length": 3, "max_length": 5, "min_code_lines": 4, "max_code_lines": 8,
        "unindent_speed": 0.5, "while_max_iterations": 3, "while_max_step": 3}
_CPU_LONG = {"min_length": 8, "max_length": 11, "min_code_lines": 9, "max_code_lines": 12}
_MINI = {"names": list("abcd"), "max_literal": 5, "max_value": 5, "cap_literals": True, "nest_in_if": True,
         "while_updates": ["+", "-"], "while_max_iterations": 2, "min_length": 3, "max_length": 4,
         "min_code_lines": 4, "max_code_lines": 6, "max_sub_blocks": 1}
_RQ1 = {"variable_diversity": 0.01, "name_reuse_probability": 0.0, "number_lengths": "by_digits",
        "number_team": "seen"}

_DELTAS: dict[str, tuple[str | None, dict]] = {
    "demo": (None, {"family": "demo"}),
    "nightly": (None, {"family": "nightly"}),
    # Curriculum (reference dataset-32): literal caps grow 10 -> 100 -> 999 with % and // favoured,
    # then the main grammar. Values stay within +-999 at every stage.
    **{f"nightly-stage{k}": ("nightly", {"nightly": {"max_literal": cap, "operator_weights": _STAGE_WEIGHTS}})
       for k, cap in _STAGE_LITERALS.items()},
    "nightly-stage4": ("nightly", {}),
    # The reference's OOD suites (dataset-34, dataset-41), one shift each.
    "nightly-ood-longer-snippets": ("nightly", {"nightly": {
        "min_length": 26, "max_length": 30, "min_code_lines": 27, "max_code_lines": 30}}),
    "nightly-ood-more-while-iterations": ("nightly", {"nightly": {
        **_ADDITIVE_LOOPS, "while_min_iterations": 11, "while_max_iterations": 15}}),
    "nightly-ood-more-sub-blocks": ("nightly", {"nightly": {"max_sub_blocks": 4, "min_sub_blocks": 3}}),
    "nightly-ood-wider-while-steps": ("nightly", {"nightly": {
        **_ADDITIVE_LOOPS, "while_min_step": 21, "while_max_step": 40}}),
    "nightly-ood-deeper-nesting": ("nightly", {"nightly": {"max_depth": 3, "min_depth": 3, "nest_in_if": True}}),
    # CPU scale: the nightly grammar and m2 vocabulary, traces of a few hundred tokens.
    "nightly-cpu": ("nightly", {"nightly": _CPU}),
    "nightly-cpu-ood-longer-snippets": ("nightly-cpu", {"nightly": _CPU_LONG}),
    "nightly-cpu-ood-more-while-iterations": ("nightly-cpu", {"nightly": {
        **_ADDITIVE_LOOPS, "while_min_iterations": 6, "while_max_iterations": 8}}),
    "nightly-cpu-ood-wider-while-steps": ("nightly-cpu", {"nightly": {
        **_ADDITIVE_LOOPS, "while_min_step": 4, "while_max_step": 7}}),
    # Three blocks side by side do not fit in 8 lines: this suite has the longer-snippets lengths.
    "nightly-cpu-ood-more-sub-blocks": ("nightly-cpu", {"nightly": {
        **_CPU_LONG, "max_sub_blocks": 4, "min_sub_blocks": 3}}),
    "nightly-cpu-ood-deeper-nesting": ("nightly-cpu", {"nightly": {
        "max_depth": 3, "min_depth": 3, "nest_in_if": True}}),
    # The CPU grammar: nightly-cpu on four names, values within +-5, additive loops, and blocks
    # allowed in if bodies, so that every suite below but longer-snippets fits the in-distribution
    # 4-6 lines.
    "nightly-mini": ("nightly-cpu", {"nightly": _MINI}),
    "nightly-mini-ood-longer-snippets": ("nightly-mini", {"nightly": _CPU_LONG}),
    "nightly-mini-ood-more-while-iterations": ("nightly-mini", {"nightly": {
        "require_while": True, "while_min_iterations": 6, "while_max_iterations": 8}}),
    "nightly-mini-ood-wider-while-steps": ("nightly-mini", {"nightly": {
        "require_while": True, "while_min_step": 4, "while_max_step": 5}}),
    # Two blocks side by side (training holds at most one in any block) fit in its 4-6 lines.
    "nightly-mini-ood-more-sub-blocks": ("nightly-mini", {"nightly": {"max_sub_blocks": 2, "min_sub_blocks": 2}}),
    "nightly-mini-ood-deeper-nesting": ("nightly-mini", {"nightly": {"max_depth": 3, "min_depth": 3}}),
    # 2026: the framework release (alpha, beta) and the research-question datasets (-rq1).
    "alpha": (None, {"family": "snippet", "header": ""}),
    "beta": ("alpha", {"snippet": {"for_loops": True}}),
    "alpha-rq1": ("alpha", {"snippet": _RQ1}),
    "beta-rq1": ("alpha-rq1", {"snippet": {"for_loops": True}}),
}
for _base in ("alpha", "beta"):
    _DELTAS.update({
        f"{_base}-ood-longer-snippets": (f"{_base}-rq1", {"snippet": {"min_lines": 11, "max_lines": 20}}),
        f"{_base}-ood-deeper-nesting": (f"{_base}-rq1", {"snippet": {"max_depth": 4, "min_depth": 3}}),
        f"{_base}-ood-denser-snippets": (f"{_base}-rq1", {"snippet": {
            "max_blocks_per_level": 10, "min_blocks_peak": 3}}),
        f"{_base}-ood-hidden-numbers": (f"{_base}-rq1", {"snippet": {"number_team": "hidden"}}),
        f"{_base}-ood-hidden-variables": (f"{_base}-rq1", {"snippet": {"hidden_variables": True}}),
        f"{_base}-ood-mixed-ops": (f"{_base}-rq1", {"snippet": {"mixed_ops": True}}),
        f"{_base}-ood-longer-names": (f"{_base}-rq1", {"snippet": {"min_name_length": 6, "max_name_length": 10}}),
    })
# Grammar B (reference dataset-53, research project 4): one-letter names, literals in +-99 (right
# operands of + and - in 0..99), + or - chosen per line, values within +-99.
_DELTAS["grammar-b"] = ("alpha", {"snippet": {
    "max_name_length": 1, "name_reuse_probability": 0.0, "weight_reads_by_writes": True,
    "max_blocks_per_level": 10, "max_digits": 2, "number_lengths": "symmetric", "unsigned_right": True,
    "mixed_ops": True, "require_both_ops": False, "max_value": 99}})

PRESETS: tuple[str, ...] = tuple(_DELTAS)


def _preset_dict(name: str) -> dict:
    if name not in _DELTAS:
        raise ConfigError(f"unknown generator preset '{name}' (known: {', '.join(PRESETS)})")
    base, delta = _DELTAS[name]
    return deep_merge(_preset_dict(base) if base else {}, delta)


def _nest(overrides: dict) -> dict:
    nested: dict = {}
    for key, value in overrides.items():
        *path, last = key.split(".")
        node = nested
        for part in path:
            node = node.setdefault(part, {})
        node[last] = value
    return nested


def preset(name: str, **overrides) -> GeneratorSpec:
    """The named preset with `overrides` (nested mappings or dotted keys) applied, validated."""
    data = deep_merge(to_dict(GeneratorSpec()), _preset_dict(name))
    return from_dict(GeneratorSpec, deep_merge(data, _nest(overrides)), where=f"preset '{name}'")
