"""The study, defined once: which runs, in which scenarios, tuned how, with which seeds, in what order.

:data:`ROWS` is the study as a table; :data:`PROFILES` are its sizes; :data:`KEY_HPARAMS` and
:data:`WEIGHT_DECAY` are the search spaces beyond the learning rate (whose range is the
registry's ``search_space["lr"]``). Everything a row selects from results (the best of each
family, the best ``top_k`` on the hold-out) is computed from the records by
:mod:`helpers.study.protocol`, never written here. A change of the study is an edit of this
module; the planner then asks for exactly the runs whose configuration changed (run ids hash
the configuration and :data:`PROTOCOL_VERSION`).

Tuning kinds (the same counts for every method):

- ``grid``: ``grid_points`` learning rates half a decade apart (10^(j/2)), centred on the
  method's range; a best rate on an edge is extended one point at a time, at most
  ``grid_extension`` points (a row with ``extend_to_limit``: until interior), never past
  :data:`LR_LIMITS`; then ``qmc_trials`` quasi-random
  trials (scrambled Halton, ``scipy.stats.qmc``) over the method's :data:`KEY_HPARAMS` at the
  best rate. The choice is the best of all these trials.
- ``l2``: ``l2_trials`` joint quasi-random trials over the rate (a decade around the ``base``
  row's choice) and the weight decay (:data:`WEIGHT_DECAY`, by the method's kind); the other
  hyperparameters as the base row chose them.
- ``rates``: the base row's choice at ``sparse_rates`` rates half a decade apart around its rate.
- ``base``: the base row's choice as it is (with the row's own fixed settings over it).
- ``horizon``: the base row's choice with the schedule planned over each of ``horizons`` epochs
  (the run's ``epochs`` and oracle budget); the choice is the horizon with the fewest oracle
  calls to :data:`TARGET_ACC` on the hold-out (a trial that never reaches it scores after every
  one that does, then by its final hold-out score). Methods with a schedule of their own
  (``decays`` False: schedule-free, L-BFGS, GD) need no horizon: one trial at the longest.
- ``none``: the row's fixed hyperparameters (the assignment's starter).

Every tuning trial runs as long as a final run (``epochs``, same oracle budget per image) on the
training images left after the ``val_size`` hold-out and is scored on that hold-out (accuracy,
then loss; a diverged or failed trial scores last). Final runs train on all 60,000 images and
are evaluated on the test set. Every run of a registered method has an oracle budget of
``epochs`` x its training images (sample gradients + Hessian-vector products); the study's decay
is planned over that budget. Basic SGD (batch 1) runs its registry cap ``max_epochs``.

Seeds: ``seeds`` for every method of a row; ``top_seeds`` for the row's best ``top_k`` on the
hold-out and the best of each family. Failed and diverged runs are results: they are counted
and never planned again.

Priority: runs go out lowest ``priority`` first (a stopped study holds the most valuable
runs); a row's extra seeds for its best methods go out at ``top_priority``.

Members: ``"all"``, a tuple of names and selectors, or one selector: ``"best:<row>"`` (the
row's best on the hold-out), ``"family_best:<row>"`` (the best of each family),
``"fastest:<row>"`` (the row's ``top_k`` fastest to :data:`TARGET_ACC` on the hold-out: fewest
oracle calls of each member's chosen trial). A row's ``study`` names the study it belongs to
(the plan's counts and costs are given per study).

The studies beyond the main comparison (issue 15) are rows too, after the main study's in
priority: the batch-size study is a ``grid`` row per batch size of :data:`BATCH_METHODS` with
``overrides={"batch_size": b}`` (an ``epochs`` override sets the oracle budget too), the
preprocessing ablation a ``grid`` row with ``overrides={"scaling": "unit"}``, each weight decay
of the weight-decay study a ``base`` row of scenario l2 with
``overrides={"hparams": {"weight_decay": wd}}``, time to target a ``horizon`` row, the
gradient-variance measurements a ``base`` row with ``measure`` (:data:`VARIANCE`): its finals
are the base row's and its measurements records of their own (``outputs/measurements``).
Rows that share a configuration share its runs.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

PROTOCOL_VERSION = 2  # bump only for a change that a run's configuration does not show
SCALING = "standardize"
LR_LIMITS = (1e-6, 10.0)
HALF_DECADE = 10 ** 0.5
QMC_SEED = 0

# Scales: "log", "linear", "log1m" (log of 1 - x), "int" (linear, rounded), "pow2" (log, rounded
# to a power of 2); a tuple of axes for a tuple-valued hyperparameter (betas). Batch sizes are
# run settings, the rest optimizer hyperparameters.
MOMENTUM = (0.8, 0.99, "log1m")
BETAS = ((0.8, 0.95, "linear"), (0.99, 0.9999, "log1m"))
SNAPSHOT_STEPS = (100, 1600, "pow2")  # steps between snapshots; batch 64 makes 782 steps per epoch
KEY_HPARAMS = {
    "heavy_ball": {"momentum": MOMENTUM},
    "nesterov": {"momentum": MOMENTUM},
    "adam": {"betas": BETAS},
    "adamw": {"betas": BETAS},
    "nadam": {"betas": BETAS},
    "radam": {"betas": BETAS},
    "sgd_schedulefree": {"momentum": MOMENTUM, "warmup_steps": (0, 500, "int")},
    "adamw_schedulefree": {"betas": BETAS, "warmup_steps": (0, 500, "int")},
    "lookahead_sgd": {"alpha": (0.5, 0.8, "linear"), "k": (5, 10, "int")},
    "lookahead_adam": {"alpha": (0.5, 0.8, "linear"), "k": (5, 10, "int")},
    "sgd_ema": {"momentum": MOMENTUM, "ema_decay": (0.99, 0.999, "log1m")},
    "sgd_polyak": {"momentum": MOMENTUM},
    "sgd_swa": {"momentum": MOMENTUM},
    "svrg": {"snapshot_every": SNAPSHOT_STEPS},
    "sarah": {"snapshot_every": SNAPSHOT_STEPS},
    "sgd_growing_batch": {"batch_size": (8, 128, "pow2")},
    "kfac": {"damping": (1e-3, 1e-1, "log"), "batch_size": (32, 512, "pow2")},
    "shampoo": {"epsilon": (1e-8, 1e-4, "log"), "batch_size": (32, 512, "pow2")},
    "adahessian": {"hessian_power": (0.5, 1.0, "linear"), "batch_size": (32, 512, "pow2")},
    "newton_cg": {"damping": (0.1, 10.0, "log"), "batch_size": (128, 2048, "pow2")},
    "lbfgs": {"history_size": (10, 50, "int"), "batch_size": (1024, 16384, "pow2")},
    "lbfgs_full": {"history_size": (10, 50, "int")},
}
RUN_SETTINGS = ("batch_size", "batch_growth")  # keys of KEY_HPARAMS that are RunConfig fields

# Weight decay ranges where each kind acts: coupled L2 is added to the gradient (SGD, Adam);
# decoupled decay is multiplied by the rate (AdamW, schedule-free AdamW).
WEIGHT_DECAY = {"coupled": (1e-6, 1e-2), "decoupled": (1e-3, 1.0)}
DECOUPLED = ("adamw", "adamw_schedulefree")

TARGET_ACC = 89.38  # the assignment's "easily achievable in 10 epochs" accuracy (percent)
MAX_BATCH = 60_000  # the training images: a batch size above it cannot be drawn

STARTER = dict(hparams={"lr": 1e-3}, batch_size=64, scaling="unit", schedule="constant", tag="starter")
THINNER = ("sparse30", "sparse10", "sparse5", "sparse1", "thin30")


TUNINGS = ("grid", "l2", "rates", "base", "horizon", "none")
MEASURES = ("variance",)


def check_horizon(value) -> int:
    """A schedule's horizon in whole epochs, at least 1."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"a horizon must be a whole number of epochs >= 1 (allowed: 1, 2, ...), got {value!r}")
    return value


def check_row(row: "Row") -> None:
    """One clear error for a row the planner could not run (names the value and what is allowed)."""
    from ..engine.config import check_run_settings
    if row.tuning not in TUNINGS:
        raise ValueError(f"row {row.name!r}: unknown tuning {row.tuning!r}; choose one of {TUNINGS}")
    if row.measure is not None and row.measure not in MEASURES:
        raise ValueError(f"row {row.name!r}: unknown measure {row.measure!r}; choose one of {MEASURES}")
    for key in ("seeds", "top_seeds"):
        value = getattr(row, key)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"row {row.name!r}: {key} must be an integer >= 1, got {value!r}")
    try:
        check_run_settings(row.overrides)
    except ValueError as error:
        raise ValueError(f"row {row.name!r}: {error}") from None



@dataclass(frozen=True)
class Row:
    """One line of the study. ``methods``: "all", "family_best:<row>" (the best of each family
    in that row's hold-out ranking) or a tuple of names. ``base``: the row whose choice the
    l2/rates tuning starts from. ``overrides``: RunConfig fields for every run of the row.
    ``extend_to_limit``: a best rate on a grid edge is extended until it is interior or at
    :data:`LR_LIMITS` (the profile's ``grid_extension`` cap does not apply)."""
    name: str
    scenario: str
    methods: str | tuple = "all"
    strategies: tuple = ("projection",)
    tuning: str = "grid"
    seeds: int = 3
    top_seeds: int = 3
    priority: int = 1
    top_priority: int | None = None
    base: str = "standard"
    overrides: dict = field(default_factory=dict)
    study: str = "main"
    measure: str | None = None
    extend_to_limit: bool = False

    def __post_init__(self):
        check_row(self)


# ---------------------------------------------------------------- the studies of issue 15
# Batch size: every batch size at the main study's budget (10 epochs: 600,000 sample gradients
# per final, 500,000 per tuning trial) except batch 1, whose 600,000 single-sample steps take
# about 10x a batch-64 run here (sgd_basic's v1 wall times): it joins at the small common budget
# of one epoch (60,000 / 50,000), where every batch size runs. The rate is tuned by the main
# protocol (grid, extension, quasi-random trials) per batch size; batch 64 at 10 epochs is the
# main study's standard row (no row of its own: the same runs). The best rate moves by orders of
# magnitude with the batch size, so these grids extend until the best rate is interior or at
# LR_LIMITS (one full-batch step wanted a rate past the 2-point extension's end).
MOMENTUM_METHOD = "heavy_ball"  # the studies' momentum method: SGD with momentum (torch.optim.SGD)
BATCH_SIZES = (1, 8, 32, 64, 256, 1024, "full")
BATCH_METHODS = ("sgd", MOMENTUM_METHOD)
BATCH_SMALL_EPOCHS = 1
BATCH_FULL_BUDGET_SKIPS = (1,)
BATCH_SMALL_EVALS = 8  # evaluations per epoch at the small budget (curves against oracle calls)

# Weight decay at the standard row's tuned rates, each kind over the range where it acts
# (WEIGHT_DECAY), points evenly spaced in log.
WD_POINTS = 5
WD_METHODS = {"coupled": ("adam", MOMENTUM_METHOD), "decoupled": ("adamw",)}

# Time to target: the schedule's horizon (epochs) tuned for the fastest methods, evaluated every 1/8 epoch.
HORIZONS = (2, 3, 4, 5, 6)
HORIZON_EVALS = 8

# Gradient variance along the tuned trajectories (helpers.evidence.variance.trajectory_variance).
VARIANCE = dict(methods=("sgd", "svrg", "sarah", "saga", MOMENTUM_METHOD), epochs=(0.5, 2, 5, 9),
                batch_sizes=(1, 8, 32, 64, 256, 1024), seeds=(0,))


def allowed_extension(row: Row, profile: "Profile") -> float:
    """Grid points a row may add past an edge: the profile's ``grid_extension``, or no bound but
    :data:`LR_LIMITS` for a row with ``extend_to_limit``."""
    return math.inf if row.extend_to_limit else profile.grid_extension


def log_points(low: float, high: float, n: int) -> tuple[float, ...]:
    """``n`` values from ``low`` to ``high`` evenly spaced in log (4 significant digits)."""
    if n < 2:
        return (float(high),)
    a, b = math.log10(low), math.log10(high)
    return tuple(float(f"{10 ** (a + k * (b - a) / (n - 1)):.4g}") for k in range(n))


def weight_decays(kind: str, n: int = WD_POINTS) -> tuple[float, ...]:
    return log_points(*WEIGHT_DECAY[kind], n)


def _batch_label(b) -> str:
    return "full" if b == "full" else str(b)


def _batch_settings(b) -> dict:
    return {} if b == 64 else {"batch_size": b}  # 64: the default batch, so batch 64 shares the main runs


STUDY_ROWS = (
    Row("unit-pixels", "standard", ("best:standard", "sgd"), tuning="grid", priority=7,
        overrides={"scaling": "unit"}, study="preprocessing"),
    Row("horizon", "standard", "fastest:standard", tuning="horizon", seeds=5, top_seeds=5, priority=8,
        overrides={"evals_per_epoch": HORIZON_EVALS}, study="time_to_target"),
    *(Row(f"batch{_batch_label(b)}-{BATCH_SMALL_EPOCHS}ep", "standard", BATCH_METHODS, tuning="grid", priority=9,
          overrides={**_batch_settings(b), "epochs": BATCH_SMALL_EPOCHS, "evals_per_epoch": BATCH_SMALL_EVALS},
          study="batch_size", extend_to_limit=True)
      for b in BATCH_SIZES),
    *(Row(f"batch{_batch_label(b)}", "standard", BATCH_METHODS, tuning="grid", priority=10,
          overrides=_batch_settings(b), study="batch_size", extend_to_limit=True)
      for b in BATCH_SIZES if b not in BATCH_FULL_BUDGET_SKIPS and b != 64),
    *(Row(f"wd-{kind}-{wd:g}", "l2", methods, tuning="base", priority=11,
          overrides={"hparams": {"weight_decay": wd}}, study="weight_decay")
      for kind, methods in WD_METHODS.items() for wd in weight_decays(kind)),
    # the variance measurements take minutes and need only the standard finals: right after them
    Row("variance", "standard", VARIANCE["methods"], tuning="base", seeds=1, top_seeds=1, priority=1,
        measure="variance", study="variance"),
)


PROJECTION = ("projection",)
ROWS = (
    #   name               scenario    methods                 strategies               tuning   seeds top priority top_priority
    Row("starter",         "standard", ("sgd",),               PROJECTION,              "none",  5,    5,  0,       None, overrides=STARTER),
    Row("standard",        "standard", "all",                  PROJECTION,              "grid",  3,    5,  1,       4),
    Row("l2",              "l2",       "all",                  PROJECTION,              "l2",    3,    5,  2,       4),
    Row("sparse60",        "sparse60", "all",                  PROJECTION,              "rates", 3,    5,  3,       4),
    Row("sparse60-pruned", "sparse60", "all",                  ("gradual", "finetune"), "rates", 3,    3,  5,       None),
    *(Row(s,               s,          "family_best:sparse60", PROJECTION,              "rates", 3,    3,  6,       None)
      for s in THINNER),
    *STUDY_ROWS,
)


@dataclass(frozen=True)
class Profile:
    """A size of the study. ``methods``/``rows`` None: all. ``max_seeds`` caps every row's seeds.
    ``row_edits``: per row name, Row fields replaced in this profile (the cuts); ``rows_dropped``:
    rows left out (a cut)."""
    name: str
    methods: tuple | None = None
    rows: tuple | None = None
    epochs: int = 10
    train_fraction: float = 1.0
    val_size: int = 10_000
    evals_per_epoch: int = 2
    grid_points: int = 7
    grid_extension: int = 2
    qmc_trials: int = 4
    l2_trials: int = 8
    sparse_rates: int = 3
    top_k: int = 6
    max_seeds: int | None = None
    horizons: tuple = HORIZONS
    row_edits: dict = field(default_factory=dict)
    rows_dropped: tuple = ()

    def __post_init__(self):
        if not self.horizons:
            raise ValueError(f"profile {self.name!r}: horizons must name at least one horizon, got {self.horizons!r}")
        for h in self.horizons:
            check_horizon(h)

    def rows_in(self) -> tuple[Row, ...]:
        rows = ROWS if self.rows is None else tuple(r for r in ROWS if r.name in self.rows)
        return tuple(replace(r, **self.row_edits.get(r.name, {})) for r in rows if r.name not in self.rows_dropped)


PROFILES = {
    # the whole pipeline in about two minutes on 2 CPU cores (make test)
    "ci": Profile("ci", methods=("sgd", "adam"), rows=("starter", "standard", "l2", "sparse60", "sparse60-pruned",
                                                        "sparse10"),
                  epochs=1, train_fraction=0.01, val_size=1_000, evals_per_epoch=1, grid_points=2,
                  grid_extension=0, qmc_trials=1, l2_trials=1, sparse_rates=1, top_k=1, max_seeds=1),
    # a smoke run of every method: minutes to tens of minutes on 2 CPU cores
    "quick": Profile("quick", rows=("starter", "standard", "l2", "sparse60"), epochs=1, train_fraction=0.02,
                     val_size=2_000, evals_per_epoch=1, grid_points=3, grid_extension=1, qmc_trials=2,
                     l2_trials=2, sparse_rates=1, top_k=2, max_seeds=1),
    "full": Profile("full"),
}

# If the full study's estimate exceeds its compute budget, cut in this order (issue 13, item 7).
CUTS = (
    ("gradual pruning and prune-then-fine-tune only for the best of each family",
     dict(row_edits={"sparse60-pruned": {"methods": "family_best:sparse60"}})),
    ("quasi-random trials down to 2", dict(qmc_trials=2)),
    ("l2 trials down to 6", dict(l2_trials=6)),
)


def get_profile(profile: str | Profile, cuts: int = 0, study_cuts: int = 0) -> Profile:
    """A profile by name (or as given) with the first ``cuts`` of :data:`CUTS` and the first
    ``study_cuts`` of :data:`STUDY_CUTS` applied."""
    if isinstance(profile, str):
        if profile not in PROFILES:
            raise ValueError(f"unknown study profile {profile!r}; known profiles: {', '.join(PROFILES)}")
        profile = PROFILES[profile]
    for name, table, n in (("cuts", CUTS, cuts), ("study_cuts", STUDY_CUTS, study_cuts)):
        if not 0 <= n <= len(table):
            raise ValueError(f"{name} must be in [0, {len(table)}], got {n}")
        for _, change in table[:n]:
            edits = dict(profile.row_edits)
            for row, fields in change.get("row_edits", {}).items():
                edits[row] = {**edits.get(row, {}), **fields}
            dropped = (*profile.rows_dropped, *change.get("rows_dropped", ()))
            profile = replace(profile, **{**change, "row_edits": edits, "rows_dropped": dropped})
    return profile


# The studies beyond the main one (issue 15): about 5 hours with 2 processes on top of the main
# study. If `python -m helpers.study plan --dry-run --per-method` estimates more, cut in this order.
STUDIES_BUDGET_HOURS = 5


def _fixed_momentum(names: tuple) -> dict:
    """Row edits that fix heavy ball's momentum at its default in rows ``names`` (no quasi-random trials)."""
    rows = {r.name: r for r in STUDY_ROWS}
    return {n: {"overrides": {**rows[n].overrides, "hparams": {**rows[n].overrides.get("hparams", {}),
                                                                "momentum": 0.9}}} for n in names}


_BATCH_ROWS = tuple(r.name for r in STUDY_ROWS if r.study == "batch_size")
STUDY_CUTS = (
    ("batch-size rows: heavy ball's momentum fixed at 0.9 (no quasi-random trials; the rate still re-tuned)",
     dict(row_edits=_fixed_momentum(_BATCH_ROWS))),
    ("batch-size rows at 600,000 sample gradients: 2 seeds",
     dict(row_edits={n: {"seeds": 2, "top_seeds": 2} for n in _BATCH_ROWS if not n.endswith("ep")})),
    ("weight decay: 2 seeds",
     dict(row_edits={r.name: {"seeds": 2, "top_seeds": 2} for r in STUDY_ROWS if r.study == "weight_decay"})),
    ("batch sizes 32 and 1024 only at the small budget (600,000 sample gradients: 8, 64, 256, full)",
     dict(rows_dropped=("batch32", "batch1024"))),
)


# The cuts the full study makes (issue 13, item 7). Its estimate as it ran here (`python -m
# helpers.study plan --dry-run`: the timing pass's seconds, times what evaluation, start-up and
# two processes sharing two cores added in the study's own latest units, about 2x) passed the
# main study's budget of about 10 hours with 2 processes even after the first cut: all three apply.
MAIN_BUDGET_HOURS = 10  # the main study, with 2 processes on the 2-core machine
FULL_CUTS, FULL_STUDY_CUTS = 3, 0
PROFILES["full"] = get_profile("full", FULL_CUTS, FULL_STUDY_CUTS)


def applied_cuts(profile: str = "full") -> list[str]:
    """What the named profile cuts from the study as defined (the full profile's cuts, in order)."""
    if profile != "full":
        return []
    return [what for what, _ in CUTS[:FULL_CUTS]] + [what for what, _ in STUDY_CUTS[:FULL_STUDY_CUTS]]


def strategy_settings() -> dict[str, str]:
    """The sparsity strategies' own schedules (helpers.constraints.sparsity), as the study runs them."""
    from ..constraints import sparsity as S
    return {
        "projection": "projection onto the budget after every step (iterative hard thresholding)",
        "gradual": (f"magnitude pruning from {S.GRADUAL_START:.0%} to {S.GRADUAL_END:.0%} of the steps, "
                    f"cubic density schedule, {S.GRADUAL_EVENTS} events (Zhu & Gupta 2017)"),
        "finetune": (f"dense for {S.FINETUNE_DENSE_SHARE:.0%} of the steps, one magnitude pruning to the "
                     f"budget, then training with that fixed mask"),
    }


def weight_decay_kind(method: str) -> str:
    return "decoupled" if method in DECOUPLED else "coupled"


def main_scenarios(profile: str | Profile = "full") -> list[str]:
    """The scenarios of a profile's rows, in table order (for the notebooks' sweep)."""
    seen: dict[str, None] = {}
    for row in get_profile(profile).rows_in():
        seen.setdefault(row.scenario)
    return list(seen)
