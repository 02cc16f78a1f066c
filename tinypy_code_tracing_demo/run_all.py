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

HERE = Path(__file__).resolve().parent

DATA_STAGES = [
    "1_data_generation/1_generate.py",
    "1_data_generation/2_trace.py",
    "1_data_generation/3_filter.py",
    "1_data_generation/4_prepare.py",
]
MODEL_STAGES = ["2_model_training/train.py", "3_inference/eval.py"]


def main(argv: list[str]) -> int:
    name = argv[0] if argv else "cpu"
    config = HERE / "2_model_training" / "configs" / f"{name}.yaml"
    if len(argv) > 1 or not config.is_file():
        print(f"usage: run_all.py [CONFIG]  (CONFIG is a file name in {config.parent}, e.g. smoke or cpu)",
              file=sys.stderr)
        return 2
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
    sys.exit(main(sys.argv[1:]))
