"""Reports: cross-run tables and plots from fake evaluation summaries, `tinylm report compare` reading
evaluation and run folders, and one-line errors on bad input."""

from __future__ import annotations

import json
import math
from pathlib import Path

import matplotlib.image
import numpy as np
import pytest

from tinylm.base.errors import DataError
from tinylm.base.stats import wilson
from tinylm.cli import main
from tinylm.report.figures import plot_bars, plot_forget, plot_scaling, plot_sweep_tokens, plot_val_loss
from tinylm.report.render import compare_row, report
from tinylm.report.tables import (
    forget_group_row,
    forget_table,
    group_row,
    runs_by_suite_table,
    runs_table,
    summary_records,
)


def suite(hard: float, soft: float = 1.0, n: int = 200) -> dict:
    return {"n": n, "hard_pct": hard, "soft_pct": soft, "failure_pct": 100.0 - hard - soft,
            "steps_correct_frac_mean": hard / 100}


def rows() -> list[dict]:
    return [{"run": "small", "parameters": 120_000, "train_examples": 2_000, "tokens": 1_048_576, "val_loss": 0.03125,
             "suites": {"id": suite(61.5), "ood": suite(12.25)}},
            {"run": "big", "parameters": 4_500_000, "train_examples": 20_000, "tokens": None,
             "suites": {"id": suite(97.0)}}]


def png(path: Path) -> np.ndarray:
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    return matplotlib.image.imread(path)


# -----------------------------------------------------------------------------
# Tables and plots from rows


def test_runs_table_takes_its_numbers_from_the_rows_and_dashes_what_is_missing():
    lines = runs_table(rows()).splitlines()
    assert lines[0] == ("| run | parameters | train examples | tokens seen | val loss | id n | id hard % | ood n "
                        "| ood hard % |")
    # Wilson intervals of 123, 24 and 194 of 200
    assert lines[2] == "| small | 120,000 | 2,000 | 1,048,576 | 0.0312 | 200 | 61.5 (54.6–68.0) | 200 | 12.2 (8.2–17.2) |"
    assert lines[3] == "| big | 4,500,000 | 20,000 | - | - | 200 | 97.0 (93.6–98.6) | - | - |"


def test_wilson_intervals_match_known_values():
    assert wilson(12, 200) == pytest.approx((0.0346, 0.1020), abs=1e-4)
    assert wilson(0, 10) == pytest.approx((0.0, 0.2775), abs=1e-4)    # honest at 0%
    assert wilson(10, 10) == pytest.approx((0.7225, 1.0), abs=1e-4)   # and at 100%
    low, high = wilson(500, 1000)
    assert (low + high) / 2 == pytest.approx(0.5) and high - low == pytest.approx(2 * 1.96 * 0.5 / math.sqrt(1000), rel=1e-2)
    with pytest.raises(ValueError):
        wilson(3, 2)


def test_seeds_of_a_run_show_their_mean_and_min_max_and_the_summary_keeps_every_cell():
    seeds = [{**rows()[0], "run": f"small-s{k}", "suites": {"id": suite(hard)}} for k, hard in ((1, 60.0), (2, 70.0), (3, 65.0))]
    group = group_row("small", seeds)
    assert group["suites"]["id"]["hard_pct"] == pytest.approx(65.0)
    assert group["suites"]["id"]["spread"]["hard_pct"] == (60.0, 70.0)
    table = runs_by_suite_table([group, seeds[0]]).splitlines()
    assert table[0] == "| suite | small n | small hard % | small-s1 n | small-s1 hard % |"
    assert table[2] == "| id | 3×200 | 65.0 (60.0–70.0) | 200 | 60.0 (53.1–66.5) |"
    records = summary_records({s["run"]: s for s in seeds}, {"small-s1": 1, "small-s2": 2, "small-s3": 3},
                              {"small": ["small-s1", "small-s2", "small-s3"]})
    hard = [r for r in records if r["metric"] == "hard_pct"]
    assert [(r["seed"], r["n"], r["value"]) for r in hard] == [(1, 200, 60.0), (2, 200, 70.0), (3, 200, 65.0),
                                                               ("mean", 600, pytest.approx(65.0))]
    assert hard[0]["ci_low"] == pytest.approx(100 * wilson(120, 200)[0])
    assert (hard[-1]["min"], hard[-1]["max"]) == (60.0, 70.0)


def test_forget_rows_of_seeds_average_their_scores_and_policy_figures(tmp_path):
    def forget_row(run: str, hard: float, kept: float) -> dict:
        figures_ = {"variant": "random", "policy": "random", "keep_ratio": 0.25, "target_loss": 0.5 + hard / 1000,
                    "kept_ratio": kept, "attn_flops_per_token": 1e6, "attn_flops_full_per_token": 4e6,
                    "ms_per_token": 2.0, "kv_peak_kib": 64.0, "previous_step_kept": None, "score_position_corr": None}
        return {"run": run, "suite": "id", **suite(hard), "forget": figures_}

    seeds = [forget_row("random-0.25-s1", 40.0, 0.30), forget_row("random-0.25-s2", 50.0, 0.20)]
    group = forget_group_row("random-0.25", seeds)
    assert (group["hard_pct"], group["spread"]["hard_pct"], group["seeds"]) == (45.0, (40.0, 50.0), 2)
    assert group["forget"]["kept_ratio"] == pytest.approx(0.25) and group["forget"]["keep_ratio"] == 0.25
    assert group["forget"]["variant"] == "random" and group["forget"]["previous_step_kept"] is None
    lines = forget_table([group, seeds[0]]).splitlines()
    assert lines[2].startswith("| random-0.25 | random | 0.25 | 2×200 | 45.0 (40.0–50.0) | 45.0 (40.0–50.0) | 0.5450 |")
    assert lines[3].startswith("| random-0.25-s1 | random | 0.25 | 200 | 40.0 (33.5–46.9) |")   # its Wilson interval
    plot_forget([group, seeds[0]], tmp_path / "f.png")
    assert png(tmp_path / "f.png").shape[0] > 0


def test_val_loss_bars_are_the_runs_validation_losses(tmp_path):
    fig = plot_val_loss(rows(), tmp_path / "v.png", title="loss")
    bars = fig.axes[0].patches
    assert [b.get_height() for b in bars] == [0.03125]   # "big" has no validation loss: left out
    assert [t.get_text() for t in fig.axes[0].get_xticklabels()] == ["small"]
    png(tmp_path / "v.png")
    with pytest.raises(DataError, match="no run has a validation loss"):
        plot_val_loss(rows()[1:], tmp_path / "w.png")
    assert not (tmp_path / "w.png").exists()


def test_scaling_plot_draws_each_suite_against_x_on_a_log_axis(tmp_path):
    fig = plot_scaling(rows(), "parameters", tmp_path / "a.png", title="size")
    ax = fig.axes[0]
    assert ax.get_xscale() == "log"
    lines = {c.get_label(): (list(c.lines[0].get_xdata()), list(c.lines[0].get_ydata())) for c in ax.containers}
    assert lines == {"id": ([120_000, 4_500_000], [61.5, 97.0]), "ood": ([120_000], [12.25])}
    assert sorted(t.get_text() for t in ax.texts) == ["big", "small", "small"]
    a = png(tmp_path / "a.png")
    changed = rows()
    changed[1]["suites"]["id"]["hard_pct"] = 20.0
    plot_scaling(changed, "parameters", tmp_path / "b.png", title="size")
    b = png(tmp_path / "b.png")
    assert a.shape == b.shape and not np.array_equal(a, b)
    by_examples = plot_scaling(rows(), "train_examples", tmp_path / "c.png").axes[0]
    assert list(by_examples.get_lines()[0].get_xdata()) == [2_000, 20_000]


def test_scaling_plot_needs_x_for_every_run(tmp_path):
    with pytest.raises(DataError, match="run 'big': no tokens"):
        plot_scaling(rows(), "tokens", tmp_path / "t.png")
    assert not (tmp_path / "t.png").exists()


def test_bars_one_group_per_suite_one_bar_per_run(tmp_path):
    fig = plot_bars(rows(), tmp_path / "bars.png", metric="soft_pct")
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["id", "ood"]
    from matplotlib.container import BarContainer

    small, big = [c for c in ax.containers if isinstance(c, BarContainer)]
    assert [p.get_height() for p in small] == [1.0, 1.0]
    assert big[0].get_height() == 1.0 and math.isnan(big[1].get_height())  # big has no ood suite
    hard = plot_bars(rows(), tmp_path / "hard.png").axes[0]
    assert [p.get_height() for p in [c for c in hard.containers if isinstance(c, BarContainer)][0]] == [61.5, 12.25]
    # each bar carries its 95% interval: 123 of 200 for small's id suite
    caps = [c for c in hard.containers if not isinstance(c, BarContainer)][0]
    low, high = wilson(123, 200)
    assert caps.lines[2][0].get_segments()[0][:, 1] == pytest.approx([100 * low, 100 * high])
    assert not np.array_equal(png(tmp_path / "bars.png"), png(tmp_path / "hard.png"))


def test_sweep_against_tokens_multiplies_steps(tmp_path):
    sweep = [{"checkpoint": "ckpt_2.pt", "step": 200, "suites": {"id": {"hard_pct": 80.0}}},
             {"checkpoint": "ckpt_1.pt", "step": 100, "suites": {"id": {"hard_pct": 40.0}}}]
    line = plot_sweep_tokens(sweep, tmp_path / "s.png", tokens_per_step=4096).axes[0].get_lines()[0]
    assert list(line.get_xdata()) == [409_600, 819_200] and list(line.get_ydata()) == [40.0, 80.0]
    png(tmp_path / "s.png")


@pytest.mark.parametrize("change, message", [
    (lambda r: r[1].update(run="small"), "run 'small' appears twice"),
    (lambda r: r[0]["suites"]["ood"].pop("hard_pct"), "run 'small', suite 'ood': no number for hard_pct"),
    (lambda r: r[0].update(parameters="1M"), "run 'small': parameters must be a count"),
    (lambda r: r[1].pop("suites"), "run 'big': needs a 'suites' mapping"),
])
def test_bad_rows_name_the_run(change, message, tmp_path):
    bad = rows()
    change(bad)
    with pytest.raises(DataError, match=message):
        runs_table(bad)
    with pytest.raises(DataError, match=message):
        plot_bars(bad, tmp_path / "x.png")
    assert not (tmp_path / "x.png").exists()


# -----------------------------------------------------------------------------
# tinylm report compare: evaluation folders and the run folders of their checkpoints


def fake_run(tmp_path: Path, name: str, parameters: int, train_examples: int, step: int, hard: dict,
             val_loss: float = 0.25) -> Path:
    """A run folder (run.json, config.yaml, metrics.jsonl, its dataset's manifest) and an evaluation
    of its best.pt, saved at `step`, where the run logged `val_loss` (others before and after)."""
    dataset = tmp_path / f"data_{name}"
    dataset.mkdir()
    (dataset / "manifest.json").write_text(json.dumps({"splits": {"train": {"examples": train_examples}}}))
    run = tmp_path / f"run_{name}"
    run.mkdir()
    (run / "run.json").write_text(json.dumps({"parameters": parameters, "seed": 1}))
    (run / "config.yaml").write_text(f"data:\n  dataset: {dataset}\nbatch_size: 8\nmodel:\n  block_size: 64\n")
    logged = [{"step": 1, "loss": 3.0}, {"step": step // 2, "val_loss": 2.0}, {"step": step, "loss": 1.0},
              {"step": step, "val_loss": val_loss}, {"step": step + 10, "val_loss": val_loss / 2}]
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in logged))
    out = tmp_path / f"eval_{name}"
    out.mkdir()
    suites = [{"suite": s, **suite(h), "timing": {}} for s, h in hard.items()]
    (out / "summary.json").write_text(json.dumps({"checkpoint": str(run / "best.pt"), "step": step,
                                                  "suites": suites}))
    return out


def test_compare_reads_eval_and_run_folders(tmp_path, capsys):
    a = fake_run(tmp_path, "a", 50_000, 1_000, 30, {"id": 40.0, "ood": 5.0})
    b = fake_run(tmp_path, "b", 800_000, 9_000, 100, {"id": 90.0}, val_loss=0.125)
    out = tmp_path / "cmp"
    assert main(["report", "compare", "--run", f"A={a}", "--run", f"B={b}", "--x", "parameters",
                 "--out", str(out)]) == 0
    table = (out / "table.md").read_text().splitlines()
    # 30 steps x 8 rows x 64 tokens; the validation loss logged at the step of the checkpoint scored
    assert table[2] == "| A | 50,000 | 1,000 | 15,360 | 0.2500 | 200 | 40.0 (33.5–46.9) | 200 | 5.0 (2.7–9.0) |"
    assert table[3] == "| B | 800,000 | 9,000 | 51,200 | 0.1250 | 200 | 90.0 (85.1–93.4) | - | - |"
    assert "| A | 50,000" in capsys.readouterr().out
    png(out / "scaling.png")
    saved = json.loads((out / "runs.json").read_text())
    assert saved["x"] == "parameters" and saved["rows"][1]["step"] == 100
    assert main(["report", "compare", "--run", f"A={a}", "--run", f"B={b}", "--out", str(out)]) == 0
    png(out / "bars.png")


def test_compare_without_a_run_folder_dashes_its_numbers(tmp_path):
    a = fake_run(tmp_path, "a", 50_000, 1_000, 30, {"id": 40.0})
    (tmp_path / "run_a" / "run.json").unlink()
    (tmp_path / "run_a" / "config.yaml").unlink()
    (tmp_path / "run_a" / "metrics.jsonl").unlink()
    row = compare_row("A", a)
    assert (row["parameters"], row["train_examples"], row["tokens"], row["val_loss"]) == (None, None, None, None)
    assert row["suites"]["id"]["hard_pct"] == 40.0


def cli_error(capsys, argv: list[str]) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1
    return err


def test_compare_errors_name_the_folder_and_write_nothing(tmp_path, capsys):
    a = fake_run(tmp_path, "a", 50_000, 1_000, 30, {"id": 40.0})
    out = tmp_path / "cmp"
    missing = tmp_path / "nowhere"
    assert f"{missing}: no summary.json" in cli_error(capsys, ["report", "compare", "--run", f"A={a}",
                                                                "--run", f"B={missing}", "--out", str(out)])
    (tmp_path / "run_a" / "run.json").unlink()
    err = cli_error(capsys, ["report", "compare", "--run", f"A={a}", "--x", "parameters", "--out", str(out)])
    assert f"{a}: no parameters" in err
    assert "LABEL=EVAL_DIR" in cli_error(capsys, ["report", "compare", "--run", str(a), "--out", str(out)])
    assert "appears twice" in cli_error(capsys, ["report", "compare", "--run", f"A={a}", "--run", f"A={a}",
                                                 "--out", str(out)])
    (a / "summary.json").write_text("{not json")
    assert "summary.json: cannot read JSON" in cli_error(capsys, ["report", "compare", "--run", f"A={a}",
                                                                  "--out", str(out)])
    assert not out.exists()


def test_sweep_report_adds_tokens_from_the_run_folder(tmp_path):
    fake_run(tmp_path, "a", 50_000, 1_000, 30, {"id": 40.0})
    sweep = tmp_path / "sweep"
    sweep.mkdir()
    rows_ = [{"checkpoint": f"ckpt_{s}.pt", "step": s, "elapsed_s": None, "suites": {"id": {"hard_pct": h}}}
             for s, h in ((10, 20.0), (20, 60.0))]
    (sweep / "sweep.json").write_text(json.dumps({"run": str(tmp_path / "run_a"), "rows": rows_}))
    written = report(sweep)
    assert sweep / "hard_match_tokens.png" in written
    png(sweep / "hard_match_tokens.png")


def test_a_sweep_of_several_runs_puts_each_on_its_own_token_axis(tmp_path):
    rows = [{"checkpoint": "a/ckpt_1.pt", "step": 100, "tokens": 3200, "suites": {"a: id": {"hard_pct": 10.0}}},
            {"checkpoint": "b/ckpt_1.pt", "step": 100, "tokens": 1600, "suites": {"b: id": {"hard_pct": 20.0}}}]
    lines = {line.get_label(): list(line.get_xdata()) for line in plot_sweep_tokens(rows, tmp_path / "s.png").axes[0].get_lines()}
    assert lines == {"a: id": [3200], "b: id": [1600]}
    with pytest.raises(DataError, match="no tokens"):
        plot_sweep_tokens([{k: v for k, v in rows[0].items() if k != "tokens"}], tmp_path / "t.png")


def test_scaling_joins_only_points_whose_intervals_are_apart(tmp_path):
    # 61.5% vs 97.0% of 200 (intervals apart) are joined; 61.5% vs 62.0% (overlapping) are not
    close = [{**rows()[0], "run": "mid", "parameters": 500_000, "suites": {"id": suite(62.0)}}]
    fig = plot_scaling(rows() + close, "parameters", tmp_path / "j.png")
    # the joining segments are the two-point lines (the three-point id series is markers only)
    joined = [list(line.get_xdata()) for line in fig.axes[0].get_lines() if len(line.get_xdata()) == 2]
    assert joined == [[500_000, 4_500_000]]
