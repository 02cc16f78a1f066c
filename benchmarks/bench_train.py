"""Training throughput on CPU: the reference demo layout against tinylm's training step.

Both sides train the reference demo architecture (6 layers, 8 heads, width 128, context 128,
77-token vocabulary, 1.22M parameters) on batches of 128 x 128 tokens, in fp32, in one process:

- reference: a small re-implementation of the reference layout, eight separate per-head
  key/query/value Linear modules per layer, one forward and backward per step, AdamW, clipping
  (the reference "fixed": its shipped loop also ran a second, discarded forward under autocast;
  `--as-shipped` times that too);
- tinylm: `tinylm.train.loop.train_step` on a `tinylm.model.gpt.GPT` with the same architecture (fused QKV
  and scaled_dot_product_attention over all heads at once), fed by the real batch sampler;
  with `--muon`, also the same step with `optim.name: muon` (the optimizer's own cost); with
  `--variant "pos_encoding=alibi mlp_ratio=2"` (repeatable), also the step of a model with those
  GPTConfig fields changed (e.g. the demo's CPU model beside the reference architecture, or every
  positional encoding beside the reference architecture's learned positions), each also printed as
  a ratio to tinylm's step on the reference architecture; with `--compile`, every tinylm side also
  runs with its model under `torch.compile`, eager and compiled taking turns in the same run.

Each side runs `--warmup` untimed steps, then `--steps` timed ones, the sides taking turns so that
load from other processes falls on all of them alike; the median step time gives tokens/s. Run it niced on a shared machine:

    nice python benchmarks/bench_train.py [--threads 2] [--steps 8] [--as-shipped] [--compile] [--muon]
        [--variant "KEY=VALUE ..."]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

VOCAB, BLOCK, N_LAYER, N_HEAD, N_EMBD = 77, 128, 6, 8, 128
BASE = "reference (fixed: one fp32 forward)"
SHIPPED = "reference (as shipped: + discarded bf16 forward)"

# ----------------------------------------------------------------------------- the reference layout


class Head(nn.Module):
    def __init__(self, head_size: int):
        super().__init__()
        self.key = nn.Linear(N_EMBD, head_size, bias=False)
        self.query = nn.Linear(N_EMBD, head_size, bias=False)
        self.value = nn.Linear(N_EMBD, head_size, bias=False)

    def forward(self, x):  # (B, T, C) -> (B, T, hs)
        return F.scaled_dot_product_attention(self.query(x), self.key(x), self.value(x), is_causal=True)


class MultiHead(nn.Module):
    def __init__(self):
        super().__init__()
        self.heads = nn.ModuleList(Head(N_EMBD // N_HEAD) for _ in range(N_HEAD))
        self.proj = nn.Linear(N_EMBD, N_EMBD)

    def forward(self, x):
        return self.proj(torch.cat([h(x) for h in self.heads], dim=-1))


class RefBlock(nn.Module):
    def __init__(self):
        super().__init__()
        self.sa = MultiHead()
        self.ffwd = nn.Sequential(nn.Linear(N_EMBD, 4 * N_EMBD, bias=False), nn.SiLU(),
                                  nn.Linear(4 * N_EMBD, N_EMBD, bias=False))
        self.ln1 = nn.RMSNorm(N_EMBD, eps=1e-5)
        self.ln2 = nn.RMSNorm(N_EMBD, eps=1e-5)

    def forward(self, x):
        x = x + self.sa(self.ln1(x))
        return x + self.ffwd(self.ln2(x))


class RefGPT(nn.Module):
    def __init__(self):
        super().__init__()
        self.token_embedding_table = nn.Embedding(VOCAB, N_EMBD)
        self.position_embedding_table = nn.Embedding(BLOCK, N_EMBD)
        self.blocks = nn.Sequential(*[RefBlock() for _ in range(N_LAYER)])
        self.ln_f = nn.LayerNorm(N_EMBD, bias=False)
        self.lm_head = nn.Linear(N_EMBD, VOCAB)

    def forward(self, idx, targets):
        x = self.token_embedding_table(idx) + self.position_embedding_table(torch.arange(idx.size(1)))
        logits = self.lm_head(self.ln_f(self.blocks(x)))
        return logits, F.cross_entropy(logits.view(-1, VOCAB), targets.view(-1))


def reference_step(model, optimizer, data: np.ndarray, batch: int, as_shipped: bool) -> None:
    """One reference training step: a contiguous chunk cut into rows, forward, backward, clip, AdamW."""
    optimizer.zero_grad(set_to_none=True)
    i = np.random.randint(0, len(data) - batch * BLOCK - 1)
    x = torch.from_numpy(data[i:i + batch * BLOCK].astype(np.int64)).view(batch, BLOCK)
    y = torch.from_numpy(data[i + 1:i + 1 + batch * BLOCK].astype(np.int64)).view(batch, BLOCK)
    if as_shipped:  # the shipped loop's extra forward under autocast, whose result it discarded
        with torch.autocast(device_type="cpu", dtype=torch.bfloat16):
            model(x, y)
    _, loss = model(x, y)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    optimizer.step()


# ----------------------------------------------------------------------------- timing


def interleaved_tokens_per_s(steps: dict, tokens: int, warmup: int, repeats: int) -> dict[str, float]:
    """Median tokens/s of each step function, timed in turns (A, B, A, B, ...) after `warmup` rounds,
    so that a change in machine load during the run affects every side alike."""
    for _ in range(warmup):
        for step in steps.values():
            step()
    times: dict[str, list[float]] = {name: [] for name in steps}
    for _ in range(repeats):
        for name, step in steps.items():
            t0 = time.perf_counter()
            step()
            times[name].append(time.perf_counter() - t0)
    return {name: tokens / statistics.median(t) for name, t in times.items()}


def synthetic_dataset(folder: Path, n_tokens: int) -> None:
    """A dataset folder of random demo-vocabulary examples (throughput does not depend on content)."""
    from tinylm.tokens.tokenizer import keyword_tokenizer

    tok = keyword_tokenizer("demo")
    rng = np.random.default_rng(0)
    ids = rng.integers(0, tok.vocab_size, size=n_tokens).astype(np.uint8)
    ids[ids == tok.eos_id] = 0
    ids[rng.integers(0, n_tokens, size=n_tokens // 300)] = tok.eos_id  # examples of ~300 tokens
    for split in ("train", "val"):
        ids.tofile(folder / f"{split}.bin")
    (folder / "manifest.json").write_text(json.dumps(
        {"tokenizer": tok.to_dict(), "vocab_size": tok.vocab_size, "dtype": "uint8", "block_size": BLOCK}))


def tinylm_step(folder: Path, batch: int, compile: bool, optimizer: str = "adamw", model: dict | None = None,
                name: str = "adamw"):
    """A closure running one `tinylm.train.loop.train_step` on the demo architecture (with `model` changes)."""
    from tinylm.base import runtime
    from tinylm.base.config import from_dict
    from tinylm.train.config import TrainConfig
    from tinylm.train.loop import build, set_learning_rate, train_step

    cfg = from_dict(TrainConfig, {
        "model": {"preset": "demo", **(model or {})}, "data": {"dataset": str(folder), "aligned_fraction": 0.5},
        "batch_size": batch, "max_steps": 1000, "device": "cpu", "dtype": "float32", "compile": compile,
        "optim": {"name": optimizer}, "out_dir": str(folder / f"run-{name}"), "log": {"progress": False, "tensorboard": False}})
    run = build(cfg, runtime.setup("cpu", "float32", cfg.seed), None)
    assert run.model_config.vocab_size == VOCAB, run.model_config

    def step():
        set_learning_rate(run)
        train_step(run, run.batches.next())
        run.step += 1

    return step, run.model.num_params()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--steps", type=int, default=8, help="timed steps per side")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps per side")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    parser.add_argument("--as-shipped", action="store_true", help="also time the reference's shipped loop")
    parser.add_argument("--compile", action="store_true",
                        help="also time each tinylm side with the model under torch.compile")
    parser.add_argument("--muon", action="store_true", help="also time tinylm's step with optim.name: muon")
    parser.add_argument("--variant", action="append", default=[], metavar="'KEY=VALUE ...'",
                        help="also time tinylm's step on a model with these GPTConfig fields changed")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    tokens = args.batch * BLOCK
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; batch {args.batch} x {BLOCK} "
          f"= {tokens:,} tokens/step; median of {args.steps} steps after {args.warmup} warm-up")

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        synthetic_dataset(folder, 2_000_000)
        data = np.memmap(folder / "train.bin", dtype=np.uint8, mode="r")

        torch.manual_seed(0)
        ref = RefGPT()
        ref_opt = torch.optim.AdamW(ref.parameters(), lr=1e-3, betas=(0.9, 0.95), weight_decay=0.1)
        ref_params = sum(p.numel() for p in ref.parameters())
        name = "tinylm train_step"
        step, params = tinylm_step(folder, args.batch, False)
        assert params == ref_params, (params, ref_params)
        steps = {BASE: lambda: reference_step(ref, ref_opt, data, args.batch, False), name: step}
        if args.as_shipped:
            steps[SHIPPED] = lambda: reference_step(ref, ref_opt, data, args.batch, True)
        sides = [(name, "adamw", None)]
        if args.muon:
            sides.append((name + ", muon", "muon", None))
        from tinylm.base.config import parse_overrides

        for variant in args.variant:
            fields = parse_overrides(variant.split())  # GPTConfig fields, values parsed as YAML
            sides.append((f"{name}, {variant}", "adamw", fields))
        for i, (side, optimizer, fields) in enumerate(sides):
            for compiled in [False, True] if args.compile else [False]:
                key = side + (" (compiled)" if compiled else "")
                if key in steps:
                    continue
                steps[key], n = tinylm_step(folder, args.batch, compiled, optimizer, model=fields,
                                            name=f"side{i}{'c' if compiled else ''}")
                if compiled:  # compilation happens in the first calls, not in the timed ones
                    for _ in range(3):
                        steps[key]()
                if fields:
                    print(f"{key}: {n:,} parameters")
        results = interleaved_tokens_per_s(steps, tokens, args.warmup, args.steps)

    print(f"parameters: {params:,} (both sides)")
    base = results[BASE]
    ours = results[name]
    print(f"  {'side':<52} {'tokens/s':>9}            vs reference  vs {name}")
    for key, value in results.items():
        print(f"  {key:<52} {value:>9,.0f} tokens/s   x{value / base:<11.2f} x{value / ours:.2f}")
    print(f"speed-up over the fixed reference: {ours / base:.2f}x")
    if args.as_shipped:
        print(f"speed-up over the reference as shipped: "
              f"{ours / results[SHIPPED]:.2f}x")


if __name__ == "__main__":
    main()
