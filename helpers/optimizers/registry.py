"""The one registry of optimizers: name -> family, factory, defaults, tuning ranges.

Each module of this package may define ``SPECS`` (a list of :class:`OptimizerSpec`); they
are collected here, so adding a method means adding one file. A factory takes the model
(K-FAC needs its layers; most use ``model.parameters()``) and keyword hyperparameters.

Engine hooks an optimizer may implement (all optional):
``on_epoch_start(full_closure)`` gets a closure that evaluates the full-data mean gradient
(SVRG/SARAH snapshots); ``on_batch(index, n_batches)`` tells which fixed batch is next
(SAGA's table); ``oracle_counts`` (dict) reports extra oracle calls, e.g. ``{"hvp": n}`` in
sample units; ``evaluation_weights()`` is a context manager under which the model holds
the weights to evaluate (iterate averages, schedule-free's x sequence). ``step(closure)`` always receives a closure ``closure(create_graph=False)``
that zeroes grads, evaluates the current batch's loss and back-propagates.
"""
from __future__ import annotations

import importlib
import pkgutil
from dataclasses import dataclass, field
from typing import Callable

from torch import nn
from torch.optim import Optimizer

FAMILIES = ("sgd", "momentum", "noise_reduction", "second_order")


@dataclass(frozen=True)
class OptimizerSpec:
    """How to build and tune one optimizer.

    ``search_space`` maps a hyperparameter to ``(low, high, "log"|"linear")`` or a list of
    choices. ``batch_size`` overrides the run's default (1 for basic SGD, ``"full"`` for GD);
    ``batch_growth`` multiplies the batch size per epoch (dynamic sampling).
    ``needs`` lists engine services: ``"fixed_batches"`` (same batch composition each epoch).
    ``elementwise`` marks optimizers the batched many-model engine can run.
    ``decays``: the study follows its learning-rate decay (False: the method has its own
    schedule or picks its step, and runs at a constant base rate). ``max_epochs``: the study's
    epoch cap (basic SGD takes 60,000 steps per epoch). ``run_share``: hyperparameters counted
    in epochs that the study sets to a share of each run's length (when averaging starts), so
    a shortened tuning run behaves like the full run.
    ``version``: bump when the update rule changes (part of every run id). ``rule``: the
    :class:`~helpers.optimizers.stacked.StackedRule` class the engine runs for any K (None:
    the method calls the model itself and runs on the module path).
    """
    name: str
    family: str
    factory: Callable[..., Optimizer]
    defaults: dict
    search_space: dict = field(default_factory=dict)
    description: str = ""
    batch_size: int | str | None = None
    batch_growth: float | None = None
    needs: frozenset = frozenset()
    elementwise: bool = False
    decays: bool = True
    max_epochs: int | None = None
    run_share: dict = field(default_factory=dict)
    version: int = 1
    rule: type | None = None

    def build(self, model: nn.Module, **hparams) -> Optimizer:
        unknown = set(hparams) - set(self.defaults)
        if unknown:
            raise ValueError(f"unknown hyperparameter(s) {sorted(unknown)} for optimizer "
                             f"{self.name!r}; known: {sorted(self.defaults)}")
        return self.factory(model, **{**self.defaults, **hparams})


_REGISTRY: dict[str, OptimizerSpec] = {}


def _collect() -> dict[str, OptimizerSpec]:
    if not _REGISTRY:
        from . import __path__ as package_path
        for info in sorted(pkgutil.iter_modules(package_path), key=lambda m: m.name):
            if info.name == "registry":
                continue
            module = importlib.import_module(f"{__package__}.{info.name}")
            for spec in getattr(module, "SPECS", ()):
                if spec.family not in FAMILIES:
                    raise ValueError(f"{spec.name}: unknown family {spec.family!r}")
                if spec.name in _REGISTRY:
                    raise ValueError(f"optimizer {spec.name!r} registered twice")
                _REGISTRY[spec.name] = spec
    return _REGISTRY


def registry() -> dict[str, OptimizerSpec]:
    return dict(_collect())


def get_spec(name: str) -> OptimizerSpec:
    specs = _collect()
    if name not in specs:
        raise ValueError(f"unknown optimizer {name!r}; known optimizers: {', '.join(sorted(specs))}")
    return specs[name]


def build_optimizer(name: str, model: nn.Module, **hparams) -> Optimizer:
    return get_spec(name).build(model, **hparams)


def names(family: str | None = None) -> list[str]:
    if family is not None and family not in FAMILIES:
        raise ValueError(f"unknown family {family!r}; choose one of {FAMILIES}")
    return sorted(n for n, s in _collect().items() if family is None or s.family == family)
