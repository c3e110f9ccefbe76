"""Evaluating weights other than the ones being trained (snapshots, averages, slow weights)."""
from __future__ import annotations

from contextlib import contextmanager

import torch


@contextmanager
def weights_swapped(params: list[torch.Tensor], others: list[torch.Tensor]):
    """Temporarily load ``others`` into ``params`` (in place), restoring them afterwards."""
    saved = [p.detach().clone() for p in params]
    with torch.no_grad():
        for p, o in zip(params, others):
            p.copy_(o)
    try:
        yield
    finally:
        with torch.no_grad():
            for p, s in zip(params, saved):
                p.copy_(s)


def state_swapped(optimizer: torch.optim.Optimizer, key: str):
    """:func:`weights_swapped` with ``optimizer.state[p][key]`` for every parameter that has it."""
    params = [p for group in optimizer.param_groups for p in group["params"] if key in optimizer.state.get(p, {})]
    return weights_swapped(params, [optimizer.state[p][key] for p in params])
