"""One training run's full configuration, validated early; its id derives from its content."""
from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field, fields

from ..problem.data import N_TRAIN, SCALINGS
from ..optimizers import get_spec
from ..constraints.scenarios import get_scenario
from .schedules import check_schedule
from ..constraints.sparsity import STRATEGIES


def check_batch_size(value) -> None:
    """A batch size the training images can fill: an integer in [1, 60,000] or "full"."""
    if value == "full":
        return
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= N_TRAIN:
        raise ValueError(f"batch_size must be an integer in [1, {N_TRAIN:,}] or 'full', got {value!r}")


def check_epochs(value) -> None:
    """Epochs (the schedule's horizon): a whole number >= 1."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"epochs (the schedule's horizon) must be a whole number >= 1, got {value!r}")


def check_nonnegative(key: str, value) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
        raise ValueError(f"{key} must be a number in [0, inf), got {value!r}")


def check_run_settings(settings: dict) -> None:
    """Check what a study row sets on its runs (RunConfig fields and ``hparams``) before any run
    is built: unknown fields, batch size, epochs, weight decay, learning rate."""
    known = {f.name for f in fields(RunConfig)}
    unknown = set(settings) - known
    if unknown:
        raise ValueError(f"unknown run setting(s) {sorted(unknown)}; known: {sorted(known)}")
    if settings.get("batch_size") is not None:
        check_batch_size(settings["batch_size"])
    if "epochs" in settings:
        check_epochs(settings["epochs"])
    if "evals_per_epoch" in settings and not (isinstance(settings["evals_per_epoch"], int)
                                              and settings["evals_per_epoch"] >= 1):
        raise ValueError(f"evals_per_epoch must be an integer >= 1, got {settings['evals_per_epoch']!r}")
    hparams = settings.get("hparams", {})
    for key in ("lr", "weight_decay"):
        if hparams.get(key) is not None:
            check_nonnegative(key, hparams[key])


@dataclass(frozen=True)
class RunConfig:
    """Everything that determines a run's records (the device is recorded, not part of the id).

    ``batch_size`` None takes the optimizer's own (basic SGD: 1; GD: "full") or 64.
    ``batch_growth`` g > 1 multiplies the batch size by g each epoch (dynamic sampling);
    None takes the optimizer's own (1 for most).
    ``epochs`` bounds the run; ``grad_budget`` (oracle calls: sample gradients plus Hessian-vector
    products) may stop it sooner, at the next evaluation point.
    ``eval_split``: "test" for final numbers, "val" (a hold-out of ``val_size`` training
    images) for tuning. ``evals_per_epoch`` > 1 evaluates more often (for time-to-target).
    """
    optimizer: str = "sgd"
    hparams: dict = field(default_factory=dict)
    scenario: str = "standard"
    sparsity_strategy: str = "projection"
    epochs: int = 10
    grad_budget: int | None = None
    batch_size: int | str | None = None
    batch_growth: float | None = None
    schedule: str = "constant"
    schedule_params: dict = field(default_factory=dict)
    seed: int = 0
    scaling: str = "unit"
    train_fraction: float = 1.0
    eval_split: str = "test"
    val_size: int = 10_000
    evals_per_epoch: int = 1
    tag: str = ""

    def __post_init__(self):
        spec = get_spec(self.optimizer)
        get_scenario(self.scenario)
        check_schedule(self.schedule)
        unknown = set(self.hparams) - set(spec.defaults)
        if unknown:
            raise ValueError(f"unknown hyperparameter(s) {sorted(unknown)} for optimizer "
                             f"{self.optimizer!r}; known: {sorted(spec.defaults)}")
        for key in ("lr", "weight_decay"):
            if self.hparams.get(key) is not None:
                check_nonnegative(key, self.hparams[key])
        if self.hparams.get("lr") == 0:
            raise ValueError("lr must be positive, got 0")
        if self.sparsity_strategy not in STRATEGIES:
            raise ValueError(f"unknown sparsity strategy {self.sparsity_strategy!r}; choose one of {STRATEGIES}")
        check_epochs(self.epochs)
        if self.batch_size is not None:
            check_batch_size(self.batch_size)
        if self.batch_growth is not None and not (isinstance(self.batch_growth, (int, float))
                                                  and self.batch_growth >= 1):
            raise ValueError(f"batch_growth must be a number >= 1, got {self.batch_growth!r}")
        if self.scaling not in SCALINGS:
            raise ValueError(f"unknown scaling {self.scaling!r}; choose one of {SCALINGS}")
        if not 0 < self.train_fraction <= 1:
            raise ValueError(f"train_fraction must be in (0, 1], got {self.train_fraction}")
        if self.eval_split not in ("test", "val"):
            raise ValueError(f"eval_split must be 'test' or 'val', got {self.eval_split!r}")
        if self.evals_per_epoch < 1:
            raise ValueError(f"evals_per_epoch must be >= 1, got {self.evals_per_epoch}")
        self.effective_hparams  # the scenario's own checks (weight decay only under l2)

    @property
    def effective_batch_size(self) -> int | str:
        if self.batch_size is not None:
            return self.batch_size
        return get_spec(self.optimizer).batch_size or 64

    @property
    def effective_batch_growth(self) -> float:
        if self.batch_growth is not None:
            return float(self.batch_growth)
        return float(get_spec(self.optimizer).batch_growth or 1.0)

    def epoch_batch_sizes(self, n: int) -> list[int]:
        """Batch size of each epoch: the configured one, times ``batch_growth`` per epoch, capped at n."""
        base = n if self.effective_batch_size == "full" else min(self.effective_batch_size, n)
        growth = self.effective_batch_growth
        return [min(n, round(base * growth ** e)) for e in range(self.epochs)]

    @property
    def effective_hparams(self) -> dict:
        spec = get_spec(self.optimizer)
        return get_scenario(self.scenario).hparams({**spec.defaults, **self.hparams})

    def to_dict(self) -> dict:
        return json.loads(json.dumps(asdict(self)))

    @classmethod
    def from_dict(cls, d: dict) -> "RunConfig":
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown run setting(s) {sorted(unknown)}; known: {sorted(known)}")
        d = dict(d)
        if isinstance(d.get("hparams"), dict):
            d["hparams"] = {k: tuple(v) if isinstance(v, list) else v for k, v in d["hparams"].items()}
        return cls(**d)

    @property
    def versions(self) -> dict:
        """The versions of what shapes this run's numbers: the study protocol
        (helpers.study.definition.PROTOCOL_VERSION), the engine (helpers.engine.ENGINE_VERSION)
        and the optimizer's update rule (OptimizerSpec.version)."""
        from . import ENGINE_VERSION
        from ..study.definition import PROTOCOL_VERSION
        return {"protocol": PROTOCOL_VERSION, "engine": ENGINE_VERSION,
                "optimizer": get_spec(self.optimizer).version}

    @property
    def run_id(self) -> str:
        """``<optimizer>-<scenario>-s<seed>-<hash>``, the hash over the settings that differ from
        the defaults (so adding a setting later keeps existing ids), over the effective
        hyperparameters and batch size (so changing an optimizer's defaults gives new ids) and
        over :attr:`versions` (so a new protocol, engine or update rule gives new ids)."""
        defaults = RunConfig.__new__(RunConfig)
        for f in fields(RunConfig):
            object.__setattr__(defaults, f.name, f.default_factory() if callable(f.default_factory) else f.default)
        base = json.loads(json.dumps(asdict(defaults)))
        changed = {k: v for k, v in self.to_dict().items() if k not in base or base[k] != v}
        changed["effective"] = json.loads(json.dumps(
            {"hparams": self.effective_hparams, "batch_size": self.effective_batch_size,
             "batch_growth": self.effective_batch_growth}, default=list))
        changed["versions"] = self.versions
        digest = hashlib.sha1(json.dumps(changed, sort_keys=True).encode()).hexdigest()[:10]
        return f"{self.optimizer}-{self.scenario}-s{self.seed}-{digest}"
