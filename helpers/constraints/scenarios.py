"""The training scenarios: what is optimised and under which constraint.

``standard``: plain cross-entropy. ``l2``: cross-entropy + L2 through the optimizer's own
``weight_decay`` (tuned and recorded like any hyperparameter). ``sparseP``: at most P% of the
40,800 fc1+fc2 weights nonzero (biases not counted), enforced by :mod:`helpers.constraints.sparsity`
with the run's ``sparsity_strategy``. ``thinP``: the same budget met by removing whole
fc1/fc2 neurons (:mod:`helpers.constraints.structured`), so the network becomes genuinely smaller.
Registered: sparse60 (the assignment's), sparse30/10/5/1 and thin30 (thinner extras); any
``sparseP`` / ``thinP`` with P in (0, 100] is accepted by :func:`get_scenario`.

Density rule for records: a record's density may never exceed what its strategy allows at
that step (:meth:`helpers.constraints.sparsity.PruningSchedule.allowed`): the budget at every step for
``projection``; for ``gradual``/``finetune`` the schedule's ceiling, which reaches the budget
at the schedule's end. The final record and the returned model must be within the budget,
so a run cut short before its pruning schedule ends is an error, never a result.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass

from ..problem.model import N_CONSTRAINED_WEIGHTS, density as model_density
from .sparsity import SparsityHook, budget, check_density, check_strategy, pruning_schedule

L2_DEFAULT_WEIGHT_DECAY = 5e-4
TOLERANCE = 1e-12


class DensityError(RuntimeError):
    """A record or model claims a sparse scenario but holds more nonzeros than it allows."""


@dataclass(frozen=True)
class Scenario:
    name: str
    description: str
    density: float | None = None
    l2: bool = False
    structured: bool = False

    @property
    def sparse(self) -> bool:
        return self.density is not None

    @property
    def budget(self) -> int | None:
        """Nonzero fc1+fc2 weights allowed (None: unconstrained)."""
        return budget(N_CONSTRAINED_WEIGHTS, self.density) if self.sparse else None

    def hparams(self, hparams: dict) -> dict:
        """The optimizer hyperparameters this scenario runs with (l2 gets a weight decay)."""
        if self.l2:
            if not hparams.get("weight_decay"):
                return {**hparams, "weight_decay": L2_DEFAULT_WEIGHT_DECAY}
        elif hparams.get("weight_decay"):
            raise ValueError(f"scenario {self.name!r} trains without L2; weight_decay="
                             f"{hparams['weight_decay']} belongs to scenario 'l2'")
        return hparams

    def hook(self, model, optimizer, total_steps: int, strategy: str = "projection", **schedule_params):
        """The per-step hook enforcing a sparse scenario's budget, else None."""
        if not self.sparse:
            return None
        return SparsityHook(model, optimizer, self.density, total_steps, strategy,
                            structured=self.structured, **schedule_params)


def _percent(density: float) -> str:
    return f"{density * 100:.6f}".rstrip("0").rstrip(".")


def sparse_scenario(density: float) -> Scenario:
    """At most ``density`` (in (0, 1]) of the fc1+fc2 weights nonzero, any pattern."""
    density = check_density(density)
    return Scenario(f"sparse{_percent(density)}",
                    f"at most {_percent(density)}% of fc1+fc2 weights nonzero", density=density)


def thin_scenario(density: float) -> Scenario:
    """At most ``density`` of the fc1+fc2 weights, kept as whole neurons (a smaller network)."""
    density = check_density(density)
    return Scenario(f"thin{_percent(density)}",
                    f"whole fc1/fc2 neurons removed; at most {_percent(density)}% of fc1+fc2 weights",
                    density=density, structured=True)


FAMILIES = {"sparse": sparse_scenario, "thin": thin_scenario}

SCENARIOS = {s.name: s for s in [
    Scenario("standard", "plain cross-entropy"),
    Scenario("l2", "cross-entropy + L2 via the optimizer's weight_decay", l2=True),
    *[sparse_scenario(p / 100) for p in (60, 30, 10, 5, 1)],
    thin_scenario(0.3),
]}

_PATTERN = re.compile(r"(sparse|thin)(\d+(?:\.\d+)?)")


def get_scenario(name: str, density: float | None = None) -> Scenario:
    """A scenario by name: registered, ``sparseP``/``thinP`` (P percent), or ``("sparse", density=d)``."""
    if density is not None:
        if name not in FAMILIES:
            raise ValueError(f"scenario {name!r} takes no density; densities go with "
                             f"{' or '.join(map(repr, FAMILIES))}, e.g. get_scenario('sparse', density=0.6)")
        return FAMILIES[name](density)
    if name in SCENARIOS:
        return SCENARIOS[name]
    match = _PATTERN.fullmatch(name) if isinstance(name, str) else None
    if match:
        percent = float(match.group(2))
        if not 0 < percent <= 100:
            raise ValueError(f"scenario {name!r}: the percentage of fc1+fc2 weights kept must be in "
                             f"(0, 100], e.g. '{match.group(1)}60', got {match.group(2)}")
        scenario = FAMILIES[match.group(1)](percent / 100)
        if scenario.name != name:
            raise ValueError(f"scenario {name!r}: write it as {scenario.name!r}")
        return scenario
    if name in FAMILIES:
        raise ValueError(f"scenario {name!r} needs a density: use '{name}60' (60%) or "
                         f"get_scenario({name!r}, density=0.6)")
    raise ValueError(f"unknown scenario {name!r}; known scenarios: {', '.join(SCENARIOS)} "
                     f"(or sparseP / thinP for any percentage P in (0, 100])")


def total_steps(config, n_train: int) -> int:
    """Optimizer steps a run of ``config`` on ``n_train`` images plans (as the engine counts)."""
    return sum(math.ceil(n_train / b) for b in config.epoch_batch_sizes(n_train))


def check_model(model, scenario: str | Scenario, what: str = "model") -> None:
    """Raise :class:`DensityError` if ``model``'s fc1+fc2 density exceeds the scenario's budget."""
    scenario = get_scenario(scenario) if isinstance(scenario, str) else scenario
    if scenario.sparse and model_density(model) > scenario.density + TOLERANCE:
        raise DensityError(f"{what} claims scenario {scenario.name!r} (density <= {scenario.density}) "
                           f"but has density {model_density(model):.5f}")


def check_records(config, records: list[dict], n_train: int | None = None) -> None:
    """Raise :class:`DensityError` if any record holds more nonzeros than its strategy allows.

    With ``n_train`` the ceiling at each record's step follows the pruning schedule; without
    it only ``projection`` runs are checked record by record. The final record of a run that
    did not diverge must always be within the budget.
    """
    scenario = get_scenario(config.scenario)
    if not scenario.sparse or not records:
        return
    strategy = check_strategy(config.sparsity_strategy)
    n = N_CONSTRAINED_WEIGHTS
    schedule = None
    if strategy == "projection":
        schedule = pruning_schedule(strategy, n, scenario.density, 1)
    elif n_train is not None:
        schedule = pruning_schedule(strategy, n, scenario.density, total_steps(config, n_train))
    run = getattr(config, "run_id", "run")
    for record in records:
        if schedule is None:
            break
        allowed = schedule.allowed(int(record["step"])) / n
        if record["density"] > allowed + TOLERANCE:
            raise DensityError(f"{run} claims scenario {scenario.name!r} with strategy {strategy!r}: at "
                               f"step {record['step']} density {record['density']:.5f} exceeds the "
                               f"{allowed:.5f} allowed")
    last = records[-1]
    if not last.get("diverged") and last["density"] > scenario.density + TOLERANCE:
        raise DensityError(f"{run} claims scenario {scenario.name!r} (density <= {scenario.density}) "
                           f"but ends at density {last['density']:.5f}"
                           + ("; the run stopped before its pruning schedule ended"
                              if strategy != "projection" else ""))


def within_budget(frame) -> "pandas.Series":
    """Per record row (columns ``scenario``, ``density``): True where the row satisfies its scenario.

    Rows of ``gradual``/``finetune`` runs before their schedule ends are legitimate learning-curve
    points but not results of the sparse scenario; filter with this before reporting them.
    """
    import pandas as pd
    if not len(frame) or "density" not in frame:
        return pd.Series(True, index=frame.index, dtype=bool)

    def limit(name):
        try:
            scenario = get_scenario(name)
        except ValueError:
            return -math.inf
        return math.inf if not scenario.sparse else scenario.density

    limits = frame["scenario"].map({name: limit(name) for name in frame["scenario"].unique()})
    return (frame["density"] <= limits + TOLERANCE) | (limits == math.inf)
