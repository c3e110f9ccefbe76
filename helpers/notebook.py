"""Notebook parameters checked early: their types (from each notebook's own defaults) and the
ranges the study allows (:data:`RULES`), at plan time by the sweep and in a notebook's first cell."""
from __future__ import annotations

import ast
import os
from dataclasses import dataclass
from typing import Callable

from .problem.data import N_TRAIN

TYPE_NAMES = {bool: "a boolean (true/false)", int: "an integer", float: "a number", str: "a string",
              list: "a list", dict: "a dict", type(None): "null"}
PY_TYPES = {"bool": bool, "int": int, "float": float, "str": str, "list": list, "dict": dict}


@dataclass(frozen=True)
class Rule:
    """The values a parameter (or each item of a list parameter) may take."""
    allowed: str  # the range in words, e.g. "an integer >= 1"
    holds: Callable[[object], bool]
    each: bool = False  # applies to every item of a list
    nullable: bool = False


def _number(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def _int(x) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _at_least(low: int) -> Callable[[object], bool]:
    return lambda x: _int(x) and x >= low


def _names(kind: str) -> Callable[[object], bool]:
    def holds(name) -> bool:
        if kind == "optimizer":
            from .optimizers import get_spec as lookup
        else:
            from .constraints.scenarios import get_scenario as lookup
        try:
            lookup(name)
        except (ValueError, TypeError, KeyError):
            return False
        return True
    return holds


def _member(choices: Callable[[], tuple]) -> Callable[[object], bool]:
    return lambda x: x in choices()


def _profiles() -> tuple:
    from .study.definition import PROFILES
    return tuple(PROFILES)


def _schedules() -> tuple:
    from .engine.schedules import SCHEDULES
    return SCHEDULES


def _strategies() -> tuple:
    from .constraints.sparsity import STRATEGIES
    return STRATEGIES


def _scalings() -> tuple:
    from .problem.data import SCALINGS
    return SCALINGS


def _bad_hparams(hparams, where: str = "") -> list[str]:
    """``key=value`` of every lr <= 0 or weight_decay < 0 (nested per optimizer or flat)."""
    bad = []
    for key, value in hparams.items():
        if isinstance(value, dict):
            bad += _bad_hparams(value, f"{where}{key}.")
        elif (key == "lr" and not (_number(value) and value > 0)) or \
                (key == "weight_decay" and not (_number(value) and value >= 0)):
            bad.append(f"{where}{key}={value!r}")
    return bad


def _hparams_ok(hparams) -> bool:
    return isinstance(hparams, dict) and not _bad_hparams(hparams)


BATCH = f"an integer in [1, {N_TRAIN:,}] (1 to the whole training set)"
RULES: dict[str, Rule] = {
    "epochs": Rule("an integer >= 1 (the horizon in epochs)", _at_least(1)),
    "tune_epochs": Rule("an integer >= 1", _at_least(1)),
    "tune_budget": Rule("an integer >= 1 (configurations per method)", _at_least(1)),
    "evals_per_epoch": Rule("an integer >= 1", _at_least(1)),
    "train_fraction": Rule("a number in (0, 1]", lambda x: _number(x) and 0 < x <= 1),
    "seeds": Rule("non-negative integers", _at_least(0), each=True),
    "batch_sizes": Rule(BATCH, lambda x: _int(x) and 1 <= x <= N_TRAIN, each=True),
    "tuned_batch_size": Rule(BATCH, lambda x: _int(x) and 1 <= x <= N_TRAIN),
    "variance_batch": Rule(BATCH, lambda x: _int(x) and 1 <= x <= N_TRAIN),
    "variance_samples": Rule(f"an integer in [1, {N_TRAIN:,}]", lambda x: _int(x) and 1 <= x <= N_TRAIN),
    "variance_epochs": Rule("an integer >= 1", _at_least(1)),
    "variance_warmup_epochs": Rule("an integer >= 0", _at_least(0)),
    "densities": Rule("numbers in (0, 1]", lambda x: _number(x) and 0 < x <= 1, each=True),
    "thin_densities": Rule("numbers in (0, 1)", lambda x: _number(x) and 0 < x < 1, each=True),
    "starter_lr": Rule("a number > 0", lambda x: _number(x) and x > 0),
    "target_acc": Rule("a percentage in (0, 100]", lambda x: _number(x) and 0 < x <= 100),
    "target": Rule("a percentage in (0, 100]", lambda x: _number(x) and 0 < x <= 100),
    "top": Rule("an integer >= 1", _at_least(1)),
    "torch_threads": Rule("an integer >= 1 or null", _at_least(1), nullable=True),
    "hparams": Rule("lr > 0 and weight_decay >= 0", _hparams_ok),
    "tuned_hparams": Rule("lr > 0 and weight_decay >= 0", _hparams_ok),
    "scenario": Rule("a known scenario (standard, l2, sparse60, ...)", _names("scenario")),
    "members": Rule("known optimizer names", _names("optimizer"), each=True),
    "optimizers": Rule("known optimizer names", _names("optimizer"), each=True),
    "reference": Rule("a known optimizer name or \"\"", lambda x: x == "" or _names("optimizer")(x)),
    "tuned_optimizer": Rule("a known optimizer name", _names("optimizer")),
    "schedules": Rule("known schedules", _member(_schedules), each=True),
    "tuned_schedule": Rule("a known schedule", _member(_schedules)),
    "strategies": Rule("known sparsity strategies", _member(_strategies), each=True),
    "thin_strategy": Rule("a known sparsity strategy", _member(_strategies)),
    "tuned_scaling": Rule("a known scaling", _member(_scalings)),
    "profile": Rule("a profile of the study definition", _member(_profiles)),
}


def _choices(name: str) -> str:
    """The valid names of a name-valued parameter, for the error message."""
    if name in ("members", "optimizers", "reference", "tuned_optimizer"):
        from .optimizers import names
        return ", ".join(sorted(names()))
    if name == "scenario":
        from .constraints.scenarios import SCENARIOS
        return ", ".join(SCENARIOS) + " (or sparseP / thinP)"
    for key, choices in (("schedule", _schedules), ("strateg", _strategies), ("scaling", _scalings),
                         ("profile", _profiles)):
        if key in name:
            return ", ".join(choices())
    return ""


def declared_type(declared: dict) -> type | None:
    """The Python type of a parameter from ``papermill.inspect_notebook``: its annotation if any,
    else its default's type; None when the default is None (a path, a device: text or null)."""
    annotated = PY_TYPES.get(str(declared.get("inferred_type_name", "None")))
    if annotated is not None:
        return annotated
    try:
        default = ast.literal_eval(str(declared.get("default")))
    except (ValueError, SyntaxError):
        return None
    return None if default is None else type(default)


def _item_type(declared: dict) -> type | None:
    """The type of a list default's items when they all share one (e.g. ``[0]`` -> int)."""
    try:
        default = ast.literal_eval(str(declared.get("default")))
    except (ValueError, SyntaxError):
        return None
    kinds = {type(x) for x in default} if isinstance(default, list) else set()
    if kinds <= {int, float} and float in kinds:
        return float
    return kinds.pop() if len(kinds) == 1 else None


def _fits(value, expected: type | None, nullable: bool) -> bool:
    if expected is None:
        return value is None or isinstance(value, str)
    if value is None:
        return nullable
    if expected is float:
        return _number(value)
    if expected is int:
        return _int(value)
    return isinstance(value, expected)


def check_value(name: str, value, declared: dict | None = None) -> str | None:
    """The error for ``name=value`` (type against the notebook's default, then :data:`RULES`), or None."""
    rule = RULES.get(name)
    nullable = bool(rule and rule.nullable)
    shown = f"{name}={value!r}"
    where = f"allowed: {rule.allowed}" if rule else f"the notebook's default is {name} = {(declared or {}).get('default')}"
    if declared is not None:
        expected = declared_type(declared)
        nullable = nullable or str(declared.get("default")).strip() == "None"
        if not _fits(value, expected, nullable):
            want = "text or null" if expected is None else TYPE_NAMES.get(expected, expected.__name__)
            return f"{shown} is not {want}; {where}"
        item = _item_type(declared) if expected is list else None
        if item is not None:
            wrong = [x for x in value if not _fits(x, item, False)]
            if wrong:
                return f"{shown}: {wrong!r} not {TYPE_NAMES.get(item, item.__name__)}; {where}"
    if rule is None or value is None and nullable:
        return None
    if rule.each:
        if not isinstance(value, list):
            return f"{shown} is not a list; {where}"
        if not value and name in ("seeds", "members", "optimizers"):
            return f"{shown} is empty; {where}"
        bad = [x for x in value if not rule.holds(x)]
        if not bad:
            return None
        problem = f"{shown}: {bad!r} " + ("out of range" if all(_number(x) for x in bad) else "unknown")
    elif rule.holds(value):
        return None
    elif isinstance(value, dict):
        problem = f"{shown}: {', '.join(_bad_hparams(value))} out of range"
    else:
        problem = f"{shown} is " + ("out of range" if _number(value) else "unknown")
    choices = _choices(name)
    return f"{problem}; known: {choices}" if choices else f"{problem}; {where}"


def check_parameters(values: dict, declared: dict | None = None) -> list[str]:
    """Errors for every value in ``values`` that its notebook parameter (``declared``: the
    ``papermill.inspect_notebook`` dict) or :data:`RULES` rejects; [] when all hold."""
    errors = []
    for name, value in values.items():
        error = check_value(name, value, (declared or {}).get(name) if declared is not None else None)
        if error:
            errors.append(error)
    return errors


def prepare(scenario: str, members, reference: str = "", device: str | None = None,
            parameters: dict | None = None) -> list[str]:
    """Raise at once on an unknown scenario or optimizer (the error names the valid ones), or on
    any of ``parameters`` out of its range (:data:`RULES`); select ``device`` for the runs
    (``FMNIST_DEVICE``) and set pandas' display; return the methods the notebook runs:
    ``reference`` (if any) then ``members``."""
    import pandas as pd

    from .constraints.scenarios import get_scenario
    from .optimizers import get_spec
    errors = check_parameters(parameters or {})
    if errors:
        raise ValueError("bad notebook parameter(s): " + "; ".join(errors))
    if device:
        os.environ["FMNIST_DEVICE"] = device
    pd.set_option("display.width", 160, "display.max_columns", 20, "display.precision", 4)
    get_scenario(scenario)
    methods = [m for m in [reference, *members] if m]
    for m in methods:
        get_spec(m)
    return methods
