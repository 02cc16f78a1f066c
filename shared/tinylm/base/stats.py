"""Intervals for the numbers a report quotes: how sure a score is, given how many examples made it.

- A proportion (hard match, soft match, failures: k of n programs) gets the Wilson score interval,
  which stays inside [0, 100] and is honest at 0% and 100%, where the normal approximation is not.
- A mean over examples (the fraction of a trace's steps right) gets the normal interval
  mean +- z * sd / sqrt(n), clipped to [0, 1]; it needs the standard deviation the evaluator records.
- Several seeds of one run are summarised by their mean and their min-max: with three seeds an
  interval over seeds says little, the spread says what was seen.

`cell(summary, metric)` turns one suite summary (`tinylm.evaluate.scoring.summarize`) into the record every
report writes: `{"metric", "n", "value", "ci_low", "ci_high"}` in percent.
"""

from __future__ import annotations

import math

Z95 = 1.959963984540054
"""The two-sided 95% quantile of the standard normal."""
PROPORTIONS = {"hard_pct": "hard", "soft_pct": "soft", "failure_pct": "failure"}
"""Suite-summary metrics that are k of n examples, and the count key behind each."""


def wilson(successes: int, n: int, z: float = Z95) -> tuple[float, float]:
    """The Wilson score interval of `successes` of `n`, as fractions in [0, 1]."""
    if n <= 0 or not 0 <= successes <= n:
        raise ValueError(f"need 0 <= successes <= n and n > 0, got {successes} of {n}")
    p = successes / n
    denominator = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denominator
    return max(0.0, centre - half), min(1.0, centre + half)


def mean_interval(mean: float, std: float, n: int, z: float = Z95, low: float = 0.0,
                  high: float = 1.0) -> tuple[float, float]:
    """The normal interval of a mean of `n` values with sample standard deviation `std`, clipped."""
    if n <= 0:
        raise ValueError(f"need n > 0, got {n}")
    half = z * std / math.sqrt(n)
    return max(low, mean - half), min(high, mean + half)


def cell(summary: dict, metric: str) -> dict:
    """One suite summary's `metric` with n and its 95% interval, in percent (interval None where
    the summary lacks what it needs: a count, or the steps' standard deviation)."""
    n = summary["n"]
    if metric in PROPORTIONS:
        count = summary.get(PROPORTIONS[metric])
        if count is None:  # summaries of older evaluations hold the percentage only
            count = round(summary[metric] * n / 100)
        low, high = wilson(count, n)
        return {"metric": metric, "n": n, "value": summary[metric], "ci_low": 100 * low, "ci_high": 100 * high}
    if metric == "steps_correct_frac_mean":
        mean, std = summary[metric], summary.get("steps_correct_frac_std")
        low, high = (None, None) if std is None else mean_interval(mean, std, n)
        return {"metric": metric, "n": n, "value": 100 * mean,
                "ci_low": None if low is None else 100 * low, "ci_high": None if high is None else 100 * high}
    raise ValueError(f"no interval for metric {metric!r} (known: {[*PROPORTIONS, 'steps_correct_frac_mean']})")


def over_seeds(values: list[float]) -> dict:
    """Mean, min and max of one number over seeds."""
    if not values:
        raise ValueError("no values to summarise")
    return {"mean": sum(values) / len(values), "min": min(values), "max": max(values), "seeds": len(values)}
