"""What a training run trains, behind one small interface: the module the optimizer steps, the
batches it draws, one micro-batch's logits and labels, the validation batches, and what a
checkpoint stores beside the language model's weights.

`LanguageModelTask` is next-token prediction on a dataset's windows (tinylm.data.batches). A study
that trains something else subclasses it, and `TrainConfig` (tinylm.train.config) with its own YAML
section whose `make_task` returns the subclass; the loop runs it unchanged, computing the loss from
`outputs` with `tinylm.model.gpt.lm_loss` as for any run.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch

from tinylm.data.batches import BatchStream, Stage, make_batch, step_pool, validation_starts


class LanguageModelTask:
    """Next-token prediction on the dataset's windows; a subclass changes what its task needs."""

    def __init__(self, cfg: Any):
        self.cfg = cfg  # the run's TrainConfig

    def model(self, gpt: torch.nn.Module, stages: list[Stage]) -> torch.nn.Module:
        """The module the optimizer steps, built around the run's GPT."""
        return gpt

    def language_model(self, model: torch.nn.Module) -> torch.nn.Module:
        """The GPT inside `model`: its weights are a checkpoint's `model` entry."""
        return model

    def batches(self, stages: list[Stage], block_size: int, rank: int, world_size: int) -> BatchStream:
        """The training batch stream of this rank."""
        cfg = self.cfg
        return BatchStream(stages, block_size, cfg.batch_size, cfg.grad_accum, cfg.data.aligned_fraction,
                           cfg.data.mask, cfg.seed, rank, world_size, cfg.data.step_fraction, cfg.data.pack)

    def outputs(self, model: torch.nn.Module, batch: tuple[torch.Tensor, ...], progress: float):
        """(logits (B, L, V), labels (B, L), an extra loss to add or None) of one micro-batch;
        `progress` is how far the run has come, 0 to 1."""
        x, y = batch
        return model(x)[0], y, None

    def validation_batches(self, dataset, block_size: int, rank: int, world_size: int) -> Iterator[tuple]:
        """This rank's share of the fixed validation sample, in batches of eval_batch_size rows."""
        cfg = self.cfg
        pool = step_pool(dataset, dataset.val, cfg.data.mask) if cfg.data.step_fraction > 0 else None
        starts = validation_starts(dataset.val, block_size, cfg.eval_tokens, cfg.data.aligned_fraction,
                                   cfg.data.step_fraction, pool)[rank::world_size]
        for lo in range(0, len(starts), cfg.eval_batch_size):
            rows = starts[lo:lo + cfg.eval_batch_size]
            yield make_batch(dataset, dataset.val, rows, block_size, cfg.data.mask, cfg.data.pack)

    def checkpoint_extra(self, model: torch.nn.Module) -> dict | None:
        """More top-level checkpoint entries than the GPT's weights (None: none)."""
        return None

    def load_extra(self, model: torch.nn.Module, checkpoint: dict) -> None:
        """Restore what `checkpoint_extra` saved."""
