"""The study's planner: :mod:`helpers.study.definition` and the records in, the runs to train now out.

Tuning is staged (grid -> extension -> quasi-random trials -> choice; l2 and sparse rows start
from the base row's choice; finals from a row's choice; extra seeds from a row's complete
hold-out ranking), so :func:`plan` returns only what can run now, ordered by the definition's
priority, and :func:`blocked` says what waits for what. :func:`execute` alternates planning and
training until nothing is left. A run already on disk (finished, diverged or failed) is a
result and is not planned again (``retry_failed`` re-plans failed ones).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import NamedTuple

import pandas as pd

from ..engine.config import RunConfig
from ..optimizers import get_spec, names
from ..optimizers.registry import FAMILIES
from . import definition as D
from . import tuning as T
from .definition import Profile, Row, get_profile
from .records import DONE, measurement_done, measurement_id, read_meta_file, runs_dir
from .recipe import study_config

# Stages in planning order; "tuning" and "members" label blocked runs only.
STAGES = ("fixed", "grid", "extension", "trials", "l2", "rates", "horizon", "tuning", "final", "seeds", "members",
          "measure")
TUNING_STAGES = ("grid", "extension", "trials", "l2", "rates", "horizon")
SELECTORS = ("best", "family_best", "fastest")


class Outcome(NamedTuple):
    status: str
    val_acc: float
    val_loss: float
    first_hit: float | None = None  # oracle calls to TARGET_ACC on the hold-out (inf: never); None: not read yet


class Choice(NamedTuple):
    hparams: dict  # optimizer hyperparameters (run-length shares excluded)
    settings: dict  # RunConfig fields chosen by tuning (a method's own batch size, a horizon's epochs)
    score: tuple | None
    run_id: str | None = None  # the chosen tuning trial


@dataclass(frozen=True)
class Measurement:
    """A measurement along the trajectory of ``config`` (a final run's configuration): at each of
    ``epochs`` (checkpoints), what :mod:`helpers.evidence.variance` measures at ``batch_sizes``.
    Its records live under ``outputs/measurements/<measurement_id>``."""
    kind: str
    config: RunConfig
    epochs: tuple
    batch_sizes: tuple
    row: str = ""
    method: str = ""
    study: str = "main"
    priority: tuple = ()  # like a run's: taken in the scheduler's queue beside the runs

    @property
    def measurement_id(self) -> str:
        return measurement_id(self.kind, self.config, self.epochs, self.batch_sizes)



@dataclass(frozen=True)
class Planned:
    config: RunConfig
    row: str
    method: str
    strategy: str
    stage: str
    priority: tuple
    study: str = "main"



@dataclass(frozen=True)
class Blocked:
    row: str
    method: str  # "?" when the row's members wait for a ranking
    strategy: str
    stage: str
    runs: int  # expected (extra seeds: an upper bound; grid extensions: not counted)
    split: str
    waiting_for: str
    study: str = "main"
    epochs: int | None = None  # the runs' epochs when the row sets them (None: the profile's)
    batch_size: int | str | None = None  # the runs' batch size when the row sets it



@dataclass
class Plan:
    profile: Profile
    runnable: list[Planned] = field(default_factory=list)
    done: list[Planned] = field(default_factory=list)
    blocked: list[Blocked] = field(default_factory=list)
    failed: list[Planned] = field(default_factory=list)  # done, but as a failure (an exception)
    choices: dict = field(default_factory=dict)
    edges: dict = field(default_factory=dict)  # (row, method, strategy) -> T.edge_status of the rate
    measurements: list[Measurement] = field(default_factory=list)  # to measure now
    measured: list[Measurement] = field(default_factory=list)  # on disk


def outcomes(records: pd.DataFrame | None = None, root=None) -> dict[str, Outcome]:
    """run id -> Outcome, from a ``load_records`` frame or else from the meta.json files under ``root``."""
    if records is not None:
        if records.empty:
            return {}
        frame = records.copy()
        if "epoch" in frame:
            frame = frame.sort_values("epoch", na_position="first")
        last = frame.groupby("run_id").tail(1)
        hits = T.first_hits(frame)
        get = lambda row, key: row.get(key, math.nan)  # noqa: E731
        return {r["run_id"]: Outcome(r["status"], get(r, "val_acc"), get(r, "val_loss"),
                                     hits.get(r["run_id"], math.inf))
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
                 seeds: tuple | None, root=None):
        self.p, self.found, self.retry, self.seeds, self.root = profile, found, retry_failed, seeds, root
        self.rows = sorted(rows, key=lambda r: (r.priority, row_index(r)))
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
        planned = Planned(config, row.name, method, strategy, stage, priority, row.study)
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
        return (level, row_index(row), STAGES.index(stage), order)

    # members and rankings
    def members(self, row: Row) -> list[str] | None:
        """The row's methods (None while a selection waits for its source row's ranking)."""
        if row.methods == "all":
            return list(self.p.methods or names())
        out: list[str] = []
        for item in (row.methods if isinstance(row.methods, tuple) else (row.methods,)):
            chosen = self.select(row, item) if ":" in item else [item]
            if chosen is None:
                return None
            out += [m for m in chosen if m not in out]
        return out

    def select(self, row: Row, item: str) -> list[str] | None:
        selector, _, source = item.partition(":")
        if selector not in SELECTORS or source not in self.catalog:
            raise ValueError(f"row {row.name!r}: methods {item!r}; use 'all', names, 'family_best:<row>', "
                             f"'best:<row>' or 'fastest:<row>' with a row of the study")
        ranking = self.ranking(self.catalog[source])
        if ranking is None:
            return None
        if selector == "best":
            return [ranking[0][0]]
        if selector == "fastest":
            return [m for m, _ in self.fastest(self.catalog[source], ranking)]
        best: dict[str, str] = {}
        for method, _, _ in ranking:
            best.setdefault(get_spec(method).family, method)
        return list(best.values())

    def fastest(self, row: Row, ranking: list[tuple]) -> list[tuple[str, float]]:
        """The row's ``top_k`` methods fastest to the target on the hold-out: (method, oracle calls
        of its chosen trial to TARGET_ACC), fewest first; methods that never reach it are left out."""
        hits: dict[str, float] = {}
        for method, strategy, _ in ranking:
            hit = self.first_hit(self.choice(row, method, strategy).run_id)
            hits[method] = min(hit, hits.get(method, math.inf))
        reached = sorted(((h, m) for m, h in hits.items() if math.isfinite(h)))
        return [(m, h) for h, m in reached[:self.p.top_k]]

    def first_hit(self, run_id: str | None) -> float:
        """Oracle calls of run ``run_id`` to TARGET_ACC on the hold-out (inf: never reached)."""
        if run_id is None or run_id not in self.found:
            return math.inf
        outcome = self.found[run_id]
        if outcome.first_hit is None:
            path = runs_dir(self.root) / run_id / "records.csv"
            hit = T.first_hits(pd.read_csv(path).assign(run_id=run_id)).get(run_id, math.inf) if path.is_file() \
                else math.inf
            outcome = self.found[run_id] = outcome._replace(first_hit=hit)
        return outcome.first_hit

    def ranking(self, row: Row) -> list[tuple] | None:
        """[(method, strategy, score)] best first on the hold-out, once every member has a choice."""
        if row.name not in self._rankings:
            members = self.members(row)
            result = None
            if members is not None:
                scored = [(m, s, self.choice(row, m, s)) for m in members for s in row.strategies]
                if all(c is not None for _, _, c in scored):
                    result = sorted(((m, s, c.score) for m, s, c in scored),
                                    key=lambda x: (tuple(-v for v in x[2]), x[0], x[1]))
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
            tune = {"grid": self._grid, "l2": self._l2, "rates": self._rates, "base": self._base_choice,
                    "horizon": self._horizon, "none": self._fixed}
            if row.tuning not in tune:
                raise ValueError(f"row {row.name!r}: unknown tuning {row.tuning!r}; choose one of {sorted(tune)}")
            self._choices[key] = tune[row.tuning](row, method, strategy)
        return self._choices[key]

    def _config(self, row, method, strategy, split, hparams, settings, seed=0) -> RunConfig:
        """A run of ``row``: its fixed settings and hyperparameters over the tuned ones (a fixed
        hyperparameter applies to the row's methods that have it)."""
        fixed = {k: v for k, v in row.overrides.items() if k != "hparams"}
        own = get_spec(method).defaults
        hparams = {**hparams, **{k: v for k, v in row.overrides.get("hparams", {}).items() if k in own}}
        return study_config(method, row.scenario, split, self.p, hparams, seed=seed, strategy=strategy,
                            **{**settings, **fixed})

    def _trial(self, row, method, strategy, stage, hparams, settings=None) -> tuple[RunConfig, Outcome | None]:
        config = self._config(row, method, strategy, "val", hparams, settings or {})
        return config, self.need(config, row, method, strategy, stage, self.priority(row, stage, method))

    def _best(self, row, method, strategy, trials) -> Choice | None:
        if any(outcome is None for _, outcome, _ in trials):
            self._waiting[(row.name, method, strategy)] = f"the {row.tuning} trials of {method} in {row.name}"
            return None
        shares = get_spec(method).run_share
        if row.tuning == "horizon":
            key = lambda t: T.target_score(self.first_hit(t[0].run_id), t[1].val_acc, t[1].val_loss)  # noqa: E731
        else:
            key = lambda t: T.score(t[1].val_acc, t[1].val_loss)  # noqa: E731
        config, outcome, settings = max(trials, key=key)
        hparams = {k: v for k, v in config.hparams.items() if k not in shares}
        return Choice(hparams, settings, T.score(outcome.val_acc, outcome.val_loss), config.run_id)

    def _grid(self, row, method, strategy) -> Choice | None:
        grid = T.grid_exponents(method, self.p.grid_points)
        allowed = D.allowed_extension(row, self.p)
        results = {j: self._trial(row, method, strategy, "grid", {"lr": T.lr_of(j)}) for j in grid}
        if any(o is None for _, o in results.values()):
            self._waiting[(row.name, method, strategy)] = f"the rate grid of {method} in {row.name}"
            return None
        while True:
            best = max(sorted(results), key=lambda j: T.score(results[j][1].val_acc, results[j][1].val_loss))
            nxt = T.next_extension(sorted(results), best, grid, allowed)
            if nxt is None:
                break
            results[nxt] = self._trial(row, method, strategy, "extension", {"lr": T.lr_of(nxt)})
            if results[nxt][1] is None:
                self._waiting[(row.name, method, strategy)] = f"the grid extension of {method} in {row.name}"
                return None
        self.plan.edges[(row.name, method, strategy)] = T.edge_status(sorted(results), best, grid, allowed)
        trials = [(c, o, {}) for c, o in results.values()]
        fixed = {*row.overrides, *row.overrides.get("hparams", {})}
        space = {k: v for k, v in T.key_space(method).items() if k not in fixed}
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

    def _base_choice(self, row, method, strategy) -> Choice | None:
        return self._base(row, method)

    def horizons(self, method: str) -> tuple:
        """The horizons a method's schedule is tried at (one, the longest, for a schedule of its own)."""
        return tuple(self.p.horizons) if get_spec(method).decays else (max(self.p.horizons),)

    def _horizon(self, row, method, strategy) -> Choice | None:
        base = self._base(row, method)
        if base is None:
            return None
        trials = []
        for horizon in self.horizons(method):
            settings = {**base.settings, "epochs": horizon}
            config, outcome = self._trial(row, method, strategy, "horizon", base.hparams, settings)
            trials.append((config, outcome, settings))
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
        return self._config(row, method, strategy, "test", choice.hparams, choice.settings, seed)

    def run_row(self, row: Row) -> None:
        seeds, extra = self.seed_counts(row)
        members = self.members(row)
        if members is None:
            items = row.methods if isinstance(row.methods, tuple) else (row.methods,)
            waiting = [i for i in items if ":" in i and self.select(row, i) is None]
            per_member = self.expected_tuning(row, None) + len(seeds)
            sources = ", ".join(i.split(":", 1)[1] for i in waiting)
            self.plan.blocked.append(Blocked(row.name, "?", ",".join(row.strategies), "members",
                                             self.expected_members(row, waiting) * per_member, "val",
                                             f"the hold-out ranking of {sources}", row.study, self.row_epochs(row),
                                             row.overrides.get("batch_size")))
            members = [m for i in items if i not in waiting for m in (self.select(row, i) if ":" in i else [i])]
            extra = ()  # the row's ranking waits for every member
        for method in dict.fromkeys(members):
            for strategy in row.strategies:
                choice = self.choice(row, method, strategy)
                self.plan.choices[(row.name, method, strategy)] = choice
                if choice is None:
                    self.block_tuning(row, method, strategy)
                    stage, runs = ("measure", len(D.VARIANCE["seeds"])) if row.measure else ("final", len(seeds))
                    self.plan.blocked.append(Blocked(row.name, method, strategy, stage, runs, "test",
                                                     f"the choice of {method} in {row.name}", row.study,
                                                     self.row_epochs(row), row.overrides.get("batch_size")))
                    continue
                if row.measure is not None:
                    self.measure(row, method, strategy, choice)  # along the base's finals: no runs of its own
                    continue
                for seed in seeds:
                    self.need(self.final(row, method, strategy, choice, seed), row, method, strategy,
                              "final" if row.tuning != "none" else "fixed", self.priority(row, "final", method))
        if not extra:
            return
        ranking = self.ranking(row)
        if ranking is None:
            n = min(len(members) * len(row.strategies), self.p.top_k + len(FAMILIES))
            self.plan.blocked.append(Blocked(row.name, "?", ",".join(row.strategies), "seeds", n * len(extra),
                                             "test", f"the hold-out ranking of {row.name}", row.study,
                                             self.row_epochs(row), row.overrides.get("batch_size")))
            return
        for method, strategy in self.top(row, ranking):
            choice = self.choice(row, method, strategy)
            for seed in extra:
                self.need(self.final(row, method, strategy, choice, seed), row, method, strategy, "seeds",
                          self.priority(row, "seeds", method, extra=True))

    def expected_tuning(self, row: Row, method: str | None) -> int:
        """Tuning runs a (row, method) takes, grid extensions aside."""
        if row.tuning == "grid":
            fixed = {*row.overrides, *row.overrides.get("hparams", {})}
            has_keys = method is None or bool(set(T.key_space(method)) - fixed)
            return self.p.grid_points + (self.p.qmc_trials if has_keys else 0)
        if row.tuning == "horizon":
            return len(self.p.horizons) if method is None else len(self.horizons(method))
        return {"l2": self.p.l2_trials, "rates": self.p.sparse_rates}.get(row.tuning, 0)

    def expected_members(self, row: Row, items=None) -> int:
        """How many methods a row's selectors (``items``, default all of them) will pick, before
        their source rows are ranked."""
        every = self.p.methods or names()
        sizes = {"best": 1, "family_best": len({get_spec(m).family for m in every}),
                 "fastest": min(self.p.top_k, len(every))}
        if items is None:
            items = row.methods if isinstance(row.methods, tuple) else (row.methods,)
        return sum(sizes[i.split(":", 1)[0]] if ":" in i else 1 for i in items)

    def row_epochs(self, row: Row) -> int | None:
        """The epochs a row's runs take when it sets them (a horizon row: its longest horizon)."""
        if "epochs" in row.overrides:
            return row.overrides["epochs"]
        return max(self.p.horizons) if row.tuning == "horizon" else None

    def block_tuning(self, row, method, strategy) -> None:
        left = self.expected_tuning(row, method) - self._tuning_seen.get((row.name, method, strategy), 0)
        if left > 0:
            why = self._waiting.get((row.name, method, strategy)) or self._waiting.get((row.name, method, ""), "")
            self.plan.blocked.append(Blocked(row.name, method, strategy, "tuning", left, "val", why, row.study,
                                             self.row_epochs(row), row.overrides.get("batch_size")))

    def measure(self, row: Row, method: str, strategy: str, choice: Choice) -> None:
        """The row's measurements along ``method``'s final trajectories (seeds of D.VARIANCE)."""
        spec = D.VARIANCE
        for seed in spec["seeds"]:
            config = self.final(row, method, strategy, choice, seed)
            epochs = tuple(e for e in spec["epochs"] if e < config.epochs) or (config.epochs / 2,)
            m = Measurement(row.measure, config, epochs, tuple(spec["batch_sizes"]), row.name, method, row.study,
                            self.priority(row, "measure", method))
            (self.plan.measured if measurement_done(m.measurement_id, self.root, self.retry) else
             self.plan.measurements).append(m)

    def run(self) -> Plan:
        for row in self.rows:
            self.run_row(row)
        self.plan.runnable = sorted(self._runnable.values(), key=lambda r: r.priority)
        self.plan.done = list(self._done.values())
        return self.plan


def row_index(row: Row) -> int:
    """The row's place in the definition's table (rows not in it come last)."""
    return next((i for i, r in enumerate(D.ROWS) if r.name == row.name), len(D.ROWS))


def study_plan(records: pd.DataFrame | None = None, profile: str | Profile = "full", root=None, rows=None,
               bases=None, retry_failed: bool = False, seeds=None) -> Plan:
    """The whole plan: runnable, done and blocked runs of ``profile``'s rows (or of ``rows``, whose
    ``base`` rows are looked up in ``bases``, then in the profile). ``records``: a ``load_records``
    frame; None reads the meta.json files under ``root``. ``seeds``: every member's seeds
    instead of the rows' (no extra seeds)."""
    profile = get_profile(profile) if isinstance(profile, str) else profile
    rows = list(rows) if rows is not None else list(profile.rows_in())
    return _Planner(profile, outcomes(records, root), rows, bases, retry_failed, seeds, root).run()


def plan(records: pd.DataFrame | None = None, profile: str | Profile = "full", root=None, **kwargs) -> list[Planned]:
    """The runs that can be trained now, most valuable first."""
    return study_plan(records, profile, root, **kwargs).runnable


def blocked(records: pd.DataFrame | None = None, profile: str | Profile = "full", root=None,
            **kwargs) -> list[Blocked]:
    """What is still blocked, and on what."""
    return study_plan(records, profile, root, **kwargs).blocked


def execute(profile: str | Profile = "full", executor=None, root=None, progress: bool = True, rows=None,
            bases=None, seeds=None) -> Plan:
    """Train the plan until nothing is runnable, most valuable first: after every unit of work
    (a batched group, one run, or one measurement) the plan is made again, so what a finished run
    unblocked goes ahead of less valuable work that was ready earlier
    (:func:`helpers.study.scheduler.train_by_priority`). A measurement is ready once the run it
    follows is done, and waits in the queue at its row's priority."""
    from .executors import shared_executor
    from .scheduler import train_by_priority
    executor = executor if executor is not None else shared_executor()

    def next_plan() -> Plan:
        return study_plan(None, profile, root, rows=rows, bases=bases, seeds=seeds)

    return train_by_priority(next_plan, executor, str(runs_dir(root)), progress, measure=True)

