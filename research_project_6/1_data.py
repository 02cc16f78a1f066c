"""Stage 1: build the datasets this project's config names (shared ones under datasets/).

    python 1_data.py [smoke|cpu|paper] [--workers N]

Run from any working directory; a finished build is not redone, a killed one resumes.
"""

import sys
from pathlib import Path

from tinylm.studies.experiment import stage_main

if __name__ == "__main__":
    sys.exit(stage_main("data", Path(__file__).resolve().parent, sys.argv[1:]))
