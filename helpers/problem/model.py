"""LeNet-5 as the assignment's starter defines it (never changed) and its constrained groups."""
from __future__ import annotations

import torch
from torch import nn

CONSTRAINED_LAYERS = ("fc1", "fc2")
N_PARAMETERS = 44_426
N_CONSTRAINED_WEIGHTS = 30_720 + 10_080


class LeNet5(nn.Module):
    """conv1 1->6 5x5, ReLU, maxpool 2; conv2 6->16 5x5, ReLU, maxpool 2; fc 256->120->84->10."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 6, 5)
        self.conv2 = nn.Conv2d(6, 16, 5)
        self.fc1 = nn.Linear(16 * 4 * 4, 120)
        self.fc2 = nn.Linear(120, 84)
        self.fc3 = nn.Linear(84, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.max_pool2d(torch.relu(self.conv1(x)), 2)
        x = torch.max_pool2d(torch.relu(self.conv2(x)), 2)
        x = torch.flatten(x, 1)
        x = torch.relu(self.fc1(x))
        x = torch.relu(self.fc2(x))
        return self.fc3(x)


def constrained_weights(model: nn.Module) -> list[torch.Tensor]:
    """The fc1 and fc2 weight matrices that the sparsity scenarios constrain (biases excluded)."""
    return [getattr(model, name).weight for name in CONSTRAINED_LAYERS]


def constrained_names() -> list[str]:
    return [f"{name}.weight" for name in CONSTRAINED_LAYERS]


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def density(model: nn.Module) -> float:
    """Share of nonzero entries among the 40,800 fc1+fc2 weights."""
    weights = constrained_weights(model)
    nonzero = sum(int(torch.count_nonzero(w)) for w in weights)
    return nonzero / sum(w.numel() for w in weights)
