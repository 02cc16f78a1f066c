"""Where a training run's metrics go: its own folder (`Metrics`), TensorBoard and Weights & Biases.

The run folder always holds `metrics.jsonl` (and `metrics.csv`, `eval.csv`); the sinks are
optional copies for the tools researchers compare runs in, each behind an extra of the package:

    log: {tensorboard: true}                           # pip install 'tinylm[tb]'
    log: {wandb: {project: tracing, mode: offline}}    # pip install 'tinylm[wandb]'; `wandb sync` later

A sink that is enabled but whose package is missing stops the run before its first step with one
line naming the extra. Each sink receives the resolved config and run.json as the run's config, then
every record `metrics.jsonl` gets (training steps and evaluations), keyed by step. A resumed run
appends to the same TensorBoard folder (events after the checkpoint's step are purged) and to the
same W&B run (its id is kept in the run folder).
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import yaml

from tinylm.base.config import to_dict
from tinylm.base.errors import ConfigError


@dataclass
class WandbConfig:
    project: str = "tinylm"
    """W&B project the run is logged to."""
    mode: Literal["offline", "online"] = "offline"
    """offline: written under the run folder's wandb/, no network (`wandb sync` uploads it later);
    online: streamed (needs `wandb login`)."""
    name: str | None = None
    """Run name shown in W&B (None: the run folder's name)."""


def _summary_writer():
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise ConfigError("log.tensorboard: TensorBoard is not installed; pip install 'tinylm[tb]' "
                          "(or set log.tensorboard: false)") from None
    return SummaryWriter


def _wandb():
    try:
        import wandb
    except ImportError:
        raise ConfigError("log.wandb: Weights & Biases is not installed; pip install 'tinylm[wandb]' "
                          "(or remove log.wandb)") from None
    return wandb


def require(tensorboard: bool, wandb: WandbConfig | None) -> None:
    """Fail now, before a run writes anything, if an enabled sink's package is missing."""
    if tensorboard:
        _summary_writer()
    if wandb is not None:
        _wandb()


class TensorBoardSink:
    """Scalars under OUT_DIR/tensorboard; the config as a text entry."""

    def __init__(self, out_dir: Path, config: dict, resume_step: int | None):
        SummaryWriter = _summary_writer()
        self.writer = SummaryWriter(str(out_dir / "tensorboard"), purge_step=resume_step)
        if resume_step is None:
            self.writer.add_text("config", "```\n" + yaml.safe_dump(config, sort_keys=False) + "```", 0)

    def log(self, record: dict) -> None:
        for key, value in record.items():
            if key != "step" and isinstance(value, (int, float)):
                self.writer.add_scalar(key, value, record["step"])

    def close(self) -> None:
        self.writer.close()


class WandbSink:
    """One W&B run per run folder, resumed with it."""

    def __init__(self, cfg: WandbConfig, out_dir: Path, config: dict, resumed: bool):
        wandb = _wandb()
        id_file = out_dir / "wandb_id.txt"
        run_id = id_file.read_text().strip() if resumed and id_file.is_file() else secrets.token_hex(4)
        id_file.write_text(run_id + "\n")
        self.run = wandb.init(project=cfg.project, name=cfg.name or out_dir.name, mode=cfg.mode, dir=str(out_dir),
                              id=run_id, resume="allow", config=config)

    def log(self, record: dict) -> None:
        self.run.log({k: v for k, v in record.items() if k != "step" and v is not None}, step=record["step"])

    def close(self) -> None:
        self.run.finish()


class Metrics:
    """metrics.jsonl (+ metrics.csv, eval.csv) in the run folder, and the sinks `log` enables
    above; a no-op off the main process. `run`: a tinylm.train.loop.Run."""

    def __init__(self, run, resume_step: int | None):
        self.on = run.rt.is_main
        self.jsonl = run.out_dir / "metrics.jsonl"
        self.csv = run.out_dir / "metrics.csv" if run.cfg.log.csv else None
        self.eval_csv = run.out_dir / "eval.csv" if run.cfg.log.csv else None
        self.sinks = []
        if not self.on:
            return
        if resume_step is not None:  # drop what was logged after the checkpoint we resume from
            for path in (self.jsonl, self.csv, self.eval_csv):
                if path is not None and path.exists():
                    self._truncate(path, resume_step)
        else:
            for path in (self.jsonl, self.csv, self.eval_csv):
                if path is not None and path.exists():
                    path.unlink()
        config = {**to_dict(run.cfg), "run": json.loads((run.out_dir / "run.json").read_text())}
        if run.cfg.log.tensorboard:
            self.sinks.append(TensorBoardSink(run.out_dir, config, resume_step))
        if run.cfg.log.wandb is not None:
            self.sinks.append(WandbSink(run.cfg.log.wandb, run.out_dir, config, resume_step is not None))

    @staticmethod
    def _truncate(path: Path, step: int) -> None:
        """Keep the header and the records up to `step` (a line cut short by a crash goes too)."""
        lines = [ln for ln in path.read_text().splitlines(keepends=True) if ln.endswith("\n")]
        if path.suffix == ".jsonl":
            keep = [ln for ln in lines if json.loads(ln)["step"] <= step]
        else:
            keep = lines[:1] + [ln for ln in lines[1:] if int(ln.split(",", 1)[0]) <= step]
        path.write_text("".join(keep))

    def write(self, record: dict) -> None:
        if not self.on:
            return
        with self.jsonl.open("a") as f:
            f.write(json.dumps(record) + "\n")
        csv = self.csv if "loss" in record else self.eval_csv
        if csv is not None:
            new = not csv.exists()
            with csv.open("a") as f:
                if new:
                    f.write(",".join(record) + "\n")
                f.write(",".join("" if v is None else str(v) for v in record.values()) + "\n")
        for sink in self.sinks:
            sink.log(record)

    def close(self) -> None:
        for sink in self.sinks:
            sink.close()
