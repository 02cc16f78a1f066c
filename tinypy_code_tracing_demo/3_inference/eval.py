"""Stage 6: score the demo model on the demo test suite and print hard / soft / failure %.

    python eval.py                      # runs/cpu/best.pt of 2_model_training
    python eval.py configs/smoke.yaml   # the run trained with that config (smoke: first 32 examples)

Run from any working directory. Greedy decoding with the reference evaluator's window semantics;
results go to runs/<config name>/ beside this script (per-example results.jsonl and .csv,
summary.json). An interrupted evaluation continues where it stopped when started again.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from tinylm.cli import main

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]


def evaluate(args: list[str]) -> int:
    config = next((Path(a) for a in args if a.endswith((".yaml", ".yml"))), Path("configs/cpu.yaml"))
    name = config.stem
    checkpoint = HERE.parent / "2_model_training" / "runs" / name / "best.pt"
    out = HERE / "runs" / name
    limit = ["--limit", "32"] if name == "smoke" else []
    status = main(["eval", "--checkpoint", str(checkpoint), "--suite", f"demo={REPO / 'datasets/demo/test.txt'}",
                   "--out", str(out), *limit])
    if status == 0:
        s = json.loads((out / "demo" / "summary.json").read_text())
        print(f"\n{s['n']} test examples: hard match {s['hard_pct']:.2f}% | soft match {s['soft_pct']:.2f}% "
              f"| failure {s['failure_pct']:.2f}%")
    return status


if __name__ == "__main__":
    sys.exit(evaluate(sys.argv[1:]))
