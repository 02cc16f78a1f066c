"""Faults survived: a diverging loss stops training with its last good step kept, and training or
evaluation killed with SIGKILL, then started again with the same command, ends with the outputs of
an uninterrupted run (a killed dataset build: tests/test_datasets.py)."""

from __future__ import annotations

import json
import multiprocessing
import os
import runpy
import signal
import sys
import time
from pathlib import Path

import pytest
import torch
from test_train import checkpoint, metrics, tiny_config, train

from tinylm.base.config import write_yaml
from tinylm.cli import main

DEMO = Path(__file__).resolve().parents[1] / "tinypy_code_tracing_demo"


@pytest.fixture(autouse=True)
def keep_thread_count():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def nan_at_training_forward(monkeypatch, n: int) -> None:
    """Make the model's n-th training forward return NaN logits, as a diverging run would."""
    from tinylm.model.gpt import GPT

    real, calls = GPT.forward, []

    def forward(self, *args, **kwargs):
        logits, loss = real(self, *args, **kwargs)
        if self.training:
            calls.append(1)
            if len(calls) == n:
                logits = logits * float("nan")
        return logits, loss

    monkeypatch.setattr(GPT, "forward", forward)


def test_a_diverging_run_stops_with_a_clear_error_and_keeps_its_last_good_step(tmp_path, capsys, monkeypatch):
    changes = {"max_steps": 6, "eval_interval": 100}
    straight = train(tmp_path / "straight", **changes)
    config = tmp_path / "diverging" / "cfg.yaml"
    config.parent.mkdir()
    write_yaml(tiny_config(tmp_path / "diverging", **changes), config)

    nan_at_training_forward(monkeypatch, 4)
    assert main(["train", str(config)]) == 2
    err = capsys.readouterr().err
    run = tmp_path / "diverging" / "run"
    assert err.count("\n") == 1 and err.startswith("error: step 4: loss nan, grad norm nan; stopped, ")
    assert f"{run / 'ckpt_00000003.pt'} keeps step 3" in err
    kept = checkpoint(run, 3)
    assert kept["train_state"]["step"] == 3 and kept["train_state"]["sampler"]["position"] == 3
    assert all(torch.isfinite(t).all() for t in kept["model"].values())
    assert [m["step"] for m in metrics(run)] == [1, 2, 3]

    monkeypatch.undo()  # the fault is gone: resuming from the kept step finishes the uninterrupted run
    assert main(["train", str(config), "--resume"]) == 0
    a, b = checkpoint(straight["out_dir"], 6)["model"], checkpoint(run, 6)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert [m.get("loss") for m in metrics(run)] == [m.get("loss") for m in metrics(straight["out_dir"])]


# ----------------------------------------------------------------------------- SIGKILL, then the same command


def killed_mid_way(command, ready, what: str) -> None:
    """Run `command()` in a forked child (this process's imports already loaded: no second torch
    start-up) and SIGKILL it as soon as `ready()` holds; it must not have finished first."""
    def child() -> None:
        torch.set_num_threads(1)  # a forked OpenMP pool of more threads can hang
        command()

    proc = multiprocessing.get_context("fork").Process(target=child)
    proc.start()
    deadline = time.time() + 60
    while not ready() and proc.is_alive() and time.time() < deadline:
        time.sleep(0.001)
    got_there = ready()
    os.kill(proc.pid, signal.SIGKILL)
    proc.join()
    assert got_there and proc.exitcode == -signal.SIGKILL, f"{what} was not killed mid-way"


def script(path: Path, *args: str):
    """`python PATH ARGS` as a function of this process: its exit status."""
    def command() -> int:
        sys.argv = [str(path), *args]
        try:
            runpy.run_path(str(path), run_name="__main__")
        except SystemExit as done:
            return done.code
        return 0
    return command


def deterministic(records: list[dict]) -> list[dict]:
    """metrics.jsonl without its clock readings."""
    return [{k: v for k, v in r.items() if k not in ("tokens_per_s", "elapsed_s")} for r in records]


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_training_killed_mid_run_reruns_to_the_uninterrupted_run(tmp_path, monkeypatch):
    from test_train import tensors_equal

    changes = {"max_steps": 40, "eval_interval": 4, "model.dropout": 0.1}  # dropout: RNG states come back
    straight = train(tmp_path / "straight", **changes)
    config = tmp_path / "killed" / "cfg.yaml"
    config.parent.mkdir()
    write_yaml(tiny_config(tmp_path / "killed", **changes), config)
    run = tmp_path / "killed" / "run"
    monkeypatch.setattr(sys, "argv", sys.argv)  # the script sets it
    command = script(DEMO / "2_model_training" / "train.py", str(config))  # resumes when checkpoints exist
    killed_mid_way(command, lambda: len(list(run.glob("ckpt_*.pt"))) >= 2, "training")
    assert not (run / "ckpt_00000040.pt").exists()

    assert command() == 0  # the same command again
    a, b = checkpoint(straight["out_dir"], 40), checkpoint(run, 40)
    assert tensors_equal(a["model"], b["model"])
    assert tensors_equal(a["train_state"], b["train_state"])
    assert deterministic(metrics(run)) == deterministic(metrics(straight["out_dir"]))


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
@pytest.mark.usefixtures("one_torch_thread")
def test_evaluation_killed_mid_run_reruns_to_the_uninterrupted_run(tmp_path):
    from dataclasses import asdict

    from test_evaluate import TOK, make_suite, tiny_model

    from tinylm.model.checkpoint import save_checkpoint

    model = tiny_model()
    ckpt = tmp_path / "model.pt"
    save_checkpoint(ckpt, model_config=asdict(model.config), model_state=model.state_dict(), tokenizer=TOK.to_dict())
    suite = make_suite(tmp_path / "test.txt", 16)
    args = ["eval", "--checkpoint", str(ckpt), "--suite", f"demo={suite}", "--batch-size", "2",
            "--window", "step-anchored", "--temperature", "0.8", "--seed", "5"]
    assert main([*args, "--out", str(tmp_path / "straight")]) == 0

    def command() -> int:
        return main([*args, "--out", str(tmp_path / "killed")])

    progress = tmp_path / "killed" / "demo" / "progress.jsonl"
    killed_mid_way(command, lambda: progress.exists() and progress.read_bytes().count(b"\n") >= 4, "evaluation")
    assert not (tmp_path / "killed" / "demo" / "results.jsonl").exists()
    assert command() == 0  # the same command again
    one, two = tmp_path / "straight" / "demo", tmp_path / "killed" / "demo"
    for name in ("results.jsonl", "results.csv", "settings.json"):
        assert (one / name).read_bytes() == (two / name).read_bytes(), name
    summaries = [json.loads((d / "summary.json").read_text()) for d in (one, two)]
    assert [{k: v for k, v in s.items() if k != "timing"} for s in summaries][0] == \
        {k: v for k, v in summaries[1].items() if k != "timing"}
