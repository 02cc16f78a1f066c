"""Training: `tinylm train CONFIG.yaml [key=value ...] [--resume [auto]] [--print-config]`.

One entry point for a single process and for `torchrun --nproc_per_node N` (DDP). Entry is split
into `cli` (parse), `run` (build the runtime, data, model, optimizer; maybe restore) and `fit`
(the loop), with one optimizer step in `train_step`; the config's sections are in
tinylm.train.config, where the records go in tinylm.train.sinks.

The run's length is the fewest steps any of `max_steps`, `max_tokens` and `max_epochs` gives
(`max_minutes` and `stop_at_step` stop a run early without changing it; `schedule_minutes` may
shorten it). A step takes batch_size * block_size tokens; an epoch is ceil(train tokens /
(batch_size * block_size)) steps, where the train tokens are train.bin's, after the cap
`data.train_examples` (the first N examples, for data-scaling studies). `max_epochs` is refused
with a curriculum (`data.stages`), whose stages set their own lengths in steps.

The run folder (`out_dir`) receives, at start, `config.yaml` (the resolved config, model fields
included) and `run.json` (seed, git revision, world size, parameter count, and `length`: the
training examples and tokens of each stage, the steps of an epoch and the steps each given
length asks for); during training,
`metrics.jsonl` (one line per step: loss, lr, grad norm, tokens/s, elapsed; one per evaluation:
val_loss, val_perplexity, and train_loss, train_perplexity over the steps since the previous
evaluation), `metrics.csv` (the step lines), `eval.csv` (the evaluation lines), and the same records
to the TensorBoard and W&B sinks `log` enables (`tinylm.train.sinks`); and checkpoints `ckpt_STEP.pt` (the last `checkpoint.keep_last`) plus `best.pt` (lowest
validation loss; without the optimizer state unless `checkpoint.best_with_optimizer`). A loss is the mean cross-entropy per counted target token (padding and masked
targets never count); a perplexity is exp of that mean.

A checkpoint holds the model, the optimizer, the schedule position, the batch sampler position,
the RNG states of every rank and the resolved config; `--resume` continues from the newest one
and reproduces the uninterrupted run bit for bit (same device type and world size). The learning
rate is a pure function of the step, so a resumed run follows the same schedule. `--resume` and
`init_from` refuse a checkpoint whose tokenizer is not the dataset's (`tinylm.model.checkpoint.check_tokenizer`).
`--resume auto` continues where there is a checkpoint and starts afresh where there is none; without
`--resume`, a folder that holds a run's checkpoints is refused rather than overwritten.

What the loop trains is the config's task (`TrainConfig.make_task`, tinylm.train.task): the
module it steps, its batches, one micro-batch's logits and labels, the validation batches and the
checkpoint's extra entries. `TrainConfig` trains a language model; a study adds its task as a
`TrainConfig` subclass with its own YAML section (`SECTION`), which `cli(argv, tasks)` selects when
the config holds that section (`tinylm train` knows the studies' tasks: tinylm.studies.tasks).

`batch_size` is the global number of rows per optimizer step, whatever the number of processes:
each of W ranks runs `grad_accum` micro-batches of `batch_size / (W * grad_accum)` rows. The loss
is the mean over every counted target token of the global batch, so 2-rank DDP takes the same
step as one process.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import shutil
import time
from dataclasses import dataclass, field, replace
from fractions import Fraction
from pathlib import Path
from typing import Any

import torch
import yaml

from tinylm.base import runtime
from tinylm.base.args import ArgumentParser
from tinylm.base.config import (
    describe,
    from_dict,
    to_dict,
    write_yaml,
)
from tinylm.base.errors import ConfigError, DataError
from tinylm.base.files import atomic_path, atomic_write_json, machine, resolve_path, run_metadata
from tinylm.data.batches import (
    IGNORE,
    LINE_MARKER,
    STATE_CLOSES,
    STATE_OPEN,
    BatchStream,
    Stage,
    first_examples,
    open_dataset,
    state_targets,
)
from tinylm.model.checkpoint import check_tokenizer, load_checkpoint, save_checkpoint
from tinylm.model.gpt import lm_loss
from tinylm.model.optim import OptimizerGroup, build_optimizer, load_keeping_rate_scales, set_rates
from tinylm.train.config import (
    StageConfig,
    TrainConfig,
    load_train_config,
    lr_at,
    resolve_model_config,
)
from tinylm.train.sinks import Metrics
from tinylm.train.sinks import require as require_sinks
from tinylm.train.task import LanguageModelTask

# ----------------------------------------------------------------------------- building a run


def run_dir(cfg: TrainConfig, config_file: str | Path | None = None) -> Path:
    """out_dir, or runs/<config name> beside the project's configs/ folder (or beside the config file)."""
    if cfg.out_dir:
        return resolve_path(cfg.out_dir, config_file)
    if config_file is None:
        return Path.cwd() / "runs" / "train"
    path = Path(config_file).resolve()
    project = path.parent.parent if path.parent.name == "configs" else path.parent
    return project / "runs" / path.stem


def open_stages(cfg: TrainConfig, config_file) -> list[Stage]:
    """The curriculum's datasets (or the one dataset), each train split cut to data.train_examples."""
    specs = cfg.data.stages or [StageConfig(dataset=cfg.data.dataset)]
    stages = [Stage(open_dataset(resolve_path(s.dataset, config_file)), s.until_step) for s in specs]
    n = cfg.data.train_examples
    if n is not None:
        for stage in stages:
            held = len(stage.dataset.train.starts)
            if n > held:
                raise ConfigError(f"data.train_examples is {n:,} but {stage.dataset.folder}/train.bin holds "
                                  f"{held:,} examples")
            stage.dataset = replace(stage.dataset, train=first_examples(stage.dataset.train, n))
    first = stages[0].dataset
    for stage in stages[1:]:
        if stage.dataset.manifest["tokenizer"] != first.manifest["tokenizer"]:
            raise DataError(f"curriculum: {stage.dataset.folder} and {first.folder} use different tokenizers")
    return stages


def run_length(cfg: TrainConfig, stages: list[Stage], tokens_per_step: int) -> dict:
    """What the run's length is made of: each stage's training examples and tokens, the steps of
    an epoch (None with a curriculum) and the steps each given length asks for; the fewest win."""
    tokens = [len(s.dataset.train) for s in stages]
    epoch = -(-tokens[0] // tokens_per_step) if len(stages) == 1 else None
    asked = {"max_steps": cfg.max_steps,
             "max_tokens": cfg.max_tokens and -(-cfg.max_tokens // tokens_per_step),
             # the decimal the config holds, so that 0.1 epoch of 30 steps is 3 steps, not 4
             "max_epochs": cfg.max_epochs and max(1, math.ceil(Fraction(repr(cfg.max_epochs)) * epoch))}
    return {"train_examples": [len(s.dataset.train.starts) for s in stages], "train_tokens": tokens,
            "steps_per_epoch": epoch, "steps": {k: v for k, v in asked.items() if v is not None}}


@dataclass
class Run:
    """Everything `fit` works with."""

    cfg: TrainConfig
    rt: runtime.Runtime
    model: torch.nn.Module          # the plain model: saved, evaluated
    train_model: torch.nn.Module    # what the step calls: compiled and/or DDP-wrapped
    optimizer: torch.optim.Optimizer | OptimizerGroup
    batches: BatchStream
    task: LanguageModelTask
    stages: list[Stage]
    model_config: Any
    max_steps: int
    out_dir: Path
    length: dict = field(default_factory=dict)  # run_length(): what max_steps was chosen from
    kept_steps: frozenset[int] = frozenset()  # checkpoint.at_epochs as steps: checkpointed, never pruned
    state_ids: tuple | None = None  # data.state_weight != 1: (open id, close ids, marker id) of state_targets
    step: int = 0
    best_val_loss: float = math.inf
    tokens_per_step: int = 0
    sized: bool = True  # False until schedule_minutes has fixed max_steps
    scaler: torch.amp.GradScaler | None = None  # float16 only: scales the loss, skips overflowing steps


def build(cfg: TrainConfig, rt: runtime.Runtime, config_file=None) -> Run:
    from tinylm.model.gpt import GPT, GPTConfig

    stages = open_stages(cfg, config_file)
    where = str(config_file or "config")
    init = load_checkpoint(resolve_path(cfg.init_from, config_file)) if cfg.init_from else None
    if init is not None:
        model_config = from_dict(GPTConfig, init["model_config"], where=f"{cfg.init_from} (model_config)")
        check_tokenizer(init, cfg.init_from, stages[0].dataset.manifest["tokenizer"], str(stages[0].dataset.folder))
    else:
        model_config = resolve_model_config(cfg, stages[0].dataset.vocab_size, where)
    torch.manual_seed(cfg.seed)  # identical initial weights on every rank
    model = GPT(model_config)
    torch.manual_seed(cfg.seed + rt.rank)  # dropout differs between ranks
    if init is not None:
        model.load_state_dict(init["model"])
    task = cfg.make_task()
    model = task.model(model, stages)
    model.to(rt.device)
    optimizer = build_optimizer(model, cfg.optim.name, cfg.optim.lr, cfg.optim.weight_decay,
                                tuple(cfg.optim.betas), cfg.optim.momentum, rt.device_type,
                                adamw_lr=cfg.optim.adamw_lr)
    tokens_per_step = cfg.batch_size * model_config.block_size
    length = run_length(cfg, stages, tokens_per_step)
    state_ids = state_token_ids(stages[0].dataset) if cfg.data.state_weight != 1.0 else None
    epoch = length["steps_per_epoch"]
    kept = frozenset(max(1, math.ceil(Fraction(repr(e)) * epoch)) for e in cfg.checkpoint.at_epochs)
    batches = task.batches(stages, model_config.block_size, rt.rank, rt.world_size)
    out_dir = run_dir(cfg, config_file)
    scaler = torch.amp.GradScaler(rt.device.type) if rt.dtype == torch.float16 else None
    return Run(cfg=cfg, rt=rt, model=model, train_model=rt.wrap(model, cfg.compile), optimizer=optimizer, scaler=scaler,
               batches=batches, task=task, stages=stages, model_config=model_config,
               max_steps=min(length["steps"].values()), out_dir=out_dir, length=length, kept_steps=kept, state_ids=state_ids,
               tokens_per_step=tokens_per_step, sized=cfg.schedule_minutes is None)


# ----------------------------------------------------------------------------- checkpoints


def checkpoint_paths(out_dir: Path) -> list[Path]:
    """Step checkpoints in the run folder, oldest first."""
    return sorted(out_dir.glob("ckpt_*.pt"))


def save(run: Run, val_loss: float | None) -> None:
    """Write ckpt_STEP.pt (and best.pt), keep the newest keep_last. Every rank must call this."""
    rng = run.rt.gather_objects(runtime.rng_state())
    if not run.rt.is_main:
        return
    train_state = {
        "step": run.step,
        "optimizer": run.optimizer.state_dict(),
        "optimizer_name": run.cfg.optim.name,
        "scheduler": {"schedule": run.cfg.optim.schedule, "step": run.step, "max_steps": run.max_steps,
                      "sized": run.sized},
        "sampler": run.batches.state_dict(),
        "rng": rng,
        "world_size": run.rt.world_size,
        "best_val_loss": run.best_val_loss,
        "val_loss": val_loss,
        "scaler": None if run.scaler is None else run.scaler.state_dict(),
    }
    path = run.out_dir / f"ckpt_{run.step:08d}.pt"
    content = dict(model_config=to_dict(run.model_config),
                   model_state=run.task.language_model(run.model).state_dict(),
                   tokenizer=run.stages[0].dataset.manifest["tokenizer"], config=to_dict(run.cfg),
                   extra=run.task.checkpoint_extra(run.model))
    save_checkpoint(path, train_state=train_state, **content)
    if run.cfg.checkpoint.keep_best and val_loss is not None and val_loss <= run.best_val_loss:
        if run.cfg.checkpoint.best_with_optimizer:
            with atomic_path(run.out_dir / "best.pt") as tmp:
                shutil.copyfile(path, tmp)
        else:   # the file to share: weights, config and where training stood, no optimizer moments
            shared = {k: v for k, v in train_state.items() if k not in ("optimizer", "scaler")}
            save_checkpoint(run.out_dir / "best.pt", train_state=shared, **content)
    for old in checkpoint_paths(run.out_dir)[:-max(run.cfg.checkpoint.keep_last, 1)]:
        if int(old.stem.split("_")[1]) not in run.kept_steps:
            old.unlink()


def set_learning_rate(run: Run) -> float:
    """Set the optimizer's rates for the run's current step; returns the schedule's rate."""
    lr = lr_at(run.step, run.cfg.optim, run.max_steps)
    set_rates(run.optimizer, lr)
    return lr


def restore(run: Run) -> None:
    """Continue from the newest checkpoint in the run folder."""
    found = checkpoint_paths(run.out_dir)
    if not found:
        raise DataError(f"{run.out_dir}: no checkpoint to resume from (ckpt_*.pt)")
    ckpt = load_checkpoint(found[-1], map_location=run.rt.device)
    dataset = run.stages[0].dataset
    check_tokenizer(ckpt, found[-1], dataset.manifest["tokenizer"], str(dataset.folder))
    theirs, ours = ckpt["model_config"], to_dict(run.model_config)
    diff = [k for k in sorted(set(theirs) | set(ours)) if theirs.get(k) != ours.get(k)]
    if diff:
        k = diff[0]
        raise ConfigError(f"{found[-1]}: checkpoint is from another architecture "
                          f"({k}: checkpoint {theirs.get(k)!r}, config {ours.get(k)!r})")
    state = ckpt["train_state"]
    saved_optim = state.get("optimizer_name", "adamw")
    if saved_optim != run.cfg.optim.name:
        raise ConfigError(f"{found[-1]}: optimizer state is {saved_optim}'s, config has optim.name: "
                          f"{run.cfg.optim.name}")
    run.task.language_model(run.model).load_state_dict(ckpt["model"])
    run.task.load_extra(run.model, ckpt)
    load_keeping_rate_scales(run.optimizer, state["optimizer"])
    if run.scaler is not None and state.get("scaler"):
        run.scaler.load_state_dict(state["scaler"])
    run.batches.load_state_dict(state["sampler"])
    run.step = state["step"]
    run.best_val_loss = state["best_val_loss"]
    if run.cfg.schedule_minutes is not None and state["scheduler"].get("sized"):
        run.max_steps, run.sized = state["scheduler"]["max_steps"], True
    rng = state["rng"]
    runtime.set_rng_state(rng[run.rt.rank % len(rng)])


# ----------------------------------------------------------------------------- the loop


def state_token_ids(dataset) -> tuple[int, torch.Tensor, int]:
    """The ids `state_targets` reads, from the dataset's vocabulary; a DataError naming a missing one."""
    from tinylm.base.errors import TokenizeError
    from tinylm.tokens.load import tokenizer_from_dict

    tok = tokenizer_from_dict(dataset.manifest["tokenizer"])
    try:
        closes = [tok.token_id(t) for t in STATE_CLOSES if t != "\n\n"] + [dataset.eos_id]
        return tok.token_id(STATE_OPEN), torch.tensor(closes), tok.token_id(LINE_MARKER)
    except TokenizeError as exc:
        raise DataError(f"{dataset.folder}: data.state_weight needs trace tokens: {exc}") from None


def target_weights(run: Run, y: torch.Tensor) -> torch.Tensor | None:
    """(B, T) float loss weights of a micro-batch's targets (0 where not counted); None: unweighted."""
    if run.state_ids is None:
        return None
    weights = 1.0 + (run.cfg.data.state_weight - 1.0) * state_targets(y, *run.state_ids).float()
    return weights.masked_fill(y == IGNORE, 0.0)


def train_step(run: Run, micro_batches: list[tuple[torch.Tensor, ...]]) -> dict:
    """Forward and backward every micro-batch (gradients synced on the last only), clip, step.
    A step whose loss or gradient norm is not finite is not taken (the weights stay as they were)."""
    rt, model = run.rt, run.train_model
    weights = [target_weights(run, batch[1]) for batch in micro_batches]
    counted = torch.tensor(float(sum(float(w.sum()) if w is not None else int((batch[1] != IGNORE).sum())
                                     for batch, w in zip(micro_batches, weights))), device=rt.device)
    counted = rt.all_reduce_sum(counted).clamp(min=1.0)  # (weighted) target tokens in the global batch
    loss_sum = torch.zeros((), device=rt.device)
    for i, batch in enumerate(micro_batches):
        batch = rt.to_device(*batch)
        last = i == len(micro_batches) - 1
        with contextlib.nullcontext() if last or not rt.distributed else model.no_sync():
            with rt.autocast():
                logits, y, extra = run.task.outputs(model, batch, progress(run))  # (B, T, V), (B, T)
            if weights[i] is None:
                loss = lm_loss(logits, y)
            else:
                loss = (lm_loss(logits, y, reduction="none") * weights[i].to(logits.device)).sum()
            # DDP averages gradients over ranks; scaling by W / counted makes that the global token mean
            total = loss * (rt.world_size / counted)
            if extra is not None:  # a policy's own loss, a mean over rows: averaged over micro-batches
                total = total + extra / len(micro_batches)
            (total if run.scaler is None else run.scaler.scale(total)).backward()
        loss_sum += loss.detach()
    loss = (rt.all_reduce_sum(loss_sum) / counted).item()
    clip = run.cfg.optim.grad_clip or math.inf
    if run.scaler is not None:
        run.scaler.unscale_(run.optimizer)  # clip the true gradients
    grad_norm = torch.nn.utils.clip_grad_norm_(run.model.parameters(), clip).item()
    if run.scaler is not None:  # float16: a step whose gradients overflowed is skipped, the scale lowered
        run.scaler.step(run.optimizer)
        run.scaler.update()
    elif math.isfinite(loss) and math.isfinite(grad_norm):  # the same on every rank: both are global
        run.optimizer.step()
    run.optimizer.zero_grad(set_to_none=True)
    return {"loss": loss, "grad_norm": grad_norm, "counted": counted.item()}


def progress(run: Run) -> float:
    """How far the run has come: 0 at its first step, 1 at its last."""
    return run.step / max(run.max_steps - 1, 1)


def perplexity(loss: float | None) -> float | None:
    """exp of a mean loss per counted token (inf past float range)."""
    if loss is None:
        return None
    return math.exp(loss) if loss < 700 else math.inf


def loss_sums(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """(2,) the summed cross-entropy of logits (B, T, V) over the counted targets of y (B, T), and
    how many targets count: padding and masked targets (-100) add to neither."""
    total = lm_loss(logits, y)
    return torch.stack([total, (y != IGNORE).sum().to(total.dtype)])


@torch.no_grad()
def evaluate(run: Run) -> float:
    """Mean loss per counted target token over the fixed validation windows of the last stage,
    shared out over ranks."""
    rt = run.rt
    dataset = run.stages[-1].dataset
    run.model.eval()
    totals = torch.zeros(2, device=rt.device)  # (loss sum, counted tokens)
    for batch in run.task.validation_batches(dataset, run.model_config.block_size, rt.rank, rt.world_size):
        batch = rt.to_device(*batch)
        with rt.autocast():
            logits, y, _ = run.task.outputs(run.model, batch, progress(run))
        totals += loss_sums(logits, y)
    run.model.train()
    totals = rt.all_reduce_sum(totals)
    return (totals[0] / totals[1].clamp(min=1)).item()


def out_of_time(run: Run, started: float) -> bool:
    """Whether the wall-clock budget is spent, decided by the main process for every rank."""
    if run.cfg.max_minutes is None:
        return False
    spent = torch.tensor(float(time.time() - started >= 60 * run.cfg.max_minutes), device=run.rt.device)
    if run.rt.distributed:
        torch.distributed.broadcast(spent, src=0)
    return bool(spent.item())


SIZING_MARGIN = 0.95  # of the measured step rate: leaves time for the evaluations and checkpoints


def size_schedule(run: Run, started: float, timed_from: tuple[int, float]) -> None:
    """Fix max_steps to what fits in schedule_minutes at the rate measured since `timed_from`
    (step, time); the main process decides for every rank."""
    step0, time0 = timed_from
    now = time.time()
    seconds_per_step = (now - time0) / max(run.step - step0, 1)
    left = 60 * run.cfg.schedule_minutes - (now - started)
    fits = run.step + int(SIZING_MARGIN * left / seconds_per_step)
    total = torch.tensor(max(run.step + 1, min(fits, run.max_steps)), device=run.rt.device)
    if run.rt.distributed:
        torch.distributed.broadcast(total, src=0)
    run.max_steps, run.sized = int(total.item()), True
    if run.rt.is_main:
        record_sizing(run, {
            "schedule_minutes": run.cfg.schedule_minutes, "sized_at_step": run.step,
            "seconds_per_step": round(seconds_per_step, 5)})
        print(f"step {run.step}: {seconds_per_step:.3f} s per step; the run is sized to {run.max_steps} steps "
              f"({run.cfg.schedule_minutes:g} min of training)")


def diverged(run: Run, stats: dict) -> None:
    """Stop a run whose step `run.step + 1` gave a non-finite loss or gradient: save the last good
    step (that step was not taken, its batch not used) and raise."""
    run.batches.position = run.step
    save(run, None)
    raise DataError(f"step {run.step + 1}: loss {stats['loss']}, grad norm {stats['grad_norm']}; stopped, "
                    f"{run.out_dir / f'ckpt_{run.step:08d}.pt'} keeps step {run.step} (lower optim.lr or "
                    f"check the data, then --resume)")


def fit(run: Run, metrics: Metrics) -> dict:
    """The training loop: set the rate, step, log; evaluate and checkpoint at intervals; stop."""
    cfg, rt = run.cfg, run.rt
    started = time.time()
    stop = min(run.max_steps, cfg.stop_at_step or run.max_steps)
    warmup = cfg.optim.warmup_steps or 0
    timed_from = (run.step, started)
    bar = None
    if rt.is_main and cfg.log.progress:
        from tqdm import tqdm

        bar = tqdm(total=run.max_steps, initial=run.step, unit="step", dynamic_ncols=True)
    val_loss = None
    train_sums = [0.0, 0.0]  # loss x counted tokens, counted tokens: the steps since the last evaluation
    while run.step < stop:
        lr = set_learning_rate(run)
        tick = time.time()
        stats = train_step(run, run.batches.next())
        if not (math.isfinite(stats["loss"]) and (math.isfinite(stats["grad_norm"]) or run.scaler is not None)):
            diverged(run, stats)
        run.step += 1
        train_sums = [train_sums[0] + stats["loss"] * stats["counted"], train_sums[1] + stats["counted"]]
        elapsed = time.time() - tick
        tokens_per_s = run.tokens_per_step / max(elapsed, 1e-9)
        metrics.write({"step": run.step, "loss": stats["loss"], "lr": lr, "grad_norm": stats["grad_norm"],
                       "tokens": run.step * run.tokens_per_step, "tokens_per_s": tokens_per_s,
                       "elapsed_s": time.time() - started})
        if bar is not None:
            bar.update(1)
            bar.set_postfix(loss=f"{stats['loss']:.4f}", tok_s=f"{tokens_per_s:,.0f}", refresh=False)
        if not run.sized:
            if run.step == warmup // 2:  # the first steps (compilation, warm caches) are not timed
                timed_from = (run.step, time.time())
            elif run.step >= warmup:
                size_schedule(run, started, timed_from)
                stop = min(run.max_steps, cfg.stop_at_step or run.max_steps)
                if bar is not None:
                    bar.total = run.max_steps
        timed_out = out_of_time(run, started)
        if run.step % cfg.eval_interval == 0 or run.step in run.kept_steps or run.step == stop or timed_out:
            val_loss = evaluate(run)
            run.best_val_loss = min(run.best_val_loss, val_loss)
            train_loss = train_sums[0] / train_sums[1] if train_sums[1] else None
            train_sums = [0.0, 0.0]
            metrics.write({"step": run.step, "val_loss": val_loss, "val_perplexity": perplexity(val_loss),
                           "train_loss": train_loss, "train_perplexity": perplexity(train_loss)})
            if bar is not None:
                bar.write(f"step {run.step}: val loss {val_loss:.4f}, perplexity {perplexity(val_loss):.3f}")
            save(run, val_loss)
        if timed_out:
            break
    if bar is not None:
        bar.close()
    return {"step": run.step, "val_loss": val_loss, "best_val_loss": run.best_val_loss,
            "out_dir": str(run.out_dir), "is_main": rt.is_main}


def write_run_info(run: Run, config_file, resumed: bool) -> None:
    run.out_dir.mkdir(parents=True, exist_ok=True)
    resolved = to_dict(run.cfg)
    resolved["model"] = to_dict(run.model_config)
    write_yaml(resolved, run.out_dir / "config.yaml")
    info_path = run.out_dir / "run.json"
    sizing = json.loads(info_path.read_text()).get("sizing") if resumed and info_path.exists() else None
    atomic_write_json(info_path, {
        **run_metadata(), "config_file": str(config_file) if config_file else None, "seed": run.cfg.seed,
        "world_size": run.rt.world_size, "device": str(run.rt.device), "dtype": str(run.rt.dtype),
        "machine": machine(), "parameters": run.model.num_params(), "tokens_per_step": run.tokens_per_step,
        "max_steps": run.max_steps if run.sized else None,
        "length": run.length, "sizing": sizing, "resumed_at_step": run.step if resumed else None})


def record_sizing(run: Run, sizing: dict) -> None:
    """Add the length schedule_minutes chose to run.json."""
    info_path = run.out_dir / "run.json"
    atomic_write_json(info_path, {**json.loads(info_path.read_text()), "max_steps": run.max_steps, "sizing": sizing})


def holds_run(out_dir: Path) -> bool:
    """Whether a run folder holds a run's checkpoints (a run that can be continued)."""
    return bool(checkpoint_paths(out_dir)) or (out_dir / "best.pt").is_file()


def run(cfg: TrainConfig, config_file: str | Path | None = None, resume: bool | str = False) -> dict:
    """Train per `cfg` in this process (one rank of a torchrun job, or alone); returns a summary.

    `resume`: True continues the newest checkpoint (and fails without one); "auto" continues one if
    there is one and starts afresh otherwise; False starts afresh, and refuses a folder that holds
    a run, which it would otherwise overwrite."""
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    require_sinks(cfg.log.tensorboard, cfg.log.wandb)
    out_dir = run_dir(cfg, config_file)
    if resume == "auto":
        resume = holds_run(out_dir)
    elif not resume and holds_run(out_dir):
        held = ", ".join(p.name for p in checkpoint_paths(out_dir)) or "best.pt"
        raise DataError(f"{out_dir}: holds a run already ({held}); continue it with --resume, "
                        f"or train into another out_dir=...")
    rt = runtime.setup(cfg.device, cfg.dtype, cfg.seed)
    try:
        r = build(cfg, rt, config_file)
        if resume:
            restore(r)
        if rt.is_main:
            write_run_info(r, config_file, resume)
            steps = f"{r.max_steps}" if r.sized else f"up to {r.max_steps} (sized after warmup)"
            print(f"model: {r.model.num_params():,} parameters; {steps} steps of "
                  f"{r.tokens_per_step:,} tokens on {rt.world_size} x {rt.device} ({rt.dtype}); "
                  f"run folder {r.out_dir}")
        rt.barrier()
        metrics = Metrics(r, r.step if resume else None)
        try:
            summary = fit(r, metrics)
        finally:
            metrics.close()
        rt.barrier()  # ranks tear down together: gloo aborts a rank whose peer leaves mid-exchange
        return summary
    finally:
        rt.close()


def _resume_flag(argv: list[str]) -> list[str]:
    """'--resume auto' -> '--resume=auto' (likewise 'yes'), a bare '--resume' -> '--resume=yes': an
    override after the flag is then an override, not the flag's value."""
    out = []
    for i, arg in enumerate(argv):
        if arg == "--resume":
            given = argv[i + 1] if i + 1 < len(argv) and argv[i + 1] in ("yes", "auto") else None
            arg = f"--resume={given or 'yes'}"
        elif arg in ("yes", "auto") and i and argv[i - 1] == "--resume":
            continue
        out.append(arg)
    return out


def cli(argv: list[str], tasks=()) -> int:
    """`tinylm train`; `tasks`: the TrainConfig subclasses a config may select by holding their section."""
    keys = describe(TrainConfig)
    sections = "".join(f"\n\na config with a '{t.SECTION}' section ({t.__module__}) also has:\n  "
                       + "\n  ".join(line for line in describe(t) if line not in keys) for t in tasks)
    parser = ArgumentParser(prog="tinylm train", description=__doc__.split("\n\n")[0],
                            formatter_class=argparse.RawDescriptionHelpFormatter,
                            epilog="config keys (in the YAML file, or as key=value overrides), with their defaults:\n  "
                                   + "\n  ".join(keys) + sections)
    parser.add_argument("config", help="training config YAML")
    parser.add_argument("overrides", nargs="*", help="dotted key=value overrides, e.g. optim.lr=3e-4 (anywhere)")
    parser.add_argument("--resume", nargs="?", const="yes", choices=("yes", "auto"),
                        help="continue from the newest checkpoint in out_dir; 'auto': continue one if there is "
                             "one, else start afresh (for requeued jobs). Without it, a folder holding a run is refused")
    parser.add_argument("--print-config", action="store_true", help="print the resolved config and exit")
    args = parser.parse_intermixed_args(_resume_flag(argv))
    cfg = load_train_config(args.config, args.overrides, tasks)
    if args.print_config:
        print(yaml.safe_dump(to_dict(cfg), sort_keys=False), end="")
        return 0
    summary = run(cfg, args.config, resume={None: False, "yes": True, "auto": "auto"}[args.resume])
    if not summary["is_main"]:
        return 0
    if summary["val_loss"] is None:
        print(f"nothing to do: {summary['out_dir']} is already at step {summary['step']}")
    else:
        print(f"done: step {summary['step']}, val loss {summary['val_loss']:.4f} (perplexity "
              f"{perplexity(summary['val_loss']):.3f}), best {summary['best_val_loss']:.4f}; {summary['out_dir']}")
    return 0

