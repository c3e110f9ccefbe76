"""The tuning protocol's pieces (see :mod:`helpers.study.definition`): learning-rate grids half a
decade apart and their extension past an edge, quasi-random trials over declared spaces,
weight-decay and sparse-rate trials, scoring on the hold-out.

Learning rates are indexed by half-decade exponents: ``j`` stands for 10^(j/2), so a grid, its
extension and the rates around a choice land on the same points and give the same run ids.
"""
from __future__ import annotations

import dataclasses
import json
import math
import zlib

import numpy as np
import pandas as pd

from ..engine.config import RunConfig
from ..optimizers import get_spec
from . import definition as D


def lr_of(j: int) -> float:
    """The rate 10^(j/2), to 4 significant digits."""
    return float(f"{10 ** (j / 2):.4g}")


def exponent_of(lr: float) -> int:
    """The half-decade exponent nearest to ``lr``."""
    return round(2 * math.log10(lr))


def lr_range(method: str) -> tuple[float, float]:
    low, high, *_ = get_spec(method).search_space["lr"]
    return float(low), float(high)


def grid_exponents(method: str, points: int) -> list[int]:
    """``points`` consecutive half-decade exponents centred on the method's rate range."""
    if points < 1:
        raise ValueError(f"a grid needs at least 1 point, got {points}")
    low, high = lr_range(method)
    centre = math.log10(low) + math.log10(high)  # twice the log10 of the geometric centre
    first = math.floor(centre - (points - 1) / 2 + 0.5)
    return list(range(first, first + points))


def exponent_limits() -> tuple[int, int]:
    low, high = D.LR_LIMITS
    return math.ceil(2 * math.log10(low) - 1e-9), math.floor(2 * math.log10(high) + 1e-9)


def next_extension(tried: list[int], best: int, grid: list[int], allowed: float) -> int | None:
    """The next exponent past the edge the best rate sits on, or None when the best is interior,
    the extension is spent (``allowed`` points beyond the grid) or the next point is past
    :data:`~helpers.study.definition.LR_LIMITS`."""
    low, high = min(tried), max(tried)
    lo_limit, hi_limit = exponent_limits()
    if len(tried) < 2 or low < best < high:
        return None
    if best == high:
        candidate, used = high + 1, high - max(grid)
    else:
        candidate, used = low - 1, min(grid) - low
    if used >= allowed or not lo_limit <= candidate <= hi_limit:
        return None
    return candidate


def edge_status(tried: list[int], best: int, grid: list[int], allowed: float) -> str:
    """"interior", "open" (an extension is still due), "limit" (on an edge that is a declared
    limit) or "spent" (on an edge after the allowed extension)."""
    if min(tried) < best < max(tried):
        return "interior"
    if next_extension(tried, best, grid, allowed) is not None:
        return "open"
    lo_limit, hi_limit = exponent_limits()
    beyond = best + 1 if best == max(tried) else best - 1
    return "spent" if lo_limit <= beyond <= hi_limit else "limit"


def _axis_value(axis, u: float):
    if isinstance(axis, list):
        return axis[min(int(u * len(axis)), len(axis) - 1)]
    low, high, scale = axis
    if scale == "linear":
        return float(f"{low + u * (high - low):.4g}")
    if scale == "int":
        return int(round(low + u * (high - low)))
    if scale == "log":
        return float(f"{math.exp(math.log(low) + u * (math.log(high) - math.log(low))):.4g}")
    if scale == "pow2":
        value = math.exp(math.log(low) + u * (math.log(high) - math.log(low)))
        return int(min(max(2 ** round(math.log2(value)), low), high))
    if scale == "log1m":
        a, b = math.log(1 - low), math.log(1 - high)
        return float(f"{1 - math.exp(a + u * (b - a)):.6g}")
    raise ValueError(f"unknown scale {scale!r}; use log, linear, log1m, int, pow2 or a list of choices")


def _axes(space: dict) -> list[tuple[str, int | None, object]]:
    """(name, index within a tuple-valued hyperparameter or None, axis) per dimension."""
    out = []
    for name, axis in space.items():
        if isinstance(axis, tuple) and axis and isinstance(axis[0], tuple):
            out += [(name, i, a) for i, a in enumerate(axis)]
        else:
            out.append((name, None, axis))
    return out


def qmc_points(space: dict, n: int, key: str) -> list[dict]:
    """``n`` quasi-random settings over ``space`` (scrambled Halton, seeded by ``key``): the
    first ``n`` points of one fixed sequence, so a shorter budget keeps a prefix."""
    from scipy.stats import qmc
    if n < 1 or not space:
        return []
    axes = _axes(space)
    seed = zlib.crc32(f"{D.QMC_SEED}:{key}".encode())
    units = qmc.Halton(d=len(axes), scramble=True, seed=seed).random(n)
    points = []
    for u in units:
        point: dict = {}
        for (name, index, axis), value in zip(axes, u):
            v = _axis_value(axis, float(value))
            if index is None:
                point[name] = v
            else:
                point.setdefault(name, []).append(v)
        points.append({k: tuple(v) if isinstance(v, list) else v for k, v in point.items()})
    return points


def key_space(method: str) -> dict:
    """The method's other key hyperparameters (none: only the rate is tuned)."""
    get_spec(method)
    return dict(D.KEY_HPARAMS.get(method, {}))


def l2_space(method: str, lr: float) -> dict:
    """Rate within a decade around ``lr`` and the weight decay of the method's kind."""
    low, high = D.WEIGHT_DECAY[D.weight_decay_kind(method)]
    return {"lr": (lr / D.HALF_DECADE, lr * D.HALF_DECADE, "log"), "weight_decay": (low, high, "log")}


def rate_exponents(j: int, n: int) -> list[int]:
    """``n`` exponents around ``j``: 1 -> [j]; 2 -> [j-1, j]; 3 -> [j-1, j, j+1]."""
    return [j + k for k in range(-(n // 2), n - n // 2)]


def split_setting(point: dict) -> tuple[dict, dict]:
    """(optimizer hyperparameters, RunConfig fields) of a trial's setting."""
    hp = {k: v for k, v in point.items() if k not in D.RUN_SETTINGS}
    return hp, {k: v for k, v in point.items() if k in D.RUN_SETTINGS}


def score(val_acc, val_loss) -> tuple[float, float]:
    """Higher is better: hold-out accuracy, then lower loss; a missing value scores last."""
    acc = -1.0 if val_acc is None or not np.isfinite(val_acc) else float(val_acc)
    loss = -math.inf if val_loss is None or not np.isfinite(val_loss) else -float(val_loss)
    return acc, loss


def first_hits(frame: pd.DataFrame, target: float | None = None, metric: str = "val_acc") -> dict[str, float]:
    """run id -> oracle calls (``oracle_evals``, else ``grad_evals``) at the first record whose
    ``metric`` reaches ``target`` (default :data:`~helpers.study.definition.TARGET_ACC`); runs that
    never reach it are absent."""
    target = D.TARGET_ACC if target is None else target
    cost = "oracle_evals" if "oracle_evals" in frame else "grad_evals"
    if frame.empty or metric not in frame or cost not in frame:
        return {}
    reached = frame[pd.to_numeric(frame[metric], errors="coerce") >= target]
    return {k: float(v) for k, v in reached.groupby("run_id")[cost].min().items()}


def target_score(first_hit: float, val_acc, val_loss) -> tuple:
    """Higher is better: fewer oracle calls to the target; a run that never reaches it (inf)
    after every run that does, then by :func:`score`."""
    hit = math.inf if first_hit is None or not np.isfinite(first_hit) else float(first_hit)
    return (-hit, *score(val_acc, val_loss))


def best_of(frame: pd.DataFrame) -> pd.Series:
    """The run with the highest final validation accuracy (lower loss breaks ties); diverged runs last."""
    last = frame.sort_values("epoch").groupby("run_id").tail(1).copy()
    last["score"] = last["val_acc"].fillna(-1.0)
    last["tiebreak"] = -last["val_loss"].fillna(np.inf)
    return last.sort_values(["score", "tiebreak"], ascending=False).iloc[0]


def search_space(optimizer: str, scenario: str = "standard") -> dict:
    """What the protocol tunes for ``optimizer`` (rate, key hyperparameters; weight decay under l2)."""
    from ..constraints.scenarios import get_scenario
    space = {"lr": get_spec(optimizer).search_space["lr"], **key_space(optimizer)}
    if get_scenario(scenario).l2:
        space["weight_decay"] = D.WEIGHT_DECAY[D.weight_decay_kind(optimizer)] + ("log",)
    return space


def tuning_configs(base: RunConfig, n: int) -> list[RunConfig]:
    """A single-stage search for side experiments: ``n`` grid rates of ``base``'s optimizer on the
    hold-out (the study's staged tuning is :func:`helpers.study.protocol.plan`)."""
    from ..problem.data import N_TRAIN
    budget = base.grad_budget and base.epochs * round(base.train_fraction * (N_TRAIN - base.val_size))
    return [dataclasses.replace(base, hparams={**base.hparams, "lr": lr_of(j)}, eval_split="val",
                                grad_budget=budget, tag=base.tag or "tune")
            for j in grid_exponents(base.optimizer, n)]


def tune(base: RunConfig, n: int, executor=None, root=None, progress: bool = True):
    """Run :func:`tuning_configs`; return (table of their final rows, best hyperparameters)."""
    from .experiment import records_of, run_all
    configs = tuning_configs(base, n)
    run_all(configs, executor, root, progress)
    frame = records_of(configs, root)
    table = frame.sort_values("epoch").groupby("run_id").tail(1)
    return table.reset_index(drop=True), json.loads(best_of(frame)["hparams"])


def final_configs(base: RunConfig, hparams: dict, seeds) -> list[RunConfig]:
    """``base`` with the chosen hyperparameters, on all training images, one run per seed."""
    return [dataclasses.replace(base, hparams=_as_config(hparams), eval_split="test", seed=s)
            for s in seeds]


def _as_config(hparams: dict) -> dict:
    return {k: tuple(v) if isinstance(v, list) else v for k, v in hparams.items()}
