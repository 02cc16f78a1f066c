"""Research projects: one YAML per size describes a project's datasets, runs, evaluation and report.

A project folder holds `configs/{smoke,cpu,paper}.yaml` (each an `Experiment`) and four stage
scripts that call `stage_main`, plus `run_all.py` (`run_all`):

    1_data.py    build every dataset under `datasets`
    2_train.py   train every run under `runs` (a run is the shared `train` section plus its overrides)
    3_eval.py    evaluate every run's best checkpoint (a `sweep` run: every checkpoint) on every suite;
                 continue every prompt of `eval.prompts` with each of `eval.decodings` (text runs)
    4_report.py  the tables and plots under `report`, into results/<config>/

A run whose training config has a `forget` section (tinylm.studies.forget) is evaluated by the forgetting
decoder (tinylm.studies.forget_eval) into eval/<run>/forget, with what it saves; report items of kind
`forget` compare such runs at their keep ratios (a table, or a plot of a metric against the ratio).

Where things go (PROJECT/runs/ is git-ignored):
- a dataset without overrides is built in its own folder (`datasets/NAME`, shared by every project);
  one with overrides (the smoke sizes) is built from a copy of its spec under
  PROJECT/runs/<config>/datasets/NAME, so it never overwrites the full-size build;
- run R trains into PROJECT/runs/<config>/train/R and is evaluated into PROJECT/runs/<config>/eval/R/<window>;
- derived suites (renamed variables) are written to PROJECT/runs/<config>/suites/NAME.txt;
- the continuations of `eval.prompts` go to PROJECT/runs/<config>/eval/R/samples.json;
- the report goes to PROJECT/results/<config>/ (committed for the configs whose numbers a README quotes).

Names. In the `train` section and in a run's overrides, `data.dataset` and `data.stages[i].dataset`
may name a dataset of the experiment instead of giving a path; a suite is `DATASET/FILE`
(`nightly-cpu/test.txt`) or a path from the repository root; `init_run: R` starts a run from run
R's best checkpoint and `steps_of: R` trains as many steps as run R did (R must come earlier;
`steps_factor: F` makes it F times as many). Every stage resumes: a dataset whose manifest holds its
spec is not rebuilt, a run continues from its newest checkpoint (a finished one does nothing), an
evaluation reads back what it finished.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from tinylm.base.args import ArgumentParser, run_command
from tinylm.base.config import (
    deep_merge,
    from_dict,
    parse_overrides,
    read_yaml,
    to_dict,
    write_yaml,
)
from tinylm.base.errors import ConfigError, DataError
from tinylm.base.files import find_repo_root, resolve_path
from tinylm.decode.strategies import GenerateConfig

CHECKPOINT = "best.pt"
FORGET_WINDOW = "forget"  # the evaluation folder of a run scored by the forgetting decoder

# ----------------------------------------------------------------------------- config


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
    """Not trained here: evaluate this existing checkpoint (e.g. another project's model) as the run."""
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
    batch_size: int = 128
    threads: int | None = None
    """CPU threads for torch while decoding (None: torch's default; 1 suits tiny models)."""
    runs: list[str] | None = None
    """Runs to evaluate (default: all)."""
    prompts: list[str] = field(default_factory=list)
    """Text runs: prompts each run's best checkpoint continues, once per decoding."""
    decodings: dict[str, dict[str, Any]] = field(default_factory=lambda: {"greedy": {}})
    """Decoding name -> `tinylm.decode.decoder.GenerateConfig` fields (e.g. {beam: 4}, {temperature: 0.8, top_p: 0.9})."""


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
            if run.seeds and (run.checkpoint is not None or len(set(run.seeds)) != len(run.seeds)
                              or "seed" in run.overrides):
                raise ConfigError(f"runs.{name}.seeds: distinct seeds of a run trained here (and no 'seed' "
                                  f"override beside them), got {run.seeds}")
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
        for i, item in enumerate(self.report):
            for name in item.runs:
                if name not in self.runs and name not in members:
                    raise ConfigError(f"report[{i}].runs: unknown run '{name}' (a run, or NAME-sSEED for "
                                      f"one seed of a run with seeds)")
            for name in item.suites:
                suite, _, window = name.partition(" [")
                if suite not in suites or (window and window.rstrip("]") not in self.eval.extra_windows):
                    raise ConfigError(f"report[{i}].suites: unknown suite '{name}' (suites: {', '.join(sorted(suites))}; "
                                      f"'SUITE [WINDOW]' for an extra window)")
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
                init_run=member(run.init_run, seed), sweep=run.sweep, checkpoint=run.checkpoint,
                suites=run.suites, steps_of=member(run.steps_of, seed), steps_factor=run.steps_factor)
    cfg.runs = runs
    for d in cfg.eval.derived:
        d.run = member(d.run, None)
    if cfg.eval.runs:
        cfg.eval.runs = [m for name in cfg.eval.runs for m in groups.get(name, [name])]
    return groups


# ----------------------------------------------------------------------------- a loaded project


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


class Project:
    """An experiment config with the folders it works in."""

    def __init__(self, project_dir: str | Path, config: str):
        self.dir = Path(project_dir).resolve()
        path = Path(config)
        if not path.suffix:
            path = self.dir / "configs" / f"{config}.yaml"
        elif not path.is_absolute() and not path.exists():
            path = self.dir / path
        if not path.is_file():
            known = sorted(p.stem for p in (self.dir / "configs").glob("*.yaml"))
            raise ConfigError(f"{path}: no such config (configs here: {', '.join(known)})")
        self.config_file = path
        self.name = path.stem
        self.cfg: Experiment = from_dict(Experiment, read_with_base(path), where=str(path))
        self.groups = expand_seeds(self.cfg)
        self.root = find_repo_root(self.dir) or self.dir.parent
        self.work = self.dir / "runs" / self.name
        self.results = self.dir / "results" / self.name

    # -- datasets

    def dataset_dir(self, name: str) -> Path:
        entry = self.cfg.datasets[name]
        if entry.changed:
            return self.work / "datasets" / name
        return resolve_path(entry.spec, self.config_file)

    def suite_path(self, suite: str) -> Path:
        """A suite's test file: DATASET/FILE or a path; derived suites live in the run folder."""
        if suite in {d.name for d in self.cfg.eval.derived}:
            return self.work / "suites" / f"{suite}.txt"
        value = self.cfg.eval.suites[suite]
        head, _, rest = value.partition("/")
        if head in self.cfg.datasets and rest:
            return self.dataset_dir(head) / rest
        return resolve_path(value, self.config_file)

    def suites(self) -> list[str]:
        return list(self.cfg.eval.suites) + [d.name for d in self.cfg.eval.derived]

    # -- runs

    def run_dir(self, run: str) -> Path:
        return self.work / "train" / run

    def checkpoint(self, run: str) -> Path:
        """The checkpoint a run is evaluated with (and later runs start from)."""
        given = self.cfg.runs[run].checkpoint
        return resolve_path(given, self.config_file) if given else self.run_dir(run) / CHECKPOINT

    def eval_dir(self, run: str, window: str | None = None) -> Path:
        return self.work / "eval" / run / (window or self.cfg.eval.window)

    def train_config(self, run: str):
        """The TrainConfig of a run: `train` <- run overrides, dataset names resolved, out_dir set."""
        from tinylm.studies.tasks import train_config

        entry = self.cfg.runs[run]
        overrides = parse_overrides([f"{k}={json.dumps(v)}" for k, v in entry.overrides.items() if "." in k])
        nested = {k: v for k, v in entry.overrides.items() if "." not in k}
        data = deep_merge(deep_merge(self.cfg.train, nested), overrides)
        data = self._resolve_datasets(data)
        data["out_dir"] = str(self.run_dir(run))
        if entry.init_run is not None:
            data["init_from"] = str(self.checkpoint(entry.init_run))
        if entry.steps_of is not None and (steps := self.trained_steps(entry.steps_of)) is not None:
            data.update(max_steps=max(1, round(steps * entry.steps_factor)), max_tokens=None, max_epochs=None,
                        schedule_minutes=None)
        return train_config(data, where=f"{self.config_file} (run '{run}')")

    def trained_steps(self, run: str) -> int | None:
        """The length of a finished run (its run.json max_steps, once its last checkpoint exists), or None."""
        info = self.run_dir(run) / "run.json"
        if not info.is_file():
            return None
        steps = json.loads(info.read_text())["max_steps"]
        return steps if (self.run_dir(run) / f"ckpt_{steps:08d}.pt").is_file() else None

    def _resolve_datasets(self, data: dict) -> dict:
        section = dict(data.get("data") or {})
        if section.get("dataset") in self.cfg.datasets:
            section["dataset"] = str(self.dataset_dir(section["dataset"]))
        stages = []
        for stage in section.get("stages") or []:
            stage = dict(stage)
            if stage.get("dataset") in self.cfg.datasets:
                stage["dataset"] = str(self.dataset_dir(stage["dataset"]))
            stages.append(stage)
        if stages:
            section["stages"] = stages
        return {**data, "data": section} if section else data

    def eval_runs(self) -> list[str]:
        return self.cfg.eval.runs or list(self.cfg.runs)

    def members(self, names: list[str]) -> list[str]:
        """Run names with each seed group replaced by its runs; an unknown name is a ConfigError."""
        known = list(self.groups) + list(self.cfg.runs)
        for name in names:
            if name not in self.cfg.runs and name not in self.groups:
                raise ConfigError(f"--run: unknown run '{name}' (runs: {', '.join(known)})")
        return [m for name in names for m in self.groups.get(name, [name])]

    def forgets(self, run: str) -> bool:
        """Whether the run trains with a drop policy (and is scored by the forgetting decoder)."""
        from tinylm.studies.forget_task import ForgetTrainConfig

        return self.cfg.runs[run].checkpoint is None and isinstance(self.train_config(run), ForgetTrainConfig)


# ----------------------------------------------------------------------------- stage 1: data


def _spec_copy(project: Project, name: str) -> Path:
    """The dataset.yaml an overridden dataset is built from: the committed spec with the overrides applied."""
    from tinylm.data.shards import spec_file
    from tinylm.data.spec import DatasetSpec, load_dataset_spec

    entry = project.cfg.datasets[name]
    source = spec_file(resolve_path(entry.spec, project.config_file))
    spec = load_dataset_spec(source, entry.overrides)
    folder = project.dataset_dir(name)
    data = to_dict(spec)
    if isinstance(spec, DatasetSpec):  # a text corpus has no OOD suites and decontaminates nothing
        for suite in data["ood"] if entry.ood_count is not None else []:
            suite["count"] = entry.ood_count
        # a folder that is another dataset of this experiment means that dataset as built here
        built = {resolve_path(e.spec, project.config_file).resolve(): other
                 for other, e in project.cfg.datasets.items()}
        data["decontaminate"] = [str(project.dataset_dir(built[p]) if p in built else p)
                                 for p in (resolve_path(d, source).resolve() for d in spec.decontaminate)]
    target = folder / "dataset.yaml"
    if not target.exists() or read_yaml(target) != data:
        write_yaml(data, target)
    return folder


def build_datasets(project: Project, workers: int | None = None, log=print) -> None:
    from tinylm.data.datasets import build
    from tinylm.data.spec import load_dataset_spec

    for name, entry in project.cfg.datasets.items():
        folder = _spec_copy(project, name) if entry.changed else project.dataset_dir(name)
        manifest = folder / "manifest.json"
        if manifest.is_file() and json.loads(manifest.read_text()).get("config") == to_dict(load_dataset_spec(folder)):
            log(f"dataset {name}: {folder} is built")
            continue
        log(f"dataset {name}: building {folder}")
        built = build(folder, workers)
        splits = ", ".join(f"{k} {v['examples']}" for k, v in built["splits"].items())
        log(f"dataset {name}: {splits} in {built['timings']['wall_seconds']:.1f} s")


# ----------------------------------------------------------------------------- stage 2: train


def train_runs(project: Project, only: list[str] | None = None, log=print) -> None:
    from tinylm.train.loop import holds_run, run

    for name in project.members(only) if only else list(project.cfg.runs):
        if project.cfg.runs[name].checkpoint is not None:
            log(f"run {name}: not trained here, evaluated from {project.checkpoint(name)}")
            continue
        steps_of = project.cfg.runs[name].steps_of
        if steps_of is not None and project.trained_steps(steps_of) is None:
            raise DataError(f"run '{name}' trains as many steps as run '{steps_of}', which has not finished: "
                            f"train run '{steps_of}' first")
        cfg = project.train_config(name)
        if cfg.init_from and not Path(cfg.init_from).is_file():
            raise DataError(f"run '{name}' starts from {cfg.init_from}, which does not exist: train run "
                            f"'{project.cfg.runs[name].init_run}' first")
        for stage in [s.dataset for s in cfg.data.stages] or [cfg.data.dataset]:
            if not (Path(stage) / "manifest.json").is_file():
                raise DataError(f"run '{name}': dataset {stage} is not built (run stage 1, 1_data.py)")
        log(f"\n== run {name} ({'resuming' if holds_run(project.run_dir(name)) else 'new'}): {project.run_dir(name)}")
        summary = run(cfg, project.config_file, resume="auto")
        if summary["val_loss"] is not None:
            log(f"run {name}: step {summary['step']}, val loss {summary['val_loss']:.4f}")


# ----------------------------------------------------------------------------- stage 3: eval


def split_window(spec: str) -> tuple[str, int | None]:
    """'step-anchored@512' -> ('step-anchored', 512); 'rolling' -> ('rolling', None)."""
    name, _, context = spec.partition("@")
    if context and not (context.isdigit() and int(context) >= 2):
        raise ConfigError(f"window '{spec}': the context after '@' must be a number of tokens >= 2")
    return name, int(context) if context else None


def _eval_config(project: Project, window: str, limit: int | None):
    from tinylm.evaluate.scoring import EvalConfig

    name, context = split_window(window)
    cfg = EvalConfig(batch_size=project.cfg.eval.batch_size, limit=limit,
                     decoding=GenerateConfig(window=name, context=context))
    cfg.validate()
    return cfg


def _windows(project: Project, run: str) -> list[str]:
    """The main window, then every extra one the run's positional encoding allows."""
    from tinylm.model.checkpoint import load_checkpoint
    from tinylm.model.gpt import ABSOLUTE_POSITIONS

    if project.forgets(run):
        return [FORGET_WINDOW]
    extra = project.cfg.eval.extra_windows
    if not extra:
        return [project.cfg.eval.window]
    config = load_checkpoint(project.checkpoint(run))["model_config"]
    if config["pos_encoding"] not in ABSOLUTE_POSITIONS:
        return [project.cfg.eval.window] + [w for w in extra if w != project.cfg.eval.window]
    fits = [w for w in extra if split_window(w)[0] != "rolling" and (split_window(w)[1] or 0) <= config["block_size"]]
    return [project.cfg.eval.window] + [w for w in fits if w != project.cfg.eval.window]


def _suite_args(project: Project, names: list[str], log=print) -> list[str]:
    """NAME=PATH of each suite; a derived suite left empty (the run solved nothing) is skipped."""
    args = []
    for name in names:
        path = project.suite_path(name)
        if path.is_file() and not path.read_text().strip():
            log(f"suite {name}: {path} has no examples; not evaluated")
            continue
        args.append(f"{name}={path}")
    return args


def derive_suite(project: Project, derived: DerivedSuite, log=print) -> None:
    from tinylm.data.stages import stage_rename

    results = project.eval_dir(derived.run) / derived.suite / "results.jsonl"
    if not results.is_file():
        raise DataError(f"{results}: the evaluation that suite '{derived.name}' is made from is missing")
    out = project.suite_path(derived.name)
    log(stage_rename(results, project.suite_path(derived.suite), out, project.dataset_dir(derived.dataset),
                     derived.seed, derived.lengths, derived.solved_only, derived.trained_letters))


def evaluate_runs(project: Project, only: list[str] | None = None, log=print) -> None:
    import torch

    from tinylm.evaluate.scoring import evaluate_checkpoint, sweep

    ev = project.cfg.eval
    if ev.threads:
        torch.set_num_threads(ev.threads)
    runs = project.members(only) if only else project.eval_runs()
    plain = list(ev.suites)
    # runs whose results derived suites are made from go first, on the plain suites
    sources = {d.run for d in ev.derived}
    for name in [r for r in runs if r in sources] + [r for r in runs if r not in sources]:
        checkpoint = project.checkpoint(name)
        if not checkpoint.is_file():
            raise DataError(f"run '{name}': {checkpoint} is missing (train it first)")
        for d in ev.derived:
            if d.run == name:
                evaluate_checkpoint(checkpoint, _suite_args(project, [d.suite]), project.eval_dir(name),
                                    _eval_config(project, ev.window, ev.limit), log=log)
                derive_suite(project, d, log)
        suites = project.cfg.runs[name].suites or plain + [d.name for d in ev.derived]
        if project.forgets(name):
            from tinylm.studies import forget_eval

            log(f"\n== evaluating run {name} with its drop policy")
            forget_eval.evaluate_checkpoint(checkpoint, _suite_args(project, suites), project.eval_dir(name, FORGET_WINDOW),
                                            ev.limit, ev.batch_size, log=log)
            continue
        for window in _windows(project, name) if project.suites() else []:
            log(f"\n== evaluating run {name}, {window} window")
            evaluate_checkpoint(checkpoint, _suite_args(project, suites, log),
                                project.eval_dir(name, window), _eval_config(project, window, ev.limit), log=log)
        if ev.prompts:
            write_samples(project, name, log)
        if project.cfg.runs[name].sweep:
            log(f"\n== sweeping every checkpoint of run {name}")
            sweep(project.run_dir(name), _suite_args(project, plain), project.work / "sweep" / name,
                  _eval_config(project, ev.window, ev.sweep_limit or ev.limit), log=log)


def write_samples(project: Project, run: str, log=print) -> Path:
    """samples.json: every prompt of `eval.prompts` continued with each of `eval.decodings` by the
    run's checkpoint (a text tokenizer's prompt starts after <bos>; <unk>, <pad>, <bos> never generated)."""
    from tinylm.base.files import atomic_write_json
    from tinylm.decode.strategies import GenerateConfig, generate, suppressed_ids
    from tinylm.model.checkpoint import load_model

    model, tokenizer, _ = load_model(project.checkpoint(run))
    bos = [] if tokenizer.bos_id is None else [tokenizer.bos_id]
    samples = []
    for decoding, fields in project.cfg.eval.decodings.items():
        cfg = from_dict(GenerateConfig, fields, where=str(project.config_file), prefix=f"eval.decodings.{decoding}.")
        for prompt in project.cfg.eval.prompts:
            ids = bos + tokenizer.encode(prompt, where="eval.prompts").astype("int64").tolist()
            out = generate(model, [ids], cfg, eos_id=tokenizer.eos_id, suppress=suppressed_ids(tokenizer)).ids[0]
            samples.append({"decoding": decoding, "settings": fields, "prompt": prompt,
                            "text": tokenizer.decode(ids + out)})
            log(f"run {run}, {decoding}: {samples[-1]['text']!r}")
    path = project.work / "eval" / run / "samples.json"
    atomic_write_json(path, {"run": run, "checkpoint": str(project.checkpoint(run)), "samples": samples})
    return path


# ----------------------------------------------------------------------------- stage 4: report


def _windows_if_trained(project: Project, run: str) -> list[str]:
    """The windows a run is scored with; just the main one while the run has no checkpoint."""
    return _windows(project, run) if project.checkpoint(run).is_file() else [project.cfg.eval.window]


def run_row(project: Project, run: str) -> dict:
    """A run's row for the report (size, data, tokens seen, every suite's summary); suites of an
    extra window are keyed 'SUITE [WINDOW]'."""
    from tinylm.report.render import compare_row

    windows = _windows(project, run)
    for window in windows:
        if not (project.eval_dir(run, window) / "summary.json").is_file():
            raise DataError(f"{project.eval_dir(run, window)}: run '{run}' is not evaluated (run stage 3, 3_eval.py)")
    row, *extra = [compare_row(run, project.eval_dir(run, window)) for window in windows]
    for window, other in zip(windows[1:], extra):
        row["suites"].update({f"{name} [{window}]": s for name, s in other["suites"].items()})
    return row


def _sweep_rows(project: Project, run: str) -> tuple[list[dict], int]:
    from tinylm.report.render import run_facts

    path = project.work / "sweep" / run / "sweep.json"
    if not path.is_file():
        raise DataError(f"{path}: run '{run}' has no sweep (set sweep: true for it and run stage 3)")
    return json.loads(path.read_text())["rows"], run_facts(project.run_dir(run))["tokens_per_step"]


def _sweep_item_rows(project: Project, item: ReportItem) -> list[dict]:
    """The checkpoints of a sweep item's runs, each with the tokens it had seen; with several runs a
    curve is 'RUN: SUITE' and a checkpoint 'RUN/ckpt_...'."""
    rows = []
    for run in item.runs:
        run_rows, tokens_per_step = _sweep_rows(project, run)
        for r in run_rows:
            suites = {k: v for k, v in r["suites"].items() if not item.suites or k in item.suites}
            if len(item.runs) > 1:
                r = {**r, "checkpoint": f"{run}/{r['checkpoint']}"}
                suites = {f"{run}: {k}": v for k, v in suites.items()}
            rows.append({**r, "suites": suites, "tokens": r["step"] * tokens_per_step})
    return rows


def _forget_row(project: Project, run: str, suite: str) -> dict:
    """A run's numbers on one suite for a forget item: its scores, and what its policy kept and cost
    (None for a run decoded without one). A run trained a steps_factor longer is its own variant."""
    summary = json.loads((project.eval_dir(run, _windows(project, run)[0]) / "summary.json").read_text())
    found = [s for s in summary["suites"] if s["suite"] == suite]
    if not found:
        raise DataError(f"run '{run}' was not evaluated on suite '{suite}'")
    forget, factor = found[0].get("forget"), project.cfg.runs[run].steps_factor
    if forget is not None and factor != 1.0:
        forget = {**forget, "variant": f"{forget['variant']} x{factor:g} steps"}
    return {"run": run, "suite": suite, **found[0], "forget": forget}


def write_report(project: Project, log=print) -> list[Path]:
    from tinylm.base.files import atomic_write_text
    from tinylm.report import render as report

    rows = {}
    for name in project.eval_runs() if any(item.kind != "text" for item in project.cfg.report) else []:
        if all((project.eval_dir(name, w) / "summary.json").is_file() for w in _windows_if_trained(project, name)):
            rows[name] = run_row(project, name)
        else:
            log(f"run {name}: not evaluated yet; left out of the report")
    written = [_write_summary(project, rows)] if rows else []
    shown = [r for r in rows if not any(r in members for members in project.groups.values())]
    for name, members in project.groups.items():
        if all(m in rows for m in members):
            rows[name] = report.group_row(name, [rows[m] for m in members])
            shown.append(name)
    for item in project.cfg.report:
        if item.kind in ("text", "curves"):
            written.append((_text_report if item.kind == "text" else _curves_report)(project, item, log))
            continue
        missing = [r for r in item.runs if r not in rows]
        if item.kind == "sweep":
            missing = [r for r in item.runs if not (project.work / "sweep" / r / "sweep.json").is_file()]
        if missing or not rows:
            log(f"{item.file}: not written, its runs are not all evaluated yet ({', '.join(missing) or 'none'})")
            continue
        chosen = [rows[r] for r in (item.runs or shown)]
        if item.suites:
            chosen = [{**r, "suites": {k: v for k, v in r["suites"].items() if k in item.suites}} for r in chosen]
        path = project.results / item.file
        title = item.title or None
        if item.kind == "forget":
            forget_rows = [_forget_row(project, r, item.suites[0] if item.suites else project.suites()[0])
                           for r in (item.runs or shown)]
            if path.suffix == ".md":
                atomic_write_text(path, (f"# {item.title}\n\n" if item.title else "") + report.forget_table(forget_rows) + "\n")
            else:
                report.plot_forget(forget_rows, path, title=title, metric=item.metrics[0])
        elif item.kind == "table":
            table = report.runs_by_suite_table if item.layout == "suites" else report.runs_table
            atomic_write_text(path, (f"# {item.title}\n\n" if item.title else "") + table(chosen, tuple(item.metrics)) + "\n")
        elif item.kind == "scaling":
            report.plot_scaling(chosen, item.x, path, title=title, metric=item.metrics[0])
        elif item.kind == "bars":
            if item.metrics == ["val_loss"]:
                report.plot_val_loss(chosen, path, title=title)
            else:
                report.plot_bars(chosen, path, title=title, metric=item.metrics[0])
        else:
            sweep_rows = _sweep_item_rows(project, item)
            report.plot_sweep_tokens(sweep_rows, path, title=title)
            atomic_write_text(path.with_suffix(".md"), report.sweep_report(sweep_rows) + "\n")
            written.append(path.with_suffix(".md"))
        written.append(path)
        log(f"wrote {path}")
    return written


def _write_summary(project: Project, rows: dict[str, dict]) -> Path:
    """results/<config>/summary.json: every cell of the report with n and its 95% interval (and per
    seed group the mean and min-max over seeds), the config's commit and the machine."""
    from tinylm.base.files import atomic_write_json, git_revision, machine
    from tinylm.report import render as report

    seeds = {run: project.train_config(run).seed if project.cfg.runs[run].checkpoint is None else None
             for run in rows}
    path = project.results / "summary.json"
    config = project.config_file
    atomic_write_json(path, {"config": str(config.relative_to(project.root) if config.is_relative_to(project.root) else config),
                             "commit": git_revision(project.config_file.parent), "machine": machine(),
                             "groups": project.groups, "cells": report.summary_records(rows, seeds, project.groups)})
    return path


def _text_report(project: Project, item: ReportItem, log=print) -> Path:
    """results/<config>/FILE.md: each run's size, length and loss/perplexity at every evaluation,
    then its samples."""
    from tinylm.base.files import atomic_write_text
    from tinylm.report import render as report

    parts = [f"# {item.title}\n"] if item.title else []
    for run in item.runs or list(project.cfg.runs):
        run_dir = project.run_dir(run)
        metrics = run_dir / "metrics.jsonl"
        if not metrics.is_file():
            raise DataError(f"{metrics}: run '{run}' is not trained (run stage 2, 2_train.py)")
        records = [json.loads(line) for line in metrics.read_text().splitlines()]
        samples_path = project.work / "eval" / run / "samples.json"
        samples = json.loads(samples_path.read_text())["samples"] if samples_path.is_file() else []
        parts.append(report.text_run_report(run, report.run_facts(run_dir), records, samples))
    path = project.results / item.file
    atomic_write_text(path, "\n".join(parts))
    log(f"wrote {path}")
    return path


def _curves_report(project: Project, item: ReportItem, log=print) -> Path:
    """results/<config>/FILE.png: each run's loss and learning-rate curves against tokens."""
    from tinylm.report.compare import plot_curves, summarize

    runs = item.runs or list(project.cfg.runs)
    for run in runs:
        if not (project.run_dir(run) / "metrics.jsonl").is_file():
            raise DataError(f"{project.run_dir(run) / 'metrics.jsonl'}: run '{run}' is not trained (run stage 2)")
    path = project.results / item.file
    plot_curves([summarize(project.run_dir(r), label=r) for r in runs], path, x="tokens", title=item.title or None)
    log(f"wrote {path}")
    return path


# ----------------------------------------------------------------------------- command line


def stage_main(stage: str, project_dir: str | Path, argv: list[str]) -> int:
    """A project's stage script: `python N_STAGE.py [CONFIG] [options]`; exit status 2 on bad input."""
    project_dir = Path(project_dir)
    ap = ArgumentParser(prog=f"{project_dir.name} {stage}",
                 description=f"Stage '{stage}' of {project_dir.name} (see its README).")
    ap.add_argument("config", nargs="?", default="cpu", help="smoke, cpu, paper, or a config file (default: cpu)")
    if stage == "data":
        ap.add_argument("--workers", type=int, default=None, help="build processes (default: all cores)")
    if stage in ("train", "eval"):
        ap.add_argument("--run", action="append", default=None, help="only this run (repeatable)")

    def stage_command(argv: list[str]) -> None:
        args = ap.parse_args(argv)
        if getattr(args, "workers", None) is not None and args.workers < 1:
            raise ConfigError(f"--workers must be >= 1, got {args.workers}")
        project = Project(project_dir, args.config)
        if stage == "data":
            build_datasets(project, args.workers)
        elif stage == "train":
            train_runs(project, args.run)
        elif stage == "eval":
            evaluate_runs(project, args.run)
        else:
            write_report(project)

    return run_command(stage_command, argv)


def run_all(project_dir: str | Path, argv: list[str]) -> int:
    """Every stage script of a project in order, each its own process; the first failure stops the chain."""
    project_dir = Path(project_dir)
    scripts = sorted(p for p in project_dir.glob("[1-9]_*.py"))
    if len(argv) > 1:
        print(f"usage: run_all.py [CONFIG]  (a name in {project_dir / 'configs'}, e.g. smoke or cpu)", file=sys.stderr)
        return 2
    start = time.time()
    for script in scripts:
        print(f"\n=== {script.name} ===", flush=True)
        status = subprocess.call([sys.executable, str(script), *argv])
        if status != 0:
            print(f"stage {script.name} failed with exit status {status}", file=sys.stderr)
            return status
    print(f"\n{project_dir.name} finished in {(time.time() - start) / 60:.1f} min")
    return 0
