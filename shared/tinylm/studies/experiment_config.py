"""A research project's config: the typed sections of `configs/{smoke,cpu,paper}.yaml` (datasets,
runs, evaluation, report), seed groups expanded into runs, and a config given as a delta on another
(`base:`). What the stages do with it is tinylm.studies.experiment."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from tinylm.base.config import deep_merge, from_dict, read_yaml
from tinylm.base.errors import ConfigError
from tinylm.decode.strategies import GenerateConfig


@dataclass
class DatasetEntry:
    spec: str
    """Dataset folder holding the committed dataset.yaml, from the repository root."""
    overrides: list[str] = field(default_factory=list)
    """Dotted dataset.yaml overrides (e.g. splits.train=500); the dataset is then built in the run folder."""
    ood_count: int | None = None
    """Examples of every OOD suite (smoke sizes); like an override, moves the build to the run folder."""

    @property
    def changed(self) -> bool:
        return bool(self.overrides) or self.ood_count is not None


@dataclass
class RunEntry:
    overrides: dict[str, Any] = field(default_factory=dict)
    """TrainConfig keys (dotted or nested) merged over the experiment's `train` section."""
    init_run: str | None = None
    """Start from this earlier run's best checkpoint (sets init_from)."""
    sweep: bool = False
    """Evaluate every kept checkpoint of the run, not only best.pt."""
    checkpoint: str | None = None
    """Not trained here: evaluate this existing checkpoint (e.g. another project's model) as the run.
    With `seeds`, a path holding `{seed}`: one checkpoint per seed (e.g. each seed of another
    project's main run), which the runs that start from this one pair by seed."""
    suites: list[str] | None = None
    """Evaluate the run on these suites only (default: every suite of `eval`)."""
    steps_of: str | None = None
    """Train as many optimizer steps as this earlier run did (the length its schedule_minutes chose on
    this machine): runs compared at equal steps, sized to the machine once, their length immune to load."""
    steps_factor: float = 1.0
    """With steps_of: train this many times as many steps (rounded), e.g. 4 for a longer run in the same unit."""
    seeds: list[int] = field(default_factory=list)
    """Train the run once per seed, as runs NAME-sSEED (see `expand_seeds`); empty: once, with the
    `train` section's seed."""


@dataclass
class DerivedSuite:
    """A suite made from an evaluation: the examples run `run` solved on `suite`, variables renamed."""

    name: str
    run: str
    suite: str
    dataset: str
    """Experiment dataset whose training programs the new names must avoid (and whose format re-traces)."""
    kind: Literal["renamed-variables"] = "renamed-variables"
    lengths: list[int] = field(default_factory=lambda: [1])
    """Lengths of the new names (each never seen in the dataset's training programs)."""
    solved_only: bool = True
    """Only the examples the run solved (hard match); false renames every example of the suite."""
    trained_letters: bool = False
    """New names spelled only with letters the training names use: unseen words of trained tokens
    (false: any letter, so a name may bring a token training never showed)."""
    seed: int = 0


@dataclass
class EvalSection:
    suites: dict[str, str] = field(default_factory=dict)
    """Suite name -> DATASET/FILE or a path."""
    derived: list[DerivedSuite] = field(default_factory=list)
    limit: int | None = None
    """First N examples of each suite."""
    sweep_limit: int | None = None
    """First N examples of each suite for every checkpoint of a sweep run (default: limit)."""
    window: str = GenerateConfig.window
    """Decoding window of the main evaluation (tinylm.decode.windows); the default is every decoder's."""
    extra_windows: list[str] = field(default_factory=list)
    """Windows also evaluated for every run whose positional encoding allows them; WINDOW@N holds N
    tokens instead of the model's block_size (past it: relative encodings only, a test of length
    extrapolation)."""
    statements: list[str] = field(default_factory=list)
    """Statement kinds (`tinylm.evaluate.scoring.STATEMENTS`) by which the report splits every suite:
    'SUITE: while' holds the suite's programs with a `while`, 'SUITE: no while' the others."""
    batch_size: int = 128
    threads: int | None = None
    """CPU threads for torch while decoding (None: torch's default; 1 suits tiny models)."""
    runs: list[str] | None = None
    """Runs to evaluate (default: all)."""
    prompts: list[str] = field(default_factory=list)
    """Text runs: prompts each run's best checkpoint continues, once per decoding."""
    decodings: dict[str, dict[str, Any]] = field(default_factory=lambda: {"greedy": {}})
    """Decoding name -> `tinylm.decode.strategies.GenerateConfig` fields (e.g. {beam: 4}, {temperature: 0.8, top_p: 0.9})."""


@dataclass
class ReportItem:
    kind: Literal["table", "scaling", "bars", "sweep", "forget", "text", "curves"]
    """table, scaling, bars, sweep (every checkpoint's hard match against tokens, a curve per run and
    suite): trace scores; forget: runs with a drop policy at their keep ratios; text: each run's loss
    and perplexity at every evaluation, and its samples (eval.prompts); curves: the training and
    validation loss and the learning rate of each run against tokens (`tinylm compare`'s figure)."""
    file: str
    """Output file name under results/<config>/ (.md for a table or text, .png for a plot; forget: either)."""
    runs: list[str] = field(default_factory=list)
    """Runs shown (default: all evaluated runs)."""
    suites: list[str] = field(default_factory=list)
    """Suites shown (default: all)."""
    x: Literal["parameters", "train_examples", "tokens"] = "parameters"
    """scaling: the horizontal axis."""
    metrics: list[Literal["hard_pct", "soft_pct", "failure_pct", "steps_correct_frac_mean", "val_loss"]] = field(
        default_factory=lambda: ["hard_pct"])
    """What a table shows per suite; a plot shows the first (steps_correct_frac_mean: % of trace steps
    right). val_loss (a bars plot only): one bar per run, the validation loss of the checkpoint scored."""
    title: str = ""
    layout: Literal["runs", "suites"] = "runs"
    """table: one line per run (runs), or one per suite with the runs side by side (suites)."""


@dataclass
class Experiment:
    datasets: dict[str, DatasetEntry] = field(default_factory=dict)
    train: dict[str, Any] = field(default_factory=dict)
    """TrainConfig fields shared by every run."""
    runs: dict[str, RunEntry] = field(default_factory=dict)
    eval: EvalSection = field(default_factory=EvalSection)
    report: list[ReportItem] = field(default_factory=list)

    def validate(self) -> None:
        if not self.runs:
            raise ConfigError("'runs' must name at least one run")
        order = list(self.runs)
        for name, run in self.runs.items():
            if run.checkpoint is not None and (run.overrides or run.init_run or run.sweep):
                raise ConfigError(f"runs.{name}: a run given by 'checkpoint' is not trained here; "
                                  f"it takes no overrides, init_run or sweep")
            for key in ("init_run", "steps_of"):
                earlier = getattr(run, key)
                if earlier is not None and (earlier not in order or order.index(earlier) >= order.index(name)):
                    raise ConfigError(f"runs.{name}.{key}: '{earlier}' is not a run listed before '{name}'")
            if run.steps_factor != 1.0 and (run.steps_of is None or run.steps_factor <= 0):
                raise ConfigError(f"runs.{name}.steps_factor: a positive multiple of a steps_of run's steps, "
                                  f"got {run.steps_factor} with steps_of {run.steps_of!r}")
            if run.steps_of is not None and self.runs[run.steps_of].checkpoint is not None:
                raise ConfigError(f"runs.{name}.steps_of: run '{run.steps_of}' is not trained here")
            if run.seeds and (len(set(run.seeds)) != len(run.seeds) or "seed" in run.overrides):
                raise ConfigError(f"runs.{name}.seeds: distinct seeds (and no 'seed' override beside them), "
                                  f"got {run.seeds}")
            if run.checkpoint is not None and bool(run.seeds) != ("{seed}" in run.checkpoint):
                raise ConfigError(f"runs.{name}.checkpoint: a checkpoint run with seeds names one checkpoint per "
                                  f"seed with '{{seed}}' in its path, and only then, got {run.checkpoint!r}")
        from tinylm.decode.strategies import GenerateConfig

        for name, fields in self.eval.decodings.items():
            from_dict(GenerateConfig, fields, where="experiment", prefix=f"eval.decodings.{name}.")
        for name in self.eval.runs or []:
            if name not in self.runs:
                raise ConfigError(f"eval.runs: unknown run '{name}' (runs: {', '.join(order)})")
        defined = list(self.eval.suites) + [d.name for d in self.eval.derived]
        for name, run in self.runs.items():
            for suite in run.suites or []:
                if suite not in defined:
                    raise ConfigError(f"runs.{name}.suites: unknown suite '{suite}' (suites: {', '.join(defined)})")
        suites = set(self.eval.suites)
        for i, d in enumerate(self.eval.derived):
            where = f"eval.derived[{i}]"
            if d.name in suites:
                raise ConfigError(f"{where}.name: suite '{d.name}' is defined twice")
            if d.run not in self.runs:
                raise ConfigError(f"{where}.run: unknown run '{d.run}'")
            if d.suite not in self.eval.suites:
                raise ConfigError(f"{where}.suite: unknown suite '{d.suite}' (suites: {', '.join(self.eval.suites)})")
            if d.dataset not in self.datasets:
                raise ConfigError(f"{where}.dataset: unknown dataset '{d.dataset}'")
            suites.add(d.name)
        members = {f"{name}-s{seed}" for name, run in self.runs.items() for seed in run.seeds}
        from tinylm.decode.windows import WINDOWS

        for spec in [self.eval.window, *self.eval.extra_windows]:
            if split_window(spec)[0] not in WINDOWS:
                raise ConfigError(f"eval: unknown window '{spec}' (one of {', '.join(WINDOWS)}, optionally @TOKENS)")
        from tinylm.evaluate.scoring import STATEMENTS

        for kind in self.eval.statements:
            if kind not in STATEMENTS:
                raise ConfigError(f"eval.statements: unknown statement kind '{kind}' (one of {', '.join(STATEMENTS)})")
        for i, item in enumerate(self.report):
            for name in item.runs:
                if name not in self.runs and name not in members:
                    raise ConfigError(f"report[{i}].runs: unknown run '{name}' (a run, or NAME-sSEED for "
                                      f"one seed of a run with seeds)")
            for name in item.suites:
                suite, _, window = statement_suite(name, self.eval.statements)[0].partition(" [")
                if suite not in suites or (window and window.rstrip("]") not in self.eval.extra_windows):
                    raise ConfigError(f"report[{i}].suites: unknown suite '{name}' (suites: {', '.join(sorted(suites))}; "
                                      f"'SUITE [WINDOW]' for an extra window, 'SUITE: KIND' or 'SUITE: no KIND' "
                                      f"for a kind of eval.statements)")
            if item.kind == "sweep" and not item.runs:
                raise ConfigError(f"report[{i}]: a sweep plot names its runs (runs: [NAME, ...])")
            if "val_loss" in item.metrics and (item.kind != "bars" or item.metrics != ["val_loss"]):
                raise ConfigError(f"report[{i}].metrics: val_loss is a run's number, shown alone in a bars plot "
                                  f"(tables show it always)")
            suffix = {"table": (".md",), "text": (".md",), "forget": (".md", ".png")}.get(item.kind, (".png",))
            if not item.file.endswith(suffix) or "/" in item.file:
                raise ConfigError(f"report[{i}].file: expected a file name ending in {' or '.join(suffix)}, "
                                  f"got {item.file!r}")


def expand_seeds(cfg: Experiment) -> dict[str, list[str]]:
    """Replace every run with `seeds` by one run per seed, NAME-sSEED (its `seed` set), in place;
    return the groups {NAME: [NAME-sSEED, ...]}.

    A seeded run's `init_run`/`steps_of` that names a group takes the member of the same seed
    where there is one, else the first; so does an unseeded run's, and a derived suite's `run`.
    `eval.runs` may name groups (all their members); report items keep group names (the report
    shows the mean and min-max over the members)."""
    groups = {name: [f"{name}-s{seed}" for seed in run.seeds] for name, run in cfg.runs.items() if run.seeds}

    def member(name: str | None, seed: int | None) -> str | None:
        if name not in groups:
            return name
        wanted = f"{name}-s{seed}"
        return wanted if wanted in groups[name] else groups[name][0]

    runs: dict[str, RunEntry] = {}
    for name, run in cfg.runs.items():
        for seed in run.seeds or [None]:
            runs[name if seed is None else f"{name}-s{seed}"] = RunEntry(
                overrides={**run.overrides, **({} if seed is None else {"seed": seed})},
                init_run=member(run.init_run, seed), sweep=run.sweep,
                checkpoint=None if run.checkpoint is None else run.checkpoint.replace("{seed}", str(seed)),
                suites=run.suites, steps_of=member(run.steps_of, seed), steps_factor=run.steps_factor)
    cfg.runs = runs
    for d in cfg.eval.derived:
        d.run = member(d.run, None)
    if cfg.eval.runs:
        cfg.eval.runs = [m for name in cfg.eval.runs for m in groups.get(name, [name])]
    return groups


REPLACED_BY_A_DELTA = ("runs", "report")
"""Sections a config with `base:` gives whole (they name their own runs) rather than merges."""


def read_with_base(path: Path) -> dict:
    """A project config's YAML; one with `base: OTHER.yaml` (beside it) is a delta on that config:
    datasets, train and eval merge key by key into the base's, runs and report replace its own."""
    data = read_yaml(path)
    if "base" not in data:
        return data
    base_name = data.pop("base")
    base_path = path.parent / str(base_name)
    if not base_path.is_file():
        raise ConfigError(f"{path}: base: {base_name} is not a config beside it")
    base = read_yaml(base_path)
    if "base" in base:
        raise ConfigError(f"{path}: its base {base_name} has a base itself (one level only)")
    for key in REPLACED_BY_A_DELTA:
        if key in data:
            base.pop(key, None)
    return deep_merge(base, data)


def split_window(spec: str) -> tuple[str, int | None]:
    """'step-anchored@512' -> ('step-anchored', 512); 'rolling' -> ('rolling', None)."""
    name, _, context = spec.partition("@")
    if context and not (context.isdigit() and int(context) >= 2):
        raise ConfigError(f"window '{spec}': the context after '@' must be a number of tokens >= 2")
    return name, int(context) if context else None


def statement_suite(name: str, statements: list[str]) -> tuple[str, str | None]:
    """'id: while' -> ('id', 'while'), 'id: no while' -> ('id', 'no while') for a kind in
    `statements`; any other name -> (name, None)."""
    suite, sep, label = name.rpartition(": ")
    if sep and label.removeprefix("no ") in statements:
        return suite, label
    return name, None
