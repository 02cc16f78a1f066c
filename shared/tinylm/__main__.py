"""`python -m tinylm ...`: the `tinylm` command, for environments whose scripts folder is not on PATH."""

import sys

from tinylm.cli import main

sys.exit(main())
