"""SVRG: stochastic variance-reduced gradient (Johnson & Zhang 2013), mini-batch form.

At a snapshot w~ the full gradient mu = grad f(w~) is computed once; every step then uses

    v = g_B(w) - g_B(w~) + mu  (+ weight_decay * w),    w <- w - lr v

(with optional heavy-ball momentum ``buf <- momentum buf + v; w <- w - lr buf``), where
g_B is the gradient of the same mini-batch B at the current weights and at the snapshot.
E_B[v] = grad f(w) exactly, and the variance shrinks as w approaches w~. Each step costs
two mini-batch gradients; each snapshot one full pass (the engine counts both).

Snapshots (option I of the paper, w~ = the current iterate): at every epoch start, or, with
``snapshot_every = m > 0``, every m steps. :class:`SVRGRule` is the stacked rule (K models;
engine services ``full_gradient`` and ``batch_gradient``); :class:`SVRG` its torch.optim
wrapper (call ``on_epoch_start(full_closure)`` before the first step, as the engine does).
"""
from __future__ import annotations

import torch

from .registry import OptimizerSpec
from .rule_optimizer import RuleOptimizer, flat_of, rows_of
from .stacked import StackedRule


def check_nonnegative(name: str, value) -> None:
    if not isinstance(value, (int, float)) or value < 0:
        raise ValueError(f"Invalid {name} value: {value!r}")


def check_lr(lr) -> None:
    if not isinstance(lr, (int, float)) or lr <= 0:
        raise ValueError(f"Invalid learning rate: {lr!r}")


def shared(hp: list[dict], key: str):
    """The value of ``key`` every model must share (it sets the run's oracle schedule)."""
    values = {h[key] for h in hp}
    if len(values) != 1:
        raise ValueError(f"{key} must be the same for all models of a stacked run, got {sorted(values)}")
    return values.pop()


class SnapshotRule(StackedRule):
    """Shared by SVRG and SARAH: the snapshot schedule, and the step from an estimate v:
    d = v + wd w; buf <- momentum buf + d (buf_0 = d_0); w <- w - lr buf."""
    hyperparameters = {"lr": 0.05, "momentum": 0.0, "weight_decay": 0.0, "snapshot_every": 0}
    shared_hyperparameters = ("snapshot_every",)
    needs = frozenset({"full_gradient", "batch_gradient"})

    def __init__(self, hparams, p):
        super().__init__(hparams, p)
        self.every = shared(self.hp, *self.shared_hyperparameters)
        self.mu_col, self.wd = self.column("momentum"), self.weight_decay
        self.decay = self.any("weight_decay")
        self.buf = self.add_state("momentum_buffer", p) if self.any("momentum") else None
        self.since: int | None = None

    @classmethod
    def check(cls, h):
        check_lr(h["lr"])
        check_nonnegative("momentum", h["momentum"])
        if h["momentum"] >= 1:
            raise ValueError(f"Invalid momentum value: {h['momentum']!r} (must be < 1)")
        check_nonnegative("weight_decay", h["weight_decay"])
        if not isinstance(h["snapshot_every"], int) or h["snapshot_every"] < 0:
            raise ValueError(f"Invalid snapshot_every value: {h['snapshot_every']!r} (0 = every epoch)")

    def epoch_due(self) -> bool:
        return self.every == 0 or self.since is None

    def step_due(self) -> bool:
        if self.since is None:
            raise RuntimeError(f"{type(self).__name__} has no snapshot yet: call on_epoch_start first "
                               "(the training engine does it)")
        return bool(self.every) and self.since >= self.every

    def on_epoch_start(self, p, oracle):
        if self.epoch_due():
            self.snapshot(p, oracle)

    def snapshot(self, p, oracle) -> None:
        self.take_snapshot(p, oracle.full_gradient(p))
        self.since = 0

    def take_snapshot(self, p, full_gradient) -> None:
        raise NotImplementedError

    def epoch_cost(self, n):
        return n if self.epoch_due() else 0

    def move(self, p, v, lr) -> None:
        d = v + self.wd * p if self.decay else v
        if self.buf is not None:
            d = self.buf.mul_(self.mu_col).add_(d)
        p.sub_(lr.to(p.dtype) * d)
        self.since += 1
        self.steps += 1


class SVRGRule(SnapshotRule):
    """SVRG over K models; see the module docstring."""
    unmasked_state = ("snapshot", "mu")  # the estimator's anchor, kept whole under sparsity projections

    def __init__(self, hparams, p):
        super().__init__(hparams, p)
        self.anchor = self.add_state("snapshot", p, copy=True)
        self.mu = self.add_state("mu", p)

    def take_snapshot(self, p, full_gradient):
        self.anchor.copy_(p)
        self.mu.copy_(full_gradient)

    def estimate(self, p, g, oracle) -> torch.Tensor:
        """v = g_B(w) - g_B(w~) + mu (no weight decay)."""
        return g - oracle.batch_gradient(self.anchor) + self.mu

    def step(self, p, g, lr, oracle=None):
        if self.step_due():
            self.snapshot(p, oracle)
        self.move(p, self.estimate(p, g, oracle), lr)

    def step_cost(self, batch_size, n):
        return 2 * batch_size + (n if self.step_due() else 0)


class SnapshotOptimizer(RuleOptimizer):
    """torch.optim wrapper of a :class:`SnapshotRule`.

    Args: ``lr``; ``momentum`` (heavy ball on the direction, 0 = none); ``weight_decay`` (L2
    added to the direction); ``snapshot_every`` (0 = snapshot at each ``on_epoch_start``,
    m > 0 = every m steps).
    """

    def __init__(self, params, lr: float = 0.05, momentum: float = 0.0, weight_decay: float = 0.0,
                 snapshot_every: int = 0):
        super().__init__(params, dict(lr=lr, momentum=momentum, weight_decay=weight_decay,
                                      snapshot_every=snapshot_every))

    @torch.no_grad()
    def estimate(self, closure) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """(batch loss at w, the estimate v per parameter) without stepping; two closure calls."""
        rule, oracle = self._rule(), self._oracle(closure)
        rule.step_due()  # raises before the first snapshot
        loss, g = oracle.gradient(closure)
        v = rule.estimate(flat_of(self._params()), g, oracle)
        return loss, [t.clone() for t in rows_of(v, self._params())]


class SVRG(SnapshotOptimizer):
    """SVRG with mini-batches (torch.optim wrapper of :class:`SVRGRule`)."""
    rule_class = SVRGRule


def _svrg(model, **hp):
    return SVRG(model.parameters(), **hp)


SPECS = [
    OptimizerSpec("svrg", "noise_reduction", _svrg,
                  {"lr": 0.05, "momentum": 0.0, "weight_decay": 0.0, "snapshot_every": 0},
                  {"lr": (1e-3, 0.5, "log")},
                  "SVRG (Johnson & Zhang 2013): v = g_B(w) - g_B(w~) + grad f(w~), snapshot per epoch",
                  rule=SVRGRule),
]
