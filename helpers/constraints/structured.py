"""Structured sparsity: remove whole fc1/fc2 neurons, so the network becomes genuinely smaller.

A kept network has h1 of fc1's 120 neurons and h2 of fc2's 84, with h2 / h1 ~ 84 / 120; its
fc1+fc2 weights number 256 h1 + h1 h2, which must not exceed the budget k. Neurons are chosen
by group magnitude (Frobenius norm of the weights a neuron owns): fc1 neuron j scores
||fc1.weight[j, :]||^2 + ||fc2.weight[:, j]||^2, fc2 neuron i scores ||fc2.weight[i, kept]||^2
over the kept fc1 neurons; ties go to the lower index. The groups overlap, so this greedy
choice is not an exact Euclidean projection (the unstructured one in :mod:`helpers.constraints.sparsity` is).

:func:`compact_model` turns a LeNet-5 with dead neurons into the equivalent smaller dense
network (constant neurons folded into the next bias); :func:`forward_flops` counts its cost.
"""
from __future__ import annotations

import torch
from torch import nn

from ..problem.model import LeNet5
from .masks import topk_mask


def thin_widths(k: int, d_in: int = 256, m1: int = 120, m2: int = 84) -> tuple[int, int]:
    """The widest (h1, h2), h2 = round(h1 m2 / m1), whose fc1+fc2 weights d_in h1 + h1 h2 fit in k."""
    for h1 in range(m1, -1, -1):
        h2 = round(h1 * m2 / m1)
        if h1 * d_in + h1 * h2 <= k:
            return h1, h2
    return 0, 0


@torch.no_grad()
def neuron_masks(weights: list[torch.Tensor], k: int) -> list[torch.Tensor]:
    """Masks of [fc1.weight, fc2.weight] keeping whole neurons, at most ``k`` weights in all."""
    w1, w2 = (w.detach() for w in weights)
    m1, d_in = w1.shape
    m2 = w2.shape[0]
    h1, h2 = thin_widths(k, d_in, m1, m2)
    keep1 = topk_mask(w1.pow(2).sum(1) + w2.pow(2).sum(0), h1)
    keep2 = topk_mask((w2 * keep1).pow(2).sum(1), h2)
    return [keep1[:, None].expand_as(w1).clone(), keep2[:, None] & keep1[None, :]]


class ThinLeNet5(LeNet5):
    """LeNet-5 with fc1/fc2 widths h1/h2 (the compact form of a neuron-pruned LeNet-5); its forward
    pass is LeNet-5's."""

    def __init__(self, h1: int = 120, h2: int = 84) -> None:
        nn.Module.__init__(self)
        self.conv1 = nn.Conv2d(1, 6, 5)
        self.conv2 = nn.Conv2d(6, 16, 5)
        self.fc1 = nn.Linear(16 * 4 * 4, h1)
        self.fc2 = nn.Linear(h1, h2)
        self.fc3 = nn.Linear(h2, 10)


@torch.no_grad()
def compact_model(model: nn.Module) -> ThinLeNet5:
    """The smallest dense ThinLeNet5 computing the same function as ``model``.

    Drops fc2 neurons that fc3 ignores and fc1 neurons that the remaining fc2 neurons ignore;
    a neuron whose incoming weights are all zero outputs the constant relu(bias), which is
    folded into the next layer's bias before the neuron is dropped.
    """
    w1, b1 = model.fc1.weight.detach(), model.fc1.bias.detach()
    w2, b2 = model.fc2.weight.detach(), model.fc2.bias.detach().clone()
    w3, b3 = model.fc3.weight.detach(), model.fc3.bias.detach().clone()
    used2 = (w3 != 0).any(0)
    used1 = (w2[used2] != 0).any(0)
    constant1 = used1 & ~(w1 != 0).any(1)
    b2 += w2[:, constant1] @ torch.relu(b1[constant1])
    keep1 = used1 & ~constant1
    constant2 = used2 & ~(w2[:, keep1] != 0).any(1)
    b3 += w3[:, constant2] @ torch.relu(b2[constant2])
    keep2 = used2 & ~constant2
    small = ThinLeNet5(int(keep1.sum()), int(keep2.sum())).to(w1.device, w1.dtype)
    small.conv1.load_state_dict(model.conv1.state_dict())
    small.conv2.load_state_dict(model.conv2.state_dict())
    small.fc1.weight.copy_(w1[keep1])
    small.fc1.bias.copy_(b1[keep1])
    small.fc2.weight.copy_(w2[keep2][:, keep1])
    small.fc2.bias.copy_(b2[keep2])
    small.fc3.weight.copy_(w3[:, keep2])
    small.fc3.bias.copy_(b3)
    return small


def parameter_count(model: nn.Module, nonzero: bool = False) -> int:
    return sum(int(torch.count_nonzero(p)) if nonzero else p.numel() for p in model.parameters())


@torch.no_grad()
def forward_flops(model: nn.Module, sparse: bool = False, input_shape=(1, 1, 28, 28)) -> int:
    """Forward FLOPs for one image: 2 x the multiply-accumulates of the conv and linear layers.

    ``sparse`` counts only nonzero weights (what a sparse kernel would do). Biases, ReLU and
    pooling are not counted.
    """
    macs = []

    def count(module, inputs, output):
        weights = int(torch.count_nonzero(module.weight)) if sparse else module.weight.numel()
        positions = output.shape[-2] * output.shape[-1] if isinstance(module, nn.Conv2d) else 1
        macs.append(weights * positions)

    layers = [m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    handles = [m.register_forward_hook(count) for m in layers]
    try:
        parameter = next(model.parameters())
        model(torch.zeros(input_shape, device=parameter.device, dtype=parameter.dtype))
    finally:
        for h in handles:
            h.remove()
    return 2 * sum(macs)
