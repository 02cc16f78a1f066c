"""Scores -> tables and plots: markdown tables and PNG figures from evaluation summaries.

Inputs are the files `tinylm eval` writes: a checkpoint's OUT/summary.json (several suites) or a
sweep's OUT/sweep.json (one row per checkpoint).

    tinylm report evals/cpu            # table.md from summary.json
    tinylm report evals/sweep          # sweep.md, hard_match.png (hard match vs step and vs time)
"""

from __future__ import annotations

import json
from pathlib import Path

from tinylm.cli import ArgumentParser
from tinylm.errors import DataError
from tinylm.files import atomic_path, atomic_write_text


def _pct(x) -> str:
    return "-" if x is None else f"{x:.1f}"


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def suites_table(summaries: list[dict]) -> str:
    """One line per suite: size, hard/soft/failure %, mean fraction of correct steps, speed."""
    header = ["suite", "n", "hard %", "soft %", "failure %", "steps correct", "output %", "tokens/s", "wall s"]
    rows = []
    for s in summaries:
        t = s.get("timing", {})
        rows.append([s["suite"], s["n"], _pct(s["hard_pct"]), _pct(s["soft_pct"]), _pct(s["failure_pct"]),
                     f"{s['steps_correct_frac_mean']:.3f}", _pct(s.get("output_correct_pct")),
                     "-" if t.get("tokens_per_s") is None else f"{t['tokens_per_s']:.0f}",
                     "-" if t.get("wall_s") is None else f"{t['wall_s']:.1f}"])
    return markdown_table(header, rows)


def sweep_table(rows: list[dict]) -> str:
    """One line per checkpoint: step, training time, hard match % of each suite."""
    suites = sorted({name for r in rows for name in r["suites"]})
    header = ["checkpoint", "step", "train min"] + [f"{name} hard %" for name in suites]
    lines = []
    for r in rows:
        minutes = "-" if r.get("elapsed_s") is None else f"{r['elapsed_s'] / 60:.1f}"
        lines.append([r["checkpoint"], "-" if r.get("step") is None else r["step"], minutes]
                     + [_pct(r["suites"].get(name, {}).get("hard_pct")) for name in suites])
    return markdown_table(header, lines)


def time_to_thresholds(rows: list[dict], suite: str, thresholds=(90.0, 95.0, 99.0)) -> list[str]:
    """For each threshold, the first checkpoint (in training order) whose hard match reaches it."""
    ordered = sorted((r for r in rows if suite in r["suites"] and r.get("step") is not None),
                     key=lambda r: r["step"])
    lines = []
    for threshold in thresholds:
        hit = next((r for r in ordered if r["suites"][suite]["hard_pct"] >= threshold), None)
        if hit is None:
            best = max((r["suites"][suite]["hard_pct"] for r in ordered), default=None)
            lines.append(f"- {suite} hard match >= {threshold:g}%: not reached (best {_pct(best)}%)")
        else:
            minutes = "-" if hit.get("elapsed_s") is None else f"{hit['elapsed_s'] / 60:.1f} min"
            lines.append(f"- {suite} hard match >= {threshold:g}%: {minutes} of training "
                         f"(step {hit['step']}, {hit['suites'][suite]['hard_pct']:.1f}%)")
    return lines


def sweep_report(rows: list[dict]) -> str:
    """The sweep table, then the training time each suite needed to reach 90, 95 and 99% hard match."""
    suites = sorted({name for r in rows for name in r["suites"]})
    return "\n".join([sweep_table(rows), ""] + [line for name in suites for line in time_to_thresholds(rows, name)])


def plot_sweep(rows: list[dict], path: str | Path) -> None:
    """hard match % against training step and against training time, one line per suite."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    suites = sorted({name for r in rows for name in r["suites"]})
    xs = [("step", "training step"), ("elapsed_s", "training time (min)")]
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, (key, label) in zip(axes, xs):
        for name in suites:
            pts = [(r[key], r["suites"][name]["hard_pct"]) for r in rows
                   if r.get(key) is not None and name in r["suites"]]
            pts.sort()
            if key == "elapsed_s":
                pts = [(x / 60, y) for x, y in pts]
            if pts:
                ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=name)
        ax.set_xlabel(label)
        ax.set_ylabel("hard match %")
        ax.set_ylim(0, 100)
        ax.grid(alpha=0.3)
    axes[0].legend()
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=120)
    plt.close(fig)


def plot_suites(summaries: list[dict], path: str | Path) -> None:
    """Stacked bars of hard / soft / failure % per suite."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [s["suite"] for s in summaries]
    fig, ax = plt.subplots(figsize=(max(4, 1.5 * len(names)), 4))
    bottom = [0.0] * len(names)
    for cls, color in (("hard", "tab:green"), ("soft", "tab:orange"), ("failure", "tab:red")):
        vals = [s[f"{cls}_pct"] for s in summaries]
        ax.bar(names, vals, bottom=bottom, color=color, label=cls)
        bottom = [b + v for b, v in zip(bottom, vals)]
    ax.set_ylabel("% of examples")
    ax.legend()
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=120)
    plt.close(fig)


def report(folder: str | Path) -> list[Path]:
    """Write the tables and plots of an evaluation folder; returns the files written."""
    folder = Path(folder)
    written = []
    if (folder / "sweep.json").exists():
        rows = json.loads((folder / "sweep.json").read_text())["rows"]
        atomic_write_text(folder / "sweep.md", sweep_report(rows) + "\n")
        plot_sweep(rows, folder / "hard_match.png")
        written += [folder / "sweep.md", folder / "hard_match.png"]
    elif (folder / "summary.json").exists():
        summary = json.loads((folder / "summary.json").read_text())
        suites = summary.get("suites", [summary])
        atomic_write_text(folder / "table.md", suites_table(suites) + "\n")
        plot_suites(suites, folder / "classes.png")
        written += [folder / "table.md", folder / "classes.png"]
    else:
        raise DataError(f"{folder}: no summary.json or sweep.json (run `tinylm eval --out {folder}` first)")
    return written


def cli(argv: list[str]) -> int:
    """tinylm report DIR: markdown tables and PNG plots from an evaluation or sweep folder."""
    ap = ArgumentParser(prog="tinylm report", description=cli.__doc__)
    ap.add_argument("folder", help="an evaluation output folder (--out of tinylm eval)")
    args = ap.parse_args(argv)
    for path in report(args.folder):
        print(path)
        if path.suffix == ".md":
            print(path.read_text())
    return 0
