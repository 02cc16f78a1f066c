"""Stage 5: train the demo model on datasets/demo.

    python train.py                      # configs/cpu.yaml: sized to 25 minutes of training on this CPU
    python train.py configs/smoke.yaml   # seconds; checks the pipeline
    python train.py configs/gpu.yaml     # the reference recipe on a GPU
    python train.py configs/cpu.yaml optim.lr=1e-3 max_steps=3000
    python train.py configs/cpu.yaml --resume   # continue, and fail if there is no checkpoint

Run from any working directory. The run folder is runs/<config name>/ beside this script
(metrics.jsonl, checkpoints, best.pt). A run interrupted or stopped by its time budget continues
from its newest checkpoint when started again; a finished run is left as it is.
For several GPUs: torchrun --nproc_per_node N -m tinylm.cli train configs/gpu.yaml
"""

from __future__ import annotations

import sys
from pathlib import Path

from tinylm.base.args import ArgumentParser, run_command
from tinylm.cli import main

HERE = Path(__file__).resolve().parent


def train(argv: list[str]) -> int:
    ap = ArgumentParser(prog="train.py", description=__doc__.splitlines()[0])
    ap.add_argument("args", nargs="*", metavar="[CONFIG.yaml] [key=value ...]",
                    help="a config (default configs/cpu.yaml), then dotted overrides")
    ap.add_argument("--resume", action="store_true",
                    help="continue from the newest checkpoint, and fail if there is none")
    opts = ap.parse_intermixed_args(argv)
    config, overrides = HERE / "configs" / "cpu.yaml", opts.args
    if overrides and overrides[0].endswith((".yaml", ".yml")):
        config = Path(overrides.pop(0))
        config = config if config.exists() else HERE / config  # configs/x.yaml from anywhere
    for arg in overrides:
        if "=" not in arg:
            ap.error(f"{arg!r} is not a key=value override (a config, if any, comes first)")
    return main(["train", str(config), *overrides, "--resume", "yes" if opts.resume else "auto"])


if __name__ == "__main__":
    sys.exit(run_command(train, sys.argv[1:]))
