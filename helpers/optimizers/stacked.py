"""Update rules over K models at once: parameters stacked as rows of one ``[K, N]`` tensor.

A :class:`StackedRule` holds one update rule for K models that share a step schedule (same
batches' sizes, same number of steps) but may differ in every hyperparameter: ``hparams[k]``
is model k's dict, read as ``[K, 1]`` columns. K = 1 is the single model. The same rule
object serves the training engine (any K) and, through :class:`StackedOptimizer`, the
torch.optim-style classes users import, so each update is written once.

Contract of a rule (``p``, ``g``: ``[K, N]``; ``lr``: ``[K, 1]`` float64, the scheduled rate):

- ``step(p, g, lr, oracle)`` updates ``p`` and the state in place from the batch gradient
  ``g`` taken at ``p``. Weight decay is the rule's business (coupled unless it says so).
  A rule whose next step does not read ``g`` says so with ``uses_gradient`` False (read
  before every step); the engine then computes no batch gradient (``g`` is zeros, nothing counted).
- ``state``: the per-entry state tensors by name, each ``[K, N]`` like ``p``. The sparse
  projection zeroes them where it prunes, except names in ``unmasked_state``.
- ``evaluation_weights(p)``: the weights to evaluate (``p`` itself unless the rule averages
  or evaluates elsewhere, e.g. schedule-free's x). Returns a tensor, never modifies ``p``.
- ``reset(i)``: zero model i's state and counters (a diverged model idles from then on).
- ``start(p)``: called once before the first step, after the initial projection.
- ``on_epoch_start(p, oracle)``: called at the start of every epoch.
- ``capturable``: True if ``step`` can be captured once and replayed (a CUDA graph): state
  changed in place only, no host synchronisation, no Python value that changes between steps
  (:mod:`helpers.engine.graphed_step`; checked by replay on a CPU in the tests).
- ``step_cost(batch_size, n)`` / ``epoch_cost(n)``: oracle calls (sample gradients per
  model) the next step / the next epoch start will spend (``n`` training samples). The
  engine takes no step whose cost would pass the run's budget.

Engine services (``oracle``, an :class:`Oracle`), for rules that need more than ``g``;
declare them in ``needs``, every call is counted per model:

- ``"full_gradient"``: ``oracle.full_gradient(w)``, the full-data mean gradient at weights
  ``w`` ``[K, N]`` (N sample gradients each; SVRG/SARAH snapshots at epoch start).
- ``"batch_gradient"``: ``oracle.batch_gradient(w)``, the current batch's mean gradient at
  other weights ``w`` (batch-size sample gradients each; SVRG/SARAH corrections).
- ``"fixed_batches"``: each model's batch composition is fixed for the run and only their
  order is reshuffled per epoch; ``oracle.batch_ids`` (K ints, one per model: each model
  has its own partition), ``oracle.n_batches`` and ``oracle.batch_size`` name this step's
  batches (SAGA's table).
Gradients from the oracle exclude weight decay, like ``g``.
"""
from __future__ import annotations

import math
from typing import Protocol

import torch


class Oracle(Protocol):
    """What the engine offers a rule during ``step`` and ``on_epoch_start`` (see module doc)."""
    batch_ids: list[int] | None
    n_batches: int | None
    batch_size: int | None

    def full_gradient(self, w: torch.Tensor) -> torch.Tensor: ...

    def batch_gradient(self, w: torch.Tensor) -> torch.Tensor: ...


class StackedRule:
    """Base of every stacked update rule; see the module docstring for the contract.

    Subclasses set ``hyperparameters`` (the keys they read, with defaults), allocate their
    per-entry tensors with :meth:`add_state` and per-model counters with :meth:`add_counter`.
    """
    hyperparameters: dict = {}
    shared_hyperparameters: tuple = ()  # keys every model of a stacked run must share
    needs: frozenset = frozenset()
    unmasked_state: tuple = ()
    capturable = False

    def __init__(self, hparams: list[dict], p: torch.Tensor):
        if p.dim() != 2 or p.shape[0] != len(hparams) or not hparams:
            raise ValueError(f"p must be [K, N] with K = len(hparams) = {len(hparams)} >= 1, "
                             f"got shape {tuple(p.shape)}")
        unknown = set().union(*hparams) - set(self.hyperparameters)
        if unknown:
            raise ValueError(f"{type(self).__name__}: unknown hyperparameter(s) {sorted(unknown)}; "
                             f"known: {sorted(self.hyperparameters)}")
        self.hp = [{**self.hyperparameters, **h} for h in hparams]
        self.k = len(hparams)
        self.dtype, self.device = p.dtype, p.device
        self.state: dict[str, torch.Tensor] = {}
        self.counters: dict[str, torch.Tensor] = {}
        self._initial: dict[str, float] = {}
        for h in self.hp:
            self.check(h)
        self.steps = self.add_counter("steps")

    @classmethod
    def check(cls, h: dict) -> None:
        """Raise ValueError naming a bad hyperparameter of one model."""
        lr, wd = h.get("lr", 0.0), h.get("weight_decay", 0.0)
        if not (isinstance(lr, (int, float)) and lr >= 0):
            raise ValueError(f"Invalid learning rate: {lr!r}")
        if not (isinstance(wd, (int, float)) and wd >= 0):
            raise ValueError(f"Invalid weight_decay value: {wd!r}")

    def column(self, key_or_values, dtype=None) -> torch.Tensor:
        """``[K, 1]`` of a hyperparameter (by key) or of given values, in ``p``'s dtype by default."""
        values = [h[key_or_values] for h in self.hp] if isinstance(key_or_values, str) else key_or_values
        return torch.tensor([float(v) for v in values], dtype=dtype or self.dtype,
                            device=self.device).view(-1, 1)

    def add_state(self, name: str, like: torch.Tensor, copy: bool = False) -> torch.Tensor:
        self.state[name] = like.detach().clone() if copy else torch.zeros_like(like)
        return self.state[name]

    def add_counter(self, name: str, value: float = 0.0) -> torch.Tensor:
        """A per-model float64 ``[K, 1]`` counter, set back to ``value`` by :meth:`reset`."""
        self._initial[name] = float(value)
        self.counters[name] = torch.full((self.k, 1), float(value), dtype=torch.float64, device=self.device)
        return self.counters[name]

    @property
    def weight_decay(self) -> torch.Tensor:
        return self.column("weight_decay")

    def any(self, key: str) -> bool:
        return any(bool(h.get(key)) for h in self.hp)

    def start(self, p: torch.Tensor) -> None:
        pass

    def on_epoch_start(self, p: torch.Tensor, oracle: Oracle | None) -> None:
        pass

    def step(self, p: torch.Tensor, g: torch.Tensor, lr: torch.Tensor, oracle: Oracle | None = None) -> None:
        raise NotImplementedError

    def evaluation_weights(self, p: torch.Tensor) -> torch.Tensor:
        return p

    def step_cost(self, batch_size: int, n: int) -> int:
        return batch_size

    def epoch_cost(self, n: int) -> int:
        return 0

    @torch.no_grad()
    def reset(self, i: int) -> None:
        for t in self.state.values():
            t[i].zero_()
        for name, c in self.counters.items():
            c[i] = self._initial[name]

    def masked_state(self) -> list[torch.Tensor]:
        """The state tensors the sparse projection zeroes where it prunes."""
        return [t for name, t in self.state.items() if name not in self.unmasked_state]


def lr_column(values, like: torch.Tensor) -> torch.Tensor:
    """``[K, 1]`` float64 learning rates on ``like``'s device."""
    return torch.tensor([float(v) for v in values], dtype=torch.float64, device=like.device).view(-1, 1)


class StackedOptimizer(torch.optim.Optimizer):
    """A torch.optim optimizer running a :class:`StackedRule` with K = 1 per parameter group.

    Each step gathers the group's parameters and gradients into one ``[1, N]`` row, runs the
    rule and writes the row back; ``self.state[p]`` holds views of the rule's per-entry
    tensors shaped like ``p`` (so code that edits optimizer state in place, such as the
    sparse scenario's masking, edits the rule's). ``group["lr"]`` is read at every step;
    other hyperparameters are fixed at construction.
    """
    rule_class: type[StackedRule]

    def __init__(self, params, defaults: dict):
        super().__init__(params, defaults)
        self._rules: list[StackedRule | None] = [None] * len(self.param_groups)

    def _group_rule(self, index: int, group: dict, flat: torch.Tensor) -> StackedRule:
        rule = self._rules[index]
        if rule is None:
            hp = {key: group[key] for key in self.rule_class.hyperparameters if key in group}
            rule = self._rules[index] = self.rule_class([hp], flat)
            rule.start(flat)
            self._expose(group, rule)
        return rule

    def _expose(self, group: dict, rule: StackedRule) -> None:
        offset = 0
        for p in group["params"]:
            for name, t in rule.state.items():
                self.state[p][name] = t[0, offset:offset + p.numel()].view_as(p)
            offset += p.numel()

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for index, group in enumerate(self.param_groups):
            params = group["params"]
            flat = torch.cat([p.detach().reshape(1, -1) for p in params], dim=1)
            grad = torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).reshape(1, -1)
                              for p in params], dim=1)
            rule = self._group_rule(index, group, flat)
            rule.step(flat, grad, lr_column([group["lr"]], flat))
            offset = 0
            for p in params:
                p.copy_(flat[0, offset:offset + p.numel()].view_as(p))
                offset += p.numel()
        return loss

    def evaluation_weights(self):
        """Context manager: the parameters hold the rule's evaluation weights inside the block."""
        from .swap import weights_swapped
        params, others = [], []
        for index, group in enumerate(self.param_groups):
            rule = self._rules[index]
            if rule is None:
                continue
            flat = torch.cat([p.detach().reshape(1, -1) for p in group["params"]], dim=1)
            evaluated = rule.evaluation_weights(flat)
            offset = 0
            for p in group["params"]:
                params.append(p)
                others.append(evaluated[0, offset:offset + p.numel()].view_as(p))
                offset += p.numel()
        return weights_swapped(params, others)


def check_betas(betas) -> None:
    if not (len(betas) == 2 and 0.0 <= betas[0] < 1.0 and 0.0 <= betas[1] < 1.0):
        raise ValueError(f"Invalid betas: {betas!r}")


def check_eps(eps) -> None:
    if not (isinstance(eps, (int, float)) and eps >= 0.0 and math.isfinite(eps)):
        raise ValueError(f"Invalid epsilon value: {eps!r}")
