"""Train a changing plan most valuable first, with a few units of work in flight.

A unit is a batched group (compatible runs trained as one stacked model,
:func:`helpers.engine.batched.compute_batch`) or one run (:func:`helpers.study.executors.compute_run`).
:func:`train_by_priority` keeps at most ``slots`` units in flight on an executor (one per worker:
the local pool's processes, Dask's worker threads). Whenever a unit ends it writes the unit's
records and asks the planner again, so a run that a finished one unblocked (a row's finals once
its tuning is done) goes out before less valuable runs that were runnable earlier, and a stop
at any moment has the most valuable runs written.

Failures: a batched group that raises is retried as single runs (which record their own
errors); a single run whose worker died is resubmitted up to ``retries`` times, then recorded as
failed (:func:`helpers.study.executors.record_lost`). Workers never write into the runs folder;
this process does, atomically (a measurement writes its own folder under outputs/measurements, atomically).
"""
from __future__ import annotations

import sys
import time
from concurrent.futures import FIRST_COMPLETED, Executor, Future, wait
from dataclasses import dataclass


@dataclass
class Unit:
    """Runs trained together (``batched``), one run, or one ``measurement`` (no configs);
    ``priority`` is its most valuable run's, or the measurement's."""
    configs: list
    priority: tuple
    label: str
    batched: bool
    measurement: object = None


class InlineExecutor(Executor):
    """Runs each task at submission, in this process (the plan's order without a pool)."""

    def submit(self, fn, /, *args, **kwargs) -> Future:
        future: Future = Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except BaseException as error:  # the caller handles it as a worker's error
            if isinstance(error, (KeyboardInterrupt, SystemExit)):
                raise
            future.set_exception(error)
        return future


def executor_slots(executor) -> int:
    """How many units ``executor`` runs at once: a local pool's workers, a Dask cluster's threads."""
    if isinstance(executor, InlineExecutor):
        return 1
    workers = getattr(executor, "workers", None)
    if workers:
        return int(workers)
    client = getattr(executor, "_client", None)
    if client is not None:
        return max(1, sum(client.nthreads().values()))
    return 1


def units(planned, singles: set, max_k: int = 32) -> list[Unit]:
    """``planned`` (the planner's runnable runs) as units, most valuable first; run ids in
    ``singles`` run alone (their group failed)."""
    from ..engine.batched import batch_groups
    first = {}
    for p in planned:
        first.setdefault(p.config.run_id, p)
    grouped = [p for p in first.values() if p.config.run_id not in singles]
    out = []
    for index in batch_groups([p.config for p in grouped], max_k):
        members = [grouped[i] for i in index]
        out.append(_unit(members, batched=len(members) > 1))
    out += [_unit([p], batched=False) for p in first.values() if p.config.run_id in singles]
    return sorted(out, key=lambda u: u.priority)


def measurement_units(measurements) -> list[Unit]:
    """One unit per measurement (:class:`helpers.study.planner.Measurement`), at its priority."""
    return [Unit([], m.priority, f"{m.row} measure {m.method}", False, m) for m in measurements]


def _unit(members, batched: bool) -> Unit:
    head = min(members, key=lambda p: p.priority)
    label = f"{head.row} {head.stage} {head.method}" + (f" x{len(members)}" if len(members) > 1 else "")
    return Unit([p.config for p in members], head.priority, label, batched)


def train_by_priority(next_plan, executor: Executor | None, root, progress: bool = True, slots: int | None = None,
                      retries: int = 2, max_k: int = 32, measure: bool = False):
    """Train what ``next_plan()`` (a :class:`helpers.study.planner.Plan`) names until it names
    nothing, most valuable first; return the last plan. ``measure``: also take the plan's
    measurements (each at most once per call), queued beside the runs by priority; a measurement
    writes its own records (:func:`helpers.study.records.measure_and_record`)."""
    from ..engine.batched import compute_batch
    from .executors import compute_run, remove_temp_files, store_run
    from .records import measure_and_record, write_run
    executor = executor if executor is not None else InlineExecutor()
    inline = isinstance(executor, InlineExecutor)
    slots = slots or executor_slots(executor)
    in_flight: dict[Future, tuple[Unit, float]] = {}
    singles: set[str] = set()
    measured: set[str] = set()
    attempts: dict[str, int] = {}
    while True:
        plan = next_plan()
        busy = {c.run_id for unit, _ in in_flight.values() for c in unit.configs}
        waiting = [p for p in plan.runnable if p.config.run_id not in busy]
        if waiting and not in_flight:
            remove_temp_files(root, {p.config.run_id for p in waiting})
        ready = [m for m in plan.measurements if m.measurement_id not in measured] if measure else []
        queue = sorted(units(waiting, singles, max_k) + measurement_units(ready), key=lambda u: u.priority)
        while queue and len(in_flight) < slots:
            unit = queue.pop(0)
            if unit.measurement is not None:
                measured.add(unit.measurement.measurement_id)
                task = executor.submit(measure_and_record, unit.measurement, root, False)
            elif unit.batched:
                task = executor.submit(compute_batch, unit.configs, None, progress and inline)
            else:
                task = executor.submit(compute_run, unit.configs[0])
            in_flight[task] = (unit, time.monotonic())
        if not in_flight:
            return plan
        finished, _ = wait(list(in_flight), return_when=FIRST_COMPLETED)
        for task in finished:
            unit, started = in_flight.pop(task)
            try:
                result = task.result()
            except (KeyboardInterrupt, SystemExit):
                raise
            except BaseException as error:  # a group that fails is redone run by run; a dead worker retried
                note = (f"measurement lost ({type(error).__name__}: {error}), asked for again next time"
                        if unit.measurement is not None else _retry(unit, error, singles, attempts, retries, root))
            else:
                if unit.measurement is not None:
                    statuses = ["measured"]
                elif unit.batched:
                    for config, records, meta, predictions in result:
                        write_run(config, records, meta, root, predictions=predictions)
                    statuses = [meta["status"] for _, _, meta, _ in result]
                else:
                    statuses = [store_run(result, root)["status"]]
                note = "done (" + ", ".join(f"{statuses.count(s)} {s}" for s in sorted(set(statuses))) + ")"
            if progress:
                print(f"{time.strftime('%H:%M:%S')} {note}: {unit.label} ({time.monotonic() - started:.0f} s)",
                      file=sys.stderr, flush=True)


def _retry(unit: Unit, error: BaseException, singles: set, attempts: dict, retries: int, root) -> str:
    from .executors import record_lost
    reason = f"{type(error).__name__}: {error}"
    if unit.batched:
        singles.update(c.run_id for c in unit.configs)
        return f"failed batched ({reason}), runs again one by one"
    config = unit.configs[0]
    attempts[config.run_id] = attempts.get(config.run_id, 0) + 1
    if attempts[config.run_id] <= retries:
        return f"worker lost ({reason}), resubmitted"
    record_lost(config, error, attempts[config.run_id], root)
    return f"recorded failed after {attempts[config.run_id]} attempts ({reason})"
