"""Stage 4: loss and perplexity at every evaluation, and the samples, into results/<config>/.

    python 4_report.py [smoke|cpu]
"""

import sys
from pathlib import Path

from tinylm.studies.experiment import stage_main

if __name__ == "__main__":
    sys.exit(stage_main("report", Path(__file__).resolve().parent, sys.argv[1:]))
