"""Learning-rate schedules as multipliers of the base rate, given training progress t in [0, 1]."""
from __future__ import annotations

import math

SCHEDULES = ("constant", "step", "cosine", "warmup_cosine", "onecycle", "linear")


def lr_factor(name: str, t: float, warmup: float = 0.1, milestones=(0.5, 0.75), gamma: float = 0.1,
              final: float = 0.0) -> float:
    """Multiplier of the base learning rate at progress ``t`` (0 = first step, 1 = end).

    constant: 1. step: ``gamma`` per milestone passed. cosine: ``final + (1-final)(1+cos(pi t))/2``.
    warmup_cosine: linear rise (from 0.04) over the first ``warmup`` share, then cosine to ``final``.
    onecycle: linear rise to 1 over ``warmup``, then linear fall to ``final``. linear: 1 -> ``final``.
    """
    t = min(max(t, 0.0), 1.0)
    if name == "constant":
        return 1.0
    if name == "step":
        return gamma ** sum(t >= m for m in milestones)
    if name == "cosine":
        return final + (1 - final) * 0.5 * (1 + math.cos(math.pi * t))
    if name == "linear":
        return 1 - (1 - final) * t
    if name in ("warmup_cosine", "onecycle"):
        if warmup > 0 and t < warmup:
            return max(t / warmup, 0.04)
        s = (t - warmup) / max(1e-12, 1 - warmup)
        if name == "onecycle":
            return 1 - (1 - final) * s
        return final + (1 - final) * 0.5 * (1 + math.cos(math.pi * s))
    raise ValueError(f"unknown schedule {name!r}; choose one of {SCHEDULES}")


def check_schedule(name: str) -> None:
    if name not in SCHEDULES:
        raise ValueError(f"unknown schedule {name!r}; choose one of {SCHEDULES}")
