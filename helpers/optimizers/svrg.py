"""SVRG: stochastic variance-reduced gradient (Johnson & Zhang 2013), mini-batch form.

At a snapshot w~ the full gradient mu = grad f(w~) is computed once; every step then uses

    v = g_B(w) - g_B(w~) + mu  (+ weight_decay * w),    w <- w - lr v

(with optional heavy-ball momentum ``buf <- momentum buf + v; w <- w - lr buf``), where
g_B is the gradient of the same mini-batch B at the current weights and at the snapshot.
E_B[v] = grad f(w) exactly, and the variance shrinks as w approaches w~. Each step costs
two mini-batch gradients; each snapshot one full pass (the engine counts both).

Snapshots (option I of the paper, w~ = the current iterate): at every engine
``on_epoch_start(full_closure)``, or, with ``snapshot_every = m > 0``, every m steps
(the full-gradient closure of the running epoch is kept and re-evaluated). Outside the
engine call :meth:`snapshot` with a full-gradient closure.
"""
from __future__ import annotations

import torch

from .registry import OptimizerSpec
from .swap import weights_swapped


def check_nonnegative(name: str, value) -> None:
    if not isinstance(value, (int, float)) or value < 0:
        raise ValueError(f"Invalid {name} value: {value!r}")


def check_lr(lr) -> None:
    if not isinstance(lr, (int, float)) or lr <= 0:
        raise ValueError(f"Invalid learning rate: {lr!r}")


def grads_of(params: list[torch.Tensor]) -> list[torch.Tensor]:
    """Copies of the parameters' gradients (zeros where a parameter received none)."""
    return [p.grad.detach().clone() if p.grad is not None else torch.zeros_like(p) for p in params]


class SnapshotMixin:
    """Shared by SVRG and SARAH: when to take a full-gradient snapshot, and the step from an estimate."""

    def _init_snapshots(self, params, lr, momentum, weight_decay, snapshot_every: int) -> None:
        """Check the arguments, set up the parameter groups and the snapshot schedule."""
        check_lr(lr)
        check_nonnegative("momentum", momentum)
        if momentum >= 1:
            raise ValueError(f"Invalid momentum value: {momentum!r} (must be < 1)")
        check_nonnegative("weight_decay", weight_decay)
        torch.optim.Optimizer.__init__(self, params, dict(lr=lr, momentum=momentum, weight_decay=weight_decay))
        if not isinstance(snapshot_every, int) or snapshot_every < 0:
            raise ValueError(f"Invalid snapshot_every value: {snapshot_every!r} (0 = every epoch)")
        self.snapshot_every = snapshot_every
        self._full_closure = None
        self._steps_since_snapshot = None

    def _params(self) -> list[torch.Tensor]:
        return [p for group in self.param_groups for p in group["params"]]

    def on_epoch_start(self, full_closure) -> None:
        """Engine hook: snapshot now (per-epoch mode or first epoch); keep the closure for every-m mode."""
        self._full_closure = full_closure
        if self.snapshot_every == 0 or self._steps_since_snapshot is None:
            self.snapshot(full_closure)

    def _maybe_snapshot(self) -> None:
        if self._steps_since_snapshot is None:
            raise RuntimeError(f"{type(self).__name__} has no snapshot yet: call snapshot(full_closure) "
                               "(the training engine does it through on_epoch_start)")
        if self.snapshot_every and self._steps_since_snapshot >= self.snapshot_every:
            self.snapshot(self._full_closure)

    def snapshot(self, full_closure) -> torch.Tensor:
        """Evaluate the full gradient at the current weights (one counted full pass) and keep it."""
        if full_closure is None:
            raise RuntimeError("a snapshot needs a full-gradient closure")
        with torch.enable_grad():
            loss = full_closure()
        params = self._params()
        self._take_snapshot(params, grads_of(params), loss)
        self._steps_since_snapshot = 0
        return loss

    def _take_snapshot(self, params, full_grads, loss) -> None:
        raise NotImplementedError

    @torch.no_grad()
    def _apply(self, p, d, group) -> None:
        """p <- p - lr * (heavy-ball buffer of) (d + weight_decay * p)."""
        if group["weight_decay"]:
            d.add_(p, alpha=group["weight_decay"])
        if group["momentum"]:
            buf = self.state[p].get("momentum_buffer")
            if buf is None:
                buf = self.state[p]["momentum_buffer"] = d.clone()
            else:
                buf.mul_(group["momentum"]).add_(d)
            d = buf
        p.add_(d, alpha=-group["lr"])


class SVRG(SnapshotMixin, torch.optim.Optimizer):
    """SVRG with mini-batches; see the module docstring for the update rule.

    Args: ``lr``; ``momentum`` (heavy ball on v, 0 = none); ``weight_decay`` (L2 added to v);
    ``snapshot_every`` (0 = snapshot at each engine epoch start, m > 0 = every m steps).
    """

    unmasked_state = ("snapshot", "mu")  # estimator state, kept whole under sparsity projections

    def __init__(self, params, lr: float = 0.05, momentum: float = 0.0, weight_decay: float = 0.0,
                 snapshot_every: int = 0):
        self._init_snapshots(params, lr, momentum, weight_decay, snapshot_every)

    def _take_snapshot(self, params, full_grads, loss) -> None:
        for p, g in zip(params, full_grads):
            state = self.state[p]
            state["snapshot"] = p.detach().clone()
            state["mu"] = g

    @torch.no_grad()
    def estimate(self, closure) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """(batch loss at w, v = g_B(w) - g_B(w~) + mu) without stepping; two closure calls."""
        params = self._params()
        with weights_swapped(params, [self.state[p]["snapshot"] for p in params]):
            with torch.enable_grad():
                closure()
            at_snapshot = grads_of(params)
        with torch.enable_grad():
            loss = closure()
        v = [g - gs + self.state[p]["mu"] for p, g, gs in zip(params, grads_of(params), at_snapshot)]
        return loss, v

    @torch.no_grad()
    def step(self, closure):
        if closure is None:
            raise ValueError("SVRG needs a closure that evaluates the mini-batch loss and gradient")
        self._maybe_snapshot()
        loss, v = self.estimate(closure)
        estimates = dict(zip(map(id, self._params()), v))
        for group in self.param_groups:
            for p in group["params"]:
                self._apply(p, estimates[id(p)], group)
        self._steps_since_snapshot += 1
        return loss


def _svrg(model, **hp):
    return SVRG(model.parameters(), **hp)


SPECS = [
    OptimizerSpec("svrg", "noise_reduction", _svrg,
                  {"lr": 0.05, "momentum": 0.0, "weight_decay": 0.0, "snapshot_every": 0},
                  {"lr": (1e-3, 0.5, "log")},
                  "SVRG (Johnson & Zhang 2013): v = g_B(w) - g_B(w~) + grad f(w~), snapshot per epoch"),
]
