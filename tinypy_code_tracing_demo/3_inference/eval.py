"""Stage 6: score the demo model on the demo test suite and print hard / soft / failure %.

    python eval.py                                  # runs/cpu/best.pt of 2_model_training
    python eval.py configs/smoke.yaml               # the run trained with that config (smoke: first 32 examples)
    python eval.py configs/cpu.yaml --window reference --limit 200   # `tinylm eval` options pass through

Run from any working directory. Greedy decoding (exact prompt-lookup speculation) with the
step-anchored window: once a trace fills the 128-token context, the window restarts at the previous
step, so the model always sees the step it copies from. `--window reference` reproduces the
reference evaluator's sliding window instead (about 10x slower on CPU, positions restarting at 0 at
every token past 128). Results go to runs/<config name>/ beside this script (per-example
results.jsonl and .csv, summary.json; `-reference` appended for that window). An interrupted
evaluation continues where it stopped when started again. Every `tinylm eval` option passes
through but --checkpoint, --sweep, --suite and --out, which this script sets.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from tinylm.base.args import ArgumentParser, run_command
from tinylm.cli import main

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
SET_HERE = ("--checkpoint", "--sweep", "--suite", "--out")  # what this script passes tinylm eval itself


def evaluate(args: list[str]) -> int:
    configs = [a for a in args if a.endswith((".yaml", ".yml"))]
    ap = ArgumentParser(prog="eval.py", add_help=False)  # --help passes through to tinylm eval's
    ap.add_argument("--window", default="step-anchored")
    for option in SET_HERE:
        ap.add_argument(option, help=argparse.SUPPRESS)
    known, options = ap.parse_known_args([a for a in args if a not in configs])
    if len(configs) > 1:
        ap.error(f"one config at most, got {', '.join(configs)}")
    given = [o for o in SET_HERE if getattr(known, o[2:]) is not None]
    if given:
        ap.error(f"{given[0]} is set by eval.py (from the config name)")
    name, window = Path(configs[0] if configs else "configs/cpu.yaml").stem, known.window
    checkpoint = HERE.parent / "2_model_training" / "runs" / name / "best.pt"
    out = HERE / "runs" / (name if window == "step-anchored" else f"{name}-{window}")
    defaults = ["--window", window] + (["--limit", "32"] if name == "smoke" else [])
    status = main(["eval", "--checkpoint", str(checkpoint), "--suite", f"demo={REPO / 'datasets/demo/test.txt'}",
                   "--out", str(out), *defaults, *options])
    if status == 0:
        s = json.loads((out / "demo" / "summary.json").read_text())
        print(f"\n{s['n']} test examples ({window} window): hard match {s['hard_pct']:.2f}% "
              f"| soft match {s['soft_pct']:.2f}% | failure {s['failure_pct']:.2f}%")
    return status


if __name__ == "__main__":
    sys.exit(run_command(evaluate, sys.argv[1:]))
