"""Research projects: one YAML per size describes a project's datasets, runs, evaluation and report.

A project folder holds `configs/{smoke,cpu,paper}.yaml` (each an `Experiment`, whose sections
are tinylm.studies.experiment_config) and four stage
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
from pathlib import Path

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
from tinylm.studies.experiment_config import (
    DerivedSuite,
    Experiment,
    ReportItem,
    expand_seeds,
    read_with_base,
    split_window,
)

CHECKPOINT = "best.pt"
FORGET_WINDOW = "forget"  # the evaluation folder of a run scored by the forgetting decoder

# ----------------------------------------------------------------------------- a loaded project


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


def _eval_config(project: Project, window: str, limit: int | None):
    from tinylm.decode.strategies import GenerateConfig
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
    extra window are keyed 'SUITE [WINDOW]', and a suite's programs with and without a kind of
    eval.statements 'SUITE: KIND' and 'SUITE: no KIND'."""
    from tinylm.report.render import compare_row
    from tinylm.report.tables import COUNT_KEYS, SUITE_KEYS

    windows = _windows(project, run)
    for window in windows:
        if not (project.eval_dir(run, window) / "summary.json").is_file():
            raise DataError(f"{project.eval_dir(run, window)}: run '{run}' is not evaluated (run stage 3, 3_eval.py)")
    row, *extra = [compare_row(run, project.eval_dir(run, window)) for window in windows]
    for window, other in zip(windows[1:], extra):
        row["suites"].update({f"{name} [{window}]": s for name, s in other["suites"].items()})
    suites = {}
    for name, summary in row["suites"].items():
        split = summary.pop("by_statement", {})
        suites[name] = summary
        for label in (label for kind in project.cfg.eval.statements for label in (kind, f"no {kind}")):
            if label in split:
                suites[f"{name}: {label}"] = {k: split[label][k] for k in (*SUITE_KEYS, *COUNT_KEYS)}
    return {**row, "suites": suites}


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
    (None for a run decoded without one); for a run with seeds, their mean with its min-max. A run
    trained a steps_factor longer is its own variant."""
    if run in project.groups:
        from tinylm.report.tables import forget_group_row

        return forget_group_row(run, [_forget_row(project, m, suite) for m in project.groups[run]])
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
    from tinylm.report import figures, tables

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
            rows[name] = tables.group_row(name, [rows[m] for m in members])
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
                atomic_write_text(path, (f"# {item.title}\n\n" if item.title else "") + tables.forget_table(forget_rows) + "\n")
            else:
                figures.plot_forget(forget_rows, path, title=title, metric=item.metrics[0])
        elif item.kind == "table":
            table = tables.runs_by_suite_table if item.layout == "suites" else tables.runs_table
            atomic_write_text(path, (f"# {item.title}\n\n" if item.title else "") + table(chosen, tuple(item.metrics)) + "\n")
        elif item.kind == "scaling":
            figures.plot_scaling(chosen, item.x, path, title=title, metric=item.metrics[0])
        elif item.kind == "bars":
            if item.metrics == ["val_loss"]:
                figures.plot_val_loss(chosen, path, title=title)
            else:
                figures.plot_bars(chosen, path, title=title, metric=item.metrics[0])
        else:
            sweep_rows = _sweep_item_rows(project, item)
            figures.plot_sweep_tokens(sweep_rows, path, title=title)
            atomic_write_text(path.with_suffix(".md"), tables.sweep_report(sweep_rows) + "\n")
            written.append(path.with_suffix(".md"))
        written.append(path)
        log(f"wrote {path}")
    return written


def _write_summary(project: Project, rows: dict[str, dict]) -> Path:
    """results/<config>/summary.json: every cell of the report with n and its 95% interval (and per
    seed group the mean and min-max over seeds), the config's commit and the machine."""
    from tinylm.base.files import atomic_write_json, git_revision, machine
    from tinylm.report import tables

    seeds = {run: project.train_config(run).seed if project.cfg.runs[run].checkpoint is None else None
             for run in rows}
    path = project.results / "summary.json"
    config = project.config_file
    atomic_write_json(path, {"config": str(config.relative_to(project.root) if config.is_relative_to(project.root) else config),
                             "commit": git_revision(project.config_file.parent), "machine": machine(),
                             "groups": project.groups, "cells": tables.summary_records(rows, seeds, project.groups)})
    return path


def _text_report(project: Project, item: ReportItem, log=print) -> Path:
    """results/<config>/FILE.md: each run's size, length and loss/perplexity at every evaluation,
    then its samples."""
    from tinylm.base.files import atomic_write_text
    from tinylm.report import render

    parts = [f"# {item.title}\n"] if item.title else []
    for run in item.runs or list(project.cfg.runs):
        run_dir = project.run_dir(run)
        metrics = run_dir / "metrics.jsonl"
        if not metrics.is_file():
            raise DataError(f"{metrics}: run '{run}' is not trained (run stage 2, 2_train.py)")
        records = [json.loads(line) for line in metrics.read_text().splitlines()]
        samples_path = project.work / "eval" / run / "samples.json"
        samples = json.loads(samples_path.read_text())["samples"] if samples_path.is_file() else []
        parts.append(render.text_run_report(run, render.run_facts(run_dir), records, samples))
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
