"""Batch construction: milliseconds to cut one training batch under each loss mask, side by side.

    python benchmarks/bench_batches.py --dataset datasets/nightly-mini [--rows 32] [--block 256] [--repeats 200]

Rows are drawn as research project 1 draws them: 40% at an example's start, 60% at a step start
(for every mask; in training the next-step mask draws from its transitions instead). The masks take
turns batch by batch on the same rows; the median of the repeats is reported with the share of
targets each mask counts.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

from tinylm.data.batches import IGNORE, draw_starts, make_batch, open_dataset, split_step_starts

MASKS = ("all", "trace", "traces", "step", "next-step")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--rows", type=int, default=32)
    parser.add_argument("--block", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=200)
    args = parser.parse_args()
    data = open_dataset(args.dataset)
    pool = split_step_starts(data, data.train)
    times, counted = {m: [] for m in MASKS}, {m: [] for m in MASKS}
    for i in range(args.repeats):
        starts = draw_starts(data.train, args.rows, args.block, 0.4, np.random.default_rng(i), 0.6, pool)
        for mask in MASKS:
            tick = time.perf_counter()
            _, y = make_batch(data, data.train, starts, args.block, mask)
            times[mask].append(time.perf_counter() - tick)
            counted[mask].append(float((y != IGNORE).float().mean()))
    print(f"| mask | ms per batch of {args.rows} x {args.block} (median of {args.repeats}) | targets counted |")
    print("|---|---|---|")
    for mask in MASKS:
        print(f"| {mask} | {1000 * statistics.median(times[mask]):.3f} | {100 * statistics.mean(counted[mask]):.1f}% |")


if __name__ == "__main__":
    main()
