"""Time to accuracy: minutes of training until a recipe's demo model traces 95% and 99% of programs.

    python benchmarks/speedrun.py --seeds 3                                  # the demo's recipe, 3 seeds
    python benchmarks/speedrun.py --recipe base= --recipe wide="model.n_embd=192" --seeds 3

A recipe is a name and dotted overrides of the demo's CPU config
(`tinypy_code_tracing_demo/2_model_training/configs/cpu.yaml`), trained for a fixed number of steps
(`--steps`; the config's minute-based sizing is switched off, so a recipe is the same experiment on
any machine). Every `--every` steps a checkpoint is kept; after training each is scored on the first
`--programs` held-out demo test programs (step-anchored window, greedy, batched). Training minutes are
the sum of the step times metrics.jsonl records: validation and scoring are not counted. Recipes run
interleaved (seed 1 of each, then seed 2 of each, ...), so machine load falls on all alike.

Writes OUT/speedrun.json (every checkpoint's score) and OUT/speedrun.md: per recipe and seed the
minutes and tokens to 95% and 99% hard match and the final score, then the median and range over
seeds. Runs and scores resume. BENCHMARKS.md keeps the record table, one row per kept change.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

from tinylm.base.config import load_config
from tinylm.base.files import atomic_write_json, atomic_write_text, machine
from tinylm.decode.strategies import GenerateConfig
from tinylm.evaluate.scoring import EvalConfig, evaluate_checkpoint
from tinylm.report.tables import markdown_table
from tinylm.train.config import TrainConfig
from tinylm.train.loop import run

REPO = Path(__file__).resolve().parents[1]
CONFIG = REPO / "tinypy_code_tracing_demo/2_model_training/configs/cpu.yaml"
THRESHOLDS = (95.0, 99.0)


def recipe_arg(text: str) -> tuple[str, list[str]]:
    name, sep, overrides = text.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"expected NAME=KEY=VALUE,KEY=VALUE (or NAME= for the config as is), got {text!r}")
    return name, [o for o in overrides.split(",") if o]


def train_recipe(overrides: list[str], seed: int, out: Path, args) -> Path:
    fixed = [f"data.dataset={args.dataset}", f"max_steps={args.steps}", "schedule_minutes=null", "max_minutes=null",
             f"eval_interval={args.every}", f"checkpoint.keep_last={args.steps // args.every + 1}",
             f"seed={seed}", f"out_dir={out}", "log.progress=false", *args.extra, *overrides]
    cfg = load_config(TrainConfig, CONFIG, fixed)
    run(cfg, CONFIG, resume="auto")
    return out


def training_minutes(run_dir: Path) -> dict[int, float]:
    """step -> minutes of training up to it: the sum of the steps' own times (no validation)."""
    info = json.loads((run_dir / "run.json").read_text())
    tokens_per_step = info["tokens_per_step"]
    total, minutes = 0.0, {}
    for line in (run_dir / "metrics.jsonl").read_text().splitlines():
        record = json.loads(line)
        if "tokens_per_s" in record:
            total += tokens_per_step / record["tokens_per_s"]
            minutes[record["step"]] = total / 60
    return minutes


def score_checkpoints(run_dir: Path, args) -> list[dict]:
    minutes = training_minutes(run_dir)
    tokens_per_step = json.loads((run_dir / "run.json").read_text())["tokens_per_step"]
    cfg = EvalConfig(limit=args.programs, decoding=GenerateConfig(window="step-anchored"))
    rows = []
    for path in sorted(run_dir.glob("ckpt_*.pt")):
        result = evaluate_checkpoint(path, [f"demo={Path(args.dataset) / 'test.txt'}"], run_dir / "scores" / path.stem,
                                     cfg, log=lambda *_: None)
        step, suite = result["step"], result["suites"][0]
        rows.append({"step": step, "tokens": step * tokens_per_step, "minutes": minutes[step], "n": suite["n"],
                     "hard_pct": suite["hard_pct"]})
    return rows


def time_to(rows: list[dict], threshold: float) -> dict | None:
    return next((r for r in rows if r["hard_pct"] >= threshold), None)


def summary_table(results: dict[str, dict[int, list[dict]]]) -> str:
    header = ["recipe", "seed"] + [h for t in THRESHOLDS for h in (f"min to {t:g}%", f"tokens to {t:g}%")] + [
        "final hard %", "n"]
    lines = []
    for recipe, seeds in results.items():
        per_threshold = {t: [] for t in THRESHOLDS}
        for seed, rows in seeds.items():
            cells = []
            for t in THRESHOLDS:
                hit = time_to(rows, t)
                per_threshold[t].append(None if hit is None else hit["minutes"])
                cells += ["not reached", "-"] if hit is None else [f"{hit['minutes']:.1f}", f"{hit['tokens']:,}"]
            lines.append([recipe, seed, *cells, f"{rows[-1]['hard_pct']:.1f}", rows[-1]["n"]])
        medians = []
        for t in THRESHOLDS:
            reached = [m for m in per_threshold[t] if m is not None]
            medians += [f"**{statistics.median(reached):.1f}** ({min(reached):.1f}–{max(reached):.1f}, "
                        f"{len(reached)} of {len(per_threshold[t])})" if reached else "not reached", ""]
        lines.append([recipe, "median (range)", *medians, "", ""])
    return markdown_table(header, lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--recipe", type=recipe_arg, action="append", help="NAME=KEY=VALUE,... (repeatable)")
    ap.add_argument("--seeds", type=int, default=1, help="seeds 1..N of every recipe")
    ap.add_argument("--steps", type=int, default=3000, help="optimizer steps of every run")
    ap.add_argument("--every", type=int, default=250, help="steps between scored checkpoints")
    ap.add_argument("--programs", type=int, default=500, help="held-out demo test programs scored per checkpoint")
    ap.add_argument("--dataset", default=str(REPO / "datasets/demo"), help="a built demo dataset")
    ap.add_argument("--out", default=str(REPO / "benchmarks/runs/speedrun"))
    ap.add_argument("--extra", nargs="*", default=[], help="overrides for every recipe (e.g. threads=1)")
    args = ap.parse_args(argv)
    if not (Path(args.dataset) / "manifest.json").is_file():
        print(f"error: {args.dataset}: not a built dataset (tinylm data build datasets/demo)", file=sys.stderr)
        return 2
    recipes = dict(args.recipe or [("demo", [])])
    out = Path(args.out)
    results: dict[str, dict[int, list[dict]]] = {name: {} for name in recipes}
    for seed in range(1, args.seeds + 1):
        for name, overrides in recipes.items():
            run_dir = train_recipe(overrides, seed, out / name / f"seed{seed}", args)
            results[name][seed] = score_checkpoints(run_dir, args)
    atomic_write_json(out / "speedrun.json", {"machine": machine(), "steps": args.steps, "every": args.every,
                                              "programs": args.programs, "recipes": recipes, "results": results})
    table = summary_table(results)
    atomic_write_text(out / "speedrun.md", f"# Time to accuracy ({machine()['cpu']})\n\n{table}\n")
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
