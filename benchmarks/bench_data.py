"""Data engine throughput: dataset.yaml -> train.bin with `tinylm data build`, against the reference's way.

tinylm: `tinylm data build` on a temporary dataset folder (train split only), run as its own
process tree. Programs/s and MB/s of traces, YAML to .bin: by the wall clock, and "cpu-bound", the
rate `workers` idle cores would give (programs x workers / CPU seconds of the whole tree; on a
loaded machine the wall clock mostly measures the other jobs). Per stage (generate, trace,
tokenize, filter): one core's rate from the CPU seconds the manifest records. The peak RSS of the
process tree (the build and its workers, summed) is sampled every 20 ms.

reference: the same programs (our generator) processed the way the reference scripts did it:
the whole programs file read into memory, each program wrapped in `def func():`, exec'd and run
under `sys.settrace` (a step rendered from `frame.f_locals` at every line event), the traces
file written, read back whole, tokenized with one regex and written with one `struct.pack` per
token. No determinism filter (the reference filtered in a separate pass).

Run it niced on a shared machine (the defaults are the full set; pass smaller sizes to sample):

    nice python benchmarks/bench_data.py [--demo 10000 100000] [--nightly 10000] [--workers 1 2]
        [--reference-demo 10000] [--reference-nightly 2000] [--memory 100000 1000000] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import re
import resource
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from tinylm.lang.generate import generate_programs
from tinylm.lang.spec import preset
from tinylm.tokens.tokenizer import KEYWORD_VOCABS

GRAMMARS = {  # preset, trace format, keyword vocabulary, filter block size (as in datasets/*)
    "demo": ("demo", "demo", "demo", 128),
    "nightly": ("nightly", "m2", "m2", 512),
}
MB = 1e6

# ----------------------------------------------------------------------------- tinylm: a build


def write_spec(folder: Path, grammar: str, programs: int, shard_size: int) -> None:
    name, fmt, vocab, block = GRAMMARS[grammar]
    folder.mkdir(parents=True, exist_ok=True)
    spec = {"generator": {"preset": name}, "trace_format": fmt, "block_size": block,
            "tokenizer": {"kind": "keyword", "vocab": vocab},
            "splits": {"train": programs, "val": 0, "test": 0}, "shard_size": shard_size}
    (folder / "dataset.yaml").write_text(yaml.safe_dump(spec))


def tree_rss(pid: int) -> int:
    """Summed resident memory (bytes) of a process and all its descendants."""
    total, stack = 0, [pid]
    while stack:
        p = stack.pop()
        try:
            status = Path(f"/proc/{p}/status").read_text()
            total += int(re.search(r"VmRSS:\s+(\d+)", status).group(1)) * 1024
            for task in Path(f"/proc/{p}/task").iterdir():
                stack += [int(c) for c in (task / "children").read_text().split()]
        except (OSError, AttributeError):
            continue
    return total


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_build(folder: Path, workers: int) -> tuple[dict, float, float, int]:
    """Build a dataset folder in a child process: its manifest, wall seconds, CPU seconds of the
    whole process tree, and peak tree RSS."""
    cpu = children_cpu()
    clock = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "tinylm.cli", "data", "build", str(folder),
                             "--workers", str(workers)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    peak = 0
    while proc.poll() is None:
        peak = max(peak, tree_rss(proc.pid))
        time.sleep(0.02)
    wall = time.perf_counter() - clock
    if proc.returncode != 0:
        raise SystemExit(f"build of {folder} failed: {proc.stderr.read().decode().strip()}")
    return json.loads((folder / "manifest.json").read_text()), wall, children_cpu() - cpu, peak


def build_rates(manifest: dict, wall: float, cpu: float, peak: int) -> dict:
    stage = manifest["stages"]["main"]
    seconds, programs = stage["cpu_seconds"], stage["generated"]
    traced_mb = stage["bytes"]["traces"] / MB
    workers = manifest["timings"]["workers"]
    return {
        "programs": programs,
        "wall_s": round(wall, 2),
        "cpu_s": round(cpu, 2),
        "end_to_end": {"programs_per_s": round(programs / wall), "trace_MB_per_s": round(traced_mb / wall, 2)},
        # what `workers` idle cores would give: all CPU time of the tree shared evenly among them
        "cpu_bound": {"programs_per_s": round(programs * workers / cpu),
                      "trace_MB_per_s": round(traced_mb * workers / cpu, 2)},
        "per_core_stage": {
            "generate": {"programs_per_s": round(programs / seconds["generate"]),
                         "MB_per_s": round(stage["bytes"]["programs"] / MB / seconds["generate"], 2)},
            "trace": {"programs_per_s": round(programs / seconds["trace"]),
                      "MB_per_s": round(traced_mb / seconds["trace"], 2)},
            "tokenize": {"programs_per_s": round(stage["traced"] / seconds["tokenize"]),
                         "MB_per_s": round(traced_mb / seconds["tokenize"], 2)},
            "filter": {"programs_per_s": round(stage["traced"] / max(seconds["filter"], 1e-9)),
                       "MB_per_s": round(traced_mb / max(seconds["filter"], 1e-9), 2)},
        },
        "peak_rss_MB": round(peak / MB),
        "train_tokens": manifest["splits"]["train"]["tokens"],
    }


def bench_build(grammar: str, programs: int, workers: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / f"{grammar}-{programs}"
        write_spec(folder, grammar, programs, shard_size=min(10000, max(500, programs // 40)))
        return build_rates(*run_build(folder, workers))


# ----------------------------------------------------------------------------- the reference's way


def settrace_trace(program: str, output: bool, cap: int | None) -> str | None:
    """Trace one program as the reference did: exec a `def func():` wrapper under sys.settrace."""
    lines = program.split("\n")
    printed: list[str] = []
    events: list[tuple[int, dict]] = []

    def tracer(frame, event, arg):
        if frame.f_code.co_name != "func":
            return None
        if event in ("line", "return"):
            events.append((frame.f_lineno - 2 if event == "line" else -1, dict(frame.f_locals)))
        return tracer

    namespace = {"print": lambda *args: printed.append(" ".join(map(str, args)))}
    try:
        exec("def func():\n" + "\n".join("\t" + line for line in lines), namespace)
        sys.settrace(tracer)
        namespace["func"]()
    except Exception:
        return None
    finally:
        sys.settrace(None)
    steps = [program]
    for line, state in events:
        if cap is not None and any(abs(v) > cap for v in state.values()):
            return None
        mark = "$" + ";".join(f"{k}?{v}" for k, v in state.items())
        if output:
            mark += "|" + "&".join(f"# {p}" for p in printed)
        marked = lines + ["@^" + mark] if line < 0 else \
            lines[:line] + ["@" + lines[line] + mark] + lines[line + 1:]
        steps.append("\n".join(marked))
    return "\n#STEP\n".join(steps)


def regex_tokenize_to_file(text: str, vocab: tuple[str, ...], path: Path) -> int:
    """One regex over the whole text, one struct.pack per token (the reference's encode_to_file)."""
    ids = {token: i for i, token in enumerate(vocab)}
    pattern = re.compile("|".join(re.escape(t) for t in vocab))
    count = 0
    with open(path, "wb") as f:
        for token in pattern.findall(text.replace(" ", "")):
            f.write(struct.pack("B", ids[token]))
            count += 1
    return count


def bench_reference(grammar: str, programs: int) -> dict:
    name, fmt, vocab, _ = GRAMMARS[grammar]
    cap = {"demo": 10, "m2": None}[fmt]
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        cpu, clock = time.process_time(), time.perf_counter()
        texts = generate_programs(preset(name), 0, 0, programs)
        (tmp / "programs.txt").write_text("".join(p + "\n\n" for p in texts))
        t_generate = time.perf_counter()
        source = (tmp / "programs.txt").read_text().split("\n\n")[:-1]
        traces = [t for t in (settrace_trace(p, fmt == "m2", cap) for p in source) if t is not None]
        (tmp / "traces.txt").write_text("".join(t + "\n\n" for t in traces))
        t_trace = time.perf_counter()
        tokens = regex_tokenize_to_file((tmp / "traces.txt").read_text(), KEYWORD_VOCABS[vocab], tmp / "train.bin")
        t_tokenize = time.perf_counter()
        cpu = time.process_time() - cpu
    traced_mb = sum(map(len, traces)) / MB
    wall = t_tokenize - clock
    return {
        "programs": programs, "traced": len(traces), "tokens": tokens, "wall_s": round(wall, 2),
        "cpu_s": round(cpu, 2),
        "end_to_end": {"programs_per_s": round(programs / wall), "trace_MB_per_s": round(traced_mb / wall, 2)},
        "cpu_bound": {"programs_per_s": round(programs / cpu), "trace_MB_per_s": round(traced_mb / cpu, 2)},
        "stage": {"generate": {"programs_per_s": round(programs / (t_generate - clock))},
                  "trace": {"programs_per_s": round(programs / (t_trace - t_generate)),
                            "MB_per_s": round(traced_mb / (t_trace - t_generate), 2)},
                  "tokenize": {"programs_per_s": round(len(traces) / (t_tokenize - t_trace)),
                               "MB_per_s": round(traced_mb / (t_tokenize - t_trace), 2)}},
    }


# ----------------------------------------------------------------------------- report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--demo", type=int, nargs="*", default=[10000, 100000], help="demo program counts")
    parser.add_argument("--nightly", type=int, nargs="*", default=[10000], help="nightly program counts")
    parser.add_argument("--workers", type=int, nargs="*", default=[1, 2])
    parser.add_argument("--reference-demo", type=int, default=10000, help="programs for the reference baseline")
    parser.add_argument("--reference-nightly", type=int, default=2000)
    parser.add_argument("--memory", type=int, nargs="*", default=[100000, 1000000],
                        help="demo program counts for the peak-memory builds (at the largest worker count)")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()

    results: dict = {"builds": [], "reference": {}, "memory": []}
    for grammar, sizes in [("demo", args.demo), ("nightly", args.nightly)]:
        if sizes:
            results["reference"][grammar] = ref = bench_reference(
                grammar, args.reference_demo if grammar == "demo" else args.reference_nightly)
            print(f"reference {grammar:8s} {ref['programs']:>9,} programs: "
                  f"wall {ref['end_to_end']['programs_per_s']:>7,} programs/s {ref['end_to_end']['trace_MB_per_s']} MB/s, "
                  f"cpu-bound {ref['cpu_bound']['programs_per_s']:>7,} programs/s", flush=True)
        for programs in sizes:
            for workers in args.workers:
                row = {"grammar": grammar, "workers": workers, **bench_build(grammar, programs, workers)}
                row["speedup_vs_reference"] = {key: round(row[key]["programs_per_s"] / ref[key]["programs_per_s"], 1)
                                               for key in ("end_to_end", "cpu_bound")}
                results["builds"].append(row)
                stages = ", ".join(f"{k} {v['programs_per_s']:,}/s {v['MB_per_s']} MB/s"
                                   for k, v in row["per_core_stage"].items())
                print(f"tinylm    {grammar:8s} {row['programs']:>9,} programs, {workers} worker(s): "
                      f"wall {row['end_to_end']['programs_per_s']:>7,} programs/s {row['end_to_end']['trace_MB_per_s']} MB/s, "
                      f"cpu-bound {row['cpu_bound']['programs_per_s']:>7,} programs/s {row['cpu_bound']['trace_MB_per_s']} MB/s "
                      f"(x reference: {row['speedup_vs_reference']}), peak {row['peak_rss_MB']} MB\n"
                      f"          per core: {stages}", flush=True)
    for programs in args.memory:
        workers = max(args.workers)
        row = {"workers": workers, **bench_build("demo", programs, workers)}
        results["memory"].append(row)
        print(f"memory    demo     {row['programs']:>9,} programs, {workers} worker(s): peak RSS {row['peak_rss_MB']} MB "
              f"(process tree), {row['end_to_end']['programs_per_s']:,} programs/s", flush=True)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
