"""The study's shared recipe: how a method is configured, tuned and re-trained in each profile.

Family notebooks and the full study call :func:`run_family`, so the same parameters give the
same run ids and finished runs are reused wherever they were computed.

Protocol: for each method, ``tune_budget`` configurations (helpers.tuning) trained for
``tune_epochs`` epochs on 50,000 training images and scored on the 10,000-image hold-out;
sparse scenarios reuse the configuration tuned for ``standard``. The chosen configuration is
re-trained for ``epochs`` epochs on all 60,000 images, once per seed, and evaluated on the test set.
"""
from __future__ import annotations

import dataclasses

import pandas as pd

from .config import RunConfig
from .experiment import records_of, run_all
from .optimizers import get_spec
from .scenarios import get_scenario
from .tuning import final_configs, tune

# Sizes of a study. quick: minutes on 2 CPU cores; full: the study behind the report.
PROFILES = {
    "ci": dict(epochs=1, train_fraction=0.05, seeds=[0], tune_budget=2, tune_epochs=1, evals_per_epoch=1),
    "quick": dict(epochs=2, train_fraction=0.1, seeds=[0], tune_budget=2, tune_epochs=1, evals_per_epoch=2),
    "full": dict(epochs=10, train_fraction=1.0, seeds=[0, 1, 2], tune_budget=4, tune_epochs=2,
                 evals_per_epoch=2),
}
SCALING = "standardize"
# Methods whose schedule is built in (or that pick their own step) run at a constant base rate;
# all others follow a cosine decay over the run.
CONSTANT_SCHEDULE = {"sgd_schedulefree", "adamw_schedulefree", "lbfgs", "lbfgs_full", "gd"}


def schedule_for(optimizer: str) -> str:
    return "constant" if optimizer in CONSTANT_SCHEDULE else "cosine"


def base_config(optimizer: str, scenario: str = "standard", epochs: int = 10, train_fraction: float = 1.0,
                evals_per_epoch: int = 1, sparsity_strategy: str = "projection", **overrides) -> RunConfig:
    """The study's configuration of ``optimizer`` before tuning (validated now, so errors come early)."""
    get_spec(optimizer)
    get_scenario(scenario)
    settings = dict(optimizer=optimizer, scenario=scenario, epochs=epochs, train_fraction=train_fraction,
                    scaling=SCALING, schedule=schedule_for(optimizer), evals_per_epoch=evals_per_epoch,
                    sparsity_strategy=sparsity_strategy)
    return RunConfig(**{**settings, **overrides})


def tuned_hparams(optimizer: str, scenario: str, tune_budget: int, tune_epochs: int, train_fraction: float,
                  executor=None, root=None, progress: bool = True, **overrides) -> tuple[pd.DataFrame, dict]:
    tune_scenario = "standard" if get_scenario(scenario).sparse else scenario
    base = base_config(optimizer, tune_scenario, epochs=tune_epochs, train_fraction=train_fraction,
                       **overrides)
    return tune(base, tune_budget, executor=executor, root=root, progress=progress)


def run_family(members, scenario: str = "standard", profile: str = "quick", executor=None, root=None,
               progress: bool = True, **overrides) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Tune every member, re-train the chosen configurations with each seed.

    Returns (tuning table: last record of every candidate, records of the final runs).
    ``overrides`` (e.g. batch_size, schedule) apply to tuning and final runs alike.
    """
    p = PROFILES[profile] if isinstance(profile, str) else profile
    tables, finals = [], []
    for optimizer in members:
        table, best = tuned_hparams(optimizer, scenario, p["tune_budget"], p["tune_epochs"],
                                    p["train_fraction"], executor, root, progress, **overrides)
        tables.append(table.assign(member=optimizer))
        base = base_config(optimizer, scenario, p["epochs"], p["train_fraction"], p["evals_per_epoch"],
                           **overrides)
        finals += final_configs(base, _scenario_hparams(best, scenario), p["seeds"])
    run_all(finals, executor, root, progress)
    return pd.concat(tables, ignore_index=True), records_of(finals, root)


def _scenario_hparams(best: dict, scenario: str) -> dict:
    """Tuned values as a scenario accepts them (a weight decay only under l2)."""
    if not get_scenario(scenario).l2:
        return {k: v for k, v in best.items() if k != "weight_decay" or not v}
    return best


def with_replacements(config: RunConfig, **changes) -> RunConfig:
    return dataclasses.replace(config, **changes)
