"""Evaluation: hard/soft/failure classification, step and output metrics, resumable suite runs,
sweeps, reports and clear errors on bad input."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from dataclasses import asdict

import pytest
import torch
from conftest import model_that_writes

from tinylm.base.errors import ConfigError, DataError
from tinylm.decode.strategies import GenerateConfig
from tinylm.evaluate import scoring as ev
from tinylm.evaluate.scoring import EvalConfig, evaluate_suite, read_suite, score, split_example
from tinylm.model.checkpoint import save_checkpoint
from tinylm.model.gpt import GPT, GPTConfig
from tinylm.tokens.tokenizer import keyword_tokenizer

TOK = keyword_tokenizer("demo")


pytestmark = pytest.mark.usefixtures("one_torch_thread")

TRACE = ("# code\na = 1\nb = a\n#STEP\n"
         "# code\n@a = 1$\nb = a\n#STEP\n"
         "# code\na = 1\n@b = a$a?1\n#STEP\n"
         "# code\na = 1\nb = a\n@^$a?1;b?1")


def target_of(trace: str) -> str:
    return split_example(trace)[1]


# -----------------------------------------------------------------------------
# Classification of one example


def test_prompt_ends_at_the_first_step_line():
    prompt, target = split_example(TRACE)
    assert prompt == "# code\na = 1\nb = a\n#STEP\n"
    assert target.startswith("# code\n@a = 1$")
    assert TOK.encode(prompt)[-1] == TOK.token_id("\n#STEP\n")


def test_exact_trace_that_stops_is_a_hard_match():
    t = target_of(TRACE)
    s = score(t, t + "\n\nab")  # whatever follows the terminator is cut
    assert (s["class"], s["stopped"], s["steps_correct_frac"], s["first_wrong_step"]) == ("hard", True, 1.0, None)


def test_right_final_state_after_a_wrong_step_is_a_soft_match():
    wrong = TRACE.replace("@b = a$a?1", "@b = a$a?2")
    s = score(target_of(TRACE), target_of(wrong) + "\n\n")
    assert s["class"] == "soft"
    assert (s["steps_total"], s["steps_correct"], s["first_wrong_step"]) == (3, 2, 1)


def test_wrong_final_state_is_a_failure():
    wrong = TRACE.replace("@^$a?1;b?1", "@^$a?1;b?2")
    s = score(target_of(TRACE), target_of(wrong) + "\n\n")
    assert s["class"] == "failure"
    assert s["first_wrong_step"] == 2


def test_right_trace_that_does_not_stop_is_a_failure_with_every_step_right():
    # the reference compares last lines: the generation's last line is the runaway continuation
    t = target_of(TRACE)
    s = score(t, t + "\n#STEP\n# code\na = 1")
    assert (s["class"], s["stopped"]) == ("failure", False)
    assert s["steps_correct"] == s["steps_total"] == 3
    assert s["first_wrong_step"] is None


def test_right_trace_that_stops_one_step_late_is_a_soft_match():
    t = target_of(TRACE)
    s = score(t, t + "\n#STEP\n# code\na = 1\nb = a\n@^$a?1;b?1\n\n")
    assert s["class"] == "soft"


def test_printed_output_of_m2_traces():
    m2 = "# code\nprint(1)\n#STEP\n# code\n@print(1)$|\n#STEP\n# code\nprint(1)\n@^$|# 1"
    t = target_of(m2)
    assert score(t, t + "\n\n")["output_correct"] is True
    other = target_of(m2.replace("|# 1", "|# 2"))
    assert score(t, other + "\n\n")["output_correct"] is False
    assert score(target_of(TRACE), target_of(TRACE))["output_correct"] is None


# -----------------------------------------------------------------------------
# Suites, files and resumption


def tiny_model(vocab: int = TOK.vocab_size, seed: int = 0) -> GPT:
    torch.manual_seed(seed)
    cfg = GPTConfig(vocab_size=vocab, block_size=32, n_layer=2, n_head=2, n_embd=16)
    return GPT(cfg).eval()


def make_suite(path, n: int = 7) -> str:
    examples = [TRACE.replace("a = 1", f"a = {i}").replace("a?1", f"a?{i}") for i in range(n)]
    path.write_text("\n\n".join(examples) + "\n\n")
    return str(path)


def test_a_right_model_scores_hard_through_a_short_last_batch(tmp_path):
    soft = TRACE.replace("@b = a$a?1", "@b = a$a?2")  # a step differs from what the model writes, the end does not
    failure = TRACE.replace("@^$a?1;b?1", "@^$a?1;b?2")  # the final state differs
    classes = ["hard", "soft", "failure", "hard", "soft", "failure", "hard"]
    examples = {"hard": TRACE, "soft": soft, "failure": failure}
    suite = tmp_path / "test.txt"
    suite.write_text("".join(examples[c] + "\n\n" for c in classes))
    summary = evaluate_suite(model_that_writes(TOK, TRACE, block_size=64), TOK, suite, tmp_path / "out", EvalConfig(batch_size=3),
                             log=lambda s: None)
    assert (summary["n"], summary["hard"], summary["soft"], summary["failure"]) == (7, 3, 2, 2)
    assert summary["timing"]["batches_run"] == 3  # 3 + 3 + 1
    assert summary["failure_kinds"] == {"state after a plain assignment or copy": 4}  # a state after `a = 1` or `b = a`
    records = [json.loads(x) for x in (tmp_path / "out" / "results.jsonl").read_text().splitlines()]
    assert [(r["id"], r["class"]) for r in records] == list(enumerate(classes))
    assert {r["generated"] for r in records} == {split_example(TRACE)[1]}
    assert all(r["stopped"] and r["first_wrong_step"] is None for r in records if r["class"] == "hard")
    with open(tmp_path / "out" / "results.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [(row["id"], row["class"], row["target"]) for row in rows] == \
        [(str(i), c, split_example(examples[c])[1]) for i, c in enumerate(classes)]


def test_the_summary_splits_hard_match_by_statement_kind(tmp_path):
    loop = ("# code\na = 1\nwhile a < 2:\n\ta = a + 1\n#STEP\n"
            "# code\n@a = 1$\nwhile a < 2:\n\ta = a + 1\n#STEP\n"
            "# code\na = 1\n@while a < 2:$a?1\n\ta = a + 1")
    suite = tmp_path / "test.txt"
    suite.write_text("".join(t + "\n\n" for t in [TRACE, loop, TRACE, loop, TRACE]))
    summary = evaluate_suite(model_that_writes(TOK, TRACE, block_size=64), TOK, suite, tmp_path / "out",
                             EvalConfig(batch_size=2), log=lambda s: None)
    assert summary["hard"] == 3
    split = summary["by_statement"]
    assert set(split) == {"while", "no while"}
    assert (split["while"]["n"], split["while"]["hard"], split["while"]["hard_pct"]) == (2, 0, 0.0)
    assert (split["no while"]["n"], split["no while"]["hard"], split["no while"]["hard_pct"]) == (3, 3, 100.0)
    records = [json.loads(x) for x in (tmp_path / "out" / "results.jsonl").read_text().splitlines()]
    assert split["while"] == ev.scores([r for r in records if "while" in r["prompt"]])
    assert ev.by_statement([{"prompt": "# code\nif a > 1:\n\tprint(a)\nelse:\n\tb = 2\n#STEP\n", "class": "hard"}]) == {}


def _files(folder):
    out = {p.name: p.read_bytes() for p in folder.iterdir() if p.name not in ("summary.json", "timing.jsonl")}
    summary = json.loads((folder / "summary.json").read_text())
    summary.pop("timing")
    return out, summary


def die_on_second_batch(monkeypatch) -> None:
    """Make the evaluation die (as if killed) when it starts its second batch."""
    real, calls = ev.generate, []

    def dies(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(ev, "generate", dies)


def test_killed_evaluation_resumes_to_identical_files(tmp_path, monkeypatch):
    suite = make_suite(tmp_path / "test.txt", 8)
    cfg = EvalConfig(batch_size=3, decoding=GenerateConfig(window="step-anchored", temperature=0.8, seed=5))  # sampling: seeds per batch
    quiet = dict(log=lambda s: None)
    evaluate_suite(tiny_model(), TOK, suite, tmp_path / "whole", cfg, **quiet)

    real = ev.generate
    die_on_second_batch(monkeypatch)
    with pytest.raises(KeyboardInterrupt):
        evaluate_suite(tiny_model(), TOK, suite, tmp_path / "killed", cfg, **quiet)
    progress = tmp_path / "killed" / "progress.jsonl"
    assert len(progress.read_text().splitlines()) == 3
    with open(progress, "a") as f:
        f.write('{"id": 4, "batch": 1, "prom')  # a torn write
    monkeypatch.setattr(ev, "generate", real)
    evaluate_suite(tiny_model(), TOK, suite, tmp_path / "killed", cfg, **quiet)
    assert _files(tmp_path / "killed") == _files(tmp_path / "whole")


def test_batches_go_costliest_first_to_the_least_loaded_process():
    assert ev.share_batches({0: 10, 1: 7, 2: 5, 3: 4, 4: 1}, 2) == [[0, 3], [1, 2, 4]]
    assert ev.share_batches({3: 1, 5: 2}, 1) == [[5, 3]]
    assert ev.share_batches({}, 3) == [[], [], []]


def test_decode_cost_counts_a_full_window_for_each_token_past_it():
    # prompt 2, window 4: lengths 2..7 predict the 6 new tokens; lengths 5, 6, 7 recompute the window
    assert ev.decode_cost(2, 6, "reference", 4) == 2 + 3 + 3 * 4
    assert ev.decode_cost(2, 6, "step-anchored", 4) == 8
    assert ev.decode_cost(2, 2, "reference", 4) == 4


@pytest.mark.slow
def test_two_processes_resume_a_killed_run_to_the_files_of_one(tmp_path, monkeypatch):
    from tinylm.cli import main

    model = tiny_model()
    ckpt = tmp_path / "model.pt"
    save_checkpoint(ckpt, model_config=asdict(model.config), model_state=model.state_dict(),
                    tokenizer=TOK.to_dict(), train_state={"step": 1})
    suite = make_suite(tmp_path / "test.txt", 8)
    args = ["eval", "--checkpoint", str(ckpt), "--suite", f"demo={suite}", "--batch-size", "2",
            "--window", "step-anchored", "--temperature", "0.8", "--seed", "5", "--device", "cpu"]
    assert main([*args, "--out", str(tmp_path / "one")]) == 0

    die_on_second_batch(monkeypatch)
    assert main([*args, "--out", str(tmp_path / "two")]) == 130
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                           "-m", "tinylm.cli", *args, "--out", str(tmp_path / "two")],
                          env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "resuming after 2 of 8 examples" in done.stdout
    one, two = tmp_path / "one" / "demo", tmp_path / "two" / "demo"
    assert [len(p.read_text().splitlines()) for p in sorted(two.glob("progress*.jsonl"))] == [6, 2]
    for name in ("results.jsonl", "results.csv", "settings.json"):
        assert (two / name).read_bytes() == (one / name).read_bytes()
    assert _files(two)[1] == _files(one)[1]


def test_resuming_with_other_settings_is_refused(tmp_path):
    suite = make_suite(tmp_path / "test.txt", 2)
    evaluate_suite(tiny_model(), TOK, suite, tmp_path / "out", EvalConfig(batch_size=2), log=lambda s: None)
    with pytest.raises(ConfigError, match="batch_size"):
        evaluate_suite(tiny_model(), TOK, suite, tmp_path / "out", EvalConfig(batch_size=1), log=lambda s: None)


# -----------------------------------------------------------------------------
# Bad input


def test_empty_test_file(tmp_path):
    (tmp_path / "empty.txt").write_text("\n\n")
    with pytest.raises(DataError, match="empty test file"):
        read_suite(tmp_path / "empty.txt", TOK)


def test_example_without_step_line(tmp_path):
    (tmp_path / "t.txt").write_text(TRACE + "\n\n# code\na = 1\n\n")
    with pytest.raises(DataError, match="example 1.*#STEP"):
        read_suite(tmp_path / "t.txt", TOK)


def test_prompt_with_an_unknown_character(tmp_path):
    (tmp_path / "t.txt").write_text(TRACE.replace("b = a\n#STEP", "b = ~a\n#STEP", 1) + "\n\n")
    with pytest.raises(DataError, match="example 0.*'~'"):
        read_suite(tmp_path / "t.txt", TOK)


def test_checkpoint_tokenizer_mismatch(tmp_path):
    suite = make_suite(tmp_path / "test.txt", 1)
    with pytest.raises(DataError, match="do not match"):
        evaluate_suite(tiny_model(vocab=40), TOK, suite, tmp_path / "out")


def test_rolling_window_on_absolute_positions_is_refused_before_anything_is_written(tmp_path):
    suite = make_suite(tmp_path / "test.txt", 1)
    with pytest.raises(ConfigError, match="rolling.*learned"):
        evaluate_suite(tiny_model(), TOK, suite, tmp_path / "out", EvalConfig(decoding=GenerateConfig(window="rolling")))
    assert not (tmp_path / "out").exists()


def test_cli_errors_are_one_line(tmp_path, capsys):
    from tinylm.cli import main

    suite = make_suite(tmp_path / "test.txt", 1)
    assert main(["eval", "--checkpoint", str(tmp_path / "no.pt"), "--suite", suite, "--out", str(tmp_path)]) == 2
    assert "no such checkpoint" in capsys.readouterr().err


# -----------------------------------------------------------------------------
# Checkpoints, sweeps and reports


def pixels_of(png, color: str, tol: float = 0.06):
    """(rows, columns) of the pixels of a PNG within `tol` of a matplotlib colour."""
    import matplotlib.colors
    import matplotlib.image
    import numpy as np

    image = matplotlib.image.imread(png)[..., :3]
    near = np.abs(image - np.array(matplotlib.colors.to_rgb(color))).max(axis=-1) < tol
    return np.nonzero(near)


def test_sweep_over_a_run_folder_and_report(tmp_path, capsys):
    from tinylm.cli import main

    run = tmp_path / "run"
    run.mkdir()
    # step 10: random weights (0% hard); step 20: a model that writes TRACE's trace (100% on TRACE)
    for step, model in ((10, tiny_model()), (20, model_that_writes(TOK, TRACE, block_size=64))):
        save_checkpoint(run / f"ckpt_{step:08d}.pt", model_config=asdict(model.config),
                        model_state=model.state_dict(), tokenizer=TOK.to_dict(), train_state={"step": step})
    (run / "metrics.jsonl").write_text('{"step": 10, "elapsed_s": 60.0}\n{"step": 20, "elapsed_s": 120.0}\n')
    right, soft = tmp_path / "right.txt", tmp_path / "soft.txt"
    right.write_text((TRACE + "\n\n") * 3)
    soft.write_text((TRACE.replace("@b = a$a?1", "@b = a$a?2") + "\n\n") * 3)
    out = tmp_path / "sweep"
    assert main(["eval", "--sweep", str(run), "--suite", f"id={right}", "--suite", f"ood={soft}",
                 "--out", str(out), "--batch-size", "2"]) == 0
    rows = json.loads((out / "sweep.json").read_text())["rows"]
    assert [(r["step"], r["elapsed_s"], r["suites"]["id"]["hard_pct"], r["suites"]["ood"]["hard_pct"])
            for r in rows] == [(10, 60.0, 0.0, 0.0), (20, 120.0, 100.0, 0.0)]
    assert len((out / "ckpt_00000010" / "id" / "results.jsonl").read_text().splitlines()) == 3
    assert "id hard %" in capsys.readouterr().out
    assert main(["report", str(out)]) == 0
    assert "- id hard match >= 99%: 2.0 min of training (step 20, 100.0%)" in (out / "sweep.md").read_text()
    assert "- ood hard match >= 90%: not reached (best 0.0%)" in (out / "sweep.md").read_text()
    # hard_match.png: two panels (against step, against time); id (C0) climbs from 0 to 100, ood (C1) stays at 0
    (rising_y, rising_x), (flat_y, flat_x) = (pixels_of(out / "hard_match.png", c) for c in ("C0", "C1"))
    half = 600  # of 1200 columns: 10 x 4 inches at 120 dpi
    assert (rising_x < half).any() and (flat_x < half).any()
    rising_y, flat_y = rising_y[rising_x > half], flat_y[flat_x > half]  # the right panel has no legend
    assert rising_y.max() - rising_y.min() > 250 and flat_y.max() - flat_y.min() < 20
    assert abs(rising_y.max() - flat_y.max()) < 10  # both start at 0
    assert main(["report", str(out / "ckpt_00000020")]) == 0
    # classes.png: the id bar all hard (green), the ood bar all soft (orange), no failure (red)
    png = out / "ckpt_00000020" / "classes.png"
    (green_y, green_x), (orange_y, orange_x) = (pixels_of(png, c) for c in ("tab:green", "tab:orange"))
    green_x, orange_x = green_x[green_y > 200], orange_x[orange_y > 200]  # below the legend
    assert green_x.size > 10_000 and orange_x.size > 10_000 and green_x.max() < orange_x.min()
    assert (pixels_of(png, "tab:red")[0] < 200).all()  # red in the legend only


def test_time_to_thresholds_takes_the_first_checkpoint_reaching_each():
    from tinylm.report.tables import sweep_report, time_to_thresholds

    rows = [{"checkpoint": f"ckpt_{s}.pt", "step": s, "elapsed_s": 60.0 * s, "suites": {"demo": {"hard_pct": h}}}
            for s, h in ((3, 96.0), (1, 50.0), (2, 91.0), (4, 93.0))]   # out of order, not monotone
    lines = time_to_thresholds(rows, "demo")
    assert lines[0] == "- demo hard match >= 90%: 2.0 min of training (step 2, 91.0%)"
    assert lines[1] == "- demo hard match >= 95%: 3.0 min of training (step 3, 96.0%)"
    assert lines[2] == "- demo hard match >= 99%: not reached (best 96.0%)"
    assert sweep_report(rows).endswith(lines[2])
