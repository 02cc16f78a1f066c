"""Stage 3: continue each prompt of the config with each decoding (greedy, top-p, beam) from every
run's best checkpoint, into runs/<config>/eval/<run>/samples.json.

    python 3_eval.py [smoke|cpu] [--run NAME ...]
"""

import sys
from pathlib import Path

from tinylm.studies.experiment import stage_main

if __name__ == "__main__":
    sys.exit(stage_main("eval", Path(__file__).resolve().parent, sys.argv[1:]))
