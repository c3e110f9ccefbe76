"""Small-integer tensors for exact comparisons of conv + max-pool layers.

Every product and sum of such values is exact in float32 and float64, so two implementations of
the same layer agree bit for bit, and 2 x 2 pooling windows hold exact ties between different
input patches (a gradient routed to any but max_pool2d's first maximum changes the result).
"""
import torch


def integers(*shape, low=-2, high=3, seed=0, dtype=torch.float32) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(low, high, shape, generator=g).to(dtype)


def tied_share(conv: torch.Tensor) -> float:
    """The share of 2 x 2 windows of ``conv`` [B, C, H, W] whose maximum occurs more than once."""
    windows = conv.unfold(2, 2, 2).unfold(3, 2, 2).reshape(-1, 4)
    return float((windows == windows.max(1, keepdim=True).values).sum(1).gt(1).float().mean())
