"""Metrics sinks: TensorBoard and W&B (offline) receive what metrics.jsonl gets, read back with their
own readers; an enabled sink whose package is missing stops the run before it writes anything."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from test_train import metrics, tiny_config

from tinylm.base.config import load_config
from tinylm.base.errors import ConfigError
from tinylm.train.config import TrainConfig
from tinylm.train.loop import run


def train(tmp_path: Path, resume: bool = False, **changes) -> dict:
    return run(load_config(TrainConfig, base=tiny_config(tmp_path, **changes)), resume=resume)


def test_tensorboard_gets_every_logged_number_and_the_config(tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    summary = train(tmp_path, max_steps=4, eval_interval=2, **{"log.tensorboard": True})
    events = EventAccumulator(str(Path(summary["out_dir"]) / "tensorboard"), size_guidance={"tensors": 0}).Reload()
    logged = [m for m in metrics(summary["out_dir"]) if "loss" in m]
    assert [(e.step, e.value) for e in events.Scalars("loss")] == [
        (m["step"], pytest.approx(m["loss"])) for m in logged]
    assert [e.step for e in events.Scalars("val_loss")] == [2, 4]
    assert "config/text_summary" in events.Tags()["tensors"]


def test_wandb_offline_run_holds_the_config_and_the_losses_and_resumes_the_same_run(tmp_path, monkeypatch):
    pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_SILENT", "true")
    changes = {"max_steps": 4, "eval_interval": 2, "log.wandb": {"project": "tests", "mode": "offline"},
               "optim.lr": 0.00271828}
    summary = train(tmp_path, stop_at_step=2, **changes)
    out = Path(summary["out_dir"])
    run_id = (out / "wandb_id.txt").read_text().strip()
    first = list(out.glob(f"wandb/offline-run-*-{run_id}/run-{run_id}.wandb"))
    assert len(first) == 1
    data = first[0].read_bytes()
    assert b"0.00271828" in data and b"loss" in data and b"val_loss" in data  # the config and the metrics
    train(tmp_path, resume=True, **changes)
    assert (out / "wandb_id.txt").read_text().strip() == run_id
    assert len(list(out.glob(f"wandb/offline-run-*-{run_id}/run-{run_id}.wandb"))) == 2  # the same run, resumed


@pytest.mark.parametrize("missing,changes,extra", [
    ("torch.utils.tensorboard", {"log.tensorboard": True}, "tinylm[tb]"),
    ("wandb", {"log.wandb": {"project": "x"}}, "tinylm[wandb]"),
])
def test_an_enabled_sink_that_is_not_installed_stops_the_run_before_it_writes(tmp_path, monkeypatch, missing, changes,
                                                                              extra):
    monkeypatch.setitem(sys.modules, missing, None)   # import fails as if the package were absent
    with pytest.raises(ConfigError, match=extra.replace("[", r"\[").replace("]", r"\]")):
        train(tmp_path, **changes)
    assert not (tmp_path / "run").exists()


def test_sinks_are_off_by_default():
    cfg = TrainConfig()
    assert (cfg.log.tensorboard, cfg.log.wandb) == (False, None)
