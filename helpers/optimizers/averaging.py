"""Iterate averaging on top of SGD with heavy-ball momentum: the model trains on the SGD
iterates w_t, and is evaluated on an average of them.

- ``polyak`` (Polyak & Juditsky 1992; Ruppert 1988): uniform average of every iterate from
  ``start_epoch`` on, w_bar <- w_bar + (w_t - w_bar) / n.
- ``ema``: exponential moving average from ``start_epoch`` on,
  w_bar <- ema_decay w_bar + (1 - ema_decay) w_t (started at the first averaged iterate).
- ``swa`` (Izmailov et al. 2018): uniform average of every ``swa_every``-th iterate from
  ``start_epoch`` on (LeNet-5 has no batch norm, so no statistics need recomputing).

The step itself is torch.optim.SGD's (``v <- momentum v + g + weight_decay w``,
``w <- w - lr v``). An iterate enters the average when the next step starts or when
``evaluation_weights()`` is entered, i.e. after any per-step projection (sparse
scenarios) has acted on it; the sparse scenario's state masking leaves the average alone, so
it is the average of the projected iterates. Under ``evaluation_weights()`` the model holds the average,
zeroed wherever the live weights are exactly zero, so an evaluated model is never denser
than the trained one; before the first averaged iterate it holds the live weights.
Progress in epochs (steps this epoch / its batches) comes from the epoch starts and the
oracle's ``n_batches`` (the wrapper's hooks ``on_epoch_start``, whose closure is never
evaluated, and ``on_batch``; outside the engine, call them to use ``start_epoch > 0``).
:class:`AveragingRule` is the stacked rule (K models, each its own average and
hyperparameters); :class:`AveragedSGD` its torch.optim wrapper.
"""
from __future__ import annotations

import torch

from .registry import OptimizerSpec
from .rule_optimizer import RuleOptimizer
from .rules import SGDRule
from .torch_builtin import LR

AVERAGES = ("polyak", "ema", "swa")


class AveragingRule(SGDRule):
    """torch.optim.SGD's step plus a Polyak / EMA / SWA average per model; see the module docstring."""
    hyperparameters = {**SGDRule.hyperparameters, "lr": 0.02, "momentum": 0.9, "average": "polyak",
                       "start_epoch": 0.0, "ema_decay": 0.999, "swa_every": 1}
    unmasked_state = ("average",)  # the average of the projected iterates, pruned entries included
    capturable = False  # its epoch position is a Python count, and ``pending`` is rebound each step

    def __init__(self, hparams, p):
        super().__init__(hparams, p)
        self.ema = self.column([h["average"] == "ema" for h in self.hp]).bool()
        self.swa = self.column([h["average"] == "swa" for h in self.hp]).bool()
        self.start_epoch = self.column("start_epoch", torch.float64)
        self.keep = self.column("ema_decay")
        self.every = self.column("swa_every", torch.float64)
        self.average = self.add_state("average", p)
        self.n_averaged = self.add_counter("n_averaged")
        self.eligible = self.add_counter("eligible_steps")
        self.pending = torch.zeros(self.k, 1, dtype=torch.bool, device=self.device)
        self.epochs_started, self.position = 0, 0

    @classmethod
    def check(cls, h):
        super().check(h)
        if h["average"] not in AVERAGES:
            raise ValueError(f"Invalid average {h['average']!r}; choose one of {AVERAGES}")
        if not isinstance(h["start_epoch"], (int, float)) or h["start_epoch"] < 0:
            raise ValueError(f"Invalid start_epoch value: {h['start_epoch']!r}")
        if not isinstance(h["ema_decay"], (int, float)) or not 0 <= h["ema_decay"] < 1:
            raise ValueError(f"Invalid ema_decay value: {h['ema_decay']!r} (must be in [0, 1))")
        if not isinstance(h["swa_every"], int) or h["swa_every"] < 1:
            raise ValueError(f"Invalid swa_every value: {h['swa_every']!r} (must be a positive integer)")

    def progress(self, n_batches) -> float:
        """Epochs completed after the last step (0 without epoch starts or batch counts)."""
        if not n_batches or not self.epochs_started:
            return 0.0
        return self.epochs_started - 1 + self.position / n_batches

    def fold(self, p) -> None:
        """Enter the pending iterates: w_bar <- p (first), w_bar + (1 - ema_decay)(p - w_bar) (EMA),
        w_bar + (p - w_bar) / n (Polyak, SWA)."""
        if not bool(self.pending.any()):
            return
        self.n_averaged += self.pending
        coef = torch.where(self.ema, 1 - self.keep, (1 / self.n_averaged).to(p.dtype))
        moved = torch.where(self.n_averaged == 1, p, self.average + coef * (p - self.average))
        self.average.copy_(torch.where(self.pending, moved, self.average))
        self.pending.zero_()

    def on_epoch_start(self, p, oracle):
        self.fold(p)
        self.epochs_started += 1
        self.position = 0

    def step(self, p, g, lr, oracle=None):
        self.fold(p)
        super().step(p, g, lr, oracle)
        self.steps += 1
        self.position += 1
        now = self.progress(getattr(oracle, "n_batches", None)) >= self.start_epoch
        self.eligible += now
        self.pending = now & (~self.swa | ((self.eligible - 1) % self.every == 0))

    def evaluation_weights(self, p):
        """The average, zero where p is zero; p for models with nothing averaged yet."""
        self.fold(p)
        averaged = torch.where(p == 0, torch.zeros_like(p), self.average)
        return torch.where(self.n_averaged > 0, averaged, p)

    @torch.no_grad()
    def reset(self, i):
        super().reset(i)
        self.pending[i] = False


class AveragedSGD(RuleOptimizer):
    """SGD with momentum plus a Polyak-Ruppert / EMA / SWA iterate average for evaluation
    (torch.optim wrapper of :class:`AveragingRule`)."""
    rule_class = AveragingRule

    def __init__(self, params, lr: float = 0.02, momentum: float = 0.9, nesterov: bool = False,
                 weight_decay: float = 0.0, average: str = "polyak", start_epoch: float = 0.0,
                 ema_decay: float = 0.999, swa_every: int = 1):
        super().__init__(params, dict(lr=lr, momentum=momentum, nesterov=nesterov, weight_decay=weight_decay,
                                      average=average, start_epoch=start_epoch, ema_decay=ema_decay,
                                      swa_every=swa_every))


def _factory(average: str):
    def factory(model, **hp):
        return AveragedSGD(model.parameters(), average=average, **hp)
    return factory


def _rule(average: str):
    """The stacked rule with this spec's ``average`` fixed (the spec does not tune it)."""
    return type(f"AveragingRule_{average}", (AveragingRule,),
                {"hyperparameters": {**AveragingRule.hyperparameters, "average": average}})


BASE = {"lr": 0.02, "momentum": 0.9, "weight_decay": 0.0}
SPECS = [
    OptimizerSpec("sgd_polyak", "noise_reduction", _factory("polyak"), {**BASE, "start_epoch": 5.0},
                  {"lr": LR}, "heavy-ball SGD evaluated at the uniform (Polyak-Ruppert) average of "
                  "its iterates from start_epoch on", run_share={"start_epoch": 0.5}, version=2,
                  rule=_rule("polyak")),
    OptimizerSpec("sgd_ema", "noise_reduction", _factory("ema"),
                  {**BASE, "start_epoch": 0.0, "ema_decay": 0.999},
                  {"lr": LR, "ema_decay": [0.99, 0.999]},
                  "heavy-ball SGD evaluated at an exponential moving average of its iterates", version=2,
                  rule=_rule("ema")),
    OptimizerSpec("sgd_swa", "noise_reduction", _factory("swa"),
                  {**BASE, "start_epoch": 7.5, "swa_every": 50},
                  {"lr": LR}, "heavy-ball SGD evaluated at the SWA average of every swa_every-th "
                  "iterate from start_epoch on (Izmailov et al. 2018)", run_share={"start_epoch": 0.75},
                  version=2, rule=_rule("swa")),
]
