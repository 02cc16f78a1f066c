"""Stage 5: train the demo model on datasets/demo.

    python train.py                      # configs/cpu.yaml: sized to 25 minutes of training on this CPU
    python train.py configs/smoke.yaml   # seconds; checks the pipeline
    python train.py configs/gpu.yaml     # the reference recipe on a GPU
    python train.py configs/cpu.yaml optim.lr=1e-3 max_steps=3000

Run from any working directory. The run folder is runs/<config name>/ beside this script
(metrics.jsonl, checkpoints, best.pt). A run interrupted or stopped by its time budget continues
from its newest checkpoint when started again; a finished run is left as it is.
For several GPUs: torchrun --nproc_per_node N -m tinylm.cli train configs/gpu.yaml
"""

from __future__ import annotations

import sys
from pathlib import Path

from tinylm.cli import main
from tinylm.config import load_config
from tinylm.errors import TinylmError
from tinylm.train import TrainConfig, run_dir

HERE = Path(__file__).resolve().parent


def train(args: list[str]) -> int:
    config = HERE / "configs" / "cpu.yaml"
    if args and args[0].endswith((".yaml", ".yml")):
        config = Path(args.pop(0))
        config = config if config.exists() else HERE / config  # configs/x.yaml from anywhere
    overrides = [a for a in args if "=" in a]
    try:
        resume = any(run_dir(load_config(TrainConfig, config, overrides), config).glob("ckpt_*.pt"))
    except TinylmError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return main(["train", str(config), *overrides, *(["--resume"] if resume else [])])


if __name__ == "__main__":
    sys.exit(train(sys.argv[1:]))
