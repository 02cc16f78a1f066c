"""Run the whole TinyPy code-tracing demo, stage by stage, from any working directory.

    python run_all.py          # the CPU-sized config, configs/cpu.yaml
    python run_all.py smoke    # the seconds-long config the tests use

generate -> trace -> filter -> prepare -> train -> evaluate. Each stage is the numbered script
of its folder, run as its own process exactly as a user would run it; the first failure stops
the chain with that stage's exit status. The data stages read `datasets/demo/dataset.yaml`; the
config name picks `2_model_training/configs/NAME.yaml` for training and evaluation.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from tinylm.base.args import ArgumentParser, run_command

HERE = Path(__file__).resolve().parent

DATA_STAGES = [
    "1_data_generation/1_generate.py",
    "1_data_generation/2_trace.py",
    "1_data_generation/3_filter.py",
    "1_data_generation/4_prepare.py",
]
MODEL_STAGES = ["2_model_training/train.py", "3_inference/eval.py"]


def main(argv: list[str]) -> int:
    configs = HERE / "2_model_training" / "configs"
    ap = ArgumentParser(prog="run_all.py", description=__doc__.splitlines()[0])
    ap.add_argument("config", nargs="?", default="cpu", help=f"a config name in {configs} (default: cpu)")
    config = configs / f"{ap.parse_args(argv).config}.yaml"
    if not config.is_file():
        ap.error(f"no config {config.stem!r} (choose from {', '.join(sorted(p.stem for p in configs.glob('*.yaml')))})")
    start = time.time()
    runs = [(stage, []) for stage in DATA_STAGES] + [(stage, [str(config)]) for stage in MODEL_STAGES]
    for stage, args in runs:
        print(f"\n=== {stage} ===", flush=True)
        status = subprocess.call([sys.executable, str(HERE / stage), *args])
        if status != 0:
            print(f"stage {stage} failed with exit status {status}", file=sys.stderr)
            return status
    print(f"\ndemo finished in {(time.time() - start) / 60:.1f} min")
    return 0


if __name__ == "__main__":
    sys.exit(run_command(main, sys.argv[1:]))
