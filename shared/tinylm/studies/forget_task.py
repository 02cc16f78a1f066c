"""Forgetting as a training task: a run config with a `forget` section trains a GPT that sees only
the context tokens a drop policy keeps (tinylm.studies.forget).

Each row is a step boundary's context and the next step (`StepBatchStream`), the loss is on that
step, and a learned policy's scorer trains with the LM (or alone, `freeze_lm`). Its checkpoints
hold the GPT as any run's do, plus `forget` (the policy's config and weights). The loop
(tinylm.train.loop) runs it through the `LanguageModelTask` interface it overrides.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import ClassVar

import torch

from tinylm.base.errors import ConfigError, DataError
from tinylm.data.batches import Stage
from tinylm.studies.forget import (
    VALIDATION_STEP,
    ForgetConfig,
    ForgetLM,
    StepBatchStream,
    TraceTokens,
    row_seeds,
    step_windows,
    validation_steps,
)
from tinylm.tokens.load import tokenizer_from_dict
from tinylm.train.config import TrainConfig
from tinylm.train.task import LanguageModelTask


@dataclass
class ForgetTrainConfig(TrainConfig):
    """A training run with a drop policy."""

    forget: ForgetConfig = field(default_factory=ForgetConfig)
    """A drop policy: train on step boundaries, the model seeing only the context it keeps."""

    SECTION: ClassVar[str] = "forget"

    def make_task(self) -> ForgetTask:
        return ForgetTask(self)

    def validate(self) -> None:
        super().validate()
        if self.data.state_weight != 1.0:
            raise ConfigError("data.state_weight weighs a language model's targets; a forgetting run has its own")


class ForgetTask(LanguageModelTask):
    """The GPT inside a ForgetLM; rows are (x, y, n_ctx, t_len, seeds) at step boundaries."""

    def model(self, gpt: torch.nn.Module, stages: list[Stage]) -> ForgetLM:
        forget = self.cfg.forget
        dataset = stages[0].dataset
        if forget.max_target >= gpt.config.block_size:
            raise ConfigError(f"forget.max_target {forget.max_target} leaves no context in block_size "
                              f"{gpt.config.block_size}")
        if any(s.dataset.step_id is None for s in stages):
            raise DataError(f"{dataset.folder}: its vocabulary has no step token; forgetting splits at steps")
        return ForgetLM(gpt, forget, TraceTokens.of(tokenizer_from_dict(dataset.manifest["tokenizer"])))

    def language_model(self, model: ForgetLM) -> torch.nn.Module:
        return model.gpt

    def batches(self, stages: list[Stage], block_size: int, rank: int, world_size: int) -> StepBatchStream:
        cfg = self.cfg
        return StepBatchStream(stages, block_size, cfg.batch_size, cfg.grad_accum, cfg.data.aligned_fraction,
                               cfg.data.mask, cfg.seed, rank, world_size, cfg.data.step_fraction, cfg.data.pack,
                               max_target=cfg.forget.max_target)

    def outputs(self, model: torch.nn.Module, batch: tuple[torch.Tensor, ...], progress: float):
        """The policy's own loss is the extra loss; it sees how far the run has come."""
        logits, labels, extra, _ = model(*batch, progress=progress)
        return logits, labels, extra

    def validation_batches(self, dataset, block_size: int, rank: int, world_size: int) -> Iterator[tuple]:
        """Step boundaries spread over val.bin; a random policy draws the same tokens at every evaluation
        (a row's noise is seeded by its place in the whole sample)."""
        cfg = self.cfg
        every = validation_steps(dataset, block_size, cfg.eval_tokens)
        order = list(range(len(every)))[rank::world_size]
        starts = every[order]
        for lo in range(0, len(starts), cfg.eval_batch_size):
            rows = starts[lo:lo + cfg.eval_batch_size]
            seeds = row_seeds((cfg.seed, VALIDATION_STEP, r) for r in order[lo:lo + cfg.eval_batch_size])
            yield (*step_windows(dataset.val, rows, block_size, cfg.forget.max_target, dataset.eos_id,
                                 dataset.step_id), seeds)

    def checkpoint_extra(self, model: ForgetLM) -> dict:
        return {"forget": model.checkpoint_entry()}

    def load_extra(self, model: ForgetLM, checkpoint: dict) -> None:
        model.load_entry(checkpoint["forget"])
