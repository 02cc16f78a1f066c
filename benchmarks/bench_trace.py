"""Tracing speed: our interpreter against the reference's way (exec + sys.settrace), same programs.

    nice python benchmarks/bench_trace.py --preset demo --count 20000 --repeats 5

Programs come from the generator preset (or a golden folder with --golden DIR). Times are CPU seconds
of this process (`time.process_time`), so other jobs on a shared machine slow both sides alike
rather than stealing wall time; figures are per core. Each repeat starts with cold caches, so they
hold for a fresh stream of programs. The baseline runs each program
as the reference scripts did: the program wrapped in `def func():` with the tracer's source appended,
exec'd, tracing with `sys.settrace` and joining every step from a copy of the program's lines.
Both sides must produce the same traces; the script checks that before timing.
"""

from __future__ import annotations

import argparse
import contextlib
import gzip
import io
import statistics
import time
from pathlib import Path

from tinylm.lang.trace import FORMATS, reset_caches, trace_texts

PRESET_FORMATS = {"demo": "demo", "nightly": "m2", "alpha": "2026", "beta": "2026"}
GOLDEN_FORMATS = {"demo": "demo", "nightly_m2": "m2", "release2026_alpha": "2026"}

# The tracer the reference appended to every program (cap and output parts switched by format).
_TRACER = """
from sys import settrace
code_lines = code.split("\\n")
def line_tracer(frame, event, arg):
    current_step = list(code_lines)
    if CAP is not None:
        for key, value in frame.f_locals.items():
            if isinstance(value, (int, float)) and (value < -CAP or value > CAP):
                raise ValueError(f"Value out of range: {key} = {value}")
    state_fill = ";".join([f"{key}?{value:}" for key, value in frame.f_locals.items()])
    if OUTPUT:
        state_fill += "|" + "&".join(["# " + printed for printed in SIO.getvalue().split("\\n")[:-1]])
    if event == "line":
        current_step[frame.f_lineno - 2] = "@" + current_step[frame.f_lineno - 2] + "$" + state_fill
        trace.append("#STEP\\n" + "\\n".join(current_step))
    elif event == "return":
        current_step.append("@^" + "$" + state_fill)
        trace.append("#STEP\\n" + "\\n".join(current_step))
    return line_tracer
def global_tracer(frame, event, arg):
    return line_tracer
settrace(global_tracer)
try:
    func()
finally:
    settrace(None)
"""


def baseline_trace_texts(programs: list[str], fmt: str) -> list[str]:
    spec = FORMATS[fmt]
    traces = []
    for program in programs:
        code = program.split("\n# output")[0] if spec.output else program
        source = "def func():\n" + "\n".join("\t" + line for line in code.split("\n")) + _TRACER
        trace: list[str] = []
        sio = io.StringIO()
        try:
            with contextlib.redirect_stdout(sio):
                exec(source, {"__builtins__": __builtins__, "code": code, "trace": trace, "SIO": sio,
                              "CAP": spec.cap, "OUTPUT": spec.output})
        except Exception:  # the reference dropped the program, whatever went wrong
            continue
        traces.append(code + "\n" + "\n".join(trace))
    return traces


def load_programs(args) -> tuple[list[str], str]:
    if args.golden:
        folder = Path(args.golden)
        with gzip.open(folder / "programs.txt.gz", "rt") as f:
            return f.read().split("\n\n")[:-1], GOLDEN_FORMATS[folder.name]
    from tinylm.lang.generate import generate_programs
    from tinylm.lang.spec import preset

    return generate_programs(preset(args.preset), seed=0, start=0, count=args.count), PRESET_FORMATS[args.preset]


def timed(fn, repeats: int) -> tuple[float, object]:
    """Median CPU seconds of `repeats` runs (caches reset before each), and the last result."""
    times, result = [], None
    for _ in range(repeats):
        reset_caches()
        start = time.process_time()
        result = fn()
        times.append(time.process_time() - start)
    return statistics.median(times), result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--preset", default="demo", choices=list(PRESET_FORMATS))
    parser.add_argument("--golden", help="a golden folder instead of generated programs")
    parser.add_argument("--count", type=int, default=20000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--baseline-repeats", type=int, default=3)
    args = parser.parse_args()
    programs, fmt = load_programs(args)
    ours_s, (ours, errors) = timed(lambda: trace_texts(programs, fmt), args.repeats)
    base_s, base = timed(lambda: baseline_trace_texts(programs, fmt), args.baseline_repeats)
    assert ours == base, "our traces differ from the baseline's"
    megabytes = sum(len(t) + 2 for t in ours) / 1e6
    print(f"{len(programs):,} programs ({args.golden or args.preset}, format {fmt}), {len(ours):,} traced, "
          f"{megabytes:.1f} MB of traces; dropped: {dict(errors)}")
    for name, seconds in (("ours", ours_s), ("exec+settrace", base_s)):
        print(f"  {name:<14} {len(programs) / seconds:>10,.0f} programs/s {megabytes / seconds:>8.1f} MB/s "
              f"(median {seconds:.2f} CPU s)")
    print(f"  speed-up       {base_s / ours_s:>10.1f}x")


if __name__ == "__main__":
    main()
