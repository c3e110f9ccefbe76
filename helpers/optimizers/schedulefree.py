"""Schedule-free SGD and AdamW (Defazio et al. 2024, "The Road Less Scheduled", arXiv:2405.15682).

Three sequences per parameter: the base iterate z, the average x, and y where gradients are
taken (the model holds y while training)::

    y_t     = (1 - beta) z_t + beta x_t
    z_{t+1} = z_t - gamma_t d_t
    x_{t+1} = (1 - c_{t+1}) x_t + c_{t+1} z_{t+1},   c_{t+1} = w_t / sum_{i<=t} w_i

with gamma_t = lr * min(1, (t+1)/warmup_steps), w_t = (max_{i<=t} gamma_i)^weight_lr_power
(so warm-up steps count less in the average), and

* SGD: d_t = g(y_t) + wd * y_t (L2 coupled, as torch.optim.SGD).
* AdamW: v_t = beta2 v_{t-1} + (1 - beta2) g^2, gamma_t additionally times sqrt(1 - beta2^(t+1)),
  d_t = g / (sqrt(v_t) + eps) + wd * y_t (decoupled: the decay is not divided by sqrt(v)).

The evaluated model is x: :meth:`evaluation_weights` swaps x into the parameters and puts y
back afterwards. No learning-rate schedule is needed (run the engine with ``constant``); an
engine schedule still scales ``lr`` step by step. z and x live in ``self.state[p]`` shaped like
p, so the sparse scenario's state masking applies to them.
"""
from __future__ import annotations

import math

import torch
from torch.optim import Optimizer

from .registry import OptimizerSpec
from .swap import state_swapped


class _ScheduleFree(Optimizer):
    """The y/z/x bookkeeping shared by both; a subclass gives beta, gamma's extra factor and the
    base method's step on z."""

    def __init__(self, params, defaults: dict):
        lr, wd, warmup = defaults["lr"], defaults["weight_decay"], defaults["warmup_steps"]
        if not lr >= 0.0:
            raise ValueError(f"Invalid learning rate: {lr}")
        if not wd >= 0.0:
            raise ValueError(f"Invalid weight_decay value: {wd}")
        if not (isinstance(warmup, int) and warmup >= 0):
            raise ValueError(f"Invalid warmup_steps value: {warmup}")
        if not defaults["weight_lr_power"] >= 0.0:
            raise ValueError(f"Invalid weight_lr_power value: {defaults['weight_lr_power']}")
        super().__init__(params, {**defaults, "k": 0, "lr_max": 0.0, "weight_sum": 0.0})

    def _schedule(self, group: dict, extra: float = 1.0) -> tuple[float, float]:
        """This step's gamma and averaging coefficient c; advances the group's counters."""
        k = group["k"]
        warm = (k + 1) / group["warmup_steps"] if k < group["warmup_steps"] else 1.0
        gamma = group["lr"] * warm * extra
        group["lr_max"] = max(group["lr_max"], gamma)
        weight = group["lr_max"] ** group["weight_lr_power"]
        group["weight_sum"] += weight
        group["k"] = k + 1
        c = weight / group["weight_sum"] if group["weight_sum"] > 0 else 1.0
        return gamma, c

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            gamma, c = self._schedule(group, self._gamma_factor(group))
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if not state:
                    state["z"], state["x"] = p.detach().clone(), p.detach().clone()
                self._step_z(p, state, group, gamma)
                self._move(p, state, self._beta(group), c)
        return loss

    def _gamma_factor(self, group: dict) -> float:
        """Multiplies lr in gamma (AdamW: the second-moment bias correction)."""
        return 1.0

    def _beta(self, group: dict) -> float:
        raise NotImplementedError

    def _step_z(self, p: torch.Tensor, state: dict, group: dict, gamma: float) -> None:
        """The base method's step on z with step size gamma (the gradient is at y = p)."""
        raise NotImplementedError

    @staticmethod
    def _move(p: torch.Tensor, state: dict, beta: float, c: float) -> None:
        """x <- (1-c) x + c z; p <- y = (1-beta) z + beta x."""
        x, z = state["x"], state["z"]
        x.lerp_(z, c)
        p.copy_(torch.lerp(z, x, beta))

    def evaluation_weights(self):
        """Within the block the parameters hold x (the weights to evaluate); y afterwards."""
        return state_swapped(self, "x")


class SGDScheduleFree(_ScheduleFree):
    """Schedule-free SGD; see the module docstring for the update."""

    def __init__(self, params, lr: float = 1.0, momentum: float = 0.9, weight_decay: float = 0.0,
                 warmup_steps: int = 0, weight_lr_power: float = 2.0):
        if not 0.0 <= momentum < 1.0:
            raise ValueError(f"Invalid momentum value: {momentum}")
        super().__init__(params, dict(lr=lr, momentum=momentum, weight_decay=weight_decay,
                                      warmup_steps=warmup_steps, weight_lr_power=weight_lr_power))

    def _beta(self, group: dict) -> float:
        return group["momentum"]

    def _step_z(self, p, state, group, gamma) -> None:
        d = p.grad.add(p, alpha=group["weight_decay"]) if group["weight_decay"] else p.grad
        state["z"].add_(d, alpha=-gamma)


class AdamWScheduleFree(_ScheduleFree):
    """Schedule-free AdamW; see the module docstring for the update."""

    def __init__(self, params, lr: float = 2.5e-3, betas: tuple = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0.0, warmup_steps: int = 0, weight_lr_power: float = 2.0):
        if not (0.0 <= betas[0] < 1.0 and 0.0 <= betas[1] < 1.0):
            raise ValueError(f"Invalid betas: {betas}")
        if not eps >= 0.0:
            raise ValueError(f"Invalid epsilon value: {eps}")
        super().__init__(params, dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay,
                                      warmup_steps=warmup_steps, weight_lr_power=weight_lr_power))

    def _gamma_factor(self, group: dict) -> float:
        return math.sqrt(1 - group["betas"][1] ** (group["k"] + 1))

    def _beta(self, group: dict) -> float:
        return group["betas"][0]

    def _step_z(self, p, state, group, gamma) -> None:
        if "exp_avg_sq" not in state:
            state["exp_avg_sq"] = torch.zeros_like(p)
        v, z = state["exp_avg_sq"], state["z"]
        v.mul_(group["betas"][1]).addcmul_(p.grad, p.grad, value=1 - group["betas"][1])
        if group["weight_decay"]:
            z.add_(p, alpha=-gamma * group["weight_decay"])
        z.addcdiv_(p.grad, v.sqrt().add_(group["eps"]), value=-gamma)


def _sgd_sf(model, **hp):
    return SGDScheduleFree(model.parameters(), **hp)


def _adamw_sf(model, **hp):
    return AdamWScheduleFree(model.parameters(), **hp)


SPECS = [
    OptimizerSpec("sgd_schedulefree", "momentum", _sgd_sf,
                  {"lr": 1.0, "momentum": 0.9, "weight_decay": 0.0, "warmup_steps": 0,
                   "weight_lr_power": 2.0},
                  {"lr": (1e-2, 3.0, "log"), "warmup_steps": [0, 100, 500]},
                  "schedule-free SGD (Defazio et al. 2024): gradients at y, SGD on z, evaluate x",
                  elementwise=True, decays=False),
    OptimizerSpec("adamw_schedulefree", "momentum", _adamw_sf,
                  {"lr": 2.5e-3, "betas": (0.9, 0.999), "eps": 1e-8, "weight_decay": 0.0,
                   "warmup_steps": 0, "weight_lr_power": 2.0},
                  {"lr": (1e-4, 3e-2, "log"), "warmup_steps": [0, 100, 500]},
                  "schedule-free AdamW (Defazio et al. 2024), decoupled weight decay",
                  elementwise=True, decays=False),
]
