"""Faults survived: a diverging loss stops training with its last good step kept, and a process
killed with SIGKILL (training, evaluation, a dataset build) reruns to the bytes of an uninterrupted run."""

from __future__ import annotations

import pytest
import torch
from test_train import checkpoint, metrics, tiny_config, train

from tinylm.cli import main
from tinylm.config import write_yaml


@pytest.fixture(autouse=True)
def keep_thread_count():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def nan_at_training_forward(monkeypatch, n: int) -> None:
    """Make the model's n-th training forward return NaN logits, as a diverging run would."""
    from tinylm.model import GPT

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
