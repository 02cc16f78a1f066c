"""Scores -> tables and plots: markdown tables and PNG figures from evaluation summaries.

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
import math
from pathlib import Path

from tinylm.base import stats
from tinylm.base.args import ArgumentParser
from tinylm.base.config import read_yaml
from tinylm.base.errors import ConfigError, DataError
from tinylm.base.files import atomic_path, atomic_write_json, atomic_write_text, resolve_path

SUITE_KEYS = ("n", "hard_pct", "soft_pct", "failure_pct", "steps_correct_frac_mean")
COUNT_KEYS = ("hard", "soft", "failure", "steps_correct_frac_std")
"""Kept beside SUITE_KEYS where an evaluation wrote them: what the intervals are computed from."""
SCALING_X = {"parameters": "parameters", "train_examples": "training examples", "tokens": "training tokens seen"}
FACTS = ("parameters", "tokens_per_step", "train_examples")
METRICS = {"hard_pct": "hard match %", "soft_pct": "soft match %", "failure_pct": "failure %",
           "steps_correct_frac_mean": "mean fraction of correct steps"}


# -----------------------------------------------------------------------------
# Tables


def _pct(x) -> str:
    return "-" if x is None else f"{x:.1f}"


def _count(x) -> str:
    return "-" if x is None else f"{x:,}"


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def suites_table(summaries: list[dict]) -> str:
    """One line per suite: size, hard match % with its 95% interval, soft/failure %, mean fraction
    of correct steps, speed."""
    header = ["suite", "n", "hard % (95% interval)", "soft %", "failure %", "steps correct", "output %", "tokens/s",
              "wall s"]
    rows = []
    for s in summaries:
        t = s.get("timing", {})
        rows.append([s["suite"], s["n"], _scored(s, "hard_pct"), _pct(s["soft_pct"]), _pct(s["failure_pct"]),
                     f"{s['steps_correct_frac_mean']:.3f}", _pct(s.get("output_correct_pct")),
                     "-" if t.get("tokens_per_s") is None else f"{t['tokens_per_s']:.0f}",
                     "-" if t.get("wall_s") is None else f"{t['wall_s']:.1f}"])
    return markdown_table(header, rows)


def sweep_table(rows: list[dict]) -> str:
    """One line per checkpoint: step, training time, hard match % of each suite (with its 95%
    interval where the row has n)."""
    suites = sorted({name for r in rows for name in r["suites"]})
    header = ["checkpoint", "step", "train min"] + [f"{name} hard %" for name in suites]
    lines = []
    for r in rows:
        minutes = "-" if r.get("elapsed_s") is None else f"{r['elapsed_s'] / 60:.1f}"
        lines.append([r["checkpoint"], "-" if r.get("step") is None else r["step"], minutes]
                     + [_scored(r["suites"].get(name), "hard_pct") for name in suites])
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


def check_runs(rows: list[dict]) -> list[str]:
    """Validate cross-run rows (a DataError naming the run and key); returns the suite names in
    order of first appearance."""
    if not rows:
        raise DataError("no runs to compare")
    seen, suites = set(), []
    for i, r in enumerate(rows):
        label = r.get("run") if isinstance(r, dict) else None
        if not isinstance(label, str) or not label:
            raise DataError(f"run {i}: needs a 'run' label")
        if label in seen:
            raise DataError(f"run '{label}' appears twice; give each run its own label")
        seen.add(label)
        for key in ("parameters", "train_examples", "tokens"):
            value = r.get(key)
            if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 0):
                raise DataError(f"run '{label}': {key} must be a count or None, got {value!r}")
        if not isinstance(r.get("suites"), dict):
            raise DataError(f"run '{label}': needs a 'suites' mapping of suite summaries")
        for name, s in r["suites"].items():
            missing = [k for k in SUITE_KEYS if not isinstance(s, dict) or not isinstance(s.get(k), (int, float))]
            if missing:
                raise DataError(f"run '{label}', suite '{name}': no number for {missing[0]}")
            if name not in suites:
                suites.append(name)
    return suites


COLUMNS = {"hard_pct": "hard %", "soft_pct": "soft %", "failure_pct": "failure %",
           "steps_correct_frac_mean": "steps %"}


def metric_pct(summary: dict, metric: str) -> float | None:
    """A suite summary's `metric` in percent (the fraction of correct steps is scaled to 0-100)."""
    value = summary.get(metric)
    if value is None:
        return None
    return 100 * value if metric == "steps_correct_frac_mean" else value


def interval_pct(summary: dict, metric: str) -> tuple[float, float] | None:
    """The band drawn and printed around a suite's `metric`, in percent: min-max over seeds for a
    seed group's row (`group_row`), else the 95% interval (`tinylm.base.stats.cell`); None where the
    summary cannot give one (val_loss, or an older summary without the steps' spread)."""
    if "spread" in summary:
        low, high = summary["spread"][metric]
        return (100 * low, 100 * high) if metric == "steps_correct_frac_mean" else (low, high)
    if "n" not in summary or (metric not in stats.PROPORTIONS and metric != "steps_correct_frac_mean"):
        return None
    c = stats.cell(summary, metric)
    return None if c["ci_low"] is None else (c["ci_low"], c["ci_high"])


def _scored(summary: dict | None, metric: str) -> str:
    """'97.1 (95.8-98.0)': a metric in percent and its band ('-' when missing)."""
    value = None if summary is None else metric_pct(summary, metric)
    if value is None:
        return "-"
    band = interval_pct(summary, metric)
    return _pct(value) if band is None else f"{value:.1f} ({band[0]:.1f}–{band[1]:.1f})"


TABLE_NOTE = ("n: programs scored (seeds × programs for a run trained with several seeds). In brackets: the 95% "
              "interval (Wilson for hard, soft and failure %, normal for steps %); for several seeds, the mean "
              "over seeds and their min–max.")


def _size(summary: dict | None) -> str:
    if summary is None:
        return "-"
    return f"{summary['seeds']}×{summary['n']:,}" if "seeds" in summary else f"{summary['n']:,}"


def runs_table(rows: list[dict], metrics: tuple[str, ...] = ("hard_pct",)) -> str:
    """One line per run: parameters, training examples, tokens seen, the validation loss of the
    checkpoint scored, then for each suite its n and `metrics` (hard match %, and e.g. the % of
    trace steps right), each with its 95% interval, or for a seed group (`group_row`) the mean
    over seeds with their min-max ('-' where a number or a suite is missing)."""
    suites = check_runs(rows)
    header = ["run", "parameters", "train examples", "tokens seen", "val loss"] + [
        col for name in suites for col in [f"{name} n"] + [f"{name} {COLUMNS[m]}" for m in metrics]]
    lines = [[r["run"], _count(r.get("parameters")), _count(r.get("train_examples")), _count(r.get("tokens")),
              "-" if r.get("val_loss") is None else f"{r['val_loss']:.4f}"]
             + [cell for name in suites for cell in [_size(r["suites"].get(name))]
                + [_scored(r["suites"].get(name), m) for m in metrics]] for r in rows]
    return markdown_table(header, lines) + "\n\n" + TABLE_NOTE


def runs_by_suite_table(rows: list[dict], metrics: tuple[str, ...] = ("hard_pct",)) -> str:
    """`runs_table` turned on its side, for a few runs on many suites: one line per suite, its n
    and each run's `metrics` with their intervals (or mean and min-max over seeds)."""
    suites = check_runs(rows)
    header = ["suite"] + [col for r in rows for col in [f"{r['run']} n"] + [f"{r['run']} {COLUMNS[m]}" for m in metrics]]
    lines = [[name] + [cell for r in rows for cell in [_size(r["suites"].get(name))]
                       + [_scored(r["suites"].get(name), m) for m in metrics]] for name in suites]
    return markdown_table(header, lines) + "\n\n" + TABLE_NOTE


def group_row(name: str, rows: list[dict]) -> dict:
    """One row for the seeds of a run: counts and sizes of the first seed, the validation loss
    and each suite metric averaged over seeds, `spread` holding each metric's (min, max) and
    `seeds` how many seeds scored the suite."""
    if not rows:
        raise DataError(f"run '{name}': no seeds evaluated")
    suites = {}
    for suite in rows[0]["suites"]:
        members = [r["suites"][suite] for r in rows if suite in r["suites"]]
        merged = {"n": members[0]["n"], "seeds": len(members), "spread": {}}
        for key in SUITE_KEYS[1:]:
            values = [m[key] for m in members]
            merged[key] = sum(values) / len(values)
            merged["spread"][key] = (min(values), max(values))
        suites[suite] = merged
    losses = [r["val_loss"] for r in rows if r.get("val_loss") is not None]
    return {**rows[0], "run": name, "suites": suites, "members": [r["run"] for r in rows],
            "val_loss": sum(losses) / len(losses) if len(losses) == len(rows) else None}


def summary_records(rows: dict[str, dict], seeds: dict[str, int], groups: dict[str, list[str]]) -> list[dict]:
    """The cells of a project's report, one record each: every run (each seed of a group, named by
    its group), suite and metric with n, value and 95% interval in percent; then per group and suite
    the mean over its seeds with their min and max."""
    metrics = [*stats.PROPORTIONS, "steps_correct_frac_mean"]
    group_of = {member: name for name, members in groups.items() for member in members}
    records = []
    for instance, row in rows.items():
        for suite, summary in row["suites"].items():
            for metric in metrics:
                records.append({"run": group_of.get(instance, instance), "seed": seeds[instance], "suite": suite,
                                **stats.cell(summary, metric)})
    for name, members in groups.items():
        evaluated = [m for m in members if m in rows]
        for suite in rows[evaluated[0]]["suites"] if evaluated else []:
            for metric in metrics:
                cells = [stats.cell(rows[m]["suites"][suite], metric) for m in evaluated if suite in rows[m]["suites"]]
                spread = stats.over_seeds([c["value"] for c in cells])
                records.append({"run": name, "seed": "mean", "seeds": [seeds[m] for m in evaluated], "suite": suite,
                                "metric": metric, "n": sum(c["n"] for c in cells), "value": spread["mean"],
                                "min": spread["min"], "max": spread["max"]})
    return records


# -----------------------------------------------------------------------------
# Figures (matplotlib's Figure without pyplot: no global state; each function returns its Figure)


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


def forget_table(rows: list[dict]) -> str:
    """One line per forgetting run (tinylm.studies.forget_eval): policy, keep ratio, scores, target loss, the
    kept ratio measured, attention FLOPs per generated token (and as a share of keeping everything),
    wall time and KV cache per token, and what the policy keeps where it drops (tinylm.studies.forget_eval.
    keep_profile: % of the previous step, a learned scorer's score-position correlation); '-' for a
    run decoded without a policy or a figure that does not apply."""
    header = ["run", "policy", "keep ratio", "hard %", "steps %", "target loss", "kept", "attn MFLOP/token",
              "of full", "ms/token", "KV peak KiB", "prev. step kept %", "corr(score, pos)"]
    lines = []
    for r in rows:
        f = r.get("forget")
        if f is None:
            lines.append([r["run"], "-", "-", _pct(r["hard_pct"]), _pct(100 * r["steps_correct_frac_mean"])]
                         + ["-"] * 8)
            continue
        kept_prev, corr = f.get("previous_step_kept"), f.get("score_position_corr")
        lines.append([r["run"], f["variant"], f"{f['keep_ratio']:g}", _pct(r["hard_pct"]),
                      _pct(100 * r["steps_correct_frac_mean"]), f"{f['target_loss']:.4f}", f"{f['kept_ratio']:.3f}",
                      f"{f['attn_flops_per_token'] / 1e6:.2f}",
                      f"{100 * f['attn_flops_per_token'] / max(f['attn_flops_full_per_token'], 1):.0f}%",
                      f"{f['ms_per_token']:.2f}", f"{f['kv_peak_kib']:.0f}",
                      "-" if kept_prev is None else _pct(100 * kept_prev), "-" if corr is None else f"{corr:+.2f}"])
    return markdown_table(header, lines)


def plot_forget(rows: list[dict], path: str | Path, title: str | None = None, metric: str = "hard_pct"):
    """`metric` against the keep ratio (the budget every policy at that ratio shares; the kept
    fraction measured is in the table), one line per policy, its colour and marker its own; a run
    without a policy is a dashed level."""
    fig = new_figure(7, 4.5, title)
    ax = fig.subplots()
    variants = sorted({r["forget"]["variant"] for r in rows if r.get("forget")})
    for i, v in enumerate(variants):
        pts = sorted((r["forget"]["keep_ratio"], metric_pct(r, metric)) for r in rows
                     if r.get("forget") and r["forget"]["variant"] == v)
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="osD^v"[i // 10 % 5], color=f"C{i % 10}", label=v)
    for r in rows:
        if not r.get("forget"):
            ax.axhline(metric_pct(r, metric), linestyle="--", color="gray", label=f"{r['run']} (no policy)")
    ax.set_xlabel("keep ratio (the budget)")
    ax.set_ylabel(METRICS[metric] if metric != "steps_correct_frac_mean" else "% of trace steps right")
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
    head = (f"## {run}\n\n{_count(facts.get('parameters'))} parameters, {_count(steps[-1]['step'] if steps else None)} "
            f"steps, {_count(steps[-1]['tokens'] if steps else None)} tokens"
            + (f", {minutes:.1f} min of training" if minutes is not None else "") + ".\n")
    rows = [[_count(r["step"]), _count(r["step"] * facts["tokens_per_step"]) if facts.get("tokens_per_step") else "-",
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
        suites[s["suite"]] = {k: s[k] for k in (*SUITE_KEYS, *COUNT_KEYS) if k in s}
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
