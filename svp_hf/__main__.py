"""``python -m svp_hf``: the ``svp-hf`` command (see :mod:`svp_hf.jobs.cli`)."""

import sys

from .jobs.cli import main

if __name__ == "__main__":
    sys.exit(main())
