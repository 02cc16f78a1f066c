"""Training: LR schedules, the loss going down, exact resume, accumulation, configs and their errors."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from test_data_batching import EOS, STEP, VOCAB, trace_example, write_dataset

from tinylm.base import runtime
from tinylm.base.config import load_config, to_dict, write_yaml
from tinylm.base.errors import ConfigError, DataError
from tinylm.cli import main
from tinylm.data.batches import Stage, TokenSplit, open_dataset
from tinylm.model.presets import PRESETS
from tinylm.studies.tasks import train_config
from tinylm.train.config import OptimConfig, TrainConfig, lr_at
from tinylm.train.loop import build, run, run_length
from tinylm.train.task import LanguageModelTask

REPO = Path(__file__).resolve().parents[1]
CONFIGS = REPO / "tinypy_code_tracing_demo" / "2_model_training" / "configs"

TINY = {"preset": "demo", "n_layer": 2, "n_embd": 32, "n_head": 2, "block_size": 32}
LAST_LETTER = len(VOCAB) - 1  # the toy vocabulary's last letter id


@pytest.fixture(autouse=True)
def keep_thread_count():
    # runs set torch's thread count (one thread: tiny ops on a busy machine); restore it for other tests
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def tiny_config(tmp_path: Path, **changes) -> dict:
    """A 2-layer, 32-wide model on a toy dataset; a few steps take well under a second."""
    dataset = tmp_path / "toy"
    if not dataset.exists():
        write_dataset(dataset)
    cfg = {"model": dict(TINY), "data": {"dataset": str(dataset), "aligned_fraction": 0.5},
           "batch_size": 8, "max_steps": 6, "eval_interval": 3, "eval_tokens": 512, "eval_batch_size": 16,
           "optim": {"lr": 3e-3, "min_lr": 3e-4, "warmup_steps": 2}, "device": "cpu", "dtype": "float32",
           "threads": 1, "out_dir": str(tmp_path / "run"), "log": {"progress": False, "tensorboard": False}}
    for key, value in changes.items():
        node = cfg
        *parents, leaf = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return cfg


def train(tmp_path: Path, resume: bool = False, **changes) -> dict:
    cfg = train_config(tiny_config(tmp_path, **changes))
    return run(cfg, resume=resume)


def checkpoint(folder: str | Path, step: int) -> dict:
    return torch.load(Path(folder) / f"ckpt_{step:08d}.pt", weights_only=True)


def metrics(folder: str | Path) -> list[dict]:
    return [json.loads(line) for line in (Path(folder) / "metrics.jsonl").read_text().splitlines()]


# ----------------------------------------------------------------------------- schedules


def test_cosine_schedule():
    o = OptimConfig(lr=1.0, min_lr=0.1, warmup_steps=10, schedule="cosine")
    assert lr_at(0, o, 110) == pytest.approx(0.1)
    assert lr_at(9, o, 110) == pytest.approx(1.0)
    assert lr_at(10, o, 110) == pytest.approx(1.0)
    assert lr_at(60, o, 110) == pytest.approx(0.55)        # half-way down the cosine
    assert lr_at(110, o, 110) == pytest.approx(0.1)
    assert lr_at(500, o, 110) == pytest.approx(0.1)        # the floor holds after the end
    values = [lr_at(s, o, 110) for s in range(10, 111)]
    assert all(a >= b for a, b in zip(values, values[1:]))


@pytest.mark.parametrize("schedule", ["cosine", "wsd"])
def test_a_cooldown_takes_the_rate_from_the_floor_to_zero_after_the_schedule(schedule):
    plain = OptimConfig(lr=1.0, min_lr=0.1, warmup_steps=10, schedule=schedule)
    cooled = OptimConfig(lr=1.0, min_lr=0.1, warmup_steps=10, schedule=schedule, cooldown_fraction=0.2)
    # the first 80 of 100 steps are the 80-step schedule itself, which ends at the floor
    assert [lr_at(s, cooled, 100) for s in range(80)] == pytest.approx([lr_at(s, plain, 80) for s in range(80)])
    assert lr_at(79, cooled, 100) == pytest.approx(0.1, abs=1e-3)
    tail = [lr_at(s, cooled, 100) for s in range(80, 100)]
    assert tail[0] == pytest.approx(0.1) and tail[10] == pytest.approx(0.05)   # half-way down the half cosine
    assert all(a > b for a, b in zip(tail, tail[1:])) and 0 < tail[-1] < 1e-3
    assert lr_at(100, cooled, 100) == lr_at(500, cooled, 100) == 0.0          # and stays at 0 past the end


def test_a_cooldown_needs_a_decay_to_continue():
    OptimConfig(schedule="wsd", cooldown_fraction=0.1).validate()
    with pytest.raises(ConfigError, match="cooldown_fraction continues a decay"):
        OptimConfig(schedule="constant", cooldown_fraction=0.1).validate()
    with pytest.raises(ConfigError, match="cooldown_fraction must be in"):
        OptimConfig(cooldown_fraction=1.0).validate()


def test_multistep_constant_and_wsd_schedules():
    o = OptimConfig(lr=1.0, warmup_steps=0, schedule="multistep", gamma=0.1)
    assert [lr_at(s, o, 100) for s in (0, 69, 70, 79, 80, 90, 99)] == pytest.approx(
        [1, 1, 0.1, 0.1, 0.01, 0.001, 0.001])
    o = OptimConfig(lr=0.5, warmup_steps=4, schedule="constant")
    assert [lr_at(s, o, 100) for s in (0, 3, 4, 99)] == pytest.approx([0.125, 0.5, 0.5, 0.5])
    o = OptimConfig(lr=1.0, min_lr=0.0, warmup_steps=0, schedule="wsd", decay_fraction=0.2)
    assert [lr_at(s, o, 100) for s in (0, 79, 80, 89, 99)] == pytest.approx([1, 1, 0.95, 0.5, 0.0])
    o = OptimConfig(lr=1.0, warmup_fraction=0.1)           # warmup as a fraction of the run
    assert lr_at(0, o, 100) == pytest.approx(0.1) and lr_at(10, o, 100) == pytest.approx(1.0)


# ----------------------------------------------------------------------------- training


def test_a_few_steps_lower_the_loss(tmp_path):
    summary = train(tmp_path, max_steps=30, eval_interval=30, **{"log.csv": True})
    losses = [m["loss"] for m in metrics(summary["out_dir"]) if "loss" in m]
    assert len(losses) == 30
    assert sum(losses[-3:]) / 3 < sum(losses[:3]) / 3 - 0.5
    run_dir = Path(summary["out_dir"])
    assert {"config.yaml", "run.json", "metrics.csv", "best.pt", "ckpt_00000030.pt"} <= {
        p.name for p in run_dir.iterdir()}
    info = json.loads((run_dir / "run.json").read_text())
    assert info["seed"] == 1337 and info["parameters"] > 0 and "git_revision" in info
    first = metrics(run_dir)[0]
    assert {"step", "loss", "lr", "grad_norm", "tokens", "tokens_per_s", "elapsed_s"} <= set(first)
    with open(run_dir / "metrics.csv", newline="") as f:  # the step records of metrics.jsonl, as a table
        table = [{k: float(v) for k, v in row.items()} for row in csv.DictReader(f)]
    assert table == [m for m in metrics(run_dir) if "loss" in m]


def tensors_equal(a, b) -> bool:
    """Nested dicts/lists of tensors and plain values, compared exactly."""
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and torch.equal(a, b)
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(tensors_equal(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return type(a) is type(b) and len(a) == len(b) and all(tensors_equal(x, y) for x, y in zip(a, b))
    return a == b


@pytest.mark.parametrize("optimizer", [{"optim.name": "adamw"}, {"optim.name": "muon"},
                                       {"optim.name": "muon", "optim.adamw_lr": 3e-4}],
                         ids=["adamw", "muon", "muon-adamw_lr"])
def test_resume_is_bit_exact(tmp_path, optimizer):
    # dropout and two micro-batches: RNG states and the sampler position must both come back
    changes = {"model.dropout": 0.1, "grad_accum": 2, "max_steps": 6, "eval_interval": 2, **optimizer}
    straight = train(tmp_path / "a", **changes)
    train(tmp_path / "b", stop_at_step=3, **changes)
    assert not (tmp_path / "b" / "run" / "ckpt_00000006.pt").exists()
    resumed = train(tmp_path / "b", resume=True, **changes)
    assert resumed["step"] == 6
    a, b = checkpoint(straight["out_dir"], 6), checkpoint(resumed["out_dir"], 6)
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key
    assert tensors_equal(a["train_state"]["optimizer"], b["train_state"]["optimizer"])
    losses = [[m["loss"] for m in metrics(r["out_dir"]) if "loss" in m] for r in (straight, resumed)]
    assert losses[0] == losses[1] and len(losses[0]) == 6


def test_schedule_minutes_sizes_the_run_and_max_steps_reruns_it(tmp_path):
    # a budget of ~0.3 s fits far fewer than the 400 steps allowed: the run is sized at the end of warmup
    sized = train(tmp_path / "a", max_steps=400, schedule_minutes=0.005, eval_interval=1000,
                  **{"optim.warmup_steps": 6})
    info = json.loads((tmp_path / "a" / "run" / "run.json").read_text())
    n = info["max_steps"]
    assert 6 < n < 400 and sized["step"] == n
    assert info["sizing"]["sized_at_step"] == 6 and info["sizing"]["seconds_per_step"] > 0
    lrs = [m["lr"] for m in metrics(tmp_path / "a" / "run") if "lr" in m]
    optim = OptimConfig(lr=3e-3, min_lr=3e-4, warmup_steps=6)
    assert lrs == [lr_at(step, optim, n) for step in range(n)]  # the whole cosine of an n-step run
    again = train(tmp_path / "b", max_steps=n, eval_interval=1000, **{"optim.warmup_steps": 6})
    assert again["step"] == n
    a, b = checkpoint(tmp_path / "a" / "run", n)["model"], checkpoint(tmp_path / "b" / "run", n)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)  # the same run, bit for bit


def test_schedule_minutes_needs_a_fixed_warmup(tmp_path):
    with pytest.raises(ConfigError, match="warmup_steps"):
        load_config(TrainConfig, base=tiny_config(tmp_path, schedule_minutes=1.0, **{"optim.warmup_steps": None}))


def test_muon_takes_the_block_matrices_and_lowers_the_loss(tmp_path):
    from tinylm.model.gpt import GPT, GPTConfig
    from tinylm.model.optim import build_optimizer

    shape = {k: v for k, v in TINY.items() if k != "preset"}
    model = GPT(GPTConfig(**{**PRESETS["demo"], **shape, "vocab_size": 20}))
    muon, adamw = build_optimizer(model, "muon", 1e-3, 0.1, (0.9, 0.95), 0.95, "cpu").optimizers
    on_muon = {id(p) for g in muon.param_groups for p in g["params"]}
    on_adamw = {id(p) for g in adamw.param_groups for p in g["params"]}
    names = {id(p): n for n, p in model.named_parameters()}
    assert {names[i] for i in on_muon} == {n for n, p in model.named_parameters()
                                          if n.startswith("blocks.") and p.dim() == 2}
    assert not on_muon & on_adamw and on_muon | on_adamw == set(names)
    assert "wte.weight" in {names[i] for i in on_adamw}

    summary = train(tmp_path, max_steps=30, eval_interval=30, **{"optim.name": "muon"})
    losses = [m["loss"] for m in metrics(summary["out_dir"]) if "loss" in m]
    assert sum(losses[-3:]) / 3 < sum(losses[:3]) / 3 - 0.5


def test_adamw_lr_gives_the_adamw_half_of_muon_its_own_rate_on_the_same_schedule(tmp_path):
    summary = train(tmp_path, max_steps=5, eval_interval=5, **{"optim.name": "muon", "optim.adamw_lr": 2e-4})
    muon, adamw = checkpoint(summary["out_dir"], 5)["train_state"]["optimizer"]["optimizers"]
    lr = lr_at(4, OptimConfig(lr=3e-3, min_lr=3e-4, warmup_steps=2), 5)  # the rate of the last step
    assert [g["lr"] for g in muon["param_groups"]] == [lr]
    assert [g["lr"] for g in adamw["param_groups"]] == pytest.approx([lr * 2e-4 / 3e-3] * 2)
    with pytest.raises(ConfigError, match="optim.adamw_lr"):
        load_config(TrainConfig, base=tiny_config(tmp_path, **{"optim.adamw_lr": 1e-4}))


@pytest.mark.parametrize("resumed_with", [6e-4, None], ids=["another-adamw_lr", "no-adamw_lr"])
def test_a_resumed_run_takes_the_adamw_rate_of_its_config_not_of_its_checkpoint(tmp_path, resumed_with):
    train(tmp_path, max_steps=5, eval_interval=5, stop_at_step=3, **{"optim.name": "muon", "optim.adamw_lr": 2e-4})
    summary = train(tmp_path, max_steps=5, eval_interval=5, resume=True,
                    **{"optim.name": "muon", **({"optim.adamw_lr": resumed_with} if resumed_with else {})})
    muon, adamw = checkpoint(summary["out_dir"], 5)["train_state"]["optimizer"]["optimizers"]
    lr = lr_at(4, OptimConfig(lr=3e-3, min_lr=3e-4, warmup_steps=2), 5)
    assert [g["lr"] for g in adamw["param_groups"]] == pytest.approx([lr * (resumed_with or 3e-3) / 3e-3] * 2)


@pytest.mark.parametrize("pos_encoding, table", [("relative", "Er"), ("distance_bias", "dist_bias")])
def test_muon_leaves_the_positional_tables_in_the_blocks_to_adamw(pos_encoding, table):
    from tinylm.model.gpt import GPT, GPTConfig
    from tinylm.model.optim import build_optimizer

    shape = {k: v for k, v in TINY.items() if k != "preset"}
    model = GPT(GPTConfig(**{**PRESETS["demo"], **shape, "vocab_size": 20, "pos_encoding": pos_encoding}))
    muon, adamw = build_optimizer(model, "muon", 1e-3, 0.1, (0.9, 0.95), 0.95, "cpu").optimizers
    names = {id(p): n for n, p in model.named_parameters()}
    on_muon = {names[id(p)] for g in muon.param_groups for p in g["params"]}
    on_adamw = {names[id(p)] for g in adamw.param_groups for p in g["params"]}
    tables = {f"blocks.{i}.attn.{table}" for i in range(TINY["n_layer"])}
    assert all(model.get_parameter(n).dim() == 2 for n in tables)  # matrices, yet not hidden weights
    assert tables <= on_adamw and not tables & on_muon
    assert on_muon == {f"blocks.{i}.{layer}.weight" for i in range(TINY["n_layer"])
                       for layer in ("attn.qkv", "attn.proj", "mlp.fc", "mlp.proj")}
    assert on_muon | on_adamw == set(names.values())


def test_orthogonalize_flattens_the_spectrum():
    from tinylm.model.optim import orthogonalize

    g = torch.Generator().manual_seed(0)
    for shape in [(32, 96), (96, 32)]:
        # singular values spread over two orders of magnitude come out near one (0.5 to 1.5 by design)
        u, _, v = torch.linalg.svd(torch.randn(*shape, generator=g), full_matrices=False)
        m = u @ torch.diag(torch.logspace(-2, 0, 32)) @ v
        s = torch.linalg.svdvals(orthogonalize(m))
        assert s.min() > 0.5 and s.max() < 1.5 and orthogonalize(m).shape == shape


@pytest.mark.skipif(not hasattr(torch.optim, "Muon"), reason="torch.optim.Muon needs torch >= 2.9")
def test_muon_steps_like_torch_muon():
    from tinylm.model.optim import Muon

    gen = torch.Generator().manual_seed(0)
    ours = torch.nn.Parameter(torch.randn(96, 32, generator=gen))
    theirs = torch.nn.Parameter(ours.detach().clone())
    a = Muon([ours], lr=1e-2, weight_decay=0.1, momentum=0.9)
    b = torch.optim.Muon([theirs], lr=1e-2, weight_decay=0.1, momentum=0.9, adjust_lr_fn="match_rms_adamw")
    start = ours.detach().clone()
    for _ in range(3):
        grad = torch.randn(96, 32, generator=gen)
        ours.grad, theirs.grad = grad.clone(), grad.clone()
        a.step()
        b.step()
    # torch iterates in bfloat16, this module in float32 on CPU: equal up to bfloat16 rounding
    ours_moved, theirs_moved = ours - start, theirs - start
    assert (ours_moved - theirs_moved).norm() < 0.03 * ours_moved.norm()


def test_resume_refuses_another_optimizer(tmp_path):
    train(tmp_path, max_steps=2, eval_interval=2)
    with pytest.raises(ConfigError, match="optim.name: muon"):
        train(tmp_path, resume=True, max_steps=4, eval_interval=2, **{"optim.name": "muon"})


def test_gradient_accumulation_matches_the_full_batch(tmp_path):
    # step-masked loss: micro-batches count different numbers of tokens, the mean must still be global
    common = {"max_steps": 2, "eval_interval": 2, "data.mask": "step"}
    one = train(tmp_path / "one", **common)
    four = train(tmp_path / "four", grad_accum=4, **common)
    a, b = checkpoint(one["out_dir"], 2)["model"], checkpoint(four["out_dir"], 2)["model"]
    # Summing four micro-batches rounds differently, and Adam scales a gradient near eps up to
    # ~1e-6 of a weight on some CPUs; a per-micro-batch mean instead of the global one moves
    # weights by about the learning rate (3e-3).
    assert max((a[k] - b[k]).abs().max().item() for k in a) < 1e-5
    assert math.isfinite(one["val_loss"])


def test_best_checkpoint_has_the_lowest_validation_loss(tmp_path):
    # a rate too high for this model: the validation loss falls, rises and falls again
    summary = train(tmp_path, max_steps=10, eval_interval=1,
                    **{"optim.lr": 3e-2, "optim.min_lr": 3e-3, "checkpoint.keep_last": 10})
    evals = {m["step"]: m["val_loss"] for m in metrics(summary["out_dir"]) if "val_loss" in m}
    best_step = min(evals, key=evals.get)
    assert len(evals) == 10 and best_step not in (1, 10)  # neither the first nor the last checkpoint
    best = torch.load(Path(summary["out_dir"]) / "best.pt", weights_only=True)
    assert (best["train_state"]["step"], best["train_state"]["val_loss"]) == (best_step, evals[best_step])
    assert tensors_equal(best["model"], checkpoint(summary["out_dir"], best_step)["model"])
    assert summary["best_val_loss"] == evals[best_step]
    assert "optimizer" not in best["train_state"] and "optimizer" in checkpoint(summary["out_dir"], best_step)["train_state"]


def test_checkpoints_at_epochs_are_written_and_never_pruned(tmp_path):
    summary = train(tmp_path, max_steps=None, max_epochs=0.2, eval_interval=1000, **{"checkpoint.keep_last": 1,
                                                                    "checkpoint.at_epochs": [0.05, 0.1]})
    info = json.loads((Path(summary["out_dir"]) / "run.json").read_text())
    epoch = info["length"]["steps_per_epoch"]
    steps = sorted(int(p.stem.split("_")[1]) for p in Path(summary["out_dir"]).glob("ckpt_*.pt"))
    assert steps == [math.ceil(epoch * 0.05), math.ceil(epoch * 0.1), math.ceil(epoch * 0.2)]
    evals = [m["step"] for m in metrics(summary["out_dir"]) if "val_loss" in m]
    assert evals == steps


def test_best_checkpoint_keeps_the_optimizer_when_asked(tmp_path):
    summary = train(tmp_path, max_steps=2, eval_interval=2, **{"checkpoint.best_with_optimizer": True})
    best_path, last_path = Path(summary["out_dir"]) / "best.pt", Path(summary["out_dir"]) / "ckpt_00000002.pt"
    assert best_path.read_bytes() == last_path.read_bytes()


def test_init_from_a_checkpoint_and_a_curriculum(tmp_path, monkeypatch):
    from tinylm.train import loop as train_module

    first = train(tmp_path / "pre", max_steps=2, eval_interval=2)
    init = torch.load(Path(first["out_dir"]) / "best.pt", weights_only=True)
    # the second stage is the toy data with every letter made the last one: a batch shows its stage
    second = write_dataset(tmp_path / "second", seed=5)
    for split in ("train", "val"):
        ids = np.fromfile(second / f"{split}.bin", dtype=np.uint8)
        np.where(ids >= 2, LAST_LETTER, ids).astype(np.uint8).tofile(second / f"{split}.bin")
    seen, real_step = [], train_module.train_step

    def recording_step(run, micro_batches):
        seen.append(set(torch.cat([x for x, _ in micro_batches]).unique().tolist()))
        return real_step(run, micro_batches)

    monkeypatch.setattr(train_module, "train_step", recording_step)
    stages = [{"dataset": str(tmp_path / "pre" / "toy"), "until_step": 2}, {"dataset": str(second)}]
    # a rate of 1e-9: four steps leave the weights where init_from put them, to 1e-6
    summary = train(tmp_path / "ft", init_from=str(Path(first["out_dir"]) / "best.pt"), max_steps=4,
                    eval_interval=4, **{"data.stages": stages, "data.mask": "step", "model.n_layer": 99,
                                        "optim.lr": 1e-9, "optim.min_lr": 1e-10})
    assert summary["step"] == 4 and math.isfinite(summary["val_loss"])
    assert len(seen) == 4
    assert all(len(tokens - {0, 1, LAST_LETTER}) > 3 for tokens in seen[:2])  # steps 0, 1: the first stage
    assert all(tokens <= {0, 1, LAST_LETTER} for tokens in seen[2:])  # steps 2, 3: the second
    saved = checkpoint(summary["out_dir"], 4)
    assert saved["model_config"] == init["model_config"] and saved["model_config"]["n_layer"] == 2
    assert max((saved["model"][k] - init["model"][k]).abs().max().item() for k in init["model"]) < 1e-6
    # a fresh model of the same seed is the pretraining's step 0, which its two steps moved by far more
    fresh = train(tmp_path / "fresh", max_steps=1, eval_interval=1, **{"optim.lr": 1e-9, "optim.min_lr": 1e-10})
    fresh_model = checkpoint(fresh["out_dir"], 1)["model"]
    assert max((fresh_model[k] - init["model"][k]).abs().max().item() for k in init["model"]) > 1e-3


# ----------------------------------------------------------------------------- length in epochs, data cap


def test_the_fewest_steps_of_the_given_lengths_win_and_an_epoch_rounds_up():
    split = TokenSplit(tokens=np.zeros(30 * 256 - 100, dtype=np.uint8), starts=np.arange(10))
    stages = [Stage(dataset=SimpleNamespace(train=split))]

    def length(**lengths):
        return run_length(TrainConfig(**lengths), stages, tokens_per_step=256)

    assert length(max_epochs=1.0)["steps_per_epoch"] == 30  # 29.6 steps of tokens: rounded up
    assert length(max_epochs=0.1)["steps"] == {"max_epochs": 3}  # 0.1 x 30 is 3, whatever the float says
    assert length(max_epochs=2.5, max_steps=80, max_tokens=1000)["steps"] == {
        "max_steps": 80, "max_tokens": 4, "max_epochs": 75}
    assert length(max_epochs=1e-9)["steps"] == {"max_epochs": 1}


def test_max_epochs_counts_the_capped_training_tokens_and_run_json_records_the_length(tmp_path):
    summary = train(tmp_path, max_steps=6, max_epochs=1.5, eval_interval=100, **{"data.train_examples": 20})
    toy = open_dataset(tmp_path / "toy")
    tokens = int(toy.train.starts[20])  # the first 20 examples, terminators included
    epoch = math.ceil(tokens / (8 * 32))
    assert summary["step"] == min(6, math.ceil(1.5 * epoch)) < 6
    info = json.loads((Path(summary["out_dir"]) / "run.json").read_text())
    assert info["max_steps"] == summary["step"]
    assert info["length"] == {"train_examples": [20], "train_tokens": [tokens], "steps_per_epoch": epoch,
                              "steps": {"max_steps": 6, "max_epochs": math.ceil(1.5 * epoch)}}


POISON = len(VOCAB) - 1  # the toy vocabulary's last letter


def poisoned_dataset(folder: Path, n: int) -> Path:
    """The toy dataset with train.bin rewritten: n examples that never use the POISON letter, then 200
    examples made of it (and step and terminator tokens), so that a token read past example n shows."""
    write_dataset(folder)
    rng = np.random.default_rng(3)
    head = [min(t, POISON - 1) for _ in range(n) for t in trace_example(rng)]
    tail = [t if t in (STEP, EOS) else POISON for _ in range(200) for t in trace_example(rng)]
    np.array(head + tail, dtype=np.uint8).tofile(folder / "train.bin")
    return folder


def batch_stream(tmp_path: Path, **changes):
    cfg = load_config(TrainConfig, base=tiny_config(tmp_path, **changes))
    return build(cfg, runtime.setup("cpu", "float32", cfg.seed)).batches


def drawn_batches(tmp_path: Path, steps: int, **changes) -> list[tuple[torch.Tensor, torch.Tensor]]:
    batches = batch_stream(tmp_path, **changes)
    return [xy for _ in range(steps) for xy in batches.next()]


def test_no_window_reads_past_the_capped_examples(tmp_path):
    data = {"data.dataset": str(poisoned_dataset(tmp_path / "poisoned", 20)), "data.aligned_fraction": 0.3,
            "data.step_fraction": 0.3}
    capped = drawn_batches(tmp_path, 40, **data, **{"data.train_examples": 20})
    for x, y in capped:
        assert (x != POISON).all() and (y != POISON).all()
    full = np.fromfile(tmp_path / "poisoned" / "train.bin", dtype=np.uint8)
    end = int(np.flatnonzero(full == EOS)[19]) + 1  # just after example 20's terminator
    stream = batch_stream(tmp_path, **data, **{"data.train_examples": 20})
    assert len(stream.stages[0].dataset.train) == end
    reach = max(int(stream.global_starts(step).max()) for step in range(40)) + 32 + 1  # window: T + 1 tokens
    assert end - 32 < reach <= end  # windows came close to example 20's end, never past it
    uncapped = drawn_batches(tmp_path, 40, **data)
    assert any((x == POISON).any() for x, _ in uncapped)  # without the cap the poison is read


def test_capping_at_every_example_changes_no_batch(tmp_path):
    changes = {"data.step_fraction": 0.25, "grad_accum": 2}
    capped = drawn_batches(tmp_path, 5, **changes, **{"data.train_examples": 300})
    for (x, y), (x0, y0) in zip(capped, drawn_batches(tmp_path, 5, **changes), strict=True):
        assert torch.equal(x, x0) and torch.equal(y, y0)


# ----------------------------------------------------------------------------- configs and errors


def cli_error(capsys, argv: list[str]) -> str:
    assert main(["train", *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err
    return err


def test_bad_configs_are_one_line_errors(tmp_path, capsys):
    path = tmp_path / "cfg.yaml"
    write_yaml(tiny_config(tmp_path, max_steps=1, eval_interval=1), path)
    assert "unknown key 'optim.lrr'" in cli_error(capsys, [str(path), "optim.lrr=0.1"])
    assert "unknown key 'model.n_layers'" in cli_error(capsys, [str(path), "model.n_layers=3"])
    assert "no such dataset folder" in cli_error(capsys, [str(path), "data.dataset=/nonexistent/ds"])
    assert "schedule" in cli_error(capsys, [str(path), "optim.schedule=linear"])
    assert "set max_steps, max_tokens or max_epochs" in cli_error(capsys, [str(path), "max_steps=null"])
    assert "max_epochs must be a positive number" in cli_error(capsys, [str(path), "max_epochs=0"])
    assert "'max_epochs' must be a number" in cli_error(capsys, [str(path), "max_epochs=all"])
    stages = f"data.stages=[{{dataset: {tmp_path / 'toy'}}}]"
    assert "max_epochs is not defined with data.stages" in cli_error(capsys, [str(path), "max_epochs=1", stages])
    assert "data.train_examples must be at least 1" in cli_error(capsys, [str(path), "data.train_examples=0"])
    err = cli_error(capsys, [str(path), "data.train_examples=1000"])
    assert "data.train_examples is 1,000" in err and f"{tmp_path / 'toy'}/train.bin holds 300 examples" in err
    assert not (tmp_path / "run").exists()  # nothing half-written
    assert "no checkpoint to resume" in cli_error(capsys, [str(path), "--resume"])
    assert main(["train", str(path)]) == 0
    capsys.readouterr()
    err = cli_error(capsys, [str(path), "model.n_layer=3", "--resume"])
    assert "another architecture" in err and "n_layer" in err


@pytest.mark.parametrize("name", ["smoke", "cpu", "gpu"])
def test_shipped_configs_load(name):
    cfg = load_config(TrainConfig, CONFIGS / f"{name}.yaml")
    assert cfg.data.dataset == "datasets/demo" and cfg.data.aligned_fraction + cfg.data.step_fraction >= 0.5
    assert cfg.model["preset"] == "demo"


def test_runtime_device_dtype_and_rng_state(tmp_path):
    import io
    import random

    from tinylm.base import runtime

    assert runtime.autocast_dtype(torch.device("cpu"), "auto") == torch.float32
    assert runtime.autocast_dtype(torch.device("cpu"), "bfloat16") == torch.bfloat16
    assert runtime.autocast_dtype(torch.device("cpu"), "float16") == torch.float16   # with a gradient scaler
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="CUDA is not available"):
            runtime.select_device("cuda")
    rt = runtime.setup("cpu", "auto", seed=5)
    assert (rt.rank, rt.world_size, rt.is_main, rt.distributed) == (0, 1, True, False)
    buffer = io.BytesIO()
    torch.save(runtime.rng_state(), buffer)                 # checkpointable as plain data
    expected = (random.random(), torch.rand(2))
    buffer.seek(0)
    runtime.set_rng_state(torch.load(buffer, weights_only=True))
    got = (random.random(), torch.rand(2))
    assert got[0] == expected[0] and torch.equal(got[1], expected[1])


def test_a_repeated_command_is_refused_and_leaves_the_first_run_whole(tmp_path, capsys):
    """The sequence that once replaced metrics.jsonl and pruned the first run's checkpoints."""
    path = tmp_path / "cfg.yaml"
    write_yaml(tiny_config(tmp_path), path)
    out = tmp_path / "run"
    assert main(["train", str(path), "max_steps=8", "eval_interval=2", "checkpoint.keep_last=2"]) == 0
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    err = cli_error(capsys, [str(path), "max_steps=4", "eval_interval=2", "checkpoint.keep_last=2"])
    assert str(out) in err and "--resume" in err and "out_dir" in err
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == before
    # --resume may stand before the overrides, and 'auto' continues a run it finds
    assert main(["train", str(path), "--resume", "max_steps=10", "eval_interval=2", "checkpoint.keep_last=2"]) == 0
    assert checkpoint(out, 10)["train_state"]["step"] == 10
    assert main(["train", str(path), "--resume", "auto", "max_steps=12", "eval_interval=2"]) == 0
    assert checkpoint(out, 12)["train_state"]["step"] == 12


def test_resume_auto_starts_afresh_where_there_is_no_run(tmp_path):
    path = tmp_path / "cfg.yaml"
    write_yaml(tiny_config(tmp_path, max_steps=2, eval_interval=2), path)
    assert main(["train", "--resume", "auto", str(path)]) == 0
    assert (tmp_path / "run" / "ckpt_00000002.pt").is_file()


def test_print_config_resolves_without_training_and_help_lists_every_key(tmp_path, capsys):
    import yaml

    from tinylm.base.config import describe

    path = tmp_path / "cfg.yaml"
    write_yaml(tiny_config(tmp_path), path)
    assert main(["train", "--print-config", str(path), "optim.lr=0.02"]) == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed == to_dict(load_config(TrainConfig, path, ["optim.lr=0.02"])) and printed["optim"]["lr"] == 0.02
    assert not (tmp_path / "run").exists()   # nothing trained
    keys = describe(TrainConfig)
    assert "optim.lr = 0.001  Peak learning rate." in keys
    assert any(line.startswith("data.stages[].until_step = null") for line in keys)
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    assert "checkpoint.keep_last = 2" in capsys.readouterr().out


def test_float16_scales_the_loss_and_resumes_exactly(tmp_path):
    changes = {"dtype": "float16", "max_steps": 6, "eval_interval": 3}
    straight = train(tmp_path / "a", **changes)
    train(tmp_path / "b", stop_at_step=3, **changes)
    resumed = train(tmp_path / "b", resume=True, **changes)
    a, b = checkpoint(straight["out_dir"], 6), checkpoint(resumed["out_dir"], 6)
    assert a["train_state"]["scaler"]["scale"] == b["train_state"]["scaler"]["scale"]
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key
    assert math.isfinite(straight["val_loss"])


def test_float16_skips_a_step_whose_gradients_overflow_instead_of_stopping(tmp_path, monkeypatch):
    real = torch.amp.GradScaler
    monkeypatch.setattr(torch.amp, "GradScaler", lambda device: real(device, init_scale=2.0**100))
    summary = train(tmp_path / "a", dtype="float16", max_steps=4, eval_interval=4)
    ckpt = checkpoint(summary["out_dir"], 4)
    assert summary["step"] == 4 and ckpt["train_state"]["scaler"]["scale"] == 2.0**96  # halved at each step
    # every step was skipped: the weights are the initial ones, which a run at a rate of 1e-30 keeps to
    # within 1e-29 (a step taken at the config's rate moves them by ~1e-3)
    still = checkpoint(train(tmp_path / "b", max_steps=4, eval_interval=4, **{"optim.lr": 1e-30, "optim.min_lr": 1e-30})
                       ["out_dir"], 4)
    for key in ckpt["model"]:
        torch.testing.assert_close(ckpt["model"][key], still["model"][key], atol=1e-20, rtol=0, msg=key)


def test_auto_dtype_is_float16_on_a_gpu_without_bfloat16(monkeypatch):
    from tinylm.base.runtime import autocast_dtype

    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    assert autocast_dtype(torch.device("cuda", 0)) == torch.float16
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    assert autocast_dtype(torch.device("cuda", 0)) == torch.bfloat16
    assert autocast_dtype(torch.device("cpu")) == torch.float32


def test_auto_device_picks_mps_where_there_is_no_cuda(monkeypatch):
    """Apple's MPS cannot run here: its availability is mocked, and the device chosen checked."""
    from tinylm.base.runtime import autocast_dtype, select_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
    device = select_device("auto")
    assert device.type == "mps" and autocast_dtype(device) == torch.float32
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    assert select_device("auto").type == "cpu"
    with pytest.raises(ConfigError, match="MPS is not available"):
        select_device("mps")


# ----------------------------------------------------------------------------- state-weighted loss


def test_state_targets_are_the_states_and_the_line_markers():
    from tinylm.data.batches import state_targets
    from tinylm.tokens.tokenizer import keyword_tokenizer

    tok = keyword_tokenizer("m2")
    text = "# code\n@a = 1$|\nb = a\n#STEP\n# code\na = 1\n@b = a$a?1|\n#STEP\n# code\na = 1\nb = a\n@^$a?1;b?1|# 1\n\n"
    y = torch.tensor([tok.encode(text).tolist()])
    closes = torch.tensor([tok.token_id(t) for t in ("|", "\n", "\n#STEP\n", "\n\n")])
    picked = state_targets(y, tok.token_id("$"), closes, tok.token_id("@"))[0]
    pieces = tok.token_strings(y[0])
    assert "".join(p for p, k in zip(pieces, picked) if k) == "@$@$a?1@$a?1;b?1"


def test_state_weighted_step_loss_is_the_weighted_mean():
    from types import SimpleNamespace

    from tinylm.model.gpt import GPT, GPTConfig, lm_loss
    from tinylm.tokens.tokenizer import keyword_tokenizer
    from tinylm.train.config import DataConfig, OptimConfig
    from tinylm.train.loop import train_step

    tok = keyword_tokenizer("m2")
    ids = tok.encode("# code\na = 1\n#STEP\n# code\n@a = 1$|\n#STEP\n# code\na = 1\n@^$a?1|\n\n").tolist()
    x, y = torch.tensor([ids[:-1]]), torch.tensor([ids[1:]])
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=tok.vocab_size, block_size=64, n_layer=1, n_head=2, n_embd=16))
    closes = torch.tensor([tok.token_id(t) for t in ("|", "\n", "\n#STEP\n")] + [tok.eos_id])
    run = SimpleNamespace(rt=runtime.setup("cpu", "float32", 0), train_model=model, model=model, scaler=None,
                          optimizer=torch.optim.SGD(model.parameters(), lr=0.0), state_ids=None,
                          step=0, max_steps=1, task=LanguageModelTask(None),
                          cfg=SimpleNamespace(optim=OptimConfig(), data=DataConfig(state_weight=4.0)))
    plain = train_step(run, [(x, y)])["loss"]
    run.state_ids = (tok.token_id("$"), closes, tok.token_id("@"))
    weighted = train_step(run, [(x, y)])["loss"]
    with torch.no_grad():
        per_token = lm_loss(model(x)[0], y, reduction="none")[0]
    from tinylm.data.batches import state_targets
    w = 1 + 3 * state_targets(y, *run.state_ids)[0].float()
    assert plain == pytest.approx(per_token.mean().item(), rel=1e-5)
    assert weighted == pytest.approx(((per_token * w).sum() / w.sum()).item(), rel=1e-5)
    assert weighted != pytest.approx(plain, rel=1e-3)


def test_state_weight_needs_a_trace_vocabulary(tmp_path):
    with pytest.raises(DataError, match="state_weight needs trace tokens"):
        train(tmp_path, **{"data.state_weight": 3.0})
