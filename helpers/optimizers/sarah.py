"""SARAH: stochastic recursive gradient (Nguyen, Liu, Scheinberg & Takac 2017), mini-batch form.

Outer loop: at a snapshot w_0 take v_0 = grad f(w_0) (one full pass) and step
w_1 = w_0 - lr v_0. Inner loop, t >= 1, with mini-batch B_t:

    v_t = g_B(w_t) - g_B(w_{t-1}) + v_{t-1},    w_{t+1} = w_t - lr (v_t + weight_decay w_t)

(optional heavy-ball momentum on the update direction, its buffer kept across restarts). The
estimator is biased given the past (E[v_t | past] = grad f(w_t) + (v_{t-1} - grad f(w_{t-1})))
but unbiased in total expectation; its error accumulates over the inner loop and is reset by
each snapshot. The L2 term is deterministic, so adding it to v_t equals running the recursion
on the regularised objective.

The first step after each snapshot is the full-gradient step: it uses no mini-batch
(``uses_gradient`` is False; the wrapper then calls no closure and returns the full-data loss).
Snapshots follow SVRG's rules (each epoch start, or every ``snapshot_every`` steps; see
:mod:`.svrg`). :class:`SARAHRule` is the stacked rule, :class:`SARAH` its torch.optim wrapper.
"""
from __future__ import annotations

from .registry import OptimizerSpec
from .svrg import SnapshotOptimizer, SnapshotRule


class SARAHRule(SnapshotRule):
    """SARAH over K models; see the module docstring."""
    unmasked_state = ("v", "previous")  # the recursion's state, kept whole under sparsity projections

    def __init__(self, hparams, p):
        super().__init__(hparams, p)
        self.v = self.add_state("v", p)
        self.previous = self.add_state("previous", p, copy=True)
        self.fresh = False

    def take_snapshot(self, p, full_gradient):
        self.v.copy_(full_gradient)
        self.fresh = True

    @property
    def uses_gradient(self) -> bool:
        """Whether the next step reads the batch gradient (not the step right after a snapshot)."""
        return not (self.fresh or self.step_due())

    def estimate(self, p, g, oracle):
        """v_t = g_B(w_t) - g_B(w_{t-1}) + v_{t-1}."""
        return g - oracle.batch_gradient(self.previous) + self.v

    def step(self, p, g, lr, oracle=None):
        if self.step_due():
            self.snapshot(p, oracle)
        if self.fresh:
            self.fresh = False
        else:
            self.v.copy_(self.estimate(p, g, oracle))
        self.previous.copy_(p)
        self.move(p, self.v, lr)

    def step_cost(self, batch_size, n):
        return n if self.step_due() else 0 if self.fresh else 2 * batch_size


class SARAH(SnapshotOptimizer):
    """SARAH with mini-batches (torch.optim wrapper of :class:`SARAHRule`)."""
    rule_class = SARAHRule


def _sarah(model, **hp):
    return SARAH(model.parameters(), **hp)


SPECS = [
    OptimizerSpec("sarah", "noise_reduction", _sarah,
                  {"lr": 0.05, "momentum": 0.0, "weight_decay": 0.0, "snapshot_every": 0},
                  {"lr": (1e-3, 0.5, "log")},
                  "SARAH (Nguyen et al. 2017): v_t = g_B(w_t) - g_B(w_{t-1}) + v_{t-1}, restart per epoch",
                  rule=SARAHRule),
]
