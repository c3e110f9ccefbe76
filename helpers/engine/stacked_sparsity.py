"""The sparse scenarios on stacked rows: :class:`helpers.constraints.sparsity.SparsityHook` for K models.

Same pruning schedule (:func:`~helpers.constraints.sparsity.pruning_schedule`), same mask
selection per row (the k largest |fc1+fc2| weights, ties to the lower index, or whole neurons
for thin scenarios), same effects: after every step the weights and every per-entry state
tensor of the rule (its ``masked_state()``) are zeroed where the mask is off; in fixed-mask
phases (gradual, finetune) gradients are masked too; evaluated weights other than the
trained ones are restricted to the current nonzero count.
"""
from __future__ import annotations

import math

import torch

from ..constraints.sparsity import pruning_schedule
from ..constraints.structured import neuron_masks
from .stacked_model import N_CONSTRAINED, constrained_views


def topk_rows(flat: torch.Tensor, k: int) -> torch.Tensor:
    """Per row, the mask of the k largest |entries| (NaN largest; ties to the lower index)."""
    n = flat.shape[1]
    if k >= n:
        return torch.ones_like(flat, dtype=torch.bool)
    if k <= 0:
        return torch.zeros_like(flat, dtype=torch.bool)
    magnitude = torch.nan_to_num(flat.abs(), nan=math.inf)
    threshold = torch.kthvalue(magnitude, n - k + 1, dim=1, keepdim=True).values
    above = magnitude > threshold
    tied = magnitude == threshold
    room = k - above.sum(1, keepdim=True)
    return above | (tied & (torch.cumsum(tied, 1) <= room))


def select_rows(flat: torch.Tensor, k: int, structured: bool = False) -> torch.Tensor:
    """``[K, N_CONSTRAINED]`` masks keeping at most ``k`` weights per row."""
    block = flat[:, :N_CONSTRAINED]
    if not structured:
        return topk_rows(block, k)
    return torch.stack([torch.cat([m.reshape(-1) for m in neuron_masks(constrained_views(row), k)])
                        for row in flat])


class StackedSparsity:
    """Enforces a sparse scenario's strategy on K stacked models (see the module docstring)."""

    def __init__(self, scenario, strategy: str, total_steps: int, **schedule_params):
        self.structured = scenario.structured
        self.schedule = pruning_schedule(strategy, N_CONSTRAINED, scenario.density, total_steps,
                                         **schedule_params)
        self.strategy = strategy
        self.masks: torch.Tensor | None = None
        self.k: int | None = None
        self.fixed = False

    @torch.no_grad()
    def after_step(self, step: int, p: torch.Tensor, state: list[torch.Tensor]) -> None:
        k = self.schedule.target(step)
        if k is not None:
            masks = select_rows(p, k, self.structured)
            if self.masks is None:
                self.masks = masks
            else:  # in place: a captured step (graphed_step) reads this tensor
                self.masks.copy_(masks)
            self.k = k
            self.fixed = self.strategy != "projection"
        if self.masks is not None:
            off = ~self.masks
            for t in [p, *state]:
                t[:, :N_CONSTRAINED].masked_fill_(off, 0)

    def mask_gradient(self, g: torch.Tensor) -> torch.Tensor:
        """Gradients in fixed-mask phases live on the mask's subspace."""
        if self.fixed:
            g[:, :N_CONSTRAINED].masked_fill_(~self.masks, 0)
        return g

    @torch.no_grad()
    def restrict(self, weights: torch.Tensor) -> torch.Tensor:
        """Evaluated weights restricted to the current nonzero count (a copy)."""
        if self.k is None:
            return weights
        out = weights.clone()
        out[:, :N_CONSTRAINED].masked_fill_(~select_rows(out, self.k, self.structured), 0)
        return out
