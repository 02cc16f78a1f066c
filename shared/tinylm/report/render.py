"""Scores -> tables and plots: the report of an evaluation folder, and runs compared (the tables are
tinylm.report.tables, the figures tinylm.report.figures).

Inputs are the files `tinylm eval` writes: a checkpoint's OUT/summary.json (several suites) or a
sweep's OUT/sweep.json (one row per checkpoint); `report compare` sets several checkpoints'
evaluations side by side.

    tinylm report evals/cpu            # table.md, classes.png from summary.json
    tinylm report evals/sweep          # sweep.md, hard_match.png (vs step and time), hard_match_tokens.png
    tinylm report compare --run small=evals/small --run big=evals/big --x parameters --out reports/size

Cross-run functions take plain rows, one per run, so that project scripts can build them too:

    {"run": "small", "parameters": 1234567, "train_examples": 20000, "tokens": 5242880,
     "suites": {"demo-test": {"n": 1000, "hard_pct": 97.1, "soft_pct": 1.2, "failure_pct": 1.7,
                              "steps_correct_frac_mean": 0.991}, ...}}

`report compare` reads each evaluation folder's summary.json and, for the other numbers, the run
folder that holds the checkpoint summary.json names (a relative path is taken from the working
directory, as `tinylm eval` was given it; see `run_facts`):

- parameters: that folder's run.json `parameters` (the model's parameter count, tied weights once);
- tokens seen: the checkpoint's step x config.yaml's `batch_size` x `model.block_size` (what
  metrics.jsonl logs as `tokens`);
- train examples: the training examples of config.yaml's `data.dataset` (its manifest.json,
  summed over `data.stages` for a curriculum; not counting an `init_from` checkpoint's training).
"""

from __future__ import annotations

import json
from pathlib import Path

from tinylm.base.args import ArgumentParser
from tinylm.base.config import read_yaml
from tinylm.base.errors import ConfigError, DataError
from tinylm.base.files import atomic_write_json, atomic_write_text, resolve_path
from tinylm.report.figures import plot_bars, plot_scaling, plot_suites, plot_sweep, plot_sweep_tokens
from tinylm.report.tables import (
    COUNT_KEYS,
    FACTS,
    METRICS,
    SCALING_X,
    SUITE_KEYS,
    check_runs,
    fmt_count,
    markdown_table,
    runs_table,
    suites_table,
    sweep_report,
)

# -----------------------------------------------------------------------------
# Where the numbers come from: evaluation folders and the run folders of their checkpoints


def read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise DataError(f"{path}: cannot read JSON ({type(exc).__name__}: {exc})") from None
    if not isinstance(data, dict):
        raise DataError(f"{path}: expected a JSON object")
    return data


def _train_examples(config: dict, config_path: Path) -> int | None:
    """Training examples of the run's dataset (summed over curriculum stages), from their manifests."""
    data = config.get("data") or {}
    folders = [s["dataset"] for s in data.get("stages") or []] or [data.get("dataset")]
    if data.get("train_examples") and len(folders) == 1:  # a data-scaling run's cap
        return data["train_examples"]
    total = 0
    for folder in folders:
        if not folder:
            return None
        # the path as written in the config: from the repository holding the run folder, else the working directory
        found = [p for p in (resolve_path(folder, config_path), Path(folder)) if (p / "manifest.json").is_file()]
        if not found:
            return None
        examples = read_json(found[0] / "manifest.json").get("splits", {}).get("train", {}).get("examples")
        if not isinstance(examples, int):
            return None
        total += examples
    return total


def run_facts(run_dir: str | Path) -> dict:
    """What a run folder says about its run: `parameters` (run.json), `tokens_per_step` and
    `train_examples` (config.yaml and its datasets' manifests); None where a file is missing."""
    run_dir = Path(run_dir)
    facts = dict.fromkeys(FACTS)
    if (run_dir / "run.json").is_file():
        facts["parameters"] = read_json(run_dir / "run.json").get("parameters")
    config_path = run_dir / "config.yaml"
    if config_path.is_file():
        config = read_yaml(config_path)
        block_size = (config.get("model") or {}).get("block_size")
        if config.get("batch_size") and block_size:
            facts["tokens_per_step"] = config["batch_size"] * block_size
        facts["train_examples"] = _train_examples(config, config_path)
    return facts


def text_run_report(run: str, facts: dict, records: list[dict], samples: list[dict]) -> str:
    """Markdown for a text run: its size, then train and validation loss and perplexity at every
    evaluation (train: over the steps since the previous one), then each sample as a quote."""
    steps = [r for r in records if "loss" in r]
    evals = [r for r in records if "val_loss" in r]
    minutes = steps[-1]["elapsed_s"] / 60 if steps else None
    head = (f"## {run}\n\n{fmt_count(facts.get('parameters'))} parameters, {fmt_count(steps[-1]['step'] if steps else None)} "
            f"steps, {fmt_count(steps[-1]['tokens'] if steps else None)} tokens"
            + (f", {minutes:.1f} min of training" if minutes is not None else "") + ".\n")
    rows = [[fmt_count(r["step"]), fmt_count(r["step"] * facts["tokens_per_step"]) if facts.get("tokens_per_step") else "-",
             *(f"{r[k]:.4f}" if r.get(k) is not None else "-" for k in ("train_loss", "val_loss")),
             *(f"{r[k]:.3f}" if r.get(k) is not None else "-" for k in ("train_perplexity", "val_perplexity"))]
            for r in evals]
    table = markdown_table(["step", "tokens", "train loss", "val loss", "train perplexity", "val perplexity"], rows)
    quotes = [f"**{s['decoding']}** `{json.dumps(s['settings'])}`:\n\n" + "\n".join(f"> {line}" if line else ">"
                                                                                    for line in s["text"].split("\n"))
              for s in samples]
    return "\n".join([head, table, ""] + (["\n\n".join(quotes) + "\n"] if quotes else []))


def compare_row(label: str, eval_dir: str | Path) -> dict:
    """The cross-run row of one evaluation folder (`tinylm eval --checkpoint ... --out EVAL_DIR`)."""
    eval_dir = Path(eval_dir)
    path = eval_dir / "summary.json"
    if not path.is_file():
        hint = ("it holds a sweep; compare single-checkpoint evaluations" if (eval_dir / "sweep.json").is_file()
                else f"run `tinylm eval --checkpoint CKPT --suite ... --out {eval_dir}` first")
        raise DataError(f"{eval_dir}: no summary.json ({hint})")
    summary = read_json(path)
    suites = {}
    for s in summary.get("suites", [summary]):
        missing = [k for k in ("suite", *SUITE_KEYS) if k not in s]
        if missing:
            raise DataError(f"{path}: a suite summary without {missing[0]}")
        suites[s["suite"]] = {k: s[k] for k in (*SUITE_KEYS, *COUNT_KEYS, "by_statement") if k in s}
    checkpoint, step = summary.get("checkpoint"), summary.get("step")
    facts = run_facts(Path(checkpoint).parent) if checkpoint else dict.fromkeys(FACTS)
    tokens = step * facts["tokens_per_step"] if step is not None and facts["tokens_per_step"] else None
    val_loss = val_loss_at(Path(checkpoint).parent, step) if checkpoint and step is not None else None
    return {"run": label, "parameters": facts["parameters"], "train_examples": facts["train_examples"],
            "tokens": tokens, "val_loss": val_loss, "suites": suites, "eval_dir": str(eval_dir),
            "checkpoint": checkpoint, "step": step}


def val_loss_at(run_dir: Path, step: int) -> float | None:
    """The validation loss the run logged at `step` (metrics.jsonl), or None."""
    path = run_dir / "metrics.jsonl"
    if not path.is_file():
        return None
    losses = [r["val_loss"] for r in map(json.loads, path.read_text().splitlines())
              if r.get("step") == step and r.get("val_loss") is not None]
    return losses[-1] if losses else None


def compare(runs: list[tuple[str, str | Path]], out_dir: str | Path, x: str = "none",
            title: str | None = None, metric: str = "hard_pct") -> list[Path]:
    """table.md, runs.json and scaling.png (x: parameters, train_examples, tokens) or bars.png
    (x: none) in out_dir, from several evaluation folders; checks everything before writing."""
    if x != "none" and x not in SCALING_X:
        raise ConfigError(f"--x must be one of {[*SCALING_X, 'none']}, got {x!r}")
    rows = [compare_row(label, folder) for label, folder in runs]
    check_runs(rows)
    if x != "none":
        for r in rows:
            if r[x] is None:
                where = f"the run folder of {r['checkpoint']}" if r["checkpoint"] else "summary.json (no checkpoint named)"
                raise DataError(f"{r['eval_dir']}: no {x} for --x {x} (not found in {where}); use --x none")
    out_dir = Path(out_dir)
    plot = out_dir / ("bars.png" if x == "none" else "scaling.png")
    if x == "none":
        plot_bars(rows, plot, title, metric)
    else:
        plot_scaling(rows, x, plot, title)
    atomic_write_text(out_dir / "table.md", runs_table(rows) + "\n")
    atomic_write_json(out_dir / "runs.json", {"x": x, "rows": rows})
    return [out_dir / "table.md", out_dir / "runs.json", plot]


def report(folder: str | Path) -> list[Path]:
    """Write the tables and plots of an evaluation folder; returns the files written."""
    folder = Path(folder)
    written = []
    if (folder / "sweep.json").exists():
        sweep = read_json(folder / "sweep.json")
        rows = sweep["rows"]
        atomic_write_text(folder / "sweep.md", sweep_report(rows) + "\n")
        plot_sweep(rows, folder / "hard_match.png")
        written += [folder / "sweep.md", folder / "hard_match.png"]
        tokens_per_step = run_facts(sweep["run"])["tokens_per_step"]
        if tokens_per_step and any(r.get("step") is not None for r in rows):
            plot_sweep_tokens(rows, folder / "hard_match_tokens.png", tokens_per_step)
            written.append(folder / "hard_match_tokens.png")
    elif (folder / "summary.json").exists():
        summary = read_json(folder / "summary.json")
        suites = summary.get("suites", [summary])
        atomic_write_text(folder / "table.md", suites_table(suites) + "\n")
        plot_suites(suites, folder / "classes.png")
        written += [folder / "table.md", folder / "classes.png"]
    else:
        raise DataError(f"{folder}: no summary.json or sweep.json (run `tinylm eval --out {folder}` first)")
    return written


# -----------------------------------------------------------------------------
# Command line


def _run_spec(spec: str) -> tuple[str, str]:
    label, sep, folder = spec.partition("=")
    if not sep or not label or not folder:
        raise ConfigError(f"--run {spec!r}: expected LABEL=EVAL_DIR")
    return label, folder


def compare_cli(argv: list[str]) -> int:
    """tinylm report compare: one table and one plot over several runs' evaluations on the same suites."""
    ap = ArgumentParser(
        prog="tinylm report compare", description=compare_cli.__doc__,
        epilog="Numbers: suites from EVAL_DIR/summary.json; parameters from run.json, and tokens seen "
               "(step x batch_size x block_size) and train examples (the dataset's manifest.json) from "
               "config.yaml, in the run folder holding the evaluated checkpoint.")
    ap.add_argument("--run", action="append", default=[], required=True, metavar="LABEL=EVAL_DIR",
                    help="a run's label and its `tinylm eval --out` folder (repeatable)")
    ap.add_argument("--x", choices=[*SCALING_X, "none"], default="none",
                    help="scaling.png: hard match against this (log scale); none: bars.png, grouped bars")
    ap.add_argument("--metric", choices=list(METRICS), default="hard_pct", help="the bars' metric (--x none)")
    ap.add_argument("--title", default=None, help="figure title")
    ap.add_argument("--out", required=True, help="output folder: table.md, runs.json and the plot")
    args = ap.parse_args(argv)
    written = compare([_run_spec(s) for s in args.run], args.out, args.x, args.title, args.metric)
    print(written[0].read_text(), end="")
    for path in written:
        print(path)
    return 0


def cli(argv: list[str]) -> int:
    """tinylm report DIR: markdown tables and PNG plots from an evaluation or sweep folder
    (`tinylm report compare --help`: several runs side by side)."""
    if argv[:1] == ["compare"]:
        return compare_cli(argv[1:])
    ap = ArgumentParser(prog="tinylm report", description=cli.__doc__)
    ap.add_argument("folder", help="an evaluation output folder (--out of tinylm eval)")
    args = ap.parse_args(argv)
    for path in report(args.folder):
        print(path)
        if path.suffix == ".md":
            print(path.read_text())
    return 0
