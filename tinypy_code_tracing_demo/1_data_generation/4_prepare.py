"""Stage 4: dedup, split and tokenize the kept traces into datasets/demo (train.bin, val.bin, test.txt,
manifest.json): the same bytes as `tinylm data build datasets/demo`.

Run from any working directory: `python 4_prepare.py [--workers N]`. Settings come from the demo
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
    sys.exit(main(["data", "prepare", str(STAGES / "kept.txt"), str(DATASET), "--spec", str(DATASET), *sys.argv[1:]]))
