"""Stage 2: trace the demo programs (demo format: values capped at +-10, failing programs dropped).

Run from any working directory: `python 2_trace.py [--workers N]`. Settings come from the demo
dataset's committed spec, `datasets/demo/dataset.yaml`; intermediate files go to the git-ignored
`datasets/demo/stages/`.
"""

from __future__ import annotations

import sys
from pathlib import Path

from tinylm.cli import main

DATASET = Path(__file__).resolve().parents[2] / "datasets" / "demo"
STAGES = DATASET / "stages"

if __name__ == "__main__":
    sys.exit(main(["data", "trace", str(STAGES / "programs.txt"), str(STAGES / "traces.txt"), "--spec", str(DATASET), *sys.argv[1:]]))
