"""The GPU paths, checked and measured in one unattended command (CI runs it with --dry-run on CPU).

    python benchmarks/gpu_check.py --out gpu_check/            # on a machine with a CUDA GPU, ~8 minutes
    python benchmarks/gpu_check.py --dry-run --out /tmp/gc     # the same code on CPU at toy sizes

Checks (each passes or fails on its own; one failing does not stop the others):
- bf16 autocast and float16 with a gradient scaler: a few training steps, the loss finite and falling;
- torch.compile: the compiled model's logits equal eager ones (1e-2 in bf16, 1e-4 in fp32);
- fused AdamW is the optimizer training builds on CUDA;
- a checkpoint saved from the GPU loads on the CPU with the same logits;
- KV-cache greedy decoding on the GPU gives the CPU's tokens;
- `torchrun --nproc_per_node 1`: a small demo dataset, 200 steps of the 2026 architecture, the loss falling.

Measures: training tokens/s and MFU (6 x parameters x tokens/s over the GPU's dense bf16 peak, where
the GPU is in `PEAK_TFLOPS`) for the 2026 model (~21M parameters) and the 2025 main model (~62M) with
bf16 and torch.compile; greedy decoding tokens/s at batch 64. Everything goes to OUT/gpu_check.json
and OUT/gpu_check.md; BENCHMARKS.md records a run with the GPU's name.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import traceback
from dataclasses import asdict
from pathlib import Path

import torch

from tinylm.base.files import atomic_write_json, atomic_write_text, machine
from tinylm.decode.strategies import GenerateConfig, generate
from tinylm.model.checkpoint import load_model, save_checkpoint
from tinylm.model.gpt import GPT, GPTConfig
from tinylm.model.optim import build_optimizer
from tinylm.model.presets import model_preset

REPO = Path(__file__).resolve().parents[1]
PEAK_TFLOPS = {"H100": 989.0, "H200": 989.0, "A100": 312.0, "L4": 121.0, "A10": 125.0, "T4": 65.0, "V100": 125.0}
"""Dense bf16 (fp16 for T4/V100) peak TFLOPS by GPU name fragment, from the vendors' data sheets."""


def tiny(cfg: GPTConfig, dry: bool) -> GPTConfig:
    return GPTConfig(**{**asdict(cfg), "n_layer": 2, "n_embd": 64, "n_head": 4, "block_size": 64}) if dry else cfg


def train_steps(cfg: GPTConfig, device: torch.device, dtype: torch.dtype, steps: int, batch: int,
                compile: bool = False) -> dict:
    """Steps of next-token training on a fixed random batch (the loss must fall): tokens/s of the last half."""
    torch.manual_seed(0)
    model = GPT(cfg).to(device)
    optimizer = build_optimizer(model, name="adamw", lr=1e-3, weight_decay=0.1, betas=(0.9, 0.95), momentum=0.95,
                                device_type=device.type)
    step_model = torch.compile(model) if compile else model
    scaler = torch.amp.GradScaler(device.type) if dtype == torch.float16 else None
    x = torch.randint(0, cfg.vocab_size, (batch, cfg.block_size + 1), device=device)
    losses, times = [], []
    for _ in range(steps):
        tick = time.perf_counter()
        with torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32):
            logits = step_model(x[:, :-1])[0]
        loss = torch.nn.functional.cross_entropy(logits.float().flatten(0, 1), x[:, 1:].flatten())
        (loss if scaler is None else scaler.scale(loss)).backward()
        if scaler is None:
            optimizer.step()
        else:
            scaler.step(optimizer)
            scaler.update()
        optimizer.zero_grad(set_to_none=True)
        losses.append(loss.item())
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - tick)
    timed = sorted(times[len(times) // 2:])
    tokens_per_s = batch * cfg.block_size / timed[len(timed) // 2]
    fused = any(g.get("fused") for g in optimizer.param_groups)
    return {"first_loss": losses[0], "last_loss": losses[-1], "falls": losses[-1] < losses[0],
            "tokens_per_s": tokens_per_s, "parameters": model.num_params(), "fused_adamw": fused}


def mfu(tokens_per_s: float, parameters: int, device: torch.device) -> float | None:
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    peak = next((v for k, v in PEAK_TFLOPS.items() if k in name), None)
    return None if peak is None else 6 * parameters * tokens_per_s / (peak * 1e12)


def check_compile(cfg: GPTConfig, device: torch.device, dtype: torch.dtype) -> dict:
    torch.manual_seed(0)
    model = GPT(cfg).to(device).eval()
    x = torch.randint(0, cfg.vocab_size, (4, cfg.block_size), device=device)
    with torch.no_grad(), torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32):
        eager, compiled = model(x)[0].float(), torch.compile(model)(x)[0].float()
    error = (eager - compiled).abs().max().item()
    return {"max_error": error, "ok": error <= (1e-4 if dtype == torch.float32 else 1e-2)}


def check_checkpoint_and_decoding(cfg: GPTConfig, device: torch.device, folder: Path) -> dict:
    from tinylm.tokens.tokenizer import keyword_tokenizer

    tok = keyword_tokenizer("demo")
    torch.manual_seed(0)
    model = GPT(GPTConfig(**{**asdict(cfg), "vocab_size": tok.vocab_size})).to(device).eval()
    path = folder / "gpu.pt"
    save_checkpoint(path, model_config=asdict(model.config), model_state=model.state_dict(), tokenizer=tok.to_dict())
    on_cpu, _, _ = load_model(path, "cpu")
    x = torch.randint(0, tok.vocab_size, (2, 32))
    with torch.no_grad():
        error = (model(x.to(device))[0].float().cpu() - on_cpu(x)[0]).abs().max().item()
    prompts = x.tolist()
    gen = GenerateConfig(max_new_tokens=48)
    same = generate(model, prompts, gen, eos_id=None).ids == generate(on_cpu, prompts, gen, eos_id=None).ids
    batch = torch.randint(0, tok.vocab_size, (64, 16)).tolist()
    tick = time.perf_counter()
    out = generate(model, batch, GenerateConfig(max_new_tokens=64), eos_id=None)
    seconds = time.perf_counter() - tick
    return {"checkpoint_logits_error": error, "checkpoint_ok": error <= 1e-4, "decoding_equal_to_cpu": same,
            "decode_tokens_per_s": sum(len(ids) for ids in out.ids) / seconds}


def check_torchrun(folder: Path, dry: bool, device: str) -> dict:
    """A small demo dataset, then `torchrun --nproc_per_node 1 -m tinylm.cli train` of the 2026 model."""
    data = folder / "demo"
    data.mkdir()
    (data / "dataset.yaml").write_text((REPO / "datasets/demo/dataset.yaml").read_text())
    env = {**os.environ, "PYTHONPATH": str(REPO / "shared")}
    subprocess.run([sys.executable, "-m", "tinylm", "data", "build", str(data), "splits.train=2000",
                    "splits.val=200", "splits.test=10", "shard_size=1000"], check=True, capture_output=True, env=env)
    steps = 20 if dry else 200
    model = "model.preset=demo model.n_layer=2 model.n_embd=64" if dry else "model.preset=model2026 model.block_size=128"
    cmd = ["torchrun", "--standalone", "--nproc_per_node", "1", "-m", "tinylm.cli", "train",
           str(REPO / "tinypy_code_tracing_demo/2_model_training/configs/cpu.yaml"), *model.split(),
           f"data.dataset={data}", f"max_steps={steps}", "schedule_minutes=null", "max_minutes=null",
           f"eval_interval={steps}", "eval_tokens=4096", f"out_dir={folder / 'run'}", f"device={device}",
           "dtype=auto", "log.progress=false"]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    records = [json.loads(line) for line in (folder / "run" / "metrics.jsonl").read_text().splitlines()] \
        if (folder / "run" / "metrics.jsonl").is_file() else []
    losses = [r["loss"] for r in records if "loss" in r]
    return {"returncode": proc.returncode, "steps": len(losses), "first_loss": losses[0] if losses else None,
            "last_loss": losses[-1] if losses else None, "ok": proc.returncode == 0 and len(losses) == steps
            and losses[-1] < losses[0], "stderr_tail": proc.stderr[-500:] if proc.returncode else ""}


def run_check(name: str, fn, results: dict) -> None:
    start = time.perf_counter()
    try:
        results[name] = {**fn(), "seconds": round(time.perf_counter() - start, 1)}
    except Exception as exc:  # noqa: BLE001 - one failing check is recorded, the others still run
        results[name] = {"ok": False, "error": f"{type(exc).__name__}: {exc}", "trace": traceback.format_exc()[-800:]}
    print(f"{name}: {json.dumps({k: v for k, v in results[name].items() if k != 'trace'})}", flush=True)


def table(results: dict) -> str:
    lines = ["| check | result |", "|---|---|"]
    for name, r in results.items():
        shown = {k: (f"{v:.4g}" if isinstance(v, float) else v) for k, v in r.items() if k not in ("trace", "stderr_tail")}
        lines.append(f"| {name} | {', '.join(f'{k}: {v}' for k, v in shown.items())} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True, help="folder for gpu_check.json and gpu_check.md")
    ap.add_argument("--dry-run", action="store_true", help="CPU, toy sizes: the same code paths, no figures")
    args = ap.parse_args(argv)
    dry = args.dry_run
    if not dry and not torch.cuda.is_available():
        print("error: no CUDA GPU here (use --dry-run to exercise the script on CPU)", file=sys.stderr)
        return 2
    device = torch.device("cpu" if dry else "cuda")
    bf16 = torch.float32 if dry else torch.bfloat16
    half = torch.float16
    results: dict = {}
    small, big = tiny(GPTConfig(**model_preset("model2026")), dry), tiny(GPTConfig(**model_preset("main2025")), dry)
    steps, batch = (6, 2) if dry else (30, 32)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        run_check("train bf16", lambda: train_steps(small, device, bf16, steps, batch), results)
        run_check("train fp16 + scaler", lambda: train_steps(small, device, half, steps, batch), results)
        run_check("compile equals eager", lambda: check_compile(small, device, bf16), results)
        for name, cfg in (("model2026", small), ("main2025", big)):
            def measure(cfg=cfg):
                r = train_steps(cfg, device, bf16, steps, batch, compile=not dry)  # compiling on CPU: minutes
                return {**r, "mfu": mfu(r["tokens_per_s"], r["parameters"], device)}
            run_check(f"throughput {name} (bf16, compile)", measure, results)
        run_check("checkpoint and decoding", lambda: check_checkpoint_and_decoding(small, device, folder), results)
        run_check("torchrun 1 process", lambda: check_torchrun(folder, dry, device.type), results)
    info = {"device": torch.cuda.get_device_name(0) if not dry else "cpu (dry run)", "machine": machine(),
            "torch": torch.__version__, "dry_run": dry, "results": results}
    out = Path(args.out)
    atomic_write_json(out / "gpu_check.json", info)
    atomic_write_text(out / "gpu_check.md", f"# GPU check on {info['device']}\n\n{table(results)}\n")
    failed = [n for n, r in results.items() if r.get("ok") is False or r.get("falls") is False
              or r.get("decoding_equal_to_cpu") is False or r.get("checkpoint_ok") is False]
    print(f"wrote {out / 'gpu_check.json'}; failed: {', '.join(failed) or 'none'}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
