"""Command line: ``python -m helpers data`` (check/install the data), ``python -m helpers sweep ...``."""
from __future__ import annotations

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
