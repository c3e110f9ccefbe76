"""Sparsity over the fc1+fc2 weights: projection, masks, density counting.

The constraint set is {w : ||w||_0 <= k} over the 40,800 fc1+fc2 weights together. Its
Euclidean projection keeps the k largest magnitudes and zeroes the rest (ties broken
towards the lower flat index, so the result is deterministic).
"""
from __future__ import annotations

import math

import torch

from .model import constrained_weights

STRATEGIES = ("projection",)


def check_density(density: float) -> float:
    if not (isinstance(density, (int, float)) and 0 < density <= 1):
        raise ValueError(f"density must be in (0, 1] (share of fc1+fc2 weights kept), got {density!r}")
    return float(density)


def budget(n: int, density: float) -> int:
    """Largest number of nonzeros allowed among ``n`` weights at ``density``."""
    return math.floor(check_density(density) * n + 1e-9)


def topk_mask(flat: torch.Tensor, k: int) -> torch.Tensor:
    """Boolean mask of the k largest |entries|; ties go to the lower index."""
    order = torch.sort(flat.abs(), descending=True, stable=True).indices
    mask = torch.zeros_like(flat, dtype=torch.bool)
    mask[order[:k]] = True
    return mask


@torch.no_grad()
def project_(weights: list[torch.Tensor], density: float) -> list[torch.Tensor]:
    """Project ``weights`` in place onto the set with at most ``density`` share nonzero; return masks."""
    flat = torch.cat([w.reshape(-1) for w in weights])
    mask = topk_mask(flat, budget(flat.numel(), density))
    masks = list(mask.split([w.numel() for w in weights]))
    for w, m in zip(weights, masks):
        w.mul_(m.view_as(w))
    return [m.view_as(w) for w, m in zip(weights, masks)]


def nonzero_share(weights: list[torch.Tensor]) -> float:
    return sum(int(torch.count_nonzero(w)) for w in weights) / sum(w.numel() for w in weights)


class SparsityHook:
    """Enforces the density budget after every optimizer step (projected SGD / IHT)."""

    def __init__(self, model, optimizer, density: float, total_steps: int, strategy: str = "projection"):
        if strategy not in STRATEGIES:
            raise ValueError(f"unknown sparsity strategy {strategy!r}; choose one of {STRATEGIES}")
        self.weights = constrained_weights(model)
        self.density = check_density(density)
        self.total_steps = total_steps
        self.strategy = strategy

    def after_step(self, step: int) -> None:
        project_(self.weights, self.density)
