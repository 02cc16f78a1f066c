"""Every stage of this project in order, each as its own process: data, train, eval, report.

    python run_all.py [smoke|cpu|paper]     # default: cpu
"""

import sys
from pathlib import Path

from tinylm.studies.experiment import run_all

if __name__ == "__main__":
    sys.exit(run_all(Path(__file__).resolve().parent, sys.argv[1:]))
