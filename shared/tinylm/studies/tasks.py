"""The training tasks the studies add to language modelling, and `tinylm train` knowing them."""

from __future__ import annotations

from tinylm.studies.forget_task import ForgetTrainConfig
from tinylm.train import config, loop

TASKS = (ForgetTrainConfig,)
"""TrainConfig subclasses, each selected by a config that holds its section."""


def train_config(data: dict, where: str = "config") -> config.TrainConfig:
    """A training config's data as its task's config class (tinylm.train.config.train_config)."""
    return config.train_config(data, TASKS, where)


def load_train_config(path, overrides=()) -> config.TrainConfig:
    """A training config file (with dotted overrides) as its task's config class."""
    return config.load_train_config(path, overrides, TASKS)


def cli(argv: list[str]) -> int:
    return loop.cli(argv, TASKS)
