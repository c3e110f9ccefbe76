"""The study's planner: :mod:`helpers.study.definition` and the records in, the runs to train now out.

Tuning is staged (grid -> extension -> quasi-random trials -> choice; l2 and sparse rows start
from the standard row's choice; finals from a row's choice; extra seeds from a row's complete
hold-out ranking), so :func:`plan` returns only what can run now, ordered by the definition's
priority, and :func:`blocked` says what waits for what. :func:`execute` alternates the two
until nothing is left. :func:`run_family` is the same machinery for a notebook's members in
one scenario. A run already on disk (finished, diverged or failed) is a result and is not
planned again (``retry_failed`` re-plans failed ones).
"""
from __future__ import annotations

import argparse
import json
import math
import sys
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import NamedTuple

import pandas as pd

from ..constraints.scenarios import get_scenario
from ..engine.config import RunConfig
from ..optimizers import get_spec, names
from ..problem.data import N_TRAIN
from . import definition as D
from . import tuning as T
from .definition import Profile, Row, get_profile
from .experiment import records_of, run_all
from .records import DONE, read_meta_file, runs_dir

STAGES = ("fixed", "grid", "extension", "trials", "l2", "rates", "tuning", "final", "seeds", "members")
TUNING_STAGES = ("grid", "extension", "trials", "l2", "rates")
ORACLE_EPOCH = 60_000  # the cost table's unit: seconds per 60,000 oracle calls
COSTS_FILE = Path(__file__).resolve().parents[2] / "outputs" / "timing" / "seconds_per_epoch.csv"


# --- configurations ----------------------------------------------------------------------------

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


# --- the planner ---------------------------------------------------------------------------------

class Outcome(NamedTuple):
    status: str
    val_acc: float
    val_loss: float


class Choice(NamedTuple):
    hparams: dict  # optimizer hyperparameters (run-length shares excluded)
    settings: dict  # RunConfig fields chosen by tuning (a method's own batch size)
    score: tuple | None


@dataclass(frozen=True)
class Planned:
    config: RunConfig
    row: str
    method: str
    strategy: str
    stage: str
    priority: tuple


@dataclass(frozen=True)
class Blocked:
    row: str
    method: str  # "?" when the row's members wait for a ranking
    strategy: str
    stage: str
    runs: int  # expected (extra seeds: an upper bound; grid extensions: not counted)
    split: str
    waiting_for: str


@dataclass
class Plan:
    profile: Profile
    runnable: list[Planned] = field(default_factory=list)
    done: list[Planned] = field(default_factory=list)
    blocked: list[Blocked] = field(default_factory=list)
    failed: list[Planned] = field(default_factory=list)  # done, but as a failure (an exception)
    choices: dict = field(default_factory=dict)
    edges: dict = field(default_factory=dict)  # (row, method, strategy) -> T.edge_status of the rate


def outcomes(records: pd.DataFrame | None = None, root=None) -> dict[str, Outcome]:
    """run id -> Outcome, from a ``load_records`` frame or else from the meta.json files under ``root``."""
    if records is not None:
        if records.empty:
            return {}
        frame = records.copy()
        if "epoch" in frame:
            frame = frame.sort_values("epoch", na_position="first")
        last = frame.groupby("run_id").tail(1)
        get = lambda row, key: row.get(key, math.nan)  # noqa: E731
        return {r["run_id"]: Outcome(r["status"], get(r, "val_acc"), get(r, "val_loss"))
                for r in last.to_dict("records")}
    found = {}
    for path in runs_dir(root).glob("*/meta.json"):
        meta = read_meta_file(path)
        final = meta.get("final") or {}
        found[meta["run_id"]] = Outcome(meta.get("status", "?"), final.get("val_acc", math.nan),
                                        final.get("val_loss", math.nan))
    return found


class _Planner:
    def __init__(self, profile: Profile, found: dict[str, Outcome], rows, bases, retry_failed: bool,
                 seeds: tuple | None):
        self.p, self.found, self.retry, self.seeds = profile, found, retry_failed, seeds
        self.rows = sorted(rows, key=lambda r: (r.priority, _row_index(r)))
        self.catalog = {r.name: r for r in [*profile.rows_in(), *(bases or ()), *rows]}
        self.plan = Plan(profile)
        self._runnable: dict[str, Planned] = {}
        self._done: dict[str, Planned] = {}
        self._tuning_seen: dict[tuple, int] = {}
        self._choices: dict[tuple, Choice | None] = {}
        self._waiting: dict[tuple, str] = {}
        self._rankings: dict[str, list | None] = {}

    # registering runs
    def need(self, config: RunConfig, row: Row, method: str, strategy: str, stage: str,
             priority: tuple) -> Outcome | None:
        rid = config.run_id
        planned = Planned(config, row.name, method, strategy, stage, priority)
        if stage in TUNING_STAGES:
            key = (row.name, method, strategy)
            self._tuning_seen[key] = self._tuning_seen.get(key, 0) + 1
        outcome = self.found.get(rid)
        if outcome is not None and (outcome.status in DONE or (outcome.status == "failed" and not self.retry)):
            if rid not in self._done and outcome.status == "failed":
                self.plan.failed.append(planned)
            self._done.setdefault(rid, planned)
            return outcome
        if rid not in self._runnable or priority < self._runnable[rid].priority:
            self._runnable[rid] = planned
        return None

    def priority(self, row: Row, stage: str, method: str, extra: bool = False) -> tuple:
        level = row.top_priority if extra and row.top_priority is not None else row.priority
        order = names().index(method) if method in names() else 0
        return (level, _row_index(row), STAGES.index(stage), order)

    # members and rankings
    def members(self, row: Row) -> list[str] | None:
        if row.methods == "all":
            return list(self.p.methods or names())
        if isinstance(row.methods, tuple):
            return list(row.methods)
        selector, _, source = row.methods.partition(":")
        if selector not in ("family_best", "best") or source not in self.catalog:
            raise ValueError(f"row {row.name!r}: methods {row.methods!r}; use 'all', a tuple of names, "
                             f"'family_best:<row>' or 'best:<row>' with a row of the study")
        ranking = self.ranking(self.catalog[source])
        if ranking is None:
            return None
        if selector == "best":
            return [ranking[0][0]]
        best: dict[str, str] = {}
        for method, _, _ in ranking:
            best.setdefault(get_spec(method).family, method)
        return list(best.values())

    def ranking(self, row: Row) -> list[tuple] | None:
        """[(method, strategy, score)] best first on the hold-out, once every member has a choice."""
        if row.name not in self._rankings:
            members = self.members(row)
            result = None
            if members is not None:
                scored = [(m, s, self.choice(row, m, s)) for m in members for s in row.strategies]
                if all(c is not None for _, _, c in scored):
                    result = sorted(((m, s, c.score) for m, s, c in scored), key=lambda x: (x[2], x[0]),
                                    reverse=True)
            self._rankings[row.name] = result
        return self._rankings[row.name]

    def top(self, row: Row, ranking: list[tuple]) -> list[tuple]:
        """The row's best ``top_k`` and the best of each family."""
        chosen = [(m, s) for m, s, _ in ranking[:self.p.top_k]]
        families: dict[str, tuple] = {}
        for m, s, _ in ranking:
            families.setdefault(get_spec(m).family, (m, s))
        return chosen + [x for x in families.values() if x not in chosen]

    # tuning
    def choice(self, row: Row, method: str, strategy: str) -> Choice | None:
        key = (row.name, method, strategy)
        if key not in self._choices:
            tune = {"grid": self._grid, "l2": self._l2, "rates": self._rates, "none": self._fixed}
            if row.tuning not in tune:
                raise ValueError(f"row {row.name!r}: unknown tuning {row.tuning!r}; choose one of {sorted(tune)}")
            self._choices[key] = tune[row.tuning](row, method, strategy)
        return self._choices[key]

    def _trial(self, row, method, strategy, stage, hparams, settings=None) -> tuple[RunConfig, Outcome | None]:
        settings = {**row.overrides, **(settings or {})}
        config = study_config(method, row.scenario, "val", self.p, hparams, strategy=strategy, **settings)
        return config, self.need(config, row, method, strategy, stage, self.priority(row, stage, method))

    def _best(self, row, method, strategy, trials) -> Choice | None:
        if any(outcome is None for _, outcome, _ in trials):
            self._waiting[(row.name, method, strategy)] = f"the {row.tuning} trials of {method} in {row.name}"
            return None
        shares = get_spec(method).run_share
        config, outcome, settings = max(trials, key=lambda t: T.score(t[1].val_acc, t[1].val_loss))
        hparams = {k: v for k, v in config.hparams.items() if k not in shares}
        return Choice(hparams, settings, T.score(outcome.val_acc, outcome.val_loss))

    def _grid(self, row, method, strategy) -> Choice | None:
        grid = T.grid_exponents(method, self.p.grid_points)
        results = {j: self._trial(row, method, strategy, "grid", {"lr": T.lr_of(j)}) for j in grid}
        if any(o is None for _, o in results.values()):
            self._waiting[(row.name, method, strategy)] = f"the rate grid of {method} in {row.name}"
            return None
        while True:
            best = max(sorted(results), key=lambda j: T.score(results[j][1].val_acc, results[j][1].val_loss))
            nxt = T.next_extension(sorted(results), best, grid, self.p.grid_extension)
            if nxt is None:
                break
            results[nxt] = self._trial(row, method, strategy, "extension", {"lr": T.lr_of(nxt)})
            if results[nxt][1] is None:
                self._waiting[(row.name, method, strategy)] = f"the grid extension of {method} in {row.name}"
                return None
        self.plan.edges[(row.name, method, strategy)] = T.edge_status(sorted(results), best, grid,
                                                                      self.p.grid_extension)
        trials = [(c, o, {}) for c, o in results.values()]
        space = {k: v for k, v in T.key_space(method).items() if k not in row.overrides}
        for point in T.qmc_points(space, self.p.qmc_trials, f"{row.name}:{method}:{strategy}"):
            hparams, settings = T.split_setting(point)
            config, outcome = self._trial(row, method, strategy, "trials", {"lr": T.lr_of(best), **hparams}, settings)
            trials.append((config, outcome, settings))
        return self._best(row, method, strategy, trials)

    def _base(self, row, method) -> Choice | None:
        base = self.choice(self.catalog[row.base], method, "projection")
        if base is None:
            self._waiting[(row.name, method, "")] = f"the choice of {method} in {row.base}"
        return base

    def _l2(self, row, method, strategy) -> Choice | None:
        base = self._base(row, method)
        if base is None:
            return None
        trials = []
        for point in T.qmc_points(T.l2_space(method, base.hparams["lr"]), self.p.l2_trials,
                                  f"{row.name}:{method}:{strategy}"):
            config, outcome = self._trial(row, method, strategy, "l2", {**base.hparams, **point}, base.settings)
            trials.append((config, outcome, base.settings))
        return self._best(row, method, strategy, trials)

    def _rates(self, row, method, strategy) -> Choice | None:
        base = self._base(row, method)
        if base is None:
            return None
        trials = []
        for j in T.rate_exponents(T.exponent_of(base.hparams["lr"]), self.p.sparse_rates):
            config, outcome = self._trial(row, method, strategy, "rates", {**base.hparams, "lr": T.lr_of(j)},
                                          base.settings)
            trials.append((config, outcome, base.settings))
        return self._best(row, method, strategy, trials)

    def _fixed(self, row, method, strategy) -> Choice:
        return Choice(dict(row.overrides.get("hparams", {})), {}, None)

    # finals
    def seed_counts(self, row: Row) -> tuple[tuple, tuple]:
        """(every member's seeds, the extra seeds of the best)."""
        if self.seeds is not None:
            return tuple(self.seeds), ()
        cap = self.p.max_seeds or max(row.seeds, row.top_seeds)
        base, top = min(row.seeds, cap), min(row.top_seeds, cap)
        return tuple(range(base)), tuple(range(base, max(base, top)))

    def final(self, row, method, strategy, choice: Choice, seed: int) -> RunConfig:
        if row.tuning == "none":
            settings = {k: v for k, v in row.overrides.items()}
            return RunConfig(optimizer=method, scenario=row.scenario, epochs=self.p.epochs,
                             train_fraction=self.p.train_fraction, evals_per_epoch=self.p.evals_per_epoch,
                             seed=seed, **settings)
        settings = {**row.overrides, **choice.settings}
        return study_config(method, row.scenario, "test", self.p, choice.hparams, seed=seed, strategy=strategy,
                            **settings)

    def run_row(self, row: Row) -> None:
        seeds, extra = self.seed_counts(row)
        members = self.members(row)
        if members is None:
            source = row.methods.split(":", 1)[1]
            n = 1 if row.methods.startswith("best:") else len({get_spec(m).family for m in (self.p.methods or names())})
            per_member = self.expected_tuning(row, None) + len(seeds)
            self.plan.blocked.append(Blocked(row.name, "?", ",".join(row.strategies), "members", n * per_member,
                                             "val", f"the hold-out ranking of {source}"))
            return
        for method in members:
            for strategy in row.strategies:
                choice = self.choice(row, method, strategy)
                self.plan.choices[(row.name, method, strategy)] = choice
                if choice is None:
                    self.block_tuning(row, method, strategy)
                    self.plan.blocked.append(Blocked(row.name, method, strategy, "final", len(seeds), "test",
                                                     f"the choice of {method} in {row.name}"))
                    continue
                for seed in seeds:
                    self.need(self.final(row, method, strategy, choice, seed), row, method, strategy,
                              "final" if row.tuning != "none" else "fixed", self.priority(row, "final", method))
        if not extra:
            return
        ranking = self.ranking(row)
        if ranking is None:
            n = min(len(members) * len(row.strategies), self.p.top_k + len(D.FAMILIES_ORDER))
            self.plan.blocked.append(Blocked(row.name, "?", ",".join(row.strategies), "seeds", n * len(extra),
                                             "test", f"the hold-out ranking of {row.name}"))
            return
        for method, strategy in self.top(row, ranking):
            choice = self.choice(row, method, strategy)
            for seed in extra:
                self.need(self.final(row, method, strategy, choice, seed), row, method, strategy, "seeds",
                          self.priority(row, "seeds", method, extra=True))

    def expected_tuning(self, row: Row, method: str | None) -> int:
        """Tuning runs a (row, method) takes, grid extensions aside."""
        if row.tuning == "grid":
            has_keys = method is None or bool(T.key_space(method))
            return self.p.grid_points + (self.p.qmc_trials if has_keys else 0)
        return {"l2": self.p.l2_trials, "rates": self.p.sparse_rates}.get(row.tuning, 0)

    def block_tuning(self, row, method, strategy) -> None:
        left = self.expected_tuning(row, method) - self._tuning_seen.get((row.name, method, strategy), 0)
        if left > 0:
            why = self._waiting.get((row.name, method, strategy)) or self._waiting.get((row.name, method, ""), "")
            self.plan.blocked.append(Blocked(row.name, method, strategy, "tuning", left, "val", why))

    def run(self) -> Plan:
        for row in self.rows:
            self.run_row(row)
        self.plan.runnable = sorted(self._runnable.values(), key=lambda r: r.priority)
        self.plan.done = list(self._done.values())
        return self.plan


def _row_index(row: Row) -> int:
    return next((i for i, r in enumerate(D.ROWS) if r.name == row.name), len(D.ROWS))


def study_plan(records: pd.DataFrame | None = None, profile: str | Profile = "full", root=None, rows=None,
               bases=None, retry_failed: bool = False, seeds=None) -> Plan:
    """The whole plan: runnable, done and blocked runs of ``profile``'s rows (or of ``rows``, whose
    ``base`` rows are looked up in ``bases``, then in the profile). ``records``: a ``load_records``
    frame; None reads the meta.json files under ``root``. ``seeds``: every member's seeds
    instead of the rows' (no extra seeds)."""
    profile = get_profile(profile) if isinstance(profile, str) else profile
    rows = list(rows) if rows is not None else list(profile.rows_in())
    return _Planner(profile, outcomes(records, root), rows, bases, retry_failed, seeds).run()


def plan(records: pd.DataFrame | None = None, profile: str | Profile = "full", root=None, **kwargs) -> list[Planned]:
    """The runs that can be trained now, most valuable first."""
    return study_plan(records, profile, root, **kwargs).runnable


def blocked(records: pd.DataFrame | None = None, profile: str | Profile = "full", root=None,
            **kwargs) -> list[Blocked]:
    """What is still blocked, and on what."""
    return study_plan(records, profile, root, **kwargs).blocked


def execute(profile: str | Profile = "full", executor=None, root=None, progress: bool = True, rows=None,
            bases=None, seeds=None, max_rounds: int = 50) -> Plan:
    """Train the plan round by round (each round unblocks the next) until nothing is runnable."""
    for _ in range(max_rounds):
        current = study_plan(None, profile, root, rows=rows, bases=bases, seeds=seeds)
        if not current.runnable:
            return current
        run_all([r.config for r in current.runnable], executor, root, progress)
    raise RuntimeError(f"the study still had runs to train after {max_rounds} rounds")


# --- the notebooks' entry point ------------------------------------------------------------------

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


# --- reading the plan: tables, counts and costs ---------------------------------------------------

def definition_table(profile: str | Profile = "full") -> pd.DataFrame:
    """The profile's rows as a table."""
    p = get_profile(profile) if isinstance(profile, str) else profile
    out = []
    for row in sorted(p.rows_in(), key=lambda r: (r.priority, _row_index(r))):
        methods = row.methods if isinstance(row.methods, str) else ",".join(row.methods)
        if methods == "all":
            methods = f"all ({len(p.methods or names())})"
        tuning = {"grid": f"{p.grid_points} rates +<= {p.grid_extension} edge, {p.qmc_trials} qmc",
                  "l2": f"{p.l2_trials} qmc (rate, wd)", "rates": f"{p.sparse_rates} rates",
                  "none": "fixed"}[row.tuning]
        cap = p.max_seeds or 99
        out.append(dict(priority=row.priority, row=row.name, scenario=row.scenario, methods=methods,
                        strategies=",".join(row.strategies) if get_scenario(row.scenario).sparse else "-",
                        tuning=tuning, base=row.base if row.tuning in ("l2", "rates") else "-",
                        seeds=min(row.seeds, cap),
                        top_seeds=(f"{min(row.top_seeds, cap)} (top {p.top_k} + family best, priority "
                                   f"{row.top_priority})" if min(row.top_seeds, cap) > min(row.seeds, cap) else "-"),
                        overrides=" ".join(f"{k}={v}" for k, v in row.overrides.items())))
    return pd.DataFrame(out)


def methods_table(profile: str | Profile = "full") -> pd.DataFrame:
    """Per method: family, rate grid, key hyperparameters, weight-decay kind, schedule, budgets."""
    p = get_profile(profile) if isinstance(profile, str) else profile
    out = []
    for m in p.methods or names():
        spec = get_spec(m)
        grid = [T.lr_of(j) for j in T.grid_exponents(m, p.grid_points)]
        out.append(dict(method=m, family=spec.family, lr_range=spec.search_space["lr"][:2],
                        grid=f"{grid[0]:g}..{grid[-1]:g}", key_hparams=",".join(T.key_space(m)) or "-",
                        weight_decay=D.weight_decay_kind(m), schedule=schedule_for(m),
                        batch=spec.batch_size or 64, epochs=epochs_of(m, p),
                        budget_tune=oracle_budget(m, p, "val"), budget_final=oracle_budget(m, p, "test")))
    return pd.DataFrame(out)


def counts(state: Plan) -> pd.DataFrame:
    """Runs per (row, stage): done, runnable now, blocked (expected)."""
    rows = [dict(row=r.row, stage=r.stage, state="done") for r in state.done]
    rows += [dict(row=r.row, stage=r.stage, state="runnable") for r in state.runnable]
    frame = pd.DataFrame(rows, columns=["row", "stage", "state"])
    table = frame.groupby(["row", "stage", "state"]).size().unstack("state", fill_value=0)
    blocked_rows = pd.DataFrame([dict(row=b.row, stage=b.stage, blocked=b.runs) for b in state.blocked],
                                columns=["row", "stage", "blocked"]).groupby(["row", "stage"]).sum()
    table = table.join(blocked_rows, how="outer").fillna(0).astype(int)
    for column in ("done", "runnable", "blocked"):
        if column not in table:
            table[column] = 0
    table = table[["done", "runnable", "blocked"]]
    order = {r.name: i for i, r in enumerate(D.ROWS)}
    keys = sorted(table.index, key=lambda k: (order.get(k[0], 99), STAGES.index(k[1]) if k[1] in STAGES else 99))
    return table.loc[keys]


def choices_table(state: Plan) -> pd.DataFrame:
    """Per (row, method, strategy): the tuned choice, the rate's place on its grid (interior /
    limit / spent / open) and the tuning runs spent, grid extension apart."""
    spent: dict[tuple, dict] = {}
    for r in state.done + state.runnable:
        if r.stage in TUNING_STAGES:
            key = (r.row, r.method, r.strategy)
            spent.setdefault(key, {"trials": 0, "extension": 0})
            spent[key]["trials"] += 1
            spent[key]["extension"] += r.stage == "extension"
    rows = []
    for (row, method, strategy), choice in state.choices.items():
        runs = spent.get((row, method, strategy), {"trials": 0, "extension": 0})
        rows.append(dict(row=row, method=method, strategy=strategy,
                         lr=choice.hparams.get("lr") if choice else None,
                         chosen=json.dumps({**choice.hparams, **choice.settings}, default=list) if choice else "",
                         edge=state.edges.get((row, method, strategy), "-"), **runs))
    return pd.DataFrame(rows, columns=["row", "method", "strategy", "lr", "chosen", "edge", "trials", "extension"])


def cost_table(path=COSTS_FILE, fallback_root=None) -> tuple[dict, str]:
    """(method -> seconds per 60,000 oracle calls on one process, where the numbers come from).

    From ``path`` (the timing pass's file: method, seconds_per_epoch, batched_seconds_per_epoch
    per model when the engine trains several at once) where filled in, the batched figure first;
    else, if ``fallback_root`` is given, the median over its finished full-data runs (e.g. the
    archived v1 runs: measured on mixed engines while several runs shared the machine, so not a
    plan, at best an order of magnitude)."""
    path = Path(path)
    if path.is_file():
        table = pd.read_csv(path)
        single = table.get("seconds_per_epoch", pd.Series(dtype=float))
        batched = table.get("batched_seconds_per_epoch", pd.Series(dtype=float))
        seconds = batched.fillna(single) if len(batched) else single
        source = {m: float(v) for m, v in zip(table["method"], seconds) if pd.notna(v)}
        if source:
            return source, f"timing pass ({path})"
    if fallback_root is not None:
        rates = _rates_from(Path(fallback_root))
        if rates:
            return rates, (f"median of the finished runs under {fallback_root} (mixed engines, concurrent "
                           f"runs: not a plan)")
    return {}, "no measured cost yet"


def _rates_from(root: Path) -> dict[str, float]:
    rates: dict[str, list[float]] = {}
    for meta_path in Path(root).glob("*/meta.json"):
        meta = read_meta_file(meta_path)
        final = meta.get("final") or {}
        cfg = meta.get("config", {})
        oracle = final.get("oracle_evals") or final.get("grad_evals")
        if meta.get("status") == "finished" and cfg.get("train_fraction") == 1.0 and oracle and final.get("wall_s"):
            rates.setdefault(cfg["optimizer"], []).append(final["wall_s"] / (oracle / ORACLE_EPOCH))
    return {m: float(pd.Series(v).median()) for m, v in rates.items()}


def per_method(state: Plan) -> pd.DataFrame:
    """Runs left per method and their oracle budget in epochs of 60,000 calls (multiply by the
    cost table's seconds); members not yet known (family best) count as "?"."""
    rows = [(r.method, 1, (r.config.grad_budget or r.config.epochs * n_train(state.profile, r.config.eval_split))
             / ORACLE_EPOCH) for r in state.runnable]
    for b in state.blocked:
        oracle = (oracle_budget(b.method, state.profile, b.split) if b.method != "?"
                  else state.profile.epochs * n_train(state.profile, b.split))
        rows.append((b.method, b.runs, b.runs * oracle / ORACLE_EPOCH))
    frame = pd.DataFrame(rows, columns=["method", "runs", "oracle_epochs"])
    return frame.groupby("method").sum().sort_values("oracle_epochs", ascending=False)


def estimate(state: Plan, costs: dict) -> pd.DataFrame:
    """Seconds of training per (row, stage) for the runnable and blocked runs (one process)."""
    typical = float(pd.Series(list(costs.values())).median()) if costs else math.nan
    rows = []
    for r in state.runnable:
        oracle = r.config.grad_budget or r.config.epochs * n_train(state.profile, r.config.eval_split)
        rows.append(dict(row=r.row, stage=r.stage, runs=1,
                         seconds=oracle / ORACLE_EPOCH * costs.get(r.method, typical)))
    for b in state.blocked:
        oracle = (oracle_budget(b.method, state.profile, b.split) if b.method != "?"
                  else state.profile.epochs * n_train(state.profile, b.split))
        rows.append(dict(row=b.row, stage=b.stage, runs=b.runs,
                         seconds=b.runs * oracle / ORACLE_EPOCH * costs.get(b.method, typical)))
    frame = pd.DataFrame(rows, columns=["row", "stage", "runs", "seconds"])
    return frame.groupby(["row", "stage"], sort=False).sum()


# --- command line ------------------------------------------------------------------------------

def _plan_command(args) -> int:
    profile = get_profile(args.profile, args.cuts)
    if args.what == "definition":
        with pd.option_context("display.width", 250, "display.max_colwidth", 80):
            print(f"study definition, protocol v{D.PROTOCOL_VERSION}, profile {profile.name!r}"
                  + (f" with the first {args.cuts} cut(s)" if args.cuts else ""))
            print(definition_table(profile).to_string(index=False))
            print()
            print(methods_table(profile).to_string(index=False))
            print()
            for strategy, text in D.strategy_settings().items():
                print(f"{strategy}: {text}")
        return 0
    if not args.dry_run:
        from .executors import make_executor
        with make_executor(args.scheduler, args.jobs) as executor:
            state = execute(profile, executor, args.runs_dir)
    else:
        state = study_plan(None, profile, args.runs_dir, retry_failed=args.retry_failed)
    table = counts(state)
    costs, source = cost_table(args.costs, args.cost_runs)
    cost = estimate(state, costs)
    with pd.option_context("display.width", 200):
        print(f"profile {profile.name!r}, protocol v{D.PROTOCOL_VERSION}, runs under {runs_dir(args.runs_dir)}")
        print(table.to_string())
        if args.per_method:
            print(per_method(state).round(1).to_string())
        total = table.sum()
        print(f"done {total['done']}, runnable now {total['runnable']}, blocked {total['blocked']} "
              f"(blocked: expected counts; grid extensions not counted, extra seeds an upper bound)")
        for cut, (what, _) in enumerate(D.CUTS[:args.cuts], 1):
            print(f"cut {cut}: {what}")
        hours = cost["seconds"].sum() / 3600
        if costs:
            print(f"cost of what is left: {hours:.1f} h on one process, {hours / max(args.jobs or 2, 1):.1f} h "
                  f"with {args.jobs or 2} (seconds per 60,000 oracle calls: {source})")
        else:
            print(f"cost of what is left: unknown ({source}; fill {args.costs})")
        edges = {k: v for k, v in state.edges.items() if v in ("spent", "limit")}
        for (row, method, strategy), status in sorted(edges.items()):
            print(f"rate on the grid's edge after tuning: {method} in {row} ({status})")
        for r in state.failed:
            print(f"failed (counted as a result; --retry-failed plans it again): {r.config.run_id}")
    return 0


def _archive_command(args) -> int:
    from .records import archive_runs
    moved = archive_runs(args.protocol, args.runs_dir, dry_run=args.dry_run)
    verb = "would move" if args.dry_run else "moved"
    print(f"{verb} {len(moved)} run(s) of protocol v{args.protocol} out of {runs_dir(args.runs_dir)}")
    return 0


def _command_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m helpers.study", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    for what in ("plan", "definition"):
        p = sub.add_parser(what, help="print the definition" if what == "definition" else
                           "train the study's runnable runs round by round (--dry-run: count them)")
        p.set_defaults(what=what)
        p.add_argument("--profile", default="full", choices=sorted(D.PROFILES))
        p.add_argument("--cuts", type=int, default=0, help=f"apply the first N of the {len(D.CUTS)} cuts")
        p.add_argument("--runs-dir", default=None)
        p.add_argument("--dry-run", action="store_true")
        p.add_argument("--retry-failed", action="store_true")
        p.add_argument("--per-method", action="store_true", help="also print runs and oracle budget per method")
        p.add_argument("--jobs", type=int, default=None)
        p.add_argument("--scheduler", default=None)
        p.add_argument("--costs", default=str(COSTS_FILE), help="seconds per 60,000 oracle calls per method (CSV)")
        p.add_argument("--cost-runs", default=None,
                       help="runs whose wall times stand in while the CSV is empty (a rough guide)")
    archive = sub.add_parser("archive", help="move the runs of an older protocol to outputs/archive/v<N>/runs")
    archive.set_defaults(what="archive")
    archive.add_argument("--protocol", type=int, default=1)
    archive.add_argument("--runs-dir", default=None)
    archive.add_argument("--dry-run", action="store_true")
    return parser


def main(argv=None) -> int:
    """``python -m helpers.study {plan,definition,archive} ...`` or ``SCENARIO MEMBER[,MEMBER...]``."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in ("plan", "definition", "archive"):
        args = _command_parser().parse_args(argv)
        return _archive_command(args) if args.what == "archive" else _plan_command(args)
    return _family_command(argv)


def _family_command(argv) -> int:
    from .executors import make_executor
    parser = argparse.ArgumentParser(prog="python -m helpers.study",
                                     description="Tune and train MEMBERS in SCENARIO by the protocol "
                                                 "(or: plan / definition / archive, see --help of each).")
    parser.add_argument("scenario", help="a scenario (standard, l2, sparse60, ...)")
    parser.add_argument("members", help="comma-separated optimizer names, or 'all'")
    parser.add_argument("--seeds", default=None, help="comma-separated seeds (default: the profile's)")
    parser.add_argument("--profile", default="full", choices=sorted(D.PROFILES))
    parser.add_argument("--jobs", type=int, default=None, help="worker processes (default: one per core)")
    parser.add_argument("--scheduler", default=None, help="Dask scheduler address")
    parser.add_argument("--strategy", default="projection", help="sparsity strategy")
    parser.add_argument("--tag", default="", help="label of a side experiment, reported apart from the study")
    args = parser.parse_args(argv)
    members = names() if args.members == "all" else args.members.split(",")
    for m in members:
        get_spec(m)
    get_scenario(args.scenario)
    profile: dict | str = args.profile
    if args.seeds:
        profile = {"profile": args.profile, "seeds": [int(x) for x in args.seeds.split(",")]}
    tag = {"tag": args.tag} if args.tag else {}
    with make_executor(args.scheduler, args.jobs) as executor:
        finals = run_family(members, args.scenario, profile, executor, sparsity_strategy=args.strategy, **tag).frame
    last = finals.sort_values("epoch").groupby("run_id").tail(1)
    print(last.groupby("optimizer")["test_acc"].agg(["mean", "std", "count"]).to_string())
    return 0


if __name__ == "__main__":
    sys.exit(main())
