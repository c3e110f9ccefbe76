import sys

from ..cli import guarded
from .protocol import main

sys.exit(guarded(main))
