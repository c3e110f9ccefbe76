"""The timing pass: every registered method's training cost, measured one way, on an idle machine.

What it measures. For each method, the study's final-run configuration (standard scenario, the
registry's default hyperparameters, the study's batch size and growth, all 60,000 training
images) is trained by the engine's own stepper, the object :func:`helpers.engine.train.run`
drives (``StackedStepper`` for methods with a stacked rule, ``ModuleStepper`` for the others),
in a loop that does what ``run`` does per step (batch selection, schedule factor, ``step``,
``after_step``) and nothing else (evaluation is not training time, as in the records' ``wall_s``),
with one torch thread, as the study's worker processes use (two workers on two cores):

- warm-up: steps until ``warmup_s`` seconds have passed (at least one step);
- N = ``target_s`` / the warm-up's fastest step (at least 1), rounded up to a multiple of the
  method's own period (K-FAC's factor/inverse intervals, Shampoo's update interval, Lookahead's
  k, SWA's interval) when N > 1; full-batch and other slow steps: N = 1;
- 3 repetitions of N steps; per-step cost = the median over the repetitions of seconds per
  oracle call (``stepper.counts()``: sample gradients + Hessian-vector products) times the
  median oracle calls per step;
- work at an epoch's start (SVRG's and SARAH's full gradient) timed apart by the rule's own
  ``on_epoch_start`` on the first chunk of the engine's full-gradient pass (32,768 / K images;
  the pass is that chunk repeated), scaled to all images; median of 3 (of 1 when one takes
  longer than ``long_s``);
- seconds per 60,000 oracle calls (the planner's unit) = 60,000 x the run's time / its oracle
  calls, over the epochs its budget covers: each epoch costs its start plus ceil(n / b) steps
  at that epoch's batch size b (the growing batch: the first, middle and last epochs' sizes are
  timed, the others interpolated);
- a step may spend at most ``STEP_CAP`` full pass (60,000 calls): only full-batch L-BFGS
  reaches it (up to 25 full-batch evaluations a step); its steps are cut by the engine's own
  budget mechanism, so its figure is the per-call cost of its evaluations (the table's note).

K: every method at K = 1; methods the engine batches (a stacked rule, not full batch) also at
K = ``k`` models at once, reported per model (elapsed / K), as the records' ``wall_s`` is. The
default :data:`STUDY_K` = 4 stands for the groups the study's planner forms: most runs train in
groups of 3 (a row's seeds, the sparse rates), the others in groups of 4 (quasi-random trials),
7 (the rate grid) and 8 (the l2 trials), and the per-model cost falls more slowly as K grows
(``outputs/benchmarks/throughput.csv``), so a group of 4 is near the runs' average cost per
model; ``--k`` measures another. A batched measurement that the engine refuses or fails (it
then trains the models one by one in the study too) leaves the batched figure empty.

Busy-machine rule (so no wall time comes from a loaded machine). Before the pass: the 1-minute
load average must be at most ``max_load`` (0.5), the other processes together must use at most
``max_others`` cores (0.2) over a 2 s sample, and no other process of this project may be
training (command lines with ``helpers``, ``papermill``, ``benchmarks.run``, ``dask`` or
``pytest``); otherwise the pass refuses (:class:`MachineBusy`; exit status 3). During the pass
the other processes' CPU use is measured over every measurement (system busy CPU minus this
process's CPU, in cores; column ``others_cpu``); a measurement above ``max_others`` is taken
again after a pause, and if it is still busy the pass stops and writes nothing. ``--force``
turns each refusal into a loud warning and marks the table (``idle`` False).

Output (atomic: temp file, then rename): ``outputs/timing/seconds_per_epoch.csv``, the table
:func:`helpers.study.readout.cost_table` reads (method, seconds_per_epoch,
batched_seconds_per_epoch, ...; one row per method, rows of methods not timed this time kept),
and ``seconds_per_epoch.json``, where it was measured (machine, torch, commit, threads, load,
the rule, the settings, the duration). Report figures for wall time come from this table:
:func:`seconds_per_run` (per method, one final run), :func:`seconds_per_oracle_call` and
:func:`wall_seconds` (e.g. the sample gradients a run spent to reach a target).

Batch-size study (issue 15): ``--batch-study`` (the definition's ``BATCH_METHODS`` at its
``BATCH_SIZES``), or ``--batch-sizes 1,8,full --methods sgd``, times the methods at those batch
sizes instead of their own, the same way, into
``outputs/timing/seconds_per_epoch_by_batch.csv`` keyed by (method, batch_size);
``seconds_per_oracle_call(method, batch_size=...)`` reads it.

``python -m helpers.study.timing [--methods a,b] [--k 4] [--target-s 2] [--force]``
"""
from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import pandas as pd
import torch

from ..engine.batched import max_models, why_not_batch
from ..engine.schedules import lr_factor
from ..engine.stacked_model import MAX_SAMPLES_PER_STEP
from ..engine.steppers import BudgetSpent, ModuleStepper, StackedStepper
from ..engine.train import fixed_order
from ..optimizers import get_spec, names
from ..problem.data import N_TRAIN, Split, batch_indices
from ..problem.model import LeNet5
from ..runtime import environment, git_commit, seed_everything
from .readout import COSTS_FILE, ORACLE_EPOCH

TABLE = COSTS_FILE
BATCH_TABLE = COSTS_FILE.with_name("seconds_per_epoch_by_batch.csv")
STUDY_K = 4
REPS = 3
STEP_CAP = 1  # full passes a timed step may spend
PERIOD_KEYS = ("k", "factor_interval", "inverse_interval", "update_interval", "swa_every", "snapshot_every")
PROJECT_PROCESSES = ("helpers", "papermill", "benchmarks.run", "dask", "pytest")
COLUMNS = ["method", "seconds_per_epoch", "batched_seconds_per_epoch", "k_batched", "batch_size",
           "steps", "batched_steps", "seconds_per_step", "batched_seconds_per_step", "oracle_per_step",
           "epoch_start_seconds", "batched_epoch_start_seconds", "spread", "batched_spread",
           "others_cpu", "idle", "engine", "threads", "device", "commit", "measured", "note"]


class MachineBusy(RuntimeError):
    """The machine is not idle enough for wall-time measurements (the message says why)."""


@dataclass
class Settings:
    """How long and how strictly the pass measures (defaults: the full pass, about 10 minutes on 2 cores)."""
    target_s: float = 2.0
    warmup_s: float = 0.5
    long_s: float = 5.0
    k: int = STUDY_K
    max_load: float = 0.5
    max_others: float = 0.2
    pause_s: float = 30.0
    sample_s: float = 2.0
    force: bool = False
    check: bool = True
    train_fraction: float = 1.0  # tests only: the full pass times all 60,000 images
    batch_size: int | str | None = None  # None: the study's batch size for the method


# ---------------------------------------------------------------- the busy-machine rule

def _busy_cpu() -> float:
    import psutil
    t = psutil.cpu_times()
    return sum(t) - t.idle - getattr(t, "iowait", 0.0) - getattr(t, "guest", 0.0) - getattr(t, "guest_nice", 0.0)


def _own_cpu() -> float:
    t = os.times()
    return t.user + t.system


class OthersMeter:
    """Cores used by other processes while the block runs (system busy CPU minus this process's)."""

    def __enter__(self):
        self.wall, self.busy, self.own = time.perf_counter(), _busy_cpu(), _own_cpu()
        return self

    def __exit__(self, *exc):
        wall = max(time.perf_counter() - self.wall, 1e-9)
        self.cores = max(0.0, (_busy_cpu() - self.busy - (_own_cpu() - self.own)) / wall)
        return False


def project_processes() -> list[str]:
    """Other processes of this project that may be training (not this one, its parents or children)."""
    import psutil
    me = psutil.Process()
    mine = {me.pid} | {p.pid for p in me.parents()} | {p.pid for p in me.children(recursive=True)}
    found = []
    for p in psutil.process_iter(["pid", "cmdline"]):
        cmd = " ".join(p.info.get("cmdline") or [])
        if p.info["pid"] in mine or "python" not in cmd:
            continue
        if any(word in cmd for word in PROJECT_PROCESSES):
            found.append(f"{p.info['pid']}: {cmd[:120]}")
    return found


def busy_reasons(settings: Settings, sample_s: float | None = None) -> list[str]:
    """Why the machine is too busy to time on (empty: idle), by the rule in the module docstring."""
    reasons = []
    load = os.getloadavg()[0]
    if load > settings.max_load:
        reasons.append(f"1-minute load average {load:.2f} > {settings.max_load}")
    with OthersMeter() as meter:
        time.sleep(settings.sample_s if sample_s is None else sample_s)
    if meter.cores > settings.max_others:
        reasons.append(f"other processes use {meter.cores:.2f} cores > {settings.max_others}")
    procs = project_processes()
    if procs:
        reasons.append("other processes of this project are running: " + "; ".join(procs[:5]))
    return reasons


def check_idle(settings: Settings, sample_s: float | None = None) -> list[str]:
    """Raise :class:`MachineBusy` unless the machine is idle (with ``force``: warn loudly, return the reasons)."""
    if not settings.check:
        return []
    reasons = busy_reasons(settings, sample_s)
    if reasons and not settings.force:
        raise MachineBusy("machine busy, timing refused: " + "; ".join(reasons)
                          + " (wait until nothing else runs, or --force to mark the table as not idle)")
    for reason in reasons:
        print(f"WARNING: TIMING ON A BUSY MACHINE: {reason}", file=sys.stderr)
    return reasons


# ---------------------------------------------------------------- one measurement

@dataclass
class Timing:
    """One (method, K): per model, seconds per 60,000 oracle calls and how they were obtained."""
    method: str
    k: int
    seconds_per_epoch: float
    seconds_per_step: float
    oracle_per_step: float
    steps: int
    batch_size: str
    epoch_start_seconds: float
    spread: float  # slowest / fastest repetition
    others_cpu: float
    note: str = ""
    reps: list = field(default_factory=list)


def study_configs(method: str, k: int = 1, train_fraction: float = 1.0, batch_size: int | str | None = None):
    """K copies (seeds 0..K-1) of the study's final-run configuration of ``method`` (standard
    scenario), at ``batch_size`` if given (the batch-size study's runs)."""
    from .recipe import base_config
    base = base_config(method, train_fraction=train_fraction)
    if batch_size is not None:
        base = replace(base, batch_size=batch_size, batch_growth=None)
    return [replace(base, seed=s) for s in range(k)]


def batched_k(method: str, k: int = STUDY_K, batch_size: int | str | None = None) -> int | None:
    """The K a batched measurement of ``method`` uses (``k`` capped by the engine), None if it does not batch."""
    config = study_configs(method, batch_size=batch_size)[0]
    k = min(k, max_models(config))
    if k < 2 or why_not_batch(study_configs(method, 2, batch_size=batch_size)) is not None:
        return None
    return k


def _period(config) -> int:
    hp = config.effective_hparams
    period = 1
    for key in PERIOD_KEYS:
        value = hp.get(key)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            period = math.lcm(period, value)
    return period


class _Loop:
    """The per-step work of :func:`helpers.engine.train.run` on a stepper, batches as ``run`` draws them."""

    def __init__(self, configs, data):
        self.configs, self.data = configs, data
        first = configs[0]
        self.spec = get_spec(first.optimizer)
        self.n = len(data.train)
        self.sizes = first.epoch_batch_sizes(self.n)
        self.total_steps = sum(math.ceil(self.n / b) for b in self.sizes)
        self.generators = [seed_everything(c.seed) for c in configs]
        needs = self.spec.needs | (self.spec.rule.needs if self.spec.rule is not None else frozenset())
        self.fixed_batches = "fixed_batches" in needs
        self.allowance = STEP_CAP * self.n
        self.capped = False
        self.step_count, self.offset = 0, 0
        self.loss_sum = torch.zeros(len(configs), device=data.device, dtype=torch.float64)
        self._orders, self._size, self._fixed = [], None, None
        self._build()

    def _build(self) -> None:
        """A fresh stepper (also after a step cut at the cap, which may leave an optimizer's state half-done)."""
        nets = []
        for c in self.configs:
            torch.manual_seed(c.seed)
            nets.append(LeNet5())
        if self.spec.rule is not None:
            self.stepper = StackedStepper(self.configs, nets, self.data, self.spec, self.total_steps)
        else:
            self.stepper = ModuleStepper(self.configs[0], nets[0], self.data, self.spec, self.total_steps)
        self.stepper.begin()
        self.broken = False

    def spent(self) -> int:
        return self.offset + sum(self.stepper.counts())

    def _allow(self) -> None:
        self.stepper.budget = sum(self.stepper.counts()) + self.allowance

    def epoch_start(self) -> None:
        self._allow()
        self.stepper.on_epoch_start()

    def _next_batch(self, size: int):
        if size != self._size:
            self._size, self._orders = size, []
            self._fixed = ([batch_indices(self.n, size, g) for g in self.generators]
                           if self.fixed_batches else None)
        if not self._orders or not self._orders[0]:
            if self._fixed is not None:
                self._orders = [fixed_order(f, g) for f, g in zip(self._fixed, self.generators)]
            else:
                self._orders = [list(enumerate(batch_indices(self.n, size, g))) for g in self.generators]
            self._orders = [list(reversed(o)) for o in self._orders]
        batch = [o.pop() for o in self._orders]
        return [b[0] for b in batch], torch.stack([b[1] for b in batch]).to(self.data.device), math.ceil(self.n / size)

    def steps(self, size: int, count: int) -> None:
        first = self.configs[0]
        for _ in range(count):
            ids, index, n_batches = self._next_batch(size)
            if self.broken:
                self.offset += sum(self.stepper.counts())
                self._build()
                self.epoch_start()
            self._allow()
            before = self.spent()
            factor = lr_factor(first.schedule, min(self.step_count / self.total_steps, 1.0),
                               **first.schedule_params)
            try:
                losses = self.stepper.step(self.data.train.x[index], self.data.train.y[index], factor, ids,
                                           n_batches)
            except BudgetSpent:  # cut at the cap: its calls were made and count; the next step starts afresh
                self.capped = self.broken = True
                continue
            self.stepper.after_step(self.step_count)
            self.step_count += 1
            self.loss_sum += losses.detach().double()
            if hasattr(getattr(self.stepper, "optimizer", None), "limit_evaluations") and \
                    self.spent() - before >= self.allowance:
                self.capped = True

    def sync(self) -> None:
        if self.data.device.type == "cuda":
            torch.cuda.synchronize(self.data.device)


def _timed(fn) -> tuple[float, float]:
    """(seconds, cpu seconds of this process) of ``fn()``."""
    cpu, t0 = time.process_time(), time.perf_counter()
    fn()
    return time.perf_counter() - t0, time.process_time() - cpu


def _time_size(loop: _Loop, size: int, settings: Settings, period: int) -> tuple[float, float, int, float, list]:
    """(seconds per step, oracle calls per step, N, spread, reps) at batch ``size``: warm-up, then 3 x N steps.

    Seconds per oracle call: the median over the repetitions; calls per step: their median."""
    warm: list[float] = []
    while not warm or sum(warm) < settings.warmup_s:
        warm.append(_timed(lambda: (loop.steps(size, 1), loop.sync()))[0])
    per_step = min(warm)  # the first steps allocate state (SAGA's table): slower than the rest
    count = max(1, math.ceil(settings.target_s / max(per_step, 1e-6)))
    if count > 1:
        count = math.ceil(count / period) * period
    reps = []
    for _ in range(REPS):
        calls = loop.spent()
        wall, cpu = _timed(lambda: (loop.steps(size, count), loop.sync()))
        reps.append(dict(seconds=wall, cpu=cpu, calls=loop.spent() - calls, steps=count))
    per_call = statistics.median(r["seconds"] / max(r["calls"], 1) for r in reps)
    calls = statistics.median(r["calls"] for r in reps) / count
    spread = max(r["seconds"] for r in reps) / min(r["seconds"] for r in reps)
    return per_call * calls, calls, count, spread, reps


def _time_epoch_start(loop: _Loop, settings: Settings) -> tuple[float, float]:
    """(seconds, oracle calls) of the work at an epoch's start for the whole training set.

    Work that passes over the data (``epoch_cost`` > 0) is timed on the first chunk of the
    engine's full-gradient pass (32,768 / K images; the pass is that chunk repeated) and scaled
    to all images: median of 3, or 1 when one takes longer than ``long_s``; other work at the
    start (an average's fold) is not timed (it does no pass over the data)."""
    if loop.stepper.epoch_cost(loop.n) == 0:
        loop.epoch_start()
        return 0.0, 0.0
    full, m = loop.stepper.train_split, min(loop.n, max(1, MAX_SAMPLES_PER_STEP // len(loop.configs)))
    loop.stepper.train_split = Split(full.x[:m], full.y[:m])
    try:
        per_call = []
        for _ in range(REPS):
            before = loop.spent()
            wall = _timed(lambda: (loop.epoch_start(), loop.sync()))[0]
            per_call.append(wall / max(loop.spent() - before, 1))
            if wall > settings.long_s:
                break
    finally:
        loop.stepper.train_split = full
    return statistics.median(per_call) * loop.n, float(loop.n)


def timed_sizes(sizes: list[int], most: int = 3) -> list[int]:
    """The batch sizes to time: all if at most ``most``, else the first, middle and last."""
    sizes = list(dict.fromkeys(sizes))
    if len(sizes) <= most:
        return sizes
    return list(dict.fromkeys([sizes[0], sizes[len(sizes) // 2], sizes[-1]]))


def step_at(step: dict, size: int) -> tuple[float, float]:
    """(seconds, oracle calls) per step at ``size``: timed, else interpolated between the timed
    sizes (seconds per call linear in log size; calls per step proportional to size)."""
    if size in step:
        return step[size]
    timed = sorted(step)
    lo = max([s for s in timed if s < size], default=timed[0])
    hi = min([s for s in timed if s > size], default=timed[-1])
    calls = step[lo][1] * size / lo
    per = {s: step[s][0] / step[s][1] for s in (lo, hi)}
    w = 0.0 if hi == lo else (math.log(size) - math.log(lo)) / (math.log(hi) - math.log(lo))
    return calls * ((1 - w) * per[lo] + w * per[hi]), calls


def run_cost(config, n: int, step: dict, start: tuple[float, float]) -> tuple[float, float]:
    """(seconds, oracle calls) of one model's run: per epoch its start plus ceil(n/b) steps at
    that epoch's batch size b, until the oracle budget is spent."""
    seconds = calls = 0.0
    budget = config.grad_budget or math.inf
    for size in config.epoch_batch_sizes(n)[:config.epochs]:
        size = min(size, n)
        t_step, c_step = step_at(step, size)
        steps = math.ceil(n / size)
        epoch_calls = start[1] + steps * c_step
        share = min(1.0, (budget - calls) / epoch_calls) if epoch_calls else 1.0
        seconds += share * (start[0] + steps * t_step)
        calls += share * epoch_calls
        if calls >= budget:
            break
    return seconds, calls


def measure(method: str, data, k: int = 1, settings: Settings | None = None) -> Timing:
    """Time ``method`` at K = ``k`` models at once on ``data`` (see the module docstring)."""
    settings = settings or Settings()
    configs = study_configs(method, k, settings.train_fraction, settings.batch_size)
    with OthersMeter() as meter:
        loop = _Loop(configs, data)
        start = _time_epoch_start(loop, settings)
        period = _period(configs[0])
        all_sizes = [min(b, loop.n) for b in loop.sizes[:configs[0].epochs]]
        sizes = timed_sizes(all_sizes)
        if len(sizes) > 1:
            settings = replace(settings, target_s=settings.target_s / len(sizes))
        step, reps, counts, spreads = {}, [], [], []
        for size in sizes:
            t, c, count, spread, r = _time_size(loop, size, settings, period)
            step[size] = (t / k, c)
            reps += r
            counts.append(count)
            spreads.append(spread)
    start_per_model = (start[0] / k, start[1]) if start[1] else (0.0, 0.0)
    seconds, calls = run_cost(configs[0], loop.n, step, start_per_model)
    distinct = list(dict.fromkeys(all_sizes))
    note = []
    if loop.capped:
        note.append(f"steps cut at {STEP_CAP} full pass(es) of oracle calls: per-call cost of its evaluations")
    if len(distinct) > 1:
        note.append(f"batch grows by epoch ({distinct[0]}..{distinct[-1]}): sizes "
                    f"{','.join(map(str, sizes))} timed, the others interpolated")
    t0, c0 = step[sizes[0]]
    return Timing(method=method, k=k, seconds_per_epoch=ORACLE_EPOCH * seconds / calls,
                  seconds_per_step=t0, oracle_per_step=c0, steps=counts[0],
                  batch_size=str(distinct[0]) if len(distinct) == 1 else f"{distinct[0]}..{distinct[-1]}",
                  epoch_start_seconds=start_per_model[0], spread=max(spreads),
                  others_cpu=meter.cores, note="; ".join(note), reps=reps)


def measure_idle(method: str, data, k: int, settings: Settings, busy: list[str]) -> Timing:
    """:func:`measure`, again after a pause if others used the CPU meanwhile; refuses if they still
    do (with ``force``: no pause, a loud warning, the reason added to ``busy``)."""
    timing = measure(method, data, k, settings)
    if not settings.check or timing.others_cpu <= settings.max_others:
        return timing
    if not settings.force:
        print(f"{method} K={k}: other processes used {timing.others_cpu:.2f} cores; measuring again in "
              f"{settings.pause_s:.0f} s", file=sys.stderr)
        time.sleep(settings.pause_s)
        timing = measure(method, data, k, settings)
        if timing.others_cpu <= settings.max_others:
            return timing
    reason = f"{method} K={k}: other processes used {timing.others_cpu:.2f} cores > {settings.max_others}"
    if not settings.force:
        raise MachineBusy(f"machine became busy, timing stopped (nothing written): {reason}")
    print(f"WARNING: TIMING ON A BUSY MACHINE: {reason}", file=sys.stderr)
    busy.append(reason)
    return timing


# ---------------------------------------------------------------- the pass and its table

def _atomic_write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _batch_order(size: str) -> float:
    return float(size) if str(size).isdigit() else math.inf


def header_path(path) -> Path:
    return Path(path).with_suffix(".json")


def _row(single: Timing, batched: Timing | None, env: dict, idle: bool, measured: str, failed: str = "") -> dict:
    b = batched
    return dict(method=single.method, seconds_per_epoch=single.seconds_per_epoch,
                batched_seconds_per_epoch=b.seconds_per_epoch if b else None, k_batched=b.k if b else None,
                batch_size=single.batch_size, steps=single.steps, batched_steps=b.steps if b else None,
                seconds_per_step=single.seconds_per_step,
                batched_seconds_per_step=b.seconds_per_step if b else None,
                oracle_per_step=single.oracle_per_step, epoch_start_seconds=single.epoch_start_seconds,
                batched_epoch_start_seconds=b.epoch_start_seconds if b else None,
                spread=single.spread, batched_spread=b.spread if b else None,
                others_cpu=max(single.others_cpu, b.others_cpu if b else 0.0), idle=idle,
                engine="stacked" if get_spec(single.method).rule is not None else "module",
                threads=env["torch_threads"], device=env["device"], commit=env["git_commit"],
                measured=measured,
                note="; ".join(dict.fromkeys(x for x in (single.note, b.note if b else "", failed) if x)))


def write_table(rows: list[dict], path=TABLE, header: dict | None = None, by_batch: bool = False) -> pd.DataFrame:
    """Merge ``rows`` into the table at ``path`` (rows of other methods, or other (method, batch
    size) pairs with ``by_batch``, kept; methods no longer registered dropped), write it and its
    header atomically; return the table. The cost table has a row per registered method."""
    path = Path(path)
    key = ["method", "batch_size"] if by_batch else ["method"]
    new = pd.DataFrame(rows, columns=COLUMNS).astype({"batch_size": str})
    if path.is_file():
        old = pd.read_csv(path, dtype={"batch_size": str})
        old = old[old["method"].isin(names()) & old["seconds_per_epoch"].notna()]
        taken = set(map(tuple, new[key].values))
        old = old[[tuple(v) not in taken for v in old[key].values]]
        new = pd.concat([old.reindex(columns=COLUMNS), new], ignore_index=True) if len(old) else new
    if by_batch:
        table = new.sort_values(key, key=lambda c: c.map(_batch_order) if c.name == "batch_size" else c
                                ).reset_index(drop=True)
    else:
        table = pd.DataFrame({"method": names()}).merge(new, on="method", how="left")[COLUMNS]
    if header is not None:
        _atomic_write(header_path(path), json.dumps(header, indent=1, default=str) + "\n")
    _atomic_write(path, table.to_csv(index=False))
    return table


def timing_pass(methods=None, path=TABLE, settings: Settings | None = None, data=None,
                progress: bool = True, command: str = "timing_pass()", batch_sizes=None) -> pd.DataFrame:
    """Time ``methods`` (default: every registered one) at K = 1 and at the batched K with one
    torch thread; write the table (see the module docstring). ``batch_sizes`` (ints or "full"):
    time each method at each of them instead of its own, into a table keyed by (method,
    batch_size) (the batch-size study's wall times; default path :data:`BATCH_TABLE`)."""
    settings = settings or Settings()
    methods = list(methods or names())
    for m in methods:
        get_spec(m)
    threads, omp = torch.get_num_threads(), os.environ.get("OMP_NUM_THREADS")
    torch.set_num_threads(1)
    os.environ["OMP_NUM_THREADS"] = "1"
    try:
        return _timing_pass(methods, path, settings, data, progress, command, batch_sizes)
    finally:
        torch.set_num_threads(threads)
        if omp is None:
            os.environ.pop("OMP_NUM_THREADS", None)
        else:
            os.environ["OMP_NUM_THREADS"] = omp


def _timing_pass(methods, path, settings: Settings, data, progress: bool, command: str,
                 batch_sizes=None) -> pd.DataFrame:
    started, wall0 = time.strftime("%Y-%m-%d %H:%M:%S %Z"), time.perf_counter()
    load_before = os.getloadavg()
    busy = check_idle(settings)
    if data is None:
        from .records import data_for
        data = data_for(study_configs(methods[0], 1, settings.train_fraction)[0])
    env = environment(data.device)
    idle = settings.check and not busy
    rows = []
    variants = [(m, replace(settings, batch_size=b)) for m in methods for b in (batch_sizes or [None])]
    for i, (m, sized) in enumerate(variants):
        single = measure_idle(m, data, 1, sized, busy)
        k = batched_k(m, settings.k, sized.batch_size)
        batched, failed = None, ""
        if k:
            try:
                batched = measure_idle(m, data, k, sized, busy)
            except MachineBusy:
                raise
            except Exception as exc:  # the study's batched run fails the same way and trains them one by one
                failed = f"batched engine failed at K={k} ({type(exc).__name__}: {str(exc)[:100]}): K=1 only"
                print(f"{m}: {failed}", file=sys.stderr)
        rows.append(_row(single, batched, env, idle=idle and not busy, measured=started, failed=failed))
        if sized.batch_size is not None:
            rows[-1]["batch_size"] = str(sized.batch_size)
        if progress:
            extra = f", K={k}: {batched.seconds_per_epoch:.1f} s per model" if batched else ""
            at = f" at batch {single.batch_size}" if batch_sizes else ""
            print(f"[{i + 1}/{len(variants)}] {m}{at}: {single.seconds_per_epoch:.1f} s per 60,000 oracle calls"
                  f"{extra} ({time.perf_counter() - wall0:.0f} s so far)", file=sys.stderr)
    header = {"command": command, "measured": started,
              "seconds": round(time.perf_counter() - wall0, 1), "environment": env,
              "torch_threads": torch.get_num_threads(), "methods": methods, "batch_sizes": batch_sizes,
              "settings": {k: v for k, v in asdict(settings).items() if k != "check"},
              "load_average_before": load_before, "load_average_after": os.getloadavg(),
              "idle": idle and not busy, "busy_reasons": busy, "commit": git_commit(),
              "unit": "seconds of training per 60,000 oracle calls per model, one process, one torch thread",
              "rule": ("refuse when the 1-minute load average > max_load, other processes use > max_others "
                       "cores, or another process of this project runs; a measurement during which others "
                       "used > max_others cores is repeated once, then the pass stops")}
    return write_table(rows, path, header, by_batch=bool(batch_sizes))


# ---------------------------------------------------------------- what the report reads

def read_table(path=TABLE) -> pd.DataFrame:
    """The timing pass's table (measured rows only)."""
    path = Path(path)
    if not path.is_file():
        return pd.DataFrame(columns=COLUMNS)
    table = pd.read_csv(path, dtype={"batch_size": str})
    return table[table["seconds_per_epoch"].notna()].reset_index(drop=True)


def seconds_per_oracle_call(method: str, batch_size: int | str | None = None, batched: bool = False,
                            path=None) -> float:
    """Seconds of training per oracle call of ``method`` (per model, one process, one thread):
    at its study batch size from the cost table, or at ``batch_size`` from the batch-size table
    ("full" = all training images); the batched figure when ``batched`` (the models of a group
    trained at once), else K = 1. KeyError if the pass has not timed it."""
    table = read_table(path or (TABLE if batch_size is None else BATCH_TABLE))
    rows = table[table["method"] == method]
    if batch_size is not None:
        rows = rows[rows["batch_size"] == str(batch_size)]
    column = "batched_seconds_per_epoch" if batched else "seconds_per_epoch"
    if rows.empty or pd.isna(rows.iloc[0][column]):
        at = f" at batch size {batch_size}" if batch_size is not None else ""
        raise KeyError(f"{method}{at} ({'batched' if batched else 'K = 1'}) is not in the timing table "
                       f"{path or (TABLE if batch_size is None else BATCH_TABLE)}; run python -m helpers.study.timing")
    return float(rows.iloc[0][column]) / ORACLE_EPOCH


def wall_seconds(method: str, oracle_calls: float, batch_size: int | str | None = None, batched: bool = False,
                 path=None) -> float:
    """Training seconds that ``oracle_calls`` cost ``method`` by the timing pass (e.g. the sample
    gradients a run spent to reach a target accuracy): see :func:`seconds_per_oracle_call`."""
    return float(oracle_calls) * seconds_per_oracle_call(method, batch_size, batched, path)


def read_header(path=TABLE) -> dict:
    """Where and how the table was measured (machine, torch, commit, threads, load, settings)."""
    p = header_path(path)
    return json.loads(p.read_text()) if p.is_file() else {}


def seconds_per_run(path=TABLE, profile: str = "full", batched: bool = True) -> pd.DataFrame:
    """Per method: seconds per 60,000 oracle calls (batched figure first when ``batched``, as the
    planner reads it) and seconds of training of one final run of ``profile`` (its oracle budget);
    ``engine_k`` says which figure (1 or the batched K)."""
    from .definition import get_profile
    from .recipe import oracle_budget
    table = read_table(path)
    p = get_profile(profile)
    rows = []
    for r in table.itertuples():
        use_batched = batched and pd.notna(r.batched_seconds_per_epoch)
        per_epoch = r.batched_seconds_per_epoch if use_batched else r.seconds_per_epoch
        budget = oracle_budget(r.method, p, "test")
        rows.append(dict(method=r.method, seconds_per_epoch=float(per_epoch),
                         engine_k=int(r.k_batched) if use_batched else 1, oracle_calls=budget,
                         seconds_per_run=float(per_epoch) * budget / ORACLE_EPOCH, idle=bool(r.idle)))
    return pd.DataFrame(rows, columns=["method", "seconds_per_epoch", "engine_k", "oracle_calls",
                                       "seconds_per_run", "idle"])


def parse_batch_sizes(text: str) -> list[int | str]:
    """"1,8,full" -> [1, 8, "full"]; each size in 1..60,000 or "full"."""
    sizes: list[int | str] = []
    for item in text.split(","):
        item = item.strip()
        if item == "full":
            sizes.append(item)
            continue
        if not item.isdigit() or not 1 <= int(item) <= N_TRAIN:
            raise ValueError(f"batch size {item!r} is not allowed: a whole number from 1 to {N_TRAIN:,} or 'full'")
        sizes.append(int(item))
    return sizes


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m helpers.study.timing",
                                     description=__doc__.split("\n\n")[0],
                                     epilog="Run it while nothing else runs (about 10 minutes on 2 cores).")
    parser.add_argument("--methods", default=None, help="comma-separated methods (default: every registered one)")
    parser.add_argument("--k", type=int, default=STUDY_K, help="models at once for the batched figure")
    parser.add_argument("--target-s", type=float, default=Settings.target_s, help="seconds per repetition")
    parser.add_argument("--max-load", type=float, default=Settings.max_load)
    parser.add_argument("--max-others", type=float, default=Settings.max_others)
    parser.add_argument("--force", action="store_true", help="time even on a busy machine (marked not idle)")
    parser.add_argument("--batch-sizes", default=None,
                        help="e.g. 1,8,32,64,256,1024,full: time --methods at these batch sizes instead "
                             f"of their own, into {BATCH_TABLE.name} (the batch-size study)")
    parser.add_argument("--batch-study", action="store_true",
                        help="the batch-size study's methods at its batch sizes (helpers.study.definition "
                             "BATCH_METHODS x BATCH_SIZES)")
    parser.add_argument("--out", default=None, help=f"the table (default {TABLE}, or {BATCH_TABLE} "
                                                    "with --batch-sizes)")
    parser.add_argument("--train-fraction", type=float, default=1.0, help=argparse.SUPPRESS)
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(argv)
    if args.k < 1 or args.target_s <= 0:
        raise ValueError(f"--k must be >= 1 and --target-s > 0, got {args.k} and {args.target_s}")
    sizes = parse_batch_sizes(args.batch_sizes) if args.batch_sizes else None
    if args.batch_study:
        from . import definition as D
        sizes = sizes or list(D.BATCH_SIZES)
        args.methods = args.methods or ",".join(D.BATCH_METHODS)
    if sizes and not args.methods:
        raise ValueError("--batch-sizes needs --methods (e.g. --methods sgd,heavy_ball), or use --batch-study")
    out = args.out or str(BATCH_TABLE if sizes else TABLE)
    settings = Settings(target_s=args.target_s, k=args.k, max_load=args.max_load, max_others=args.max_others,
                        force=args.force, train_fraction=args.train_fraction)
    try:
        table = timing_pass(args.methods.split(",") if args.methods else None, out, settings,
                            command=" ".join(["python -m helpers.study.timing", *argv]), batch_sizes=sizes)
    except MachineBusy as exc:
        print(exc, file=sys.stderr)
        return 3
    with pd.option_context("display.width", 200):
        print(table[["method", "batch_size", "seconds_per_epoch", "batched_seconds_per_epoch", "k_batched",
                     "steps", "spread", "others_cpu", "note"]].round(3).to_string(index=False))
    print(f"written: {out} and {header_path(out)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    from ..cli import guarded
    sys.exit(guarded(main))
