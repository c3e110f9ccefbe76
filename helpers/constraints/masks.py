"""Magnitude masks and budgets over a set of weights: the projection onto {w : ||w||_0 <= k}."""
from __future__ import annotations

import math

import torch


def check_density(density: float) -> float:
    if isinstance(density, bool) or not (isinstance(density, (int, float)) and 0 < density <= 1):
        raise ValueError(f"density must be a number in (0, 1] (the share of fc1+fc2 weights "
                         f"allowed nonzero, e.g. 0.6 for 60%), got {density!r}")
    return float(density)


def budget(n: int, density: float) -> int:
    """Largest number of nonzeros allowed among ``n`` weights at ``density``."""
    return math.floor(check_density(density) * n + 1e-9)


def topk_mask(flat: torch.Tensor, k: int) -> torch.Tensor:
    """Boolean mask of the k largest |entries| (NaN counts as largest); ties go to the lower index.

    O(n): the k-th largest magnitude by selection, then the first tied entries by index.
    """
    n = flat.numel()
    if k >= n:
        return torch.ones_like(flat, dtype=torch.bool)
    if k <= 0:
        return torch.zeros_like(flat, dtype=torch.bool)
    magnitude = torch.nan_to_num(flat.detach().abs(), nan=math.inf)
    threshold = torch.kthvalue(magnitude, n - k + 1).values
    above = magnitude > threshold
    tied = magnitude == threshold
    room = k - above.sum()
    return above | (tied & (torch.cumsum(tied, 0) <= room))


def split_mask(mask: torch.Tensor, weights: list[torch.Tensor]) -> list[torch.Tensor]:
    return [m.view_as(w) for m, w in zip(mask.split([w.numel() for w in weights]), weights)]


def topk_masks(weights: list[torch.Tensor], k: int) -> list[torch.Tensor]:
    """The k largest magnitudes over all ``weights`` together, as one mask per tensor."""
    return split_mask(topk_mask(torch.cat([w.detach().reshape(-1) for w in weights]), k), weights)
