"""The training scenarios: what is optimised and under which constraint.

``standard``: plain cross-entropy. ``l2``: cross-entropy + L2 through the optimizer's own
``weight_decay`` (tuned and recorded like any hyperparameter). ``sparseNN``: at most NN% of
the 40,800 fc1+fc2 weights nonzero, enforced by :mod:`helpers.sparsity` after every step.
"""
from __future__ import annotations

from dataclasses import dataclass

from .sparsity import SparsityHook

L2_DEFAULT_WEIGHT_DECAY = 5e-4


@dataclass(frozen=True)
class Scenario:
    name: str
    description: str
    density: float | None = None
    l2: bool = False

    @property
    def sparse(self) -> bool:
        return self.density is not None

    def hparams(self, hparams: dict) -> dict:
        """The optimizer hyperparameters this scenario runs with (l2 gets a weight decay)."""
        if self.l2:
            if not hparams.get("weight_decay"):
                return {**hparams, "weight_decay": L2_DEFAULT_WEIGHT_DECAY}
        elif hparams.get("weight_decay"):
            raise ValueError(f"scenario {self.name!r} trains without L2; weight_decay="
                             f"{hparams['weight_decay']} belongs to scenario 'l2'")
        return hparams

    def hook(self, model, optimizer, total_steps: int, strategy: str = "projection"):
        """The per-step hook (projection) of a sparse scenario, else None."""
        if not self.sparse:
            return None
        return SparsityHook(model, optimizer, self.density, total_steps, strategy)


def _sparse(percent: int) -> Scenario:
    return Scenario(f"sparse{percent}", f"at most {percent}% of fc1+fc2 weights nonzero",
                    density=percent / 100)


SCENARIOS = {s.name: s for s in [
    Scenario("standard", "plain cross-entropy"),
    Scenario("l2", "cross-entropy + L2 via the optimizer's weight_decay", l2=True),
    *[_sparse(p) for p in (60, 30, 10, 5, 1)],
]}


def get_scenario(name: str) -> Scenario:
    if name not in SCENARIOS:
        raise ValueError(f"unknown scenario {name!r}; known scenarios: {', '.join(SCENARIOS)}")
    return SCENARIOS[name]
