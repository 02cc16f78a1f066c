"""Run folders -> one figure and one table: the training curves of several runs side by side.

A run folder (`tinylm train`'s out_dir) holds config.yaml (the resolved config), run.json (the
parameter count) and metrics.jsonl: a line per step (loss, lr, grad_norm, tokens, tokens_per_s,
elapsed_s) and one per evaluation (val_loss, val_perplexity, train_loss, train_perplexity);
metrics.csv holds the step lines as CSV, eval.csv the evaluation lines.

The figure has, for every run, the training loss (a thin line) and the validation loss (points)
on one panel, the learning rate on a second and, where the metrics hold any, the accuracies (keys
ending in "acc" or "accuracy") on a third. The x axis is the step, the tokens seen or the minutes
of training (counted across resumes: each invocation's clock starts at 0). The table gives each
run's size, length and losses, then the config keys whose values differ between the runs.

    tinylm compare runs/a runs/b [--x tokens] [--out compare.png]
"""

from __future__ import annotations

import json
from pathlib import Path

from tinylm.base.args import ArgumentParser
from tinylm.base.config import read_yaml
from tinylm.base.errors import DataError
from tinylm.report.figures import new_figure, save_figure
from tinylm.report.render import read_json
from tinylm.report.tables import markdown_table

X_AXES = {"step": "training step", "tokens": "training tokens seen", "minutes": "training time (min)"}
SAME_FOR_ALL = ("out_dir",)  # differs between any two runs by construction


def read_metrics(run_dir: str | Path) -> list[dict]:
    """The records of a run's metrics.jsonl; a torn last line (a killed run) is dropped."""
    path = Path(run_dir) / "metrics.jsonl"
    if not path.is_file():
        raise DataError(f"{run_dir}: no metrics.jsonl (not a `tinylm train` run folder, or not started)")
    lines = path.read_text().splitlines()
    records = []
    for n, line in enumerate(lines):
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            if n < len(lines) - 1:
                raise DataError(f"{path}: line {n + 1} is not JSON") from None
    return records


def flatten(d: dict, prefix: str = "") -> dict:
    """{'optim': {'lr': 1}} -> {'optim.lr': 1}."""
    flat = {}
    for key, value in d.items():
        if isinstance(value, dict):
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def _with_minutes(records: list[dict]) -> list[dict]:
    """Step records with 'minutes': elapsed_s / 60 made cumulative over resumed invocations."""
    out, offset, last = [], 0.0, 0.0
    for r in records:
        if "loss" not in r:
            continue
        if r["elapsed_s"] < last:  # a resumed invocation's clock starts again
            offset += last
        last = r["elapsed_s"]
        out.append({**r, "minutes": (offset + last) / 60})
    return out


def summarize(run_dir: str | Path, label: str | None = None) -> dict:
    """One run's numbers for the table and its curves for the figure."""
    run_dir = Path(run_dir)
    records = read_metrics(run_dir)
    steps = _with_minutes(records)
    by_step = {r["step"]: r for r in steps}
    # an evaluation record has only its step: its tokens and minutes are those of the step's record
    vals = [{**{k: v for k, v in by_step.get(r["step"], {}).items() if k in X_AXES}, **r}
            for r in records if "val_loss" in r]
    best = min(vals, key=lambda r: r["val_loss"], default=None)
    info = read_json(run_dir / "run.json") if (run_dir / "run.json").is_file() else {}
    config = flatten(read_yaml(run_dir / "config.yaml")) if (run_dir / "config.yaml").is_file() else {}
    last = steps[-1] if steps else {}
    return {"run": label or run_dir.name, "dir": str(run_dir), "parameters": info.get("parameters"),
            "steps": last.get("step"), "tokens": last.get("tokens"), "minutes": last.get("minutes"),
            "loss": last.get("loss"), "val_loss": vals[-1]["val_loss"] if vals else None,
            "best_val_loss": None if best is None else best["val_loss"],
            "best_step": None if best is None else best["step"],
            "config": config, "curve": steps, "val_curve": vals,
            "accuracy_keys": sorted({k for r in records for k in r if k.endswith(("acc", "accuracy"))})}


def differing_keys(summaries: list[dict]) -> list[str]:
    """Config keys (dotted) whose values are not the same in every run, in config order."""
    keys = list(dict.fromkeys(k for s in summaries for k in s["config"]))
    return [k for k in keys if k not in SAME_FOR_ALL and len({repr(s["config"].get(k)) for s in summaries}) > 1]


def _num(x, fmt: str) -> str:
    return "-" if x is None else format(x, fmt)


def compare_table(summaries: list[dict], keys: list[str] | None = None) -> str:
    """One line per run: parameters, steps, tokens, minutes, last training and validation loss, the
    best validation loss and its step, then the value of each of `keys` (default: the differing ones)."""
    keys = differing_keys(summaries) if keys is None else keys
    header = ["run", "parameters", "steps", "tokens", "minutes", "loss", "val loss", "best val loss"] + keys
    rows = [[s["run"], _num(s["parameters"], ","), _num(s["steps"], ","), _num(s["tokens"], ","),
             _num(s["minutes"], ".1f"), _num(s["loss"], ".4f"), _num(s["val_loss"], ".4f"),
             "-" if s["best_val_loss"] is None else f"{s['best_val_loss']:.4f} (step {s['best_step']})"]
            + [str(s["config"].get(k, "-")) for k in keys] for s in summaries]
    return markdown_table(header, rows)


def plot_curves(summaries: list[dict], path: str | Path, x: str = "step", title: str | None = None):
    """Loss, learning rate and (where logged) accuracy curves of every run against `x`; returns the Figure."""
    if x not in X_AXES:
        raise DataError(f"x must be one of {list(X_AXES)}, got {x!r}")
    accuracy = sorted({k for s in summaries for k in s["accuracy_keys"]})
    fig = new_figure(5 * (3 if accuracy else 2), 4, title)
    axes = fig.subplots(1, 3 if accuracy else 2)
    for i, s in enumerate(summaries):
        color = f"C{i % 10}"
        xs = [r[x] for r in s["curve"]]
        axes[0].plot(xs, [r["loss"] for r in s["curve"]], color=color, lw=0.8, alpha=0.6, label=s["run"])
        val = [r for r in s["val_curve"] if x in r]
        axes[0].plot([r[x] for r in val], [r["val_loss"] for r in val], "o-", color=color, ms=4)
        axes[1].plot(xs, [r["lr"] for r in s["curve"]], color=color)
        for key in accuracy:
            pts = [r for r in s["curve"] + s["val_curve"] if key in r and x in r]
            if pts:
                axes[2].plot([r[x] for r in pts], [r[key] for r in pts], "o-", color=color, ms=3,
                             label=f"{s['run']} {key}")
    for ax, label in zip(axes, ["loss (line: train, points: validation)", "learning rate", "accuracy"]):
        ax.set_xlabel(X_AXES[x])
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    for ax in axes[::2]:  # the runs on the loss panel, run and key on the accuracy panel
        ax.legend(fontsize=8)
    axes[0].set_yscale("log")
    return save_figure(fig, path)


def _labels(folders: list[str]) -> list[str]:
    """Folder names, or the paths as given where two names collide."""
    names = [Path(f).name for f in folders]
    return names if len(set(names)) == len(names) else [str(f) for f in folders]


def cli(argv: list[str]) -> int:
    """tinylm compare RUN...: the loss, learning-rate (and accuracy) curves of several training runs
    on one PNG, and a table of their numbers and of the config keys that differ."""
    ap = ArgumentParser(prog="tinylm compare", description=cli.__doc__)
    ap.add_argument("runs", nargs="+", metavar="RUN", help="run folders (tinylm train's out_dir)")
    ap.add_argument("--x", choices=list(X_AXES), default="step", help="x axis (default: step)")
    ap.add_argument("--out", default="compare.png", help="the PNG to write (default: compare.png)")
    ap.add_argument("--title", default=None, help="figure title")
    args = ap.parse_args(argv)
    summaries = [summarize(folder, label) for folder, label in zip(args.runs, _labels(args.runs))]
    plot_curves(summaries, args.out, args.x, args.title)
    print(compare_table(summaries))
    print(args.out)
    return 0
