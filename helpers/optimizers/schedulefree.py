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

The evaluated model is x (:meth:`ScheduleFreeRule.evaluation_weights`). No learning-rate
schedule is needed (run the engine with ``constant``); an engine schedule still scales ``lr``
step by step. z and x are per-entry state, so the sparse scenario's state masking applies to
them. The rules are stacked (:mod:`helpers.optimizers.stacked`); the classes users import are
thin :class:`~helpers.optimizers.stacked.StackedOptimizer` wrappers over them.
"""
from __future__ import annotations

import torch

from .registry import OptimizerSpec
from .stacked import StackedOptimizer, StackedRule, check_betas, check_eps


class ScheduleFreeRule(StackedRule):
    """The y/z/x bookkeeping shared by both; a subclass gives beta and the step on z."""
    hyperparameters = {"lr": 1.0, "weight_decay": 0.0, "warmup_steps": 0, "weight_lr_power": 2.0}
    capturable = True

    def __init__(self, hparams, p):
        super().__init__(hparams, p)
        self.wd, self.decay = self.weight_decay, self.any("weight_decay")
        self.warmup = self.column("warmup_steps", torch.float64)
        self.power = self.column("weight_lr_power", torch.float64)
        self.lr_max = self.add_counter("lr_max")
        self.weight_sum = self.add_counter("weight_sum")
        self.z = self.add_state("z", p, copy=True)
        self.x = self.add_state("x", p, copy=True)

    @classmethod
    def check(cls, h):
        super().check(h)
        if not (isinstance(h["warmup_steps"], int) and h["warmup_steps"] >= 0):
            raise ValueError(f"Invalid warmup_steps value: {h['warmup_steps']!r}")
        if not h["weight_lr_power"] >= 0.0:
            raise ValueError(f"Invalid weight_lr_power value: {h['weight_lr_power']!r}")

    def start(self, p):
        self.z.copy_(p)
        self.x.copy_(p)

    def gamma_factor(self, k: torch.Tensor) -> torch.Tensor | float:
        """Multiplies lr in gamma at 0-based step k (AdamW: the second-moment bias correction)."""
        return 1.0

    def step(self, p, g, lr, oracle=None):
        k = self.steps
        warm = torch.where(k < self.warmup, (k + 1) / self.warmup.clamp(min=1), torch.ones_like(k))
        gamma = lr * warm * self.gamma_factor(k)
        torch.maximum(self.lr_max, gamma, out=self.lr_max)
        weight = self.lr_max ** self.power
        self.weight_sum += weight
        c = torch.where(self.weight_sum > 0, weight / self.weight_sum.clamp(min=1e-300),
                        torch.ones_like(weight))
        self.steps += 1
        self.step_z(p, g, gamma.to(p.dtype))
        self.x.lerp_(self.z, c.to(p.dtype))
        p.copy_(torch.lerp(self.z, self.x, self.beta))

    def step_z(self, p, g, gamma) -> None:
        raise NotImplementedError

    def evaluation_weights(self, p):
        return self.x


class SGDScheduleFreeRule(ScheduleFreeRule):
    """z <- z - gamma (g + wd y); beta = momentum."""
    hyperparameters = {**ScheduleFreeRule.hyperparameters, "momentum": 0.9}

    def __init__(self, hparams, p):
        super().__init__(hparams, p)
        self.beta = self.column("momentum")

    @classmethod
    def check(cls, h):
        super().check(h)
        if not 0.0 <= h["momentum"] < 1.0:
            raise ValueError(f"Invalid momentum value: {h['momentum']!r}")

    def step_z(self, p, g, gamma):
        if self.decay:
            g = g + self.wd * p
        self.z.sub_(gamma * g)


class AdamWScheduleFreeRule(ScheduleFreeRule):
    """v <- b2 v + (1-b2) g^2; z <- z - gamma wd y - gamma g / (sqrt(v) + eps); gamma carries
    sqrt(1 - b2^(k+1)); beta = b1."""
    hyperparameters = {**ScheduleFreeRule.hyperparameters, "lr": 2.5e-3, "betas": (0.9, 0.999),
                       "eps": 1e-8}

    def __init__(self, hparams, p):
        super().__init__(hparams, p)
        self.beta = self.column([h["betas"][0] for h in self.hp])
        self.b2 = self.column([h["betas"][1] for h in self.hp], torch.float64)
        self.eps = self.column("eps")
        self.v = self.add_state("exp_avg_sq", p)

    @classmethod
    def check(cls, h):
        super().check(h)
        check_betas(h["betas"])
        check_eps(h["eps"])

    def gamma_factor(self, k):
        return (1 - self.b2 ** (k + 1)).sqrt()

    def step_z(self, p, g, gamma):
        b2 = self.b2.to(p.dtype)
        self.v.mul_(b2).addcmul_(g, g * (1 - b2))
        if self.decay:
            self.z.sub_(gamma * self.wd * p)
        self.z.sub_(gamma * g / (self.v.sqrt() + self.eps))


class SGDScheduleFree(StackedOptimizer):
    """Schedule-free SGD; see the module docstring for the update."""
    rule_class = SGDScheduleFreeRule

    def __init__(self, params, lr: float = 1.0, momentum: float = 0.9, weight_decay: float = 0.0,
                 warmup_steps: int = 0, weight_lr_power: float = 2.0):
        defaults = dict(lr=lr, momentum=momentum, weight_decay=weight_decay, warmup_steps=warmup_steps,
                        weight_lr_power=weight_lr_power)
        SGDScheduleFreeRule.check(defaults)
        super().__init__(params, defaults)


class AdamWScheduleFree(StackedOptimizer):
    """Schedule-free AdamW; see the module docstring for the update."""
    rule_class = AdamWScheduleFreeRule

    def __init__(self, params, lr: float = 2.5e-3, betas: tuple = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0.0, warmup_steps: int = 0, weight_lr_power: float = 2.0):
        defaults = dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay,
                        warmup_steps=warmup_steps, weight_lr_power=weight_lr_power)
        AdamWScheduleFreeRule.check(defaults)
        super().__init__(params, defaults)


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
                  elementwise=True, decays=False, rule=SGDScheduleFreeRule),
    OptimizerSpec("adamw_schedulefree", "momentum", _adamw_sf,
                  {"lr": 2.5e-3, "betas": (0.9, 0.999), "eps": 1e-8, "weight_decay": 0.0,
                   "warmup_steps": 0, "weight_lr_power": 2.0},
                  {"lr": (1e-4, 3e-2, "log"), "warmup_steps": [0, 100, 500]},
                  "schedule-free AdamW (Defazio et al. 2024), decoupled weight decay",
                  elementwise=True, decays=False, rule=AdamWScheduleFreeRule),
]
