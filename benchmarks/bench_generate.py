"""Generation speed per preset: programs/s and MB/s on one core, median of several repeats.

Rates are per CPU second of this process (`time.process_time`), the rate of one idle core: on a
shared machine the wall clock mostly measures the other jobs. The data engine's per-stage
figures (`bench_data.py`, from the CPU seconds in the build manifest) count the same way.

    nice python benchmarks/bench_generate.py                      # every preset
    nice python benchmarks/bench_generate.py demo nightly --seconds 2 --repeats 5

Each repeat generates a fresh range of programs (so no chunk is reused) for about `--seconds`,
sized from a short warm-up run.
"""

from __future__ import annotations

import argparse
import statistics
import time

from tinylm.lang.generate import generate_programs
from tinylm.lang.spec import PRESETS, preset


def rate(name: str, seconds: float, repeats: int) -> tuple[float, float]:
    spec = preset(name)
    start = time.process_time()
    generate_programs(spec, 0, 0, 256)
    count = max(256, int(256 * seconds / max(time.process_time() - start, 1e-6)))
    per_second, megabytes = [], []
    for i in range(repeats):
        start = time.process_time()
        programs = generate_programs(spec, 0, (i + 1) * count, count)
        elapsed = time.process_time() - start
        per_second.append(count / elapsed)
        megabytes.append(sum(len(p) + 2 for p in programs) / elapsed / 1e6)  # + the blank-line separator
    return statistics.median(per_second), statistics.median(megabytes)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("presets", nargs="*", default=list(PRESETS), help="presets to time (default: all)")
    parser.add_argument("--seconds", type=float, default=1.0, help="target duration of one repeat")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    print(f"{'preset':<36} {'programs/s':>12} {'MB/s':>8}")
    for name in args.presets:
        programs, mb = rate(name, args.seconds, args.repeats)
        print(f"{name:<36} {programs:>12,.0f} {mb:>8.2f}")


if __name__ == "__main__":
    main()
