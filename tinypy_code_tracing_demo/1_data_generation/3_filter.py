"""Stage 3: keep the demo traces that pass the determinism filter at the spec's block size.

Run from any working directory: `python 3_filter.py [--workers N]`. Settings come from the demo
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
    sys.exit(main(["data", "filter", str(STAGES / "traces.txt"), str(STAGES / "kept.txt"), "--spec", str(DATASET), *sys.argv[1:]]))
