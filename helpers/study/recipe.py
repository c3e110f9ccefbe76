"""How one study run is configured: the study's schedule, oracle budget, data split and
hyperparameters for a method in a scenario (tuning trial or final run), as
:mod:`helpers.study.definition` says."""
from __future__ import annotations

from dataclasses import replace

import pandas as pd

from ..constraints.scenarios import get_scenario
from ..engine.config import RunConfig
from ..optimizers import get_spec
from ..problem.data import N_TRAIN
from . import definition as D
from . import tuning as T
from .definition import Profile


def schedule_for(optimizer: str) -> str:
    """Cosine decay over the oracle budget, or a constant base rate for methods with their own schedule."""
    return "cosine" if get_spec(optimizer).decays else "constant"


def length_hparams(optimizer: str, epochs: int) -> dict:
    """The method's ``run_share`` hyperparameters for a run of ``epochs``: share x epochs."""
    return {k: round(share * epochs, 4) for k, share in get_spec(optimizer).run_share.items()}


def epochs_of(method: str, profile: Profile) -> int:
    """The profile's epochs, capped by the registry's ``max_epochs`` (basic SGD: 1)."""
    return min(profile.epochs, get_spec(method).max_epochs or profile.epochs)


def n_train(profile: Profile, split: str) -> int:
    """Training images of a tuning ("val": the hold-out removed) or final ("test") run."""
    total = N_TRAIN - (profile.val_size if split == "val" else 0)
    return round(profile.train_fraction * total)


def oracle_budget(method: str, profile: Profile, split: str) -> int:
    return epochs_of(method, profile) * n_train(profile, split)


def study_config(method: str, scenario: str, split: str, profile: Profile, hparams: dict, seed: int = 0,
                 strategy: str = "projection", **settings) -> RunConfig:
    """A study run of ``method``: tuning (``split`` "val") or final ("test"), oracle budget of
    the run's epochs x its training images, the study's schedule; ``settings`` override (an
    ``epochs`` setting sets the budget too)."""
    settings = dict(settings)
    epochs = settings.pop("epochs", epochs_of(method, profile))
    config = dict(optimizer=method, scenario=scenario, sparsity_strategy=strategy, epochs=epochs,
                  grad_budget=epochs * n_train(profile, split), schedule=schedule_for(method), seed=seed,
                  scaling=D.SCALING, train_fraction=profile.train_fraction, eval_split=split,
                  evals_per_epoch=profile.evals_per_epoch, tag="tune" if split == "val" else "")
    if split == "val":
        config["val_size"] = profile.val_size
    config.update(settings)
    config["hparams"] = T._as_config({**length_hparams(method, epochs), **settings.get("hparams", {}), **hparams})
    return RunConfig(**config)


def base_config(optimizer: str, scenario: str = "standard", epochs: int = 10, train_fraction: float = 1.0,
                evals_per_epoch: int = 1, sparsity_strategy: str = "projection", **overrides) -> RunConfig:
    """The study's final-run configuration of ``optimizer`` before tuning (for notebooks' own runs)."""
    profile = replace(D.PROFILES["full"], epochs=epochs, train_fraction=train_fraction,
                      evals_per_epoch=evals_per_epoch)
    split = overrides.pop("eval_split", "test")
    hparams = overrides.pop("hparams", {})
    config = study_config(optimizer, scenario, split, profile, hparams, strategy=sparsity_strategy, **overrides)
    return replace(config, tag=overrides.get("tag", ""))


def starter_configs(seeds, epochs: int = 10, train_fraction: float = 1.0) -> list[RunConfig]:
    """The assignment's starter: plain SGD, lr 1e-3, batch 64, pixels in [0, 1], constant rate."""
    row = next(r for r in D.ROWS if r.name == "starter")
    return [RunConfig(optimizer="sgd", seed=s, epochs=epochs, train_fraction=train_fraction, **row.overrides)
            for s in seeds]


def tuning_scenario(scenario: str) -> str:
    """Where :func:`tuned_hparams` searches: sparse scenarios reuse the standard scenario's search."""
    return "standard" if get_scenario(scenario).sparse else scenario


def scenario_hparams(best: dict, scenario: str) -> dict:
    """Tuned values as a scenario accepts them (a weight decay only under l2)."""
    if not get_scenario(scenario).l2:
        return {k: v for k, v in best.items() if k != "weight_decay" or not v}
    return best


def final_hparams(best: dict, optimizer: str, scenario: str, epochs: int) -> dict:
    """A final run's hyperparameters: the tuned ones as ``scenario`` accepts them, with the
    run-length shares set for ``epochs``."""
    shares = get_spec(optimizer).run_share
    tuned = {k: v for k, v in scenario_hparams(best, scenario).items() if k not in shares}
    return {**tuned, **length_hparams(optimizer, epochs)}


def tuned_hparams(optimizer: str, scenario: str, tune_budget: int, tune_epochs: int, train_fraction: float,
                  executor=None, root=None, progress: bool = True, **overrides) -> tuple[pd.DataFrame, dict]:
    """A single-stage rate search (side experiments; the study's tuning is :func:`plan`)."""
    base = base_config(optimizer, tuning_scenario(scenario), epochs=tune_epochs, train_fraction=train_fraction,
                       **overrides)
    return T.tune(base, tune_budget, executor=executor, root=root, progress=progress)
