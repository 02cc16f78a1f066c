"""Stage 4: the tables and plots of the config, into results/<config>/.

    python 4_report.py [smoke|cpu|paper]
"""

import sys
from pathlib import Path

from tinylm.studies.experiment import stage_main

if __name__ == "__main__":
    sys.exit(stage_main("report", Path(__file__).resolve().parent, sys.argv[1:]))
