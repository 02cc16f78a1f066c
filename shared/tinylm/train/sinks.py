"""Where a training run's metrics go besides its own folder: TensorBoard and Weights & Biases.

The run folder always holds `metrics.jsonl` (and `metrics.csv`, `eval.csv`); these sinks are
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

import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import yaml

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
