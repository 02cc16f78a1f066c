"""`tinylm eval`: score a checkpoint (or every checkpoint of a run) on test suites, print the table,
and optionally write the explain pages of the first misses."""

from __future__ import annotations

from pathlib import Path

import torch

from tinylm.base import runtime
from tinylm.base.args import ArgumentParser
from tinylm.base.errors import ConfigError
from tinylm.decode.strategies import add_decoding_arguments, decoding_from_args
from tinylm.evaluate.scoring import UNREAD_DECODING, EvalConfig, evaluate_checkpoint, suite_paths, sweep


def cli(argv: list[str]) -> int:
    """tinylm eval: score a checkpoint (or every checkpoint of a run) on TinyPy test suites."""
    ap = ArgumentParser(prog="tinylm eval", description=cli.__doc__)
    what = ap.add_mutually_exclusive_group(required=True)
    what.add_argument("--checkpoint", help="a tinylm checkpoint (.pt)")
    what.add_argument("--sweep", metavar="RUN_DIR", help="evaluate every ckpt_*.pt of a run folder")
    ap.add_argument("--suite", action="append", default=[], metavar="[NAME=]PATH",
                    help="test file, examples separated by blank lines (repeatable)")
    ap.add_argument("--out", required=True, help="output folder (resumed if it holds a killed evaluation)")
    ap.add_argument("--limit", type=int, default=None, help="first N examples of each suite")
    ap.add_argument("--batch-size", type=int, default=128,
                    help="examples decoded together; under torchrun 16-32 share out more evenly")
    ap.add_argument("--slack", type=int, default=16, help="tokens allowed beyond each target's length")
    add_decoding_arguments(ap, skip=UNREAD_DECODING)
    ap.add_argument("--device", default="auto", help="auto: this process's GPU if there is one, else cpu")
    ap.add_argument("--explain-failures", type=int, default=0, metavar="K",
                    help="also write the tinylm explain pages of each suite's first K examples not matched "
                         "exactly, OUT/SUITE/explain/ID.html (--checkpoint; greedy; reference or step-anchored)")
    args = ap.parse_args(argv)
    if args.explain_failures and (args.sweep or args.window == "rolling" or args.temperature or args.beam > 1):
        raise ConfigError("--explain-failures explains greedy decoding of one --checkpoint with the reference "
                          "or step-anchored window")
    cfg = EvalConfig(batch_size=args.batch_size, limit=args.limit, slack=args.slack,
                     decoding=decoding_from_args(args, skip=UNREAD_DECODING))
    cfg.validate()
    suite_paths(args.suite)
    # under torchrun: joins the process group; full float32 products, as the reference scored
    rt = runtime.setup(args.device, "float32", args.seed or 0, tf32=False)
    with torch.no_grad():
        if args.sweep:
            rows = sweep(args.sweep, args.suite, args.out, cfg, log=print, rt=rt)
            from tinylm.report.tables import sweep_report
            table = sweep_report(rows)
        else:
            res = evaluate_checkpoint(args.checkpoint, args.suite, args.out, cfg, log=print, rt=rt)
            from tinylm.report.tables import suites_table
            table = suites_table(res["suites"])
    if rt.is_main:
        print(table)
        if args.explain_failures:
            from tinylm.evaluate.explain import explain_failures
            for name, path in suite_paths(args.suite):
                pages = explain_failures(args.checkpoint, path, Path(args.out) / name, args.explain_failures,
                                         window=args.window, device=args.device)
                print(f"{name}: {len(pages)} explain page(s) in {Path(args.out) / name / 'explain'}")
    rt.barrier()  # the processes leave together
    rt.close()
    return 0
