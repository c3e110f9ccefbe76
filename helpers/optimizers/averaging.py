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
Progress in epochs comes from the engine hooks ``on_epoch_start`` (its full-gradient
closure is never evaluated, so it costs nothing) and ``on_batch``; outside the engine,
call them to use ``start_epoch > 0``.
"""
from __future__ import annotations

from contextlib import contextmanager

import torch

from .registry import OptimizerSpec
from .swap import weights_swapped
from .torch_builtin import LR

AVERAGES = ("polyak", "ema", "swa")


class AveragedSGD(torch.optim.SGD):
    """SGD with momentum plus a Polyak-Ruppert / EMA / SWA iterate average for evaluation."""

    unmasked_state = ("average",)  # the average of the projected iterates, pruned entries included

    def __init__(self, params, lr: float = 0.02, momentum: float = 0.9, nesterov: bool = False,
                 weight_decay: float = 0.0, average: str = "polyak", start_epoch: float = 0.0,
                 ema_decay: float = 0.999, swa_every: int = 1):
        if average not in AVERAGES:
            raise ValueError(f"Invalid average {average!r}; choose one of {AVERAGES}")
        if not isinstance(start_epoch, (int, float)) or start_epoch < 0:
            raise ValueError(f"Invalid start_epoch value: {start_epoch!r}")
        if not isinstance(ema_decay, (int, float)) or not 0 <= ema_decay < 1:
            raise ValueError(f"Invalid ema_decay value: {ema_decay!r} (must be in [0, 1))")
        if not isinstance(swa_every, int) or swa_every < 1:
            raise ValueError(f"Invalid swa_every value: {swa_every!r} (must be a positive integer)")
        super().__init__(params, lr=lr, momentum=momentum, nesterov=nesterov, weight_decay=weight_decay)
        self.average, self.start_epoch = average, float(start_epoch)
        self.ema_decay, self.swa_every = float(ema_decay), swa_every
        self.n_averaged = 0
        self._epochs_started, self._position, self._n_batches = 0, 0, None
        self._eligible_steps = 0
        self._pending = False

    def _params(self) -> list[torch.Tensor]:
        return [p for group in self.param_groups for p in group["params"]]

    def on_epoch_start(self, full_closure=None) -> None:
        """Engine hook used only to count epochs (the closure is not evaluated)."""
        self._fold()
        self._epochs_started += 1
        self._position = 0

    def on_batch(self, batch_id: int, n_batches: int) -> None:
        self._n_batches = n_batches

    @property
    def epoch_progress(self) -> float:
        """Epochs completed after the last step (0 when the engine hooks were never called)."""
        if not self._n_batches or not self._epochs_started:
            return 0.0
        return self._epochs_started - 1 + self._position / self._n_batches

    @torch.no_grad()
    def step(self, closure=None):
        self._fold()
        loss = super().step(closure)
        self._position += 1
        if self.epoch_progress >= self.start_epoch:
            self._eligible_steps += 1
            self._pending = self.average != "swa" or (self._eligible_steps - 1) % self.swa_every == 0
        return loss

    @torch.no_grad()
    def _fold(self) -> None:
        if not self._pending:
            return
        self._pending = False
        self.n_averaged += 1
        for p in self._params():
            state = self.state[p]
            if "average" not in state or self.n_averaged == 1:
                state["average"] = p.detach().clone()
            elif self.average == "ema":
                state["average"].lerp_(p, 1 - self.ema_decay)
            else:
                state["average"].add_(p - state["average"], alpha=1 / self.n_averaged)

    @contextmanager
    def evaluation_weights(self):
        """Hold the averaged weights in the model for the duration of the block."""
        self._fold()
        if not self.n_averaged:
            yield
            return
        params = self._params()
        with torch.no_grad():
            averages = [torch.where(p == 0, torch.zeros_like(p), self.state[p]["average"]) for p in params]
        with weights_swapped(params, averages):
            yield


def _factory(average: str):
    def factory(model, **hp):
        return AveragedSGD(model.parameters(), average=average, **hp)
    return factory


BASE = {"lr": 0.02, "momentum": 0.9, "weight_decay": 0.0}
SPECS = [
    OptimizerSpec("sgd_polyak", "noise_reduction", _factory("polyak"), {**BASE, "start_epoch": 5.0},
                  {"lr": LR}, "heavy-ball SGD evaluated at the uniform (Polyak-Ruppert) average of "
                  "its iterates from start_epoch on", run_share={"start_epoch": 0.5}, version=2),
    OptimizerSpec("sgd_ema", "noise_reduction", _factory("ema"),
                  {**BASE, "start_epoch": 0.0, "ema_decay": 0.999},
                  {"lr": LR, "ema_decay": [0.99, 0.999]},
                  "heavy-ball SGD evaluated at an exponential moving average of its iterates", version=2),
    OptimizerSpec("sgd_swa", "noise_reduction", _factory("swa"),
                  {**BASE, "start_epoch": 7.5, "swa_every": 50},
                  {"lr": LR}, "heavy-ball SGD evaluated at the SWA average of every swa_every-th "
                  "iterate from start_epoch on (Izmailov et al. 2018)", run_share={"start_epoch": 0.75}, version=2),
]
