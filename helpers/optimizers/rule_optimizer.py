"""torch.optim-style optimizers over one stacked rule whose steps need engine services.

:class:`RuleOptimizer` runs a :class:`~helpers.optimizers.stacked.StackedRule` with K = 1 over
all parameters of its single group (SVRG's correction evaluates the whole model at the
snapshot, so the rule sees every parameter at once). The services of
:mod:`helpers.optimizers.stacked` come from closures and the engine hooks
(:class:`ClosureOracle`): ``full_gradient`` from the closure given to ``on_epoch_start``,
``batch_gradient`` from the step's closure at other weights, batch ids from ``on_batch``.
``self.state[p]`` holds views of the rule's per-entry tensors shaped like ``p``.
"""
from __future__ import annotations

import torch

from .stacked import StackedRule, lr_column
from .swap import weights_swapped


def flat_of(tensors) -> torch.Tensor:
    return torch.cat([t.detach().reshape(1, -1) for t in tensors], dim=1)


def rows_of(flat: torch.Tensor, params) -> list[torch.Tensor]:
    """Views of ``flat[0]`` shaped like ``params``."""
    out, offset = [], 0
    for p in params:
        out.append(flat[0, offset:offset + p.numel()].view_as(p))
        offset += p.numel()
    return out


class ClosureOracle:
    """The engine services for one model, from closures (see the module docstring)."""

    def __init__(self, params, closure=None, full_closure=None, batch_id=None, n_batches=None,
                 batch_size=None):
        self.params, self.closure, self.full_closure = params, closure, full_closure
        self.batch_ids = None if batch_id is None else [batch_id]
        self.n_batches, self.batch_size = n_batches, batch_size
        self.full_loss = None

    def gradient(self, closure, w: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(loss, flat gradient) of ``closure`` at ``w`` (the current weights when None)."""
        if w is None:
            with torch.enable_grad():
                loss = closure()
        else:
            with weights_swapped(self.params, rows_of(w, self.params)), torch.enable_grad():
                loss = closure()
        grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in self.params]
        return loss, flat_of(grads)

    def full_gradient(self, w: torch.Tensor) -> torch.Tensor:
        if self.full_closure is None:
            raise RuntimeError("this step needs a full-gradient closure: call on_epoch_start(full_closure) "
                               "first (the training engine does)")
        self.full_loss, g = self.gradient(self.full_closure, w)
        return g

    def batch_gradient(self, w: torch.Tensor) -> torch.Tensor:
        if self.closure is None:
            raise ValueError("this optimizer needs a closure that evaluates the mini-batch loss and gradient")
        return self.gradient(self.closure, w)[1]


class RuleOptimizer(torch.optim.Optimizer):
    """One stacked rule (``rule_class``) with K = 1; hyperparameters other than ``lr`` are fixed
    at construction, ``group["lr"]`` is read at every step."""
    rule_class: type[StackedRule]

    def __init__(self, params, defaults: dict):
        self.rule_class.check({**self.rule_class.hyperparameters, **defaults})
        super().__init__(params, defaults)
        if len(self.param_groups) != 1:
            raise ValueError(f"{type(self).__name__} takes one parameter group, got {len(self.param_groups)}")
        self.rule: StackedRule | None = None
        self._full_closure = None
        self._full_loss = None
        self._batch: tuple = (None, None)

    @property
    def unmasked_state(self) -> tuple:
        return self.rule_class.unmasked_state

    def _params(self) -> list[torch.Tensor]:
        return self.param_groups[0]["params"]

    def _rule(self) -> StackedRule:
        if self.rule is None:
            group = self.param_groups[0]
            hp = {key: group[key] for key in self.rule_class.hyperparameters if key in group}
            flat = flat_of(self._params())
            self.rule = self.rule_class([hp], flat)
            self.rule.start(flat)
            self._expose()
        return self.rule

    def _expose(self) -> None:
        for name, t in self.rule.state.items():
            for p, view in zip(self._params(), rows_of(t, self._params())):
                self.state[p][name] = view

    def _oracle(self, closure=None) -> ClosureOracle:
        batch_id, n_batches = self._batch
        return ClosureOracle(self._params(), closure, self._full_closure, batch_id, n_batches,
                             getattr(closure, "batch_size", None))

    def _write(self, flat: torch.Tensor) -> None:
        with torch.no_grad():
            for p, row in zip(self._params(), rows_of(flat, self._params())):
                p.copy_(row)

    def on_epoch_start(self, full_closure=None) -> None:
        """Engine hook: keep the full-gradient closure; the rule decides whether to call it."""
        self._full_closure = full_closure
        rule, oracle = self._rule(), self._oracle()
        with torch.no_grad():
            rule.on_epoch_start(flat_of(self._params()), oracle)
        self._full_loss = oracle.full_loss if oracle.full_loss is not None else self._full_loss

    def on_batch(self, batch_id: int, n_batches: int) -> None:
        """Engine hook: batch ``batch_id`` of ``n_batches`` (this epoch's) comes next."""
        self._batch = (batch_id, n_batches)

    @torch.no_grad()
    def step(self, closure=None):
        rule = self._rule()
        oracle = self._oracle(closure)
        flat = flat_of(self._params())
        loss, g = None, None
        if getattr(rule, "uses_gradient", True):
            if closure is not None:
                loss, g = oracle.gradient(closure)
            elif not rule.needs:
                g = flat_of([p.grad if p.grad is not None else torch.zeros_like(p) for p in self._params()])
            else:
                raise ValueError(f"{type(self).__name__} needs a closure that evaluates the mini-batch "
                                 "loss and gradient")
        rule.step(flat, g, lr_column([self.param_groups[0]["lr"]], flat), oracle)
        self._write(flat)
        self._batch = (None, None)
        self._full_loss = oracle.full_loss if oracle.full_loss is not None else self._full_loss
        if loss is None and self._full_loss is not None:
            loss = torch.as_tensor(self._full_loss).detach().to(flat.device)
        return loss

    def step_cost(self, batch_size: int, n: int) -> int:
        return self._rule().step_cost(batch_size, n)

    def epoch_cost(self, n: int) -> int:
        return self._rule().epoch_cost(n)

    def evaluation_weights(self):
        """Context manager: the parameters hold the rule's evaluation weights inside the block."""
        params = self._params()
        if self.rule is None:
            return weights_swapped([], [])
        with torch.no_grad():
            evaluated = self.rule.evaluation_weights(flat_of(params))
        return weights_swapped(params, rows_of(evaluated, params))
