"""Scores -> markdown tables: one run's suites, a sweep's checkpoints, runs side by side (with
intervals and seed groups), and the records of a project's summary.json. Rows are the plain dicts
tinylm.report.render describes."""

from __future__ import annotations

from tinylm.base import stats
from tinylm.base.errors import DataError

SUITE_KEYS = ("n", "hard_pct", "soft_pct", "failure_pct", "steps_correct_frac_mean")
COUNT_KEYS = ("hard", "soft", "failure", "steps_correct_frac_std")
"""Kept beside SUITE_KEYS where an evaluation wrote them: what the intervals are computed from."""
SCALING_X = {"parameters": "parameters", "train_examples": "training examples", "tokens": "training tokens seen"}
FACTS = ("parameters", "tokens_per_step", "train_examples")
METRICS = {"hard_pct": "hard match %", "soft_pct": "soft match %", "failure_pct": "failure %",
           "steps_correct_frac_mean": "mean fraction of correct steps"}



def fmt_pct(x) -> str:
    return "-" if x is None else f"{x:.1f}"


def fmt_count(x) -> str:
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
        rows.append([s["suite"], s["n"], _scored(s, "hard_pct"), fmt_pct(s["soft_pct"]), fmt_pct(s["failure_pct"]),
                     f"{s['steps_correct_frac_mean']:.3f}", fmt_pct(s.get("output_correct_pct")),
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
    return markdown_table(header, lines) + "\n\n" + TABLE_NOTE


def forget_group_row(name: str, rows: list[dict]) -> dict:
    """One `forget_table` row for the seeds of a run: its scores averaged over seeds with their
    min-max (as `group_row`), and each number its policy measured averaged."""
    scores = group_row(name, [{"run": r["run"], "suites": {r["suite"]: r}} for r in rows])["suites"][rows[0]["suite"]]
    forget = rows[0].get("forget")
    if forget is not None:
        forget = {key: sum(r["forget"][key] for r in rows) / len(rows)
                  if _number(value) and all(_number(r["forget"].get(key)) for r in rows) else value
                  for key, value in forget.items()}
        forget["keep_ratio"] = rows[0]["forget"]["keep_ratio"]
    return {"run": name, "suite": rows[0]["suite"], **scores, "forget": forget}


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def time_to_thresholds(rows: list[dict], suite: str, thresholds=(90.0, 95.0, 99.0)) -> list[str]:
    """For each threshold, the first checkpoint (in training order) whose hard match reaches it."""
    ordered = sorted((r for r in rows if suite in r["suites"] and r.get("step") is not None),
                     key=lambda r: r["step"])
    lines = []
    for threshold in thresholds:
        hit = next((r for r in ordered if r["suites"][suite]["hard_pct"] >= threshold), None)
        if hit is None:
            best = max((r["suites"][suite]["hard_pct"] for r in ordered), default=None)
            lines.append(f"- {suite} hard match >= {threshold:g}%: not reached (best {fmt_pct(best)}%)")
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
    return fmt_pct(value) if band is None else f"{value:.1f} ({band[0]:.1f}–{band[1]:.1f})"


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
    lines = [[r["run"], fmt_count(r.get("parameters")), fmt_count(r.get("train_examples")), fmt_count(r.get("tokens")),
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


def forget_table(rows: list[dict]) -> str:
    """One line per forgetting run (tinylm.studies.forget_eval): policy, keep ratio, scores, target loss, the
    kept ratio measured, attention FLOPs per generated token (and as a share of keeping everything),
    wall time and KV cache per token, and what the policy keeps where it drops (tinylm.studies.forget_eval.
    keep_profile: % of the previous step, a learned scorer's score-position correlation); '-' for a
    run decoded without a policy or a figure that does not apply."""
    header = ["run", "policy", "keep ratio", "n", "hard %", "steps %", "target loss", "kept", "attn MFLOP/token",
              "of full", "ms/token", "KV peak KiB", "prev. step kept %", "corr(score, pos)"]
    lines = []
    for r in rows:
        f = r.get("forget")
        scores = [_size(r), _scored(r, "hard_pct"), _scored(r, "steps_correct_frac_mean")]
        if f is None:
            lines.append([r["run"], "-", "-", *scores] + ["-"] * 8)
            continue
        kept_prev, corr = f.get("previous_step_kept"), f.get("score_position_corr")
        lines.append([r["run"], f["variant"], f"{f['keep_ratio']:g}", *scores, f"{f['target_loss']:.4f}", f"{f['kept_ratio']:.3f}",
                      f"{f['attn_flops_per_token'] / 1e6:.2f}",
                      f"{100 * f['attn_flops_per_token'] / max(f['attn_flops_full_per_token'], 1):.0f}%",
                      f"{f['ms_per_token']:.2f}", f"{f['kv_peak_kib']:.0f}",
                      "-" if kept_prev is None else fmt_pct(100 * kept_prev), "-" if corr is None else f"{corr:+.2f}"])
    return markdown_table(header, lines)
