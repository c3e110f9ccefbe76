"""The tuning protocol: the same number of configurations for every optimizer, chosen on the
validation hold-out, then re-trained on all 60,000 training images with several seeds.

Candidates: ``n`` learning rates log-spaced over the optimizer's ``lr`` range; any other
tuned hyperparameter (and ``weight_decay`` under the l2 scenario) is assigned along a seeded
Latin-hypercube permutation, so every optimizer gets exactly ``n`` configurations.
"""
from __future__ import annotations

import dataclasses
import math

import numpy as np
import pandas as pd

from ..engine.config import RunConfig
from .experiment import run_all
from ..optimizers import get_spec
from .records import load_records
from ..constraints.scenarios import get_scenario

L2_RANGE = (1e-5, 3e-3, "log")


def _axis(bounds, n: int) -> list:
    if isinstance(bounds, (list, tuple)) and len(bounds) == 3 and bounds[2] in ("log", "linear"):
        low, high, kind = bounds
        if n == 1:
            return [math.sqrt(low * high) if kind == "log" else (low + high) / 2]
        grid = np.geomspace(low, high, n) if kind == "log" else np.linspace(low, high, n)
        return [float(f"{v:.4g}") for v in grid]
    choices = list(bounds)
    return [choices[i % len(choices)] for i in range(n)]


def search_space(optimizer: str, scenario: str = "standard") -> dict:
    space = dict(get_spec(optimizer).search_space)
    if get_scenario(scenario).l2:
        space.setdefault("weight_decay", L2_RANGE)
    return space


def candidates(optimizer: str, n: int, scenario: str = "standard", seed: int = 0) -> list[dict]:
    """Exactly ``n`` hyperparameter settings for ``optimizer`` (deterministic for a seed)."""
    if n < 1:
        raise ValueError(f"the tuning budget must be at least 1 configuration, got {n}")
    space = search_space(optimizer, scenario)
    rng = np.random.default_rng(seed)
    columns = {}
    for key, bounds in space.items():
        values = _axis(bounds, n)
        columns[key] = values if key == "lr" else [values[i] for i in rng.permutation(n)]
    return [{k: v[i] for k, v in columns.items()} for i in range(n)]


def tuning_configs(base: RunConfig, n: int) -> list[RunConfig]:
    """The ``n`` candidate runs of ``base``'s optimizer, evaluated on the validation hold-out."""
    return [dataclasses.replace(base, hparams={**base.hparams, **hp}, eval_split="val",
                                tag=base.tag or "tune")
            for hp in candidates(base.optimizer, n, base.scenario)]


def best_of(frame: pd.DataFrame) -> pd.Series:
    """The run with the highest final validation accuracy (lower loss breaks ties); diverged runs last."""
    last = frame.sort_values("epoch").groupby("run_id").tail(1).copy()
    last["score"] = last["val_acc"].fillna(-1.0)
    last["tiebreak"] = -last["val_loss"].fillna(np.inf)
    return last.sort_values(["score", "tiebreak"], ascending=False).iloc[0]


def tune(base: RunConfig, n: int, executor=None, root=None, progress: bool = True):
    """Run the ``n`` candidates; return (table of their final rows, best hyperparameters)."""
    import json
    configs = tuning_configs(base, n)
    run_all(configs, executor, root, progress)
    frame = load_records(root)
    frame = frame[frame["run_id"].isin({c.run_id for c in configs})]
    best = best_of(frame)
    table = frame.sort_values("epoch").groupby("run_id").tail(1)
    return table.reset_index(drop=True), json.loads(best["hparams"])


def final_configs(base: RunConfig, hparams: dict, seeds) -> list[RunConfig]:
    """``base`` with the chosen hyperparameters, on all training images, one run per seed."""
    return [dataclasses.replace(base, hparams=_as_config(hparams), eval_split="test", seed=s)
            for s in seeds]


def _as_config(hparams: dict) -> dict:
    return {k: tuple(v) if isinstance(v, list) else v for k, v in hparams.items()}
