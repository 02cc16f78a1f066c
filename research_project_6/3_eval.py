"""Stage 3: score every run's best checkpoint on every suite into runs/<config>/eval/<run>/.

    python 3_eval.py [smoke|cpu|paper] [--run NAME ...]

An interrupted evaluation continues where it stopped.
"""

import sys
from pathlib import Path

from tinylm.studies.experiment import stage_main

if __name__ == "__main__":
    sys.exit(stage_main("eval", Path(__file__).resolve().parent, sys.argv[1:]))
