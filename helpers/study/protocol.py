"""The study's shared recipe: how a method is configured, tuned and re-trained in each profile.

Family notebooks and the full study call :func:`run_family`, so the same parameters give the
same run ids and finished runs are reused wherever they were computed.

Protocol: for each method, ``tune_budget`` configurations (helpers.study.tuning) trained for
``tune_epochs`` epochs on 50,000 training images and scored on the 10,000-image hold-out;
sparse scenarios reuse the configuration tuned for ``standard``. The chosen configuration is
re-trained for ``epochs`` epochs on all 60,000 images, once per seed, and evaluated on the test set.
"""
from __future__ import annotations

import argparse
import json
import sys
from typing import NamedTuple

import pandas as pd

from ..engine.config import RunConfig
from .experiment import records_of, run_all
from ..optimizers import get_spec
from ..constraints.scenarios import get_scenario
from .records import load_records
from .tuning import best_of, final_configs, tune, tuning_configs

# Sizes of a study. quick: minutes on 2 CPU cores; full: the study behind the report.
PROFILES = {
    "ci": dict(epochs=1, train_fraction=0.05, seeds=[0], tune_budget=2, tune_epochs=1, evals_per_epoch=1),
    "quick": dict(epochs=2, train_fraction=0.1, seeds=[0], tune_budget=2, tune_epochs=1, evals_per_epoch=2),
    "full": dict(epochs=10, train_fraction=1.0, seeds=[0, 1, 2], tune_budget=4, tune_epochs=2,
                 evals_per_epoch=2),  # helpers.study.sweep's "full" profile passes the same to the notebooks
}
SCALING = "standardize"
# Oracle calls (sample gradients + Hessian-vector products) allowed per epoch of budget, for
# methods that spend more than one gradient per sample per epoch (snapshots, line searches,
# curvature): they stop when they have used what `epochs` of plain SGD would.
ORACLE_BUDGET_PER_EPOCH = 60_000


def schedule_for(optimizer: str) -> str:
    """Cosine decay over the run, or a constant base rate for methods with their own schedule."""
    return "cosine" if get_spec(optimizer).decays else "constant"


def base_config(optimizer: str, scenario: str = "standard", epochs: int = 10, train_fraction: float = 1.0,
                evals_per_epoch: int = 1, sparsity_strategy: str = "projection", **overrides) -> RunConfig:
    """The study's configuration of ``optimizer`` before tuning (validated now, so errors come early)."""
    spec = get_spec(optimizer)
    get_scenario(scenario)
    epochs = min(epochs, spec.max_epochs or epochs)
    if not spec.elementwise:
        overrides.setdefault("grad_budget", round(epochs * ORACLE_BUDGET_PER_EPOCH * train_fraction))
    overrides["hparams"] = {**length_hparams(optimizer, epochs), **overrides.get("hparams", {})}
    settings = dict(optimizer=optimizer, scenario=scenario, epochs=epochs, train_fraction=train_fraction,
                    scaling=SCALING, schedule=schedule_for(optimizer), evals_per_epoch=evals_per_epoch,
                    sparsity_strategy=sparsity_strategy)
    return RunConfig(**{**settings, **overrides})


def length_hparams(optimizer: str, epochs: int) -> dict:
    """The method's ``run_share`` hyperparameters for a run of ``epochs``: share x epochs."""
    return {k: round(share * epochs, 4) for k, share in get_spec(optimizer).run_share.items()}


def tuning_scenario(scenario: str) -> str:
    """The scenario a method is tuned in: sparse scenarios reuse the standard scenario's tuning."""
    return "standard" if get_scenario(scenario).sparse else scenario


def tuned_hparams(optimizer: str, scenario: str, tune_budget: int, tune_epochs: int, train_fraction: float,
                  executor=None, root=None, progress: bool = True, **overrides) -> tuple[pd.DataFrame, dict]:
    base = base_config(optimizer, tuning_scenario(scenario), epochs=tune_epochs, train_fraction=train_fraction,
                       **overrides)
    return tune(base, tune_budget, executor=executor, root=root, progress=progress)


class FamilyRun(NamedTuple):
    tuning: pd.DataFrame  # last record of every tuning candidate, with a ``member`` column
    finals: list  # the final RunConfigs (chosen hyperparameters x seeds)
    frame: pd.DataFrame  # records of the final runs


def run_family(members, scenario: str = "standard", profile: str | dict = "quick", executor=None, root=None,
               progress: bool = True, **overrides) -> FamilyRun:
    """Tune every member, re-train the chosen configurations with each seed.

    All members' candidates go to the executor together, then all final runs. ``profile`` is a
    name in :data:`PROFILES` or a dict with the same keys. ``overrides`` (e.g. batch_size,
    schedule) apply to tuning and final runs alike.
    """
    p = PROFILES[profile] if isinstance(profile, str) else profile
    tune_scenario = tuning_scenario(scenario)
    tune_overrides = {k: v for k, v in overrides.items() if k != "sparsity_strategy"}
    candidates = {m: tuning_configs(base_config(m, tune_scenario, p["tune_epochs"], p["train_fraction"],
                                                **tune_overrides), p["tune_budget"]) for m in members}
    run_all([c for cs in candidates.values() for c in cs], executor, root, progress)
    tables, finals = [], []
    frame = load_records(root)
    for member, configs in candidates.items():
        runs = frame[frame["run_id"].isin({c.run_id for c in configs})]
        tables.append(runs.sort_values("epoch").groupby("run_id").tail(1).assign(member=member))
        best = json.loads(best_of(runs)["hparams"])
        base = base_config(member, scenario, p["epochs"], p["train_fraction"], p["evals_per_epoch"],
                           **overrides)
        finals += final_configs(base, final_hparams(best, member, scenario, base.epochs), p["seeds"])
    run_all(finals, executor, root, progress)
    return FamilyRun(pd.concat(tables, ignore_index=True), finals, records_of(finals, root))


def scenario_hparams(best: dict, scenario: str) -> dict:
    """Tuned values as a scenario accepts them (a weight decay only under l2)."""
    if not get_scenario(scenario).l2:
        return {k: v for k, v in best.items() if k != "weight_decay" or not v}
    return best


def final_hparams(best: dict, optimizer: str, scenario: str, epochs: int) -> dict:
    """A final run's hyperparameters: the tuned ones as ``scenario`` accepts them, with the
    run-length shares set for ``epochs`` instead of the tuning run's length."""
    shares = get_spec(optimizer).run_share
    tuned = {k: v for k, v in scenario_hparams(best, scenario).items() if k not in shares}
    return {**tuned, **length_hparams(optimizer, epochs)}


def ranked_on_validation(tables: pd.DataFrame) -> list[str]:
    """Members ordered by their best validation accuracy in tuning (the test set is not used)."""
    best = tables.groupby("member")["val_acc"].max().fillna(-1.0)
    return list(best.sort_values(ascending=False).index)


# The staged full study, most important first (a run is never recomputed, so stopping and
# restarting is cheap): every method on standard with one seed; more seeds for the methods that
# did best on the validation hold-out and for the best of each family; l2 and sparse60 for the
# 3 best, the starter, then l2 and sparse60 for the best of each family; thinner budgets for the
# 3 best and other sparsity strategies for the best one; thinner budgets for the best of each
# family; then seeds for everyone else.
# (scenario, which members of the ranking, seeds, sparsity strategy); "which" is a count from the
# top, "all", or "families" (the best of each family).
STAGES = (
    ("standard", "all", [0], "projection"),
    ("standard", 4, [1, 2], "projection"),
    ("standard", "families", [1, 2], "projection"),
    ("l2", 3, [0, 1, 2], "projection"),
    ("sparse60", 3, [0, 1, 2], "projection"),
    ("starter", 0, [0, 1, 2], ""),
    ("l2", "families", [0, 1, 2], "projection"),
    ("sparse60", "families", [0, 1, 2], "projection"),
    *[(s, 3, [0, 1], "projection") for s in ("sparse30", "sparse10", "sparse5", "sparse1", "thin30")],
    ("sparse60", 1, [0, 1], "gradual"),
    ("sparse60", 1, [0, 1], "finetune"),
    *[(s, 3, [2], "projection") for s in ("sparse30", "sparse10", "sparse5", "sparse1", "thin30")],
    *[(s, "families", [0, 1], "projection") for s in ("sparse30", "sparse10", "sparse5", "sparse1", "thin30")],
    ("standard", 8, [1, 2], "projection"),
    ("standard", "all", [1, 2], "projection"),
)


def stage_members(which, members, ranking) -> list[str]:
    """The members a stage runs: ``which`` as in :data:`STAGES`, over the validation ranking."""
    if which == "all":
        return list(members)
    if which == "families":
        best = {}
        for m in ranking:
            best.setdefault(get_spec(m).family, m)
        return list(best.values())
    return ranking[:which]


def starter_configs(seeds, epochs: int = 10, train_fraction: float = 1.0) -> list[RunConfig]:
    """The assignment's starter: plain SGD, lr 1e-3, batch 64, pixels in [0, 1], constant rate."""
    return [RunConfig(optimizer="sgd", hparams={"lr": 1e-3}, batch_size=64, scaling="unit", tag="starter",
                      seed=s, epochs=epochs, train_fraction=train_fraction) for s in seeds]


def full_study(members, executor, root=None) -> None:
    """Run :data:`STAGES` in order."""
    p = dict(PROFILES["full"])
    ranking = None
    for scenario, top, seeds, strategy in STAGES:
        if scenario == "starter":
            run_all(starter_configs(seeds), executor, root, progress=True)
            continue
        chosen = stage_members(top, members, ranking)
        tables = run_family(chosen, scenario, {**p, "seeds": seeds}, executor, root,
                            sparsity_strategy=strategy).tuning
        if ranking is None:
            ranking = ranked_on_validation(tables)
            print("ranking on the validation hold-out:", ", ".join(ranking), flush=True)


def main(argv=None) -> int:
    """``python -m helpers.study SCENARIO MEMBER[,MEMBER...] [--profile full] [--jobs 2]``"""
    from .executors import make_executor
    parser = argparse.ArgumentParser(prog="python -m helpers.study", description=__doc__)
    parser.add_argument("scenario", help="a scenario, or 'plan' for the staged full study (STAGES)")
    parser.add_argument("members", help="comma-separated optimizer names, or 'all'")
    parser.add_argument("--seeds", default=None, help="comma-separated seeds (default: the profile's)")
    parser.add_argument("--profile", default="full", choices=sorted(PROFILES))
    parser.add_argument("--jobs", type=int, default=None, help="worker processes (default: one per core)")
    parser.add_argument("--scheduler", default=None, help="Dask scheduler address")
    parser.add_argument("--strategy", default="projection", help="sparsity strategy")
    parser.add_argument("--tune-budget", type=int, default=None,
                        help="configurations per method (default: the profile's); with --tag")
    parser.add_argument("--tune-epochs", type=int, default=None,
                        help="epochs per tuning run (default: the profile's); with --tag")
    parser.add_argument("--tag", default="",
                        help="label of a side experiment, so its runs are reported apart from the study's")
    args = parser.parse_args(argv)
    if (args.tune_budget or args.tune_epochs) and not args.tag:
        parser.error("--tune-budget/--tune-epochs change the equal tuning budget: give the runs a --tag")
    from ..optimizers import names
    members = names() if args.members == "all" else args.members.split(",")
    for m in members:
        get_spec(m)
    profile = dict(PROFILES[args.profile])
    if args.seeds:
        profile["seeds"] = [int(x) for x in args.seeds.split(",")]
    for key in ("tune_budget", "tune_epochs"):
        if getattr(args, key):
            profile[key] = getattr(args, key)
    tag = {"tag": args.tag} if args.tag else {}
    if args.scenario == "plan":
        with make_executor(args.scheduler, args.jobs) as executor:
            full_study(members, executor)
        return 0
    get_scenario(args.scenario)
    with make_executor(args.scheduler, args.jobs) as executor:
        finals = run_family(members, args.scenario, profile, executor,
                            sparsity_strategy=args.strategy, **tag).frame
    last = finals.sort_values("epoch").groupby("run_id").tail(1)
    print(last.groupby("optimizer")["test_acc"].agg(["mean", "std", "count"]).to_string())
    return 0


if __name__ == "__main__":
    sys.exit(main())
