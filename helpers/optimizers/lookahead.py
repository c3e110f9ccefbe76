"""Lookahead (Zhang, Lucas, Hinton & Ba 2019, "Lookahead Optimizer: k steps forward, 1 step back").

Slow weights phi and fast weights theta (the model's parameters). The inner optimizer A takes
``k`` steps on theta from theta_0 = phi; then::

    phi   <- phi + alpha (theta_k - phi)
    theta <- phi

The paper's output, and the weights :meth:`Lookahead.evaluation_weights` evaluates, is phi
(equal to theta right after each synchronisation). The inner optimizer's state is kept across
synchronisations ("maintain" in the paper). ``param_groups`` and ``state`` are the inner
optimizer's own objects, so an engine that sets ``group["lr"]`` schedules the inner steps and
per-entry state masking (sparse scenario) reaches the momentum buffers and phi alike.
"""
from __future__ import annotations

import torch
from torch.optim import Optimizer

from .registry import OptimizerSpec
from .swap import state_swapped

SLOW = "lookahead_slow"


class Lookahead(Optimizer):
    """Wrap ``optimizer``: every ``k`` of its steps, pull slow weights ``alpha`` of the way."""

    def __init__(self, optimizer: Optimizer, k: int = 5, alpha: float = 0.5):
        if not (isinstance(k, int) and k >= 1):
            raise ValueError(f"Invalid lookahead steps k: {k}")
        if not 0.0 <= alpha <= 1.0:
            raise ValueError(f"Invalid slow step size alpha: {alpha}")
        self.optimizer = optimizer
        super().__init__(optimizer.param_groups, {"k": k, "alpha": alpha, "lookahead_step": 0})
        self.param_groups = optimizer.param_groups
        self.state = optimizer.state

    @torch.no_grad()
    def step(self, closure=None):
        starts = [(p, p.detach().clone()) for group in self.param_groups for p in group["params"]
                  if SLOW not in self.state.get(p, {})]
        if closure is None:
            loss = self.optimizer.step()
        else:
            with torch.enable_grad():
                loss = self.optimizer.step(closure)
        for p, start in starts:
            if p.grad is not None:  # stored after the inner step: torch optimizers init empty state
                self.state[p][SLOW] = start
        for group in self.param_groups:
            group["lookahead_step"] += 1
            if group["lookahead_step"] % group["k"]:
                continue
            for p in group["params"]:
                slow = self.state.get(p, {}).get(SLOW)
                if slow is not None:
                    slow.lerp_(p, group["alpha"])
                    p.copy_(slow)
        return loss

    def evaluation_weights(self):
        """Within the block the parameters hold the slow weights phi; the fast weights afterwards."""
        return state_swapped(self, SLOW)


def _lookahead_adam(model, lr, betas, eps, weight_decay, k, alpha):
    inner = torch.optim.Adam(model.parameters(), lr=lr, betas=betas, eps=eps,
                             weight_decay=weight_decay)
    return Lookahead(inner, k=k, alpha=alpha)


def _lookahead_sgd(model, lr, momentum, weight_decay, k, alpha):
    inner = torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum, nesterov=True,
                            weight_decay=weight_decay)
    return Lookahead(inner, k=k, alpha=alpha)


SPECS = [
    OptimizerSpec("lookahead_adam", "momentum", _lookahead_adam,
                  {"lr": 1e-3, "betas": (0.9, 0.999), "eps": 1e-8, "weight_decay": 0.0, "k": 5,
                   "alpha": 0.5},
                  {"lr": (1e-4, 3e-2, "log"), "alpha": [0.5, 0.8], "k": [5, 10]},
                  "Lookahead around Adam (L2 coupled): k fast steps, slow <- slow + alpha (fast - slow)"),
    OptimizerSpec("lookahead_sgd", "momentum", _lookahead_sgd,
                  {"lr": 0.05, "momentum": 0.9, "weight_decay": 0.0, "k": 5, "alpha": 0.5},
                  {"lr": (1e-4, 1.0, "log"), "alpha": [0.5, 0.8], "k": [5, 10]},
                  "Lookahead around Nesterov SGD: k fast steps, slow <- slow + alpha (fast - slow)"),
]
