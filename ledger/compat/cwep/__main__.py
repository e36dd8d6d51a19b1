"""``python -m ledger.compat.cwep``: the ``cwep`` command line."""

import sys

from .cli import main

sys.exit(main())
