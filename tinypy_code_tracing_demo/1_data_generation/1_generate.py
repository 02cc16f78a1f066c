"""Stage 1: generate the demo dataset's programs (its main stream, seed and size from the spec).

Run from any working directory: `python 1_generate.py [--workers N]`. Settings come from the demo
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
    sys.exit(main(["data", "generate", str(DATASET), str(STAGES / "programs.txt"), *sys.argv[1:]]))
