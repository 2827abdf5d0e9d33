"""``python -m svp_hf``: the ``svp-hf`` command (see :mod:`svp_hf.cli`)."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
