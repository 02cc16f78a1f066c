"""Stage 7 (optional): hard match against training time, from every checkpoint the run kept.

    python sweep.py                        # runs/cpu of 2_model_training, first 200 test examples
    python sweep.py configs/smoke.yaml --limit 8

Evaluates each ckpt_*.pt of the run (step-anchored window, greedy) on the first 200 demo test
examples, then writes runs/<config name>/sweep/: sweep.json, sweep.md (one line per checkpoint and
the training time to reach 90, 95 and 99% hard match) and hard_match.png. Resumes like eval.py.
"""

from __future__ import annotations

import sys
from pathlib import Path

from tinylm.base.args import ArgumentParser, run_command
from tinylm.cli import main

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]


def sweep(args: list[str]) -> int:
    ap = ArgumentParser(prog="sweep.py", description=__doc__.splitlines()[0])
    ap.add_argument("config", nargs="?", default="configs/cpu.yaml")
    ap.add_argument("--limit", type=int, default=200, help="first N test examples per checkpoint")
    opts = ap.parse_args(args)
    name = Path(opts.config).stem
    run = HERE.parent / "2_model_training" / "runs" / name
    out = HERE / "runs" / name / "sweep"
    status = main(["eval", "--sweep", str(run), "--suite", f"demo={REPO / 'datasets/demo/test.txt'}",
                   "--out", str(out), "--window", "step-anchored", "--limit", str(opts.limit)])
    return status or main(["report", str(out)])


if __name__ == "__main__":
    sys.exit(run_command(sweep, sys.argv[1:]))
