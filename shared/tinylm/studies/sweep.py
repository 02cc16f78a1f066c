"""Config -> a grid of training runs: every combination of `--grid KEY=V1,V2,...` values applied to
one training config, each trained in its own run folder, one after the other; then one table and
one plot of them all.

Before anything trains, every combination is loaded and validated (a bad key or value stops the
sweep with one line naming it) and its training memory estimated (`tinylm.studies.inspect_model.training_memory`,
a rough upper figure); a combination over `--budget-gib` is skipped with a message. A run that fails
(a loss that turns NaN at a large learning rate, say) is recorded as failed and the sweep goes on.
Run again, a sweep continues: a run folder holding checkpoints is resumed, and a finished one has
nothing left to do.

OUT/ receives one run folder per combination, named by its overrides (`model.n_layer=2,optim.lr=1e-3`),
and grid.md (the table), grid.json (its rows) and grid.png (every run's curves, `tinylm.report.compare`).

    tinylm sweep tinypy_code_tracing_demo/2_model_training/configs/smoke.yaml \\
        --grid model.n_layer=2,4 --grid optim.lr=1.0e-3,3.0e-3 --budget-gib 4 --out runs/grid
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from pathlib import Path

from tinylm.base.args import ArgumentParser
from tinylm.base.errors import ConfigError, TinylmError
from tinylm.base.files import atomic_write_json, atomic_write_text
from tinylm.report.compare import plot_curves, summarize
from tinylm.report.tables import markdown_table
from tinylm.studies.inspect_model import format_bytes, model_of, training_memory
from tinylm.studies.tasks import load_train_config
from tinylm.train.config import TrainConfig
from tinylm.train.loop import run


@dataclass
class Point:
    """One combination of the grid."""

    name: str              # its overrides joined by ",": the run folder's name
    values: dict[str, str]  # grid key -> value as written
    cfg: TrainConfig
    parameters: int
    memory: int            # estimated bytes of one training step
    skip: str | None       # why it is not trained, or None


def parse_grid(specs: list[str]) -> dict[str, list[str]]:
    """['model.n_layer=2,4', 'optim.lr=1.0e-3,3.0e-3'] -> {'model.n_layer': ['2', '4'], ...}."""
    grid: dict[str, list[str]] = {}
    for spec in specs:
        key, sep, values = spec.partition("=")
        key = key.strip()
        choices = [v.strip() for v in values.split(",")]
        if not sep or not key or not all(choices):
            raise ConfigError(f"--grid {spec!r}: expected KEY=V1,V2,... (e.g. optim.lr=1.0e-3,3.0e-3)")
        if key in grid:
            raise ConfigError(f"--grid: {key} given twice; list all its values in one --grid")
        if key == "out_dir":
            raise ConfigError("--grid: out_dir is the sweep's to choose (--out)")
        grid[key] = choices
    if not grid:
        raise ConfigError("no --grid KEY=V1,V2,... given")
    return grid


def plan(config: str | Path, grid: dict[str, list[str]], out_dir: str | Path, overrides: list[str] = (),
         budget_gib: float | None = None) -> list[Point]:
    """Every combination, loaded, validated and sized; nothing is written."""
    out_dir = Path(out_dir).resolve()
    points = []
    for combo in itertools.product(*grid.values()):
        values = dict(zip(grid, combo))
        sets = [f"{k}={v}" for k, v in values.items()]
        cfg = load_train_config(config, [*overrides, *sets])
        name = ",".join(sets).replace("/", "_")
        cfg.out_dir = str(out_dir / name)
        model_config, _ = model_of(cfg, config)
        size = training_memory(model_config, cfg.batch_size // cfg.grad_accum,
                               activation_bytes=2 if cfg.dtype in ("bfloat16", "float16") else 4)
        memory = size["total_bytes"]
        over = budget_gib is not None and memory > budget_gib * 2**30
        skip = f"estimated {format_bytes(memory)} > budget {budget_gib:g} GiB" if over else None
        points.append(Point(name, values, cfg, size["parameters"], memory, skip))
    return points


def grid_table(rows: list[dict], keys: list[str]) -> str:
    """One line per combination: its values, size, estimated memory, status and losses."""
    header = keys + ["parameters", "est. memory", "status", "steps", "val loss", "best val loss", "minutes"]

    def num(x, fmt):
        return "-" if x is None else format(x, fmt)

    lines = [[r["values"][k] for k in keys] + [num(r["parameters"], ","), format_bytes(r["memory_bytes"]),
                                               r["status"], num(r["steps"], ","), num(r["val_loss"], ".4f"),
                                               num(r["best_val_loss"], ".4f"), num(r["minutes"], ".1f")]
             for r in rows]
    return markdown_table(header, lines)


def sweep(config: str | Path, grid: dict[str, list[str]], out_dir: str | Path, overrides: list[str] = (),
          budget_gib: float | None = None, log=print) -> list[dict]:
    """Train every combination that fits the budget; write OUT/grid.{md,json,png}; returns the rows."""
    points = plan(config, grid, out_dir, overrides, budget_gib)
    out_dir = Path(out_dir)
    rows, trained = [], []
    for i, p in enumerate(points):
        row = {"name": p.name, "values": p.values, "parameters": p.parameters, "memory_bytes": p.memory,
               "status": "trained", "steps": None, "val_loss": None, "best_val_loss": None, "minutes": None}
        if p.skip:
            log(f"skip {p.name}: {p.skip}")
            row["status"] = "skipped"
        else:
            log(f"== [{i + 1}/{len(points)}] {p.name}")
            folder = Path(p.cfg.out_dir)
            try:
                run(p.cfg, config, resume="auto")
            except TinylmError as exc:
                log(f"failed {p.name}: {exc}")
                row["status"] = f"failed: {exc}"
            if (folder / "metrics.jsonl").is_file():
                summary = summarize(folder, p.name)
                row.update({k: summary[k] for k in ("steps", "val_loss", "best_val_loss", "minutes")})
                trained.append(summary)
        rows.append(row)
    atomic_write_json(out_dir / "grid.json", {"config": str(config), "grid": grid, "overrides": list(overrides),
                                              "budget_gib": budget_gib, "rows": rows})
    atomic_write_text(out_dir / "grid.md", grid_table(rows, list(grid)) + "\n")
    if trained:
        plot_curves(trained, out_dir / "grid.png", title=f"{Path(config).name}: {', '.join(grid)}")
    return rows


def cli(argv: list[str]) -> int:
    """tinylm sweep CONFIG --grid KEY=V1,V2 ...: train every combination of the grid's values (skipping
    those whose estimated memory exceeds --budget-gib), then write a table and a plot of them all."""
    ap = ArgumentParser(prog="tinylm sweep", description=cli.__doc__)
    ap.add_argument("config", help="training config YAML")
    ap.add_argument("overrides", nargs="*", help="dotted key=value overrides applied to every run")
    ap.add_argument("--grid", action="append", default=[], metavar="KEY=V1,V2,...",
                    help="a config key and the values to try (repeatable: every combination is trained)")
    ap.add_argument("--out", required=True, help="sweep folder: one run folder per combination, grid.md/json/png")
    ap.add_argument("--budget-gib", type=float, default=None,
                    help="skip combinations whose estimated training memory is above this many GiB")
    args = ap.parse_args(argv)
    if args.budget_gib is not None and args.budget_gib <= 0:
        raise ConfigError(f"--budget-gib must be > 0, got {args.budget_gib}")
    grid = parse_grid(args.grid)
    rows = sweep(args.config, grid, args.out, args.overrides, args.budget_gib)
    print(grid_table(rows, list(grid)))
    print(Path(args.out) / "grid.md")
    return 0
