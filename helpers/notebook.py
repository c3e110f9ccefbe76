"""The first cell of a family notebook: its parameters checked early, device and display set."""
from __future__ import annotations

import os

import pandas as pd

from .optimizers import get_spec
from .constraints.scenarios import get_scenario


def prepare(scenario: str, members, reference: str = "", device: str | None = None) -> list[str]:
    """Raise at once on an unknown scenario or optimizer (the error names the valid ones), select
    ``device`` for the runs (``FMNIST_DEVICE``) and set pandas' display; return the methods the
    notebook runs: ``reference`` (if any) then ``members``."""
    if device:
        os.environ["FMNIST_DEVICE"] = device
    pd.set_option("display.width", 160, "display.max_columns", 20, "display.precision", 4)
    get_scenario(scenario)
    methods = [m for m in [reference, *members] if m]
    for m in methods:
        get_spec(m)
    return methods
