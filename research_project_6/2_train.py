"""Stage 2: train every run of the config into runs/<config>/train/<run>/.

    python 2_train.py [smoke|cpu|paper] [--run NAME ...]

A run continues from its newest checkpoint when started again; a finished run is left as it is.
One run on several GPUs: torchrun --nproc_per_node N 2_train.py paper --run NAME
"""

import sys
from pathlib import Path

from tinylm.studies.experiment import stage_main

if __name__ == "__main__":
    sys.exit(stage_main("train", Path(__file__).resolve().parent, sys.argv[1:]))
