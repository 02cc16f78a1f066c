"""Keyword tokenizer throughput against the reference's way of encoding, on the same traces.

The baseline does what the reference `encode_to_file` did: split the file into examples, then
per example a regex `findall`, a dict lookup and one `struct.pack` per token. Both must give the
same bytes. Prints the median MB/s and tokens/s of several runs, and their ratio.

    nice python benchmarks/bench_tokenize.py --vocab m2 --mb 20 --runs 5
"""

from __future__ import annotations

import argparse
import gzip
import io
import re
import statistics
import struct
import time
from pathlib import Path

from tinylm.lang.format import EXAMPLE_END, split_examples
from tinylm.tokens.tokenizer import keyword_tokenizer

REPO = Path(__file__).resolve().parents[1]
GOLDEN_TRACES = {"demo": "demo", "m2": "nightly_m2", "alpha": "release2026_alpha"}


def reference_encode(text: str, tokens: list[str]) -> bytes:
    """The reference: longest-first regex that skips spaces, one struct.pack per token."""
    regex = re.compile("|".join(map(re.escape, tokens)) + "|[^ ]+?")
    ids = {token: i for i, token in enumerate(tokens)}
    out = io.BytesIO()
    for example in text.split(EXAMPLE_END)[:-1]:
        for token in regex.findall(example + EXAMPLE_END):
            out.write(struct.pack("B", ids[token]))
    return out.getvalue()


def timed(fn, runs: int) -> tuple[float, float, object]:
    """Median wall-clock and CPU seconds of `runs` calls, and the last result.

    CPU time is what the process itself used: on a shared machine it stays near the one-core
    figure while wall-clock time grows with the load.
    """
    wall, cpu = [], []
    for _ in range(runs):
        start, start_cpu = time.perf_counter(), time.process_time()
        result = fn()
        wall.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
    return statistics.median(wall), statistics.median(cpu), result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vocab", default="m2", choices=sorted(GOLDEN_TRACES))
    parser.add_argument("--traces", type=Path, help="traces.txt(.gz), examples separated by blank lines "
                        "(default: the golden traces of --vocab beside the repository)")
    parser.add_argument("--mb", type=float, default=20.0, help="repeat the traces up to about this many MB")
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()

    path = args.traces or REPO.parent / "shared" / "golden" / GOLDEN_TRACES[args.vocab] / "traces.txt.gz"
    raw = gzip.open(path, "rt").read() if path.suffix == ".gz" else path.read_text()
    examples = split_examples(raw)
    text = "".join(e + EXAMPLE_END for e in examples)
    repeat = max(1, round(args.mb * 1e6 / len(text)))
    examples, text = examples * repeat, text * repeat
    megabytes = len(text.encode()) / 1e6

    tok = keyword_tokenizer(args.vocab)
    *ours, ids = timed(lambda: tok.encode_examples(examples), args.runs)
    *ref, ref_bytes = timed(lambda: reference_encode(text, tok.tokens), args.runs)
    assert ids.tobytes() == ref_bytes, "the two encoders disagree"

    print(f"{path.name} x{repeat}: {megabytes:.1f} MB, {len(ids):,} tokens, {len(examples):,} examples, "
          f"vocab {args.vocab}, median of {args.runs} runs")
    print(f"  {'':<32} {'wall-clock':>29} {'CPU time':>29}")
    for label, seconds in (("tinylm keyword tokenizer", ours), ("reference (regex + struct.pack)", ref)):
        rates = [f"{megabytes / s:8.1f} MB/s {len(ids) / s / 1e6:7.2f} M tok/s" for s in seconds]
        print(f"  {label:<32} {rates[0]:>29} {rates[1]:>29}")
    print(f"  speed-up: {ref[0] / ours[0]:.1f}x wall-clock, {ref[1] / ours[1]:.1f}x CPU time")


if __name__ == "__main__":
    main()
