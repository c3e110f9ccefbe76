"""The study's protocol as the notebooks and drivers call it.

:mod:`helpers.study.definition` says what the study is; :mod:`helpers.study.recipe` how one run
is configured; :mod:`helpers.study.planner` which runs can train now; :mod:`helpers.study.readout`
the tables, counts, costs and the ``python -m helpers.study`` commands. Here:
:func:`run_family` (a notebook's members in one scenario, tuned and trained by the same planner,
so the same parameters give the same run ids wherever they were computed) and the notebooks'
parameter sizes per profile.
"""
from __future__ import annotations

import sys
from dataclasses import fields, replace
from typing import NamedTuple

import pandas as pd

from ..constraints.scenarios import get_scenario
from ..optimizers import get_spec
from . import definition as D
from .definition import Profile, Row, get_profile
from .experiment import records_of
from .planner import (STAGES, TUNING_STAGES, Blocked, Choice, Outcome, Plan, Planned, blocked,  # noqa: F401
                      execute, outcomes, plan, study_plan)
from .recipe import (base_config, epochs_of, final_hparams, length_hparams, n_train, oracle_budget,  # noqa: F401
                     scenario_hparams, schedule_for, starter_configs, study_config, tuned_hparams,
                     tuning_scenario)


class FamilyRun(NamedTuple):
    tuning: pd.DataFrame  # last record of every tuning trial, with ``member``, ``row`` and ``stage`` columns
    finals: list  # the final RunConfigs (chosen hyperparameters x seeds)
    frame: pd.DataFrame  # records of the final runs


def profile_from(profile: str | dict | Profile) -> tuple[Profile, tuple | None]:
    """A Profile (and explicit seeds) from a name, a Profile, or a notebook's dict (epochs,
    train_fraction, seeds, evals_per_epoch, and optionally tune_budget: the grid's points)."""
    if isinstance(profile, Profile):
        return profile, None
    if isinstance(profile, str):
        return get_profile(profile), None
    d = dict(profile)
    base = get_profile(d.pop("profile", None) or _named_like(d))
    seeds = tuple(d.pop("seeds")) if "seeds" in d else None
    d.pop("tune_epochs", None)  # tuning runs as long as the finals
    n = d.pop("tune_budget", None)
    if n is not None and n != base.grid_points:
        d.update(grid_points=n, grid_extension=0, qmc_trials=min(max(1, n // 2), base.qmc_trials),
                 l2_trials=min(n, base.l2_trials), sparse_rates=min(n, base.sparse_rates))
    known = {f.name for f in fields(Profile)}
    unknown = set(d) - known
    if unknown:
        raise ValueError(f"unknown profile setting(s) {sorted(unknown)}; known: {sorted(known)}")
    return replace(base, name=f"{base.name}*", **d), seeds


def _named_like(sizes: dict) -> str:
    """The named profile whose notebook parameters ``sizes`` repeats (else "full")."""
    keys = ("epochs", "train_fraction", "tune_budget", "evals_per_epoch")
    if all(k in sizes for k in keys[:3]):
        for name in D.PROFILES:
            own = notebook_parameters(name)
            if all(sizes.get(k, own[k]) == own[k] for k in keys):
                return name
    return "full"


def family_rows(members, scenario: str, strategy: str = "projection", overrides: dict | None = None) -> list[Row]:
    """The rows of ``members`` in ``scenario`` tuned as the definition tunes that scenario."""
    scen = get_scenario(scenario)
    overrides = dict(overrides or {})
    standard = Row("standard", "standard", tuple(members), tuning="grid", overrides=overrides)
    if scenario == "standard":
        return [standard]
    kind = "l2" if scen.l2 else "rates"
    return [standard, Row(scenario, scenario, tuple(members), (strategy,), tuning=kind, overrides=overrides)]


def run_family(members, scenario: str = "standard", profile: str | dict | Profile = "quick", executor=None,
               root=None, progress: bool = True, **overrides) -> FamilyRun:
    """Tune ``members`` in ``scenario`` by the protocol and train their finals (one per seed).

    ``profile``: a name in :data:`helpers.study.definition.PROFILES`, a Profile, or a dict
    (see :func:`profile_from`). ``overrides`` (e.g. batch_size, schedule) apply to tuning and
    final runs alike; ``sparsity_strategy`` picks the sparse scenarios' strategy.
    """
    for m in members:
        get_spec(m)
    p, seeds = profile_from(profile)
    strategy = overrides.pop("sparsity_strategy", "projection")
    rows = family_rows(members, scenario, strategy, overrides)
    target = rows[-1]
    state = execute(p, executor, root, progress, rows=[target], bases=rows, seeds=seeds)
    tuning = [r for r in state.done if r.stage in TUNING_STAGES]
    frame = records_of([r.config for r in tuning], root)
    if len(frame):
        member = {r.config.run_id: (r.method, r.row, r.stage) for r in tuning}
        frame = frame.sort_values("epoch").groupby("run_id").tail(1)
        frame = frame.assign(member=[member[i][0] for i in frame["run_id"]],
                             row=[member[i][1] for i in frame["run_id"]],
                             stage=[member[i][2] for i in frame["run_id"]]).reset_index(drop=True)
    finals = [r.config for r in state.done if r.row == target.name and r.stage in ("final", "seeds")]
    return FamilyRun(frame, finals, records_of(finals, root))


def ranked_on_validation(tables: pd.DataFrame) -> list[str]:
    """Members ordered by their best validation accuracy in tuning (the test set is not used)."""
    best = tables.groupby("member")["val_acc"].max().fillna(-1.0)
    return list(best.sort_values(ascending=False).index)


def stage_members(which, members, ranking) -> list[str]:
    """Members by ``which``: "all", "families" (the best of each family in ``ranking``) or a count from the top."""
    if which == "all":
        return list(members)
    if which == "families":
        best = {}
        for m in ranking:
            best.setdefault(get_spec(m).family, m)
        return list(best.values())
    return ranking[:which]


# The sizes the notebooks' parameters take in each profile (helpers.study.sweep passes them).
def notebook_parameters(profile: str = "full") -> dict:
    p = get_profile(profile)
    seeds = list(range(min(3, p.max_seeds or 3)))
    return dict(epochs=p.epochs, train_fraction=p.train_fraction, seeds=seeds, tune_budget=p.grid_points,
                tune_epochs=p.epochs, evals_per_epoch=p.evals_per_epoch)


PROFILES = {name: notebook_parameters(name) for name in D.PROFILES}  # read by helpers.study.sweep



def main(argv=None) -> int:
    """``python -m helpers.study {plan,definition,archive} ...`` or ``SCENARIO MEMBER[,MEMBER...]``."""
    from .readout import main as command
    return command(argv)


if __name__ == "__main__":
    sys.exit(main())
