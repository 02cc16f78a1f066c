"""Decoding speed on the demo model: the reference evaluator's way against tinylm.decode.decoder.

    nice python benchmarks/bench_decode.py                     # 100 demo test examples, 1 thread
    nice python benchmarks/bench_decode.py --limit 256 --threads 2
    nice python benchmarks/bench_decode.py --random-weights    # without the golden checkpoint
    nice python benchmarks/bench_decode.py --checkpoint tinypy_code_tracing_demo/2_model_training/runs/cpu/best.pt
    python benchmarks/bench_decode.py --preset main2025 --vocab m2 --device cuda --rows 256 --speculate 0 \
        --suite test.txt --limit 512 --windows step-anchored     # the 62M model on a GPU (BENCHMARKS.md)

Model: the golden reference checkpoint imported (or random weights of the same demo architecture:
learned positions, block_size 128, 1.2M parameters), a tinylm checkpoint (--checkpoint, e.g. the
trained demo model), or random weights of a model preset (--preset, tokenizer --vocab; such a model
never stops early, so every row runs to its budget). Examples: the first --limit of --suite
(datasets/demo/test.txt); prompt = up to the first #STEP line.

- baseline, the reference's way: examples sorted by target length (longest first), batches of 10,
  every row fed as a fixed block_size window (right-padded, or the last block_size tokens) through a
  full forward for every new token, budget = longest target of the batch + 5, no early stop. Every
  step of it is the same (10, block_size) forward, so it is timed on --baseline-batches batches (the shortest full ones)
  and its time for all examples is steps x measured seconds per step.
- reference mode: `generate(window="reference")`, --rows rows at a time (a finished row takes the
  next example), per-row budget target + 5, stop at the terminator. Its tokens must equal the baseline's on the timed batches.
- fast modes: `generate(window="step-anchored")` and, for a model with relative positions,
  `generate(window="rolling")`, same batch; they differ from the reference semantics past the
  window, so the hard-match rate and agreement with reference mode are printed.
- each mode with and without prompt-lookup speculative decoding (`speculate` = --speculate draft
  tokens, 0 = off); the speculative tokens must equal the one-token ones, and the draft tokens
  accepted per verified draft are printed.

Reported: generated positions/s (tokens appended per row; for the baseline including rows that run
past their terminator), examples/s, and the speed-up in examples/s over the baseline, by wall-clock
time and by this process's CPU time (steadier on a shared machine).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from tinylm.base.runtime import select_device
from tinylm.decode.decoder import SPECULATE
from tinylm.decode.strategies import GenerateConfig, generate
from tinylm.evaluate.scoring import generated_text, read_suite, score
from tinylm.lang.format import STEP
from tinylm.model.gpt import GPT, GPTConfig
from tinylm.model.presets import model_preset
from tinylm.tokens.tokenizer import keyword_tokenizer

REPO = Path(__file__).resolve().parents[1]
GOLDEN = REPO.parent / "shared" / "golden" / "reference_checkpoint" / "best-model.pth"


def reference_batches(examples, batch_size: int = 10):
    """The reference evaluator's batches: longest targets first, each with its budget."""
    order = sorted(examples, key=lambda e: -len(e.target_ids))
    batches = [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
    return [(b, max(len(e.target_ids) for e in b) + 5) for b in batches]


@torch.inference_mode()
def reference_way(model, batch, budget):
    """The reference evaluator's decoding loop for one batch, vectorised but otherwise unchanged."""
    W = model.config.block_size
    device = model.wte.weight.device
    seqs = [list(e.prompt_ids) for e in batch]
    for _ in range(budget):
        lens = [min(len(s), W) for s in seqs]
        window = torch.zeros(len(batch), W, dtype=torch.long)
        for b, s in enumerate(seqs):
            window[b, :lens[b]] = torch.tensor(s[-W:])
        logits, _ = model(window.to(device))
        last = logits[torch.arange(len(batch)), torch.tensor(lens) - 1]
        for s, t in zip(seqs, torch.softmax(last, -1).argmax(-1).tolist()):
            s.append(t)
    return {e.id: s[len(e.prompt_ids):] for e, s in zip(batch, seqs)}


def run_ours(model, examples, window: str, speculate: int, step_id: int, eos: int, rows: int):
    cfg = GenerateConfig(window=window, speculate=speculate)
    res = generate(model, [e.prompt_ids for e in examples], cfg, eos_id=eos, step_id=step_id,
                   max_new_tokens=[len(e.target_ids) + 5 for e in examples], rows=rows)
    return {e.id: ids for e, ids in zip(examples, res.ids)}, res


def hard_pct(tok, examples, gens) -> float:
    hard = sum(score(tok.decode(e.target_ids), generated_text(tok, gens[e.id]))["class"] == "hard" for e in examples)
    return 100.0 * hard / len(examples)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--suite", default=str(REPO / "datasets" / "demo" / "test.txt"))
    ap.add_argument("--limit", type=int, default=100)
    ap.add_argument("--baseline-batches", type=int, default=2)
    ap.add_argument("--rows", type=int, default=128, help="rows decoded at a time by tinylm.decode.decoder")
    ap.add_argument("--speculate", type=int, default=SPECULATE, help="draft tokens per step of the speculative runs")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--random-weights", action="store_true")
    ap.add_argument("--checkpoint", help="a tinylm checkpoint instead of the golden reference model")
    ap.add_argument("--preset", help="random weights of this model preset (e.g. main2025, the 62M model)")
    ap.add_argument("--vocab", default="demo", help="keyword vocabulary of --preset's examples")
    ap.add_argument("--device", default="cpu", help="cpu, cuda, mps or auto")
    ap.add_argument("--windows", help="comma-separated window modes to time (default: every one the model allows)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    device = select_device(args.device)

    tok = keyword_tokenizer(args.vocab)
    if args.preset:
        torch.manual_seed(0)
        config = GPTConfig(**{**model_preset(args.preset), "vocab_size": tok.vocab_size})
        model = GPT(config).eval()
        source = f"random weights, preset {args.preset} ({model.num_params() / 1e6:.1f}M parameters)"
    elif args.checkpoint:
        from tinylm.model.checkpoint import load_model
        model, tok, _ = load_model(args.checkpoint)
        source = f"{args.checkpoint} ({model.config.pos_encoding} positions)"
    elif GOLDEN.is_file() and not args.random_weights:
        from tinylm.interop.reference import import_reference_checkpoint
        model, _ = import_reference_checkpoint(GOLDEN)
        source = "golden reference checkpoint"
    else:
        torch.manual_seed(0)
        model, source = GPT(GPTConfig()).eval(), "random weights, demo architecture"
    model = model.to(device)
    examples = read_suite(args.suite, tok, args.limit)
    n = len(examples)
    where = f"{args.threads} thread(s)" if device.type == "cpu" else str(device)
    print(f"model: {source}; {n} examples of {args.suite}; {where}")

    batches = reference_batches(examples)
    full = [b for b in batches if len(b[0]) == 10] or batches  # a short last batch would time fewer rows
    timed = full[-args.baseline_batches:]
    tick, cpu = time.time(), time.process_time()
    base = {}
    for batch, budget in timed:
        base.update(reference_way(model, batch, budget))
    timed_steps = sum(budget for _, budget in timed)
    per_step, cpu_per_step = (time.time() - tick) / timed_steps, (time.process_time() - cpu) / timed_steps
    steps = sum(budget for _, budget in batches)
    W = model.config.block_size
    positions = sum(budget * len(batch) for batch, budget in batches)
    rows = [(f"reference way (batch 10, {W}-token window)", positions, steps * per_step, steps * cpu_per_step, None)]
    print(f"baseline: {per_step * 1000:.0f} ms per step of 10 rows, timed on {len(timed)} batches; "
          f"{steps} steps for all {n} examples")

    gens = {}
    windows = args.windows.split(",") if args.windows else ["reference", "step-anchored", "rolling"]
    if model.config.pos_encoding in ("learned", "sinusoidal") and not args.windows:
        windows.remove("rolling")
    for window in windows:
        for speculate in sorted({0, args.speculate}):
            tick, cpu = time.time(), time.process_time()
            gens[window, speculate], res = run_ours(model, examples, window, speculate, tok.token_id(STEP),
                                                    tok.eos_id, args.rows)
            wall, cpu = time.time() - tick, time.process_time() - cpu
            rows.append((f"tinylm.decode.decoder window={window} speculate={speculate}", sum(map(len, res.ids)), wall, cpu,
                         hard_pct(tok, examples, gens[window, speculate])))
            if speculate:
                print(f"{window}, speculate={speculate}: {res.steps} steps; {res.accepted} of {res.drafted} draft "
                      f"tokens accepted, {res.accepted / max(res.verified, 1):.2f} per verified draft "
                      f"({res.verified} row-steps)")
    same = True
    if "reference" in windows:
        ref = gens["reference", 0]
        same = all(ref[i] == base[i][:len(ref[i])] for i in base)
        print(f"reference mode == reference way, token for token, on the timed batches: {same}")
        for window in windows:
            if window != "reference":
                agree = sum(ref[e.id] == gens[window, 0][e.id] for e in examples)
                print(f"{window} generates the same tokens as reference mode for {agree}/{n} examples")
    exact = {w: gens[w, 0] == gens[w, args.speculate] for w in windows}
    print(f"speculative == one-token decoding, token for token, all {n} examples: {exact}")

    print(f"\n{'decoder':<50} {'positions/s':>12} {'examples/s':>11} {'speed-up':>9} {'CPU s':>8} "
          f"{'CPU speed-up':>13} {'hard %':>7}")
    for name, pos, secs, cpu_secs, hard in rows:
        hard_s = "-" if hard is None else f"{hard:.1f}"
        print(f"{name:<50} {pos / secs:>12.0f} {n / secs:>11.2f} {rows[0][2] / secs:>8.1f}x {cpu_secs:>8.1f} "
              f"{rows[0][3] / cpu_secs:>12.1f}x {hard_s:>7}")
    assert same, "reference-mode outputs differ from the reference way"
    assert all(exact.values()), "speculative outputs differ from one-token decoding"


if __name__ == "__main__":
    main()
