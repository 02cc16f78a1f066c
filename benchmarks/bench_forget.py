"""Decoding that forgets (tinylm.studies.forget_eval.decode_suite): wall time per generated token, side by side.

    python benchmarks/bench_forget.py research_project_5/runs/cpu/train/{identity,oracle-0.25,random-0.25}/best.pt
    python benchmarks/bench_forget.py CKPT ... --limit 50 --batch-size 50 --repeats 5 --threads 2

Every checkpoint (a forgetting run's, research project 5) decodes the same first --limit examples of
--suite, --batch-size rows at a time, --repeats times in turn (checkpoint A, B, C, A, B, C, ... so
the machine's drift falls on all alike). Reported per checkpoint: the median ms per generated token
and its spread, the attention FLOPs per generated token as decoded and as a share of keeping every
context token, the kept ratio, the largest KV cache one row held, and the speed-up over the first
checkpoint (give identity first: the n^2 decoder). Generations are checked identical across repeats.
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path

import torch

from tinylm.evaluate.scoring import read_suite
from tinylm.studies.forget import load_forget_model
from tinylm.studies.forget_eval import Meter, decode_suite, variant

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("checkpoints", nargs="+", help="forgetting runs' checkpoints; the first is the reference")
    ap.add_argument("--suite", default=str(REPO / "datasets" / "nightly-cpu" / "test.txt"))
    ap.add_argument("--limit", type=int, default=50)
    ap.add_argument("--batch-size", type=int, default=50)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    models = [load_forget_model(c, "cpu")[:2] for c in args.checkpoints]
    examples = read_suite(args.suite, models[0][1], args.limit)
    ms = [[] for _ in models]
    meters, outputs = [None] * len(models), [None] * len(models)
    for _ in range(args.repeats):
        for i, (lm, tok) in enumerate(models):
            meter = Meter()
            gens = [g for _, batch in decode_suite(lm.eval(), examples, tok.eos_id, args.batch_size, meter)
                    for g in batch]
            if outputs[i] is not None and gens != outputs[i]:
                raise SystemExit(f"{args.checkpoints[i]}: generations differ between repeats")
            outputs[i], meters[i] = gens, meter
            ms[i].append(1000 * meter.seconds / max(meter.generated, 1))

    print(f"{len(examples)} examples of {args.suite}, batch {args.batch_size}, {args.threads} threads, "
          f"{args.repeats} repeats, medians")
    print("| checkpoint | policy | keep ratio | kept | ms/token (min-max) | attn MFLOP/token | of full | "
          "KV peak KiB | speed-up |")
    print("|---|---|---|---|---|---|---|---|---|")
    base = statistics.median(ms[0])
    for (lm, _), path, times, meter in zip(models, args.checkpoints, ms, meters):
        s = meter.summary(lm)
        med = statistics.median(times)
        ratio = 1.0 if lm.cfg.policy == "identity" else lm.cfg.keep_ratio
        print(f"| {Path(path).parent.name} | {variant(lm.cfg)} | {ratio:g} | {s['kept_ratio']:.3f} | "
              f"{med:.3f} ({min(times):.3f}-{max(times):.3f}) | {s['attn_flops_per_token'] / 1e6:.2f} | "
              f"{100 * s['attn_flops_per_token'] / max(s['attn_flops_full_per_token'], 1):.0f}% | "
              f"{s['kv_peak_kib']:.0f} | {base / med:.2f}x |")


if __name__ == "__main__":
    main()
