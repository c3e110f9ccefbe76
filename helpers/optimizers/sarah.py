"""SARAH: stochastic recursive gradient (Nguyen, Liu, Scheinberg & Takac 2017), mini-batch form.

Outer loop: at a snapshot w_0 take v_0 = grad f(w_0) (one full pass) and step
w_1 = w_0 - lr v_0. Inner loop, t >= 1, with mini-batch B_t:

    v_t = g_B(w_t) - g_B(w_{t-1}) + v_{t-1},    w_{t+1} = w_t - lr (v_t + weight_decay w_t)

(optional heavy-ball momentum on the update direction). The estimator is biased given the
past (E[v_t | past] = grad f(w_t) + (v_{t-1} - grad f(w_{t-1}))) but unbiased in total
expectation; its error accumulates over the inner loop and is reset by each snapshot. The
L2 term is deterministic, so adding it to v_t equals running the recursion on the
regularised objective.

With the training engine the first step after each snapshot is the full-gradient step: it
uses no mini-batch and returns the full-data loss. Snapshots follow SVRG's rules
(each epoch start, or every ``snapshot_every`` steps; see :mod:`.svrg`).
"""
from __future__ import annotations

import torch

from .registry import OptimizerSpec
from .svrg import SnapshotMixin, grads_of
from .swap import weights_swapped


class SARAH(SnapshotMixin, torch.optim.Optimizer):
    """SARAH with mini-batches; see the module docstring for the update rule.

    Args: ``lr``; ``momentum`` (heavy ball on the direction, 0 = none); ``weight_decay``;
    ``snapshot_every`` (0 = restart at each engine epoch start, m > 0 = every m steps).
    """

    unmasked_state = ("v", "previous")  # estimator state, kept whole under sparsity projections

    def __init__(self, params, lr: float = 0.05, momentum: float = 0.0, weight_decay: float = 0.0,
                 snapshot_every: int = 0):
        self._init_snapshots(params, lr, momentum, weight_decay, snapshot_every)
        self._fresh = False
        self._full_loss = None

    def _take_snapshot(self, params, full_grads, loss) -> None:
        for p, g in zip(params, full_grads):
            state = self.state[p]
            state["v"] = g
            state["previous"] = p.detach().clone()
        self._fresh = True
        self._full_loss = loss

    @torch.no_grad()
    def estimate(self, closure) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """(batch loss at w_t, v_t = g_B(w_t) - g_B(w_{t-1}) + v_{t-1}) without stepping."""
        params = self._params()
        with weights_swapped(params, [self.state[p]["previous"] for p in params]):
            with torch.enable_grad():
                closure()
            at_previous = grads_of(params)
        with torch.enable_grad():
            loss = closure()
        v = [g - gp + self.state[p]["v"] for p, g, gp in zip(params, grads_of(params), at_previous)]
        return loss, v

    @torch.no_grad()
    def step(self, closure=None):
        self._maybe_snapshot()
        params = self._params()
        if self._fresh:
            v = [self.state[p]["v"] for p in params]
            loss = torch.as_tensor(self._full_loss).detach().to(params[0].device)
            self._fresh = False
        else:
            if closure is None:
                raise ValueError("SARAH needs a closure that evaluates the mini-batch loss and gradient")
            loss, v = self.estimate(closure)
        estimates = dict(zip(map(id, params), v))
        for group in self.param_groups:
            for p in group["params"]:
                state = self.state[p]
                state["v"] = estimates[id(p)]
                state["previous"].copy_(p)
                self._apply(p, state["v"].clone(), group)
        self._steps_since_snapshot += 1
        return loss


def _sarah(model, **hp):
    return SARAH(model.parameters(), **hp)


SPECS = [
    OptimizerSpec("sarah", "noise_reduction", _sarah,
                  {"lr": 0.05, "momentum": 0.0, "weight_decay": 0.0, "snapshot_every": 0},
                  {"lr": (1e-3, 0.5, "log")},
                  "SARAH (Nguyen et al. 2017): v_t = g_B(w_t) - g_B(w_{t-1}) + v_{t-1}, restart per epoch"),
]
