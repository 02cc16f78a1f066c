"""A training run's configuration: the typed sections of its YAML file, the learning-rate schedule
they define, the model they resolve to, and loading them (with a study's task section) from a file.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

from tinylm.base.config import deep_merge, from_dict, parse_overrides, read_yaml
from tinylm.base.errors import ConfigError
from tinylm.train.sinks import WandbConfig
from tinylm.train.task import LanguageModelTask


@dataclass
class StageConfig:
    dataset: str
    """Dataset folder of this curriculum stage."""
    until_step: int | None = None
    """Draw from this stage for steps below until_step; None: until the end of training."""


@dataclass
class DataConfig:
    dataset: str = "datasets/demo"
    """Dataset folder (train.bin, val.bin, manifest.json); relative paths start at the repository root."""
    stages: list[StageConfig] = field(default_factory=list)
    """Curriculum: datasets with step ranges, in order; replaces `dataset` when given. Validation
    uses the last stage's val.bin."""
    aligned_fraction: float = 0.5
    """Fraction of rows whose window starts at an example's first token."""
    step_fraction: float = 0.0
    """Fraction of rows whose window starts just after a trace step boundary (the rest start anywhere)."""
    mask: Literal["all", "trace", "traces", "step", "next-step"] = "all"
    """Loss mask: every target token; only the trace after the window's first step boundary (not
    the program the window opens with); that for every example of the window (a packed window's
    next example trains too); only the last trace step the window starts; or only the
    step after the one the window opens with, step-aligned rows then drawn from every transition of
    every example, the prompt -> first step included (both for fine-tuning). See tinylm.data.batches."""
    train_examples: int | None = None
    """Train on the first N examples of each stage's train.bin only (data-scaling studies): no
    window reaches past example N. None: all of them. Validation is unchanged."""
    state_weight: float = 1.0
    """Weight of the training loss on trace-state targets against 1 for every other counted target:
    the values of a state (from its `$` to its end) and the `@` that marks the line that runs
    (`tinylm.data.batches.state_targets`). The training loss is then the weighted mean; validation
    stays the plain mean. 1: every target alike."""
    pack: bool = True
    """Windows run on across examples (packed); false: each row is one example from its start,
    padded after its terminator with the tokenizer's <pad>, which no loss counts (needs
    aligned_fraction 1 and a tokenizer with <pad>: the text tokenizers). See tinylm.data.batches."""

    def validate(self) -> None:
        if not self.pack and (self.aligned_fraction != 1.0 or self.step_fraction != 0.0):
            raise ConfigError("data.pack: false needs data.aligned_fraction: 1.0 and data.step_fraction: 0.0 "
                              "(every row starts at an example)")
        if not (math.isfinite(self.state_weight) and self.state_weight > 0):
            raise ConfigError(f"data.state_weight must be a number > 0, got {self.state_weight}")
        if self.train_examples is not None and self.train_examples < 1:
            raise ConfigError(f"data.train_examples must be at least 1, got {self.train_examples}")
        for key in ("aligned_fraction", "step_fraction"):
            if not 0.0 <= getattr(self, key) <= 1.0:
                raise ConfigError(f"data.{key} must be in [0, 1], got {getattr(self, key)}")
        if self.aligned_fraction + self.step_fraction > 1.0:
            raise ConfigError(f"data.aligned_fraction + data.step_fraction must be at most 1, got "
                              f"{self.aligned_fraction} + {self.step_fraction}")
        ends = [s.until_step for s in self.stages]
        if any(e is None for e in ends[:-1]) or ends[:-1] != sorted(ends[:-1]):
            raise ConfigError("data.stages: every stage but the last needs an increasing until_step")


@dataclass
class OptimConfig:
    name: Literal["adamw", "muon"] = "adamw"
    """adamw: AdamW on every parameter; muon: Muon on the blocks' weight matrices, AdamW on the
    rest (see tinylm.model.optim)."""
    lr: float = 1e-3
    """Peak learning rate."""
    adamw_lr: float | None = None
    """muon only: peak rate of the parameters Muon does not take (embeddings, head, norms,
    biases), which AdamW steps on the same schedule scaled by adamw_lr / lr; None: lr."""
    min_lr: float = 1e-4
    """Floor of the cosine and wsd decays."""
    betas: list[float] = field(default_factory=lambda: [0.9, 0.95])
    """AdamW betas."""
    momentum: float = 0.95
    """Muon's Nesterov momentum (optim.name: muon)."""
    weight_decay: float = 0.1
    """AdamW weight decay, on matrices and embeddings only."""
    grad_clip: float = 1.0
    """Clip the global gradient norm to this; 0 disables clipping."""
    schedule: Literal["cosine", "multistep", "constant", "wsd"] = "cosine"
    """After warmup: cosine to min_lr; multistep (x gamma at each milestone); constant;
    wsd (warmup-stable-decay: constant, then linear to min_lr over the last decay_fraction)."""
    warmup_steps: int | None = None
    """Linear warmup length in steps; None: warmup_fraction of the run."""
    warmup_fraction: float = 0.1
    """Warmup length as a fraction of max steps (when warmup_steps is None)."""
    milestones: list[float] = field(default_factory=lambda: [0.7, 0.8, 0.9])
    """multistep: fractions of the run where the rate is multiplied by gamma."""
    gamma: float = 0.1
    """multistep: factor at each milestone."""
    decay_fraction: float = 0.2
    """wsd: fraction of the run spent decaying."""
    cooldown_fraction: float = 0.0
    """cosine and wsd: the last fraction of the run takes the rate on from min_lr to 0 (a half cosine),
    after the schedule has reached min_lr over the rest of the run; 0: no cooldown."""

    def validate(self) -> None:
        if len(self.betas) != 2:
            raise ConfigError(f"optim.betas needs two values, got {self.betas}")
        if self.adamw_lr is not None and (self.name != "muon" or not self.adamw_lr > 0):
            raise ConfigError(f"optim.adamw_lr applies to optim.name: muon only and must be > 0, "
                              f"got {self.adamw_lr} with {self.name}")
        if self.lr <= 0 or self.min_lr < 0 or self.min_lr > self.lr:
            raise ConfigError(f"optim: need 0 <= min_lr <= lr and lr > 0, got lr={self.lr} min_lr={self.min_lr}")
        if not 0.0 <= self.warmup_fraction < 1.0 or not 0.0 < self.decay_fraction <= 1.0:
            raise ConfigError("optim: warmup_fraction must be in [0, 1) and decay_fraction in (0, 1]")
        if not 0.0 <= self.cooldown_fraction < 1.0:
            raise ConfigError(f"optim.cooldown_fraction must be in [0, 1), got {self.cooldown_fraction}")
        if self.cooldown_fraction and self.schedule not in ("cosine", "wsd"):
            raise ConfigError(f"optim.cooldown_fraction continues a decay to min_lr: schedule cosine or wsd, "
                              f"not {self.schedule}")
        if not 0.0 <= self.momentum < 1.0:
            raise ConfigError(f"optim.momentum must be in [0, 1), got {self.momentum}")


@dataclass
class CheckpointConfig:
    keep_last: int = 2
    """How many of the newest step checkpoints to keep (older ones are deleted)."""
    keep_best: bool = True
    """Also keep best.pt, the checkpoint with the lowest validation loss."""
    at_epochs: list[float] = field(default_factory=list)
    """Also evaluate and checkpoint at these epochs (step ceil(epoch x steps per epoch)), e.g.
    [2, 4] for a comparison at epoch 2; keep_last never deletes these. Not with data.stages."""
    best_with_optimizer: bool = False
    """best.pt keeps the optimizer state too; by default it holds the weights, config, tokenizer and
    training position only (the file to share or evaluate)."""


@dataclass
class LogConfig:
    progress: bool = True
    """Show a progress bar (main process only)."""
    csv: bool = True
    """Also write per-step metrics to metrics.csv (one line per step: as cheap as metrics.jsonl)."""
    tensorboard: bool = False
    """Also write TensorBoard events to OUT_DIR/tensorboard (needs the `tb` extra; see tinylm.train.sinks)."""
    wandb: WandbConfig | None = None
    """Also log to Weights & Biases: {project, mode: offline|online, name} (needs the `wandb` extra)."""


@dataclass
class TrainConfig:
    model: dict[str, Any] = field(default_factory=lambda: {"preset": "demo"})
    """`preset` (a tinylm.model.gpt preset name) and/or GPTConfig fields overriding it. vocab_size
    defaults to the dataset's."""
    init_from: str | None = None
    """Checkpoint whose weights and architecture start the run (e.g. for fine-tuning with data.mask: step);
    the model section is then ignored, and the optimizer starts fresh."""
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    batch_size: int = 128
    """Rows per optimizer step, summed over processes and micro-batches."""
    grad_accum: int = 1
    """Micro-batches per optimizer step on each process."""
    max_steps: int | None = None
    """Length of the run (and of the LR schedule) in optimizer steps."""
    max_tokens: int | None = None
    """Alternative length in tokens (batch_size * block_size per step)."""
    max_epochs: float | None = None
    """Alternative length in epochs of ceil(train tokens / (batch_size * block_size)) steps, rounded
    up to a whole step; the fewest steps of max_steps, max_tokens and max_epochs win. Not with data.stages."""
    max_minutes: float | None = None
    """Wall-clock budget of one invocation; stops early (with a checkpoint) without changing the schedule."""
    schedule_minutes: float | None = None
    """Size the run to the machine: at the end of warmup, max_steps becomes the number of steps that
    fit in this many minutes of training at the rate of the warmup's second half (never more than
    max_steps/max_tokens/max_epochs). The length chosen is recorded in run.json and the checkpoints; a resumed
    run keeps it, and max_steps=N without schedule_minutes reruns the same run."""
    stop_at_step: int | None = None
    """Stop (with a checkpoint) after this step without changing the schedule; resume later."""
    eval_interval: int = 500
    """Evaluate and checkpoint every eval_interval steps (and at the end)."""
    eval_tokens: int | None = 262144
    """Validation sample: the first eval_tokens target tokens of val.bin, in fixed windows; None: all."""
    eval_batch_size: int = 64
    """Rows per validation forward, per process."""
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    device: str = "auto"
    """auto (a GPU, then Apple mps, then cpu), or a device name."""
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"
    """Autocast dtype: auto is bfloat16 on GPUs that support it, float16 (with loss scaling) on older
    GPUs, float32 elsewhere."""
    compile: bool = False
    """torch.compile the model."""
    threads: int | None = None
    """CPU threads for torch (None: torch's default)."""
    seed: int = 1337
    """Seeds initialisation, batch order and dropout."""
    out_dir: str | None = None
    """Run folder; None: runs/<config name> in the project holding the config."""
    log: LogConfig = field(default_factory=LogConfig)

    SECTION: ClassVar[str | None] = None
    """The YAML section that selects a task's subclass of this config (None: the language model)."""

    def make_task(self) -> LanguageModelTask:
        """What this run trains (tinylm.train.task)."""
        return LanguageModelTask(self)

    def validate(self) -> None:
        if self.max_steps is None and self.max_tokens is None and self.max_epochs is None:
            raise ConfigError("set max_steps, max_tokens or max_epochs")
        for name in ("max_steps", "max_tokens"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise ConfigError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.max_epochs is not None:
            if not (math.isfinite(self.max_epochs) and self.max_epochs > 0):
                raise ConfigError(f"max_epochs must be a positive number, got {self.max_epochs}")
            if self.data.stages:
                raise ConfigError("max_epochs is not defined with data.stages (each stage's length is its "
                                  "until_step); set max_steps or max_tokens")
        if self.checkpoint.at_epochs and (self.data.stages or not all(e > 0 for e in self.checkpoint.at_epochs)):
            raise ConfigError("checkpoint.at_epochs must be positive epochs, and is not defined with data.stages")
        for name in ("batch_size", "grad_accum", "eval_interval", "eval_batch_size"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.batch_size % self.grad_accum:
            raise ConfigError(f"batch_size {self.batch_size} is not divisible by grad_accum {self.grad_accum}")
        if self.schedule_minutes is not None:
            if self.schedule_minutes <= 0:
                raise ConfigError(f"schedule_minutes must be > 0, got {self.schedule_minutes}")
            if self.optim.warmup_steps is None or self.optim.warmup_steps < 4:
                raise ConfigError("schedule_minutes needs optim.warmup_steps >= 4: the warmup is timed to "
                                  "size the run, so its length must not depend on the run's length")


def warmup_steps(o: OptimConfig, total: int) -> int:
    return o.warmup_steps if o.warmup_steps is not None else int(o.warmup_fraction * total)


def lr_at(step: int, o: OptimConfig, total: int) -> float:
    """Learning rate of optimizer step `step` (0-based) in a run of `total` steps."""
    cooldown = int(o.cooldown_fraction * total)
    if cooldown and step >= total - cooldown:
        progress = min((step - (total - cooldown)) / cooldown, 1.0)
        return 0.5 * (1.0 + math.cos(math.pi * progress)) * o.min_lr
    total -= cooldown
    warmup = warmup_steps(o, total)
    if step < warmup:
        return o.lr * (step + 1) / warmup
    if o.schedule == "constant":
        return o.lr
    if o.schedule == "multistep":
        return o.lr * o.gamma ** sum(step >= int(m * total) for m in o.milestones)
    if o.schedule == "wsd":
        decay = max(int(o.decay_fraction * total), 1)
        done = step - (total - decay) + 1  # decay steps taken, counting this one
        return o.lr if done <= 0 else o.lr + (o.min_lr - o.lr) * min(done / decay, 1.0)
    progress = min((step - warmup) / max(total - warmup, 1), 1.0)
    return o.min_lr + 0.5 * (1.0 + math.cos(math.pi * progress)) * (o.lr - o.min_lr)


def resolve_model_config(cfg: TrainConfig, vocab_size: int, where: str):
    """GPTConfig from preset <- fields; vocab_size from the dataset unless the config sets it."""
    from tinylm.model.gpt import GPTConfig
    from tinylm.model.presets import model_preset

    fields = dict(cfg.model)
    preset = fields.pop("preset", None)
    resolved = model_preset(preset) if preset else {}
    resolved.update(fields)
    if "vocab_size" not in fields:
        resolved["vocab_size"] = vocab_size
    elif fields["vocab_size"] < vocab_size:
        raise ConfigError(f"model.vocab_size {fields['vocab_size']} is smaller than the dataset's {vocab_size}")
    return from_dict(GPTConfig, resolved, where=f"{where} (model)", prefix="model.")



def train_config(data: dict, tasks=(), where: str = "config") -> TrainConfig:
    """`data` as the config of the task (a TrainConfig subclass of `tasks`) whose SECTION it holds,
    or as a TrainConfig; a section set to null (an override removing it) holds none."""
    empty = {t.SECTION for t in tasks if t.SECTION in data and data[t.SECTION] is None}
    cls = next((t for t in tasks if data.get(t.SECTION) is not None), TrainConfig)
    return from_dict(cls, {k: v for k, v in data.items() if k not in empty}, where)


def load_train_config(path, overrides=(), tasks=()) -> TrainConfig:
    """The config at `path` with dotted `overrides` (`train_config`)."""
    data = deep_merge(read_yaml(path), parse_overrides(list(overrides)))
    return train_config(data, tasks, f"{path}" + (" (with overrides)" if overrides else ""))
