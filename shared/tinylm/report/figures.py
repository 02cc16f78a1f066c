"""Scores -> PNG figures, with matplotlib's Figure and no pyplot (no global state; each function
returns its Figure): hard match against steps, tokens, sizes and keep ratios, with intervals and
y axes from 0. Rows are the plain dicts tinylm.report.render describes."""

from __future__ import annotations

import math
from pathlib import Path

from tinylm.base.errors import ConfigError, DataError
from tinylm.base.files import atomic_path
from tinylm.report.tables import METRICS, SCALING_X, check_runs, interval_pct, metric_pct


def new_figure(width: float, height: float, title: str | None = None):
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height))
    if title:
        fig.suptitle(title)
    return fig


def save_figure(fig, path: str | Path):
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=120)
    return fig


def _hard_axis(ax, xlabel: str) -> None:
    ax.set_xlabel(xlabel)
    ax.set_ylabel("hard match %")
    ax.set_ylim(0, 105)
    ax.grid(alpha=0.3)


def plot_sweep(rows: list[dict], path: str | Path):
    """hard match % against training step and against training time, one line per suite."""
    suites = sorted({name for r in rows for name in r["suites"]})
    xs = [("step", "training step"), ("elapsed_s", "training time (min)")]
    fig = new_figure(10, 4)
    axes = fig.subplots(1, 2)
    for ax, (key, label) in zip(axes, xs):
        for name in suites:
            pts = [(r[key], r["suites"][name]["hard_pct"]) for r in rows
                   if r.get(key) is not None and name in r["suites"]]
            pts.sort()
            if key == "elapsed_s":
                pts = [(x / 60, y) for x, y in pts]
            if pts:
                ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=name)
        _hard_axis(ax, label)
    axes[0].legend()
    return save_figure(fig, path)


def plot_sweep_tokens(rows: list[dict], path: str | Path, tokens_per_step: int | None = None, title: str | None = None):
    """hard match % against training tokens seen (a row's `tokens`, else step x tokens_per_step), one
    line per suite with its 95% interval as a band."""
    if tokens_per_step is not None and tokens_per_step < 1:
        raise DataError(f"tokens_per_step must be >= 1, got {tokens_per_step}")
    if tokens_per_step is None and any("tokens" not in r for r in rows):
        raise DataError("a sweep row has no tokens and no tokens_per_step was given")
    stepped = sorted((r for r in rows if r.get("step") is not None), key=lambda r: r["step"])
    if not stepped:
        raise DataError("no sweep row has a training step to place it on a token axis")
    fig = new_figure(6, 4, title)
    ax = fig.subplots()
    for name in sorted({name for r in stepped for name in r["suites"]}):
        scored = [r for r in stepped if name in r["suites"]]
        xs = [r["tokens"] if "tokens" in r else r["step"] * tokens_per_step for r in scored]
        line, = ax.plot(xs, [r["suites"][name]["hard_pct"] for r in scored], marker="o", label=name)
        bands = [interval_pct(r["suites"][name], "hard_pct") for r in scored]
        if None not in bands:
            ax.fill_between(xs, [b[0] for b in bands], [b[1] for b in bands], color=line.get_color(), alpha=0.2)
    _hard_axis(ax, "training tokens seen")
    ax.legend()
    return save_figure(fig, path)


def plot_suites(summaries: list[dict], path: str | Path):
    """Stacked bars of hard / soft / failure % per suite."""
    names = [s["suite"] for s in summaries]
    fig = new_figure(max(4, 1.5 * len(names)), 4)
    ax = fig.subplots()
    bottom = [0.0] * len(names)
    for cls, color in (("hard", "tab:green"), ("soft", "tab:orange"), ("failure", "tab:red")):
        vals = [s[f"{cls}_pct"] for s in summaries]
        ax.bar(names, vals, bottom=bottom, color=color, label=cls)
        bottom = [b + v for b, v in zip(bottom, vals)]
    ax.set_ylabel("% of examples")
    ax.legend()
    return save_figure(fig, path)


def plot_scaling(rows: list[dict], x: str, path: str | Path, title: str | None = None, metric: str = "hard_pct"):
    """`metric` (hard match % by default) against parameters, training examples or tokens seen (log
    scale), one colour per suite, each point labelled with its run and drawn with its interval. Two
    neighbouring points are joined by a line only where their intervals do not overlap: a line
    between two numbers inside each other's noise would show a trend that was not measured."""
    if x not in SCALING_X:
        raise ConfigError(f"x must be one of {list(SCALING_X)}, got {x!r}")
    if metric not in METRICS:
        raise ConfigError(f"metric must be one of {list(METRICS)}, got {metric!r}")
    suites = check_runs(rows)
    for r in rows:
        if not r.get(x):
            raise DataError(f"run '{r['run']}': no {x} to place it on the x axis")
    fig = new_figure(7, 4.5, title)
    ax = fig.subplots()
    for name in suites:
        ordered = sorted((r for r in rows if name in r["suites"]), key=lambda r: r[x])
        pts = [(r[x], metric_pct(r["suites"][name], metric), r["run"]) for r in ordered]
        bars = _error_bars([r["suites"][name] for r in ordered], metric)
        drawn = ax.errorbar([p[0] for p in pts], [p[1] for p in pts], bars, fmt="o", capsize=3, label=name)
        for i in range(len(pts) - 1):
            lows = [pts[j][1] - bars[0][j] for j in (i, i + 1)]
            highs = [pts[j][1] + bars[1][j] for j in (i, i + 1)]
            if highs[0] < lows[1] or highs[1] < lows[0]:   # the intervals are apart: a measured change
                ax.plot([pts[i][0], pts[i + 1][0]], [pts[i][1], pts[i + 1][1]], color=drawn.lines[0].get_color())
        for px, py, label in pts:
            ax.annotate(label, (px, py), textcoords="offset points", xytext=(4, 4), fontsize=8)
    from matplotlib.ticker import NullFormatter

    ax.set_xscale("log")
    ax.xaxis.set_minor_formatter(NullFormatter())  # decades only: minor labels overlap
    ax.margins(x=0.1)
    _hard_axis(ax, SCALING_X[x])
    ax.set_ylabel(_axis_label(metric))
    ax.legend()
    return save_figure(fig, path)


def _axis_label(metric: str) -> str:
    return METRICS[metric] if metric != "steps_correct_frac_mean" else "% of trace steps right"


def _error_bars(summaries: list[dict | None], metric: str):
    """matplotlib's yerr (2 x N distances below and above) of each summary's band; 0 where none."""
    below, above = [], []
    for summary in summaries:
        band = None if summary is None else interval_pct(summary, metric)
        value = None if summary is None else metric_pct(summary, metric)
        below.append(0.0 if band is None else max(0.0, value - band[0]))
        above.append(0.0 if band is None else max(0.0, band[1] - value))
    return [below, above]


def plot_bars(rows: list[dict], path: str | Path, title: str | None = None, metric: str = "hard_pct"):
    """Grouped bars: one group per suite, one bar per run, of `metric` (a suite summary key)."""
    if metric not in METRICS:
        raise ConfigError(f"metric must be one of {list(METRICS)}, got {metric!r}")
    suites = check_runs(rows)
    fig = new_figure(max(5, 0.6 * len(suites) * (len(rows) + 1)), 4.5, title)
    ax = fig.subplots()
    width = 0.8 / len(rows)
    for i, r in enumerate(rows):
        heights = [metric_pct(r["suites"][name], metric) if name in r["suites"] else math.nan for name in suites]
        ax.bar([g + (i - (len(rows) - 1) / 2) * width for g in range(len(suites))], heights, width, label=r["run"],
               yerr=_error_bars([r["suites"].get(name) for name in suites], metric), capsize=3)
    ax.set_xticks(range(len(suites)), suites, rotation=20 if len(suites) > 4 else 0, ha="right" if len(suites) > 4 else "center")
    ax.set_ylabel(_axis_label(metric))
    ax.set_ylim(0, 105)
    ax.grid(alpha=0.3, axis="y")
    ax.legend()
    return save_figure(fig, path)


def plot_forget(rows: list[dict], path: str | Path, title: str | None = None, metric: str = "hard_pct"):
    """`metric` against the keep ratio (the budget every policy at that ratio shares; the kept
    fraction measured is in the table), one line per policy, its colour and marker its own, with
    error bars (the 95% interval, or the min-max over seeds); a run without a policy is a dashed
    level. y from 0."""
    fig = new_figure(7, 4.5, title)
    ax = fig.subplots()
    variants = sorted({r["forget"]["variant"] for r in rows if r.get("forget")})
    for i, v in enumerate(variants):
        pts = sorted([(r["forget"]["keep_ratio"], metric_pct(r, metric), interval_pct(r, metric)) for r in rows
                      if r.get("forget") and r["forget"]["variant"] == v], key=lambda p: p[0])
        ys = [p[1] for p in pts]
        bands = [p[2] or (p[1], p[1]) for p in pts]   # no interval: no bar
        err = [[y - low for y, (low, _) in zip(ys, bands)], [high - y for y, (_, high) in zip(ys, bands)]]
        ax.errorbar([p[0] for p in pts], ys, yerr=err, marker="osD^v"[i // 10 % 5], color=f"C{i % 10}", label=v,
                    capsize=3)
    for r in rows:
        if not r.get("forget"):
            ax.axhline(metric_pct(r, metric), linestyle="--", color="gray", label=f"{r['run']} (no policy)")
    ax.set_xlabel("keep ratio (the budget)")
    ax.set_ylabel(METRICS[metric] if metric != "steps_correct_frac_mean" else "% of trace steps right")
    ax.set_ylim(bottom=0)
    ax.set_xlim(0, 1.05)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return save_figure(fig, path)


def plot_val_loss(rows: list[dict], path: str | Path, title: str | None = None):
    """One bar per run: the validation loss of the checkpoint scored (rows without one are left out)."""
    check_runs(rows)
    shown = [r for r in rows if r.get("val_loss") is not None]
    if not shown:
        raise DataError("no run has a validation loss at the step of its checkpoint (metrics.jsonl)")
    fig = new_figure(max(5, 0.7 * len(shown) + 1), 4.5, title)
    ax = fig.subplots()
    bars = ax.bar(range(len(shown)), [r["val_loss"] for r in shown], 0.6)
    ax.bar_label(bars, fmt="%.3f", fontsize=8)
    ax.set_xticks(range(len(shown)), [r["run"] for r in shown], rotation=20 if len(shown) > 4 else 0,
                  ha="right" if len(shown) > 4 else "center")
    ax.set_ylabel("validation loss per token")
    ax.grid(alpha=0.3, axis="y")
    return save_figure(fig, path)
