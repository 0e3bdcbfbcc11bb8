"""``python -m syncd.emulator``: run the Hybridbox emulator (see ``--help``)."""

from __future__ import annotations

import sys

from syncd.emulator import main

if __name__ == "__main__":
    sys.exit(main())
