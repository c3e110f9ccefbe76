"""Lookahead (Zhang, Lucas, Hinton & Ba 2019, "Lookahead Optimizer: k steps forward, 1 step back").

Slow weights phi and fast weights theta (the model's parameters). The inner optimizer A takes
``k`` steps on theta from theta_0 = phi; then::

    phi   <- phi + alpha (theta_k - phi)
    theta <- phi

The paper's output, and the weights :meth:`Lookahead.evaluation_weights` evaluates, is phi
(equal to theta right after each synchronisation). The inner optimizer's state is kept across
synchronisations ("maintain" in the paper); the sparse scenario's state masking reaches the
inner state and phi alike.

:func:`lookahead_rule` makes the stacked rule around any stacked inner rule (K models, each
its own k and alpha): the engine runs ``lookahead_adam`` / ``lookahead_sgd`` with it.
:class:`Lookahead`, what their factories build, wraps any torch.optim optimizer
(``param_groups`` and ``state`` are the inner optimizer's own objects).
"""
from __future__ import annotations

import torch
from torch.optim import Optimizer

from .registry import OptimizerSpec
from .rules import AdamRule, SGDRule
from .stacked import StackedRule
from .swap import state_swapped

SLOW = "lookahead_slow"


def check_lookahead(k, alpha) -> None:
    if not (isinstance(k, int) and k >= 1):
        raise ValueError(f"Invalid lookahead steps k: {k}")
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"Invalid slow step size alpha: {alpha}")


class LookaheadRule(StackedRule):
    """Every k inner steps: phi <- phi + alpha (theta - phi); theta <- phi. ``inner`` is set by
    :func:`lookahead_rule`."""
    inner: type[StackedRule]
    capturable = False  # the synchronisation test reads the device (bool(sync.any())) every step

    def __init__(self, hparams, p):
        own = {"k", "alpha"}
        super().__init__(hparams, p)
        self.fast = self.inner([{key: v for key, v in h.items() if key not in own} for h in self.hp], p)
        self.state.update(self.fast.state)
        self.k_col = self.column("k", torch.float64)
        self.alpha = self.column("alpha")
        self.slow = self.add_state(SLOW, p, copy=True)

    @classmethod
    def check(cls, h):
        cls.inner.check({key: v for key, v in h.items() if key not in ("k", "alpha")})
        check_lookahead(h["k"], h["alpha"])

    def start(self, p):
        self.fast.start(p)
        self.slow.copy_(p)

    def on_epoch_start(self, p, oracle):
        self.fast.on_epoch_start(p, oracle)

    def step(self, p, g, lr, oracle=None):
        self.fast.step(p, g, lr, oracle)
        self.steps += 1
        sync = torch.remainder(self.steps, self.k_col) == 0
        if bool(sync.any()):
            self.slow.copy_(torch.where(sync, torch.lerp(self.slow, p, self.alpha), self.slow))
            p.copy_(torch.where(sync, self.slow, p))

    def evaluation_weights(self, p):
        return self.slow

    def step_cost(self, batch_size, n):
        return self.fast.step_cost(batch_size, n)

    def epoch_cost(self, n):
        return self.fast.epoch_cost(n)

    @torch.no_grad()
    def reset(self, i):
        super().reset(i)
        self.fast.reset(i)


def lookahead_rule(inner: type[StackedRule], **defaults) -> type[LookaheadRule]:
    """The Lookahead rule around ``inner`` (``defaults`` override the inner rule's defaults)."""
    hyperparameters = {**inner.hyperparameters, **defaults, "k": 5, "alpha": 0.5}
    return type(f"Lookahead{inner.__name__}", (LookaheadRule,),
                {"inner": inner, "hyperparameters": hyperparameters, "needs": inner.needs,
                 "unmasked_state": inner.unmasked_state})


class Lookahead(Optimizer):
    """Wrap any torch.optim ``optimizer``: every ``k`` of its steps, pull slow weights ``alpha`` of the way."""

    def __init__(self, optimizer: Optimizer, k: int = 5, alpha: float = 0.5):
        check_lookahead(k, alpha)
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


LookaheadAdamRule = lookahead_rule(AdamRule)
LookaheadSGDRule = lookahead_rule(SGDRule, momentum=0.9, nesterov=True)


def _lookahead_adam(model, lr, betas, eps, weight_decay, k, alpha):
    inner = torch.optim.Adam(model.parameters(), lr=lr, betas=betas, eps=eps, weight_decay=weight_decay)
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
                  "Lookahead around Adam (L2 coupled): k fast steps, slow <- slow + alpha (fast - slow)",
                  rule=LookaheadAdamRule),
    OptimizerSpec("lookahead_sgd", "momentum", _lookahead_sgd,
                  {"lr": 0.05, "momentum": 0.9, "weight_decay": 0.0, "k": 5, "alpha": 0.5},
                  {"lr": (1e-4, 1.0, "log"), "alpha": [0.5, 0.8], "k": [5, 10]},
                  "Lookahead around Nesterov SGD: k fast steps, slow <- slow + alpha (fast - slow)",
                  rule=LookaheadSGDRule),
]
