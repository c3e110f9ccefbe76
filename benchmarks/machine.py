"""(g) The whole machine: the starter's loop as its script runs it (torch's default thread count)
against the engine as the study runs it (one worker process per core, one torch thread each,
K models per worker), over the same steps at batch 64, in rounds.

Throughput is model-samples per wall second for the machine: the starter's samples over its
wall time; for the workers, the sum over workers of each worker's samples over its training wall
time (the engine's clock, evaluation excluded; the workers start together at a barrier and run
the same steps, so their intervals overlap). The ratio is taken per round (median over rounds).
Unlike (a), where every engine has one thread, this compares how each uses the machine by
default; a machine with other work on it says nothing here.
"""
from __future__ import annotations

import multiprocessing as mp
import os
import statistics
import sys
from concurrent.futures import ProcessPoolExecutor

import pandas as pd
import torch

_worker: dict = {}


def _init(fraction: float, val: int, barrier) -> None:
    from helpers.problem.data import load
    torch.set_num_threads(1)
    _worker.update(data=load(train_fraction=fraction, val_size=val), barrier=barrier, fraction=fraction)


def _train(k: int) -> dict:
    from .run import engine_run
    _worker["barrier"].wait()
    return engine_run(_worker["data"], _worker["fraction"], k)


def machine_throughput(dataset, fraction: float, rounds: int, k: int = 4, processes: int | None = None,
                       starter_threads: int | None = None, val: int = 100) -> pd.DataFrame:
    """Per round: the starter at ``starter_threads`` (default: torch's default, as its script
    runs) and ``processes`` workers (default: one per core) of K models each."""
    from .run import BATCH, starter_loop
    processes = processes or os.cpu_count() or 1
    threads = starter_threads or torch.get_num_threads()
    steps = -(-int(len(dataset) * fraction) // BATCH)
    context = mp.get_context("spawn")
    barrier = context.Barrier(processes)
    rows = []
    kept = torch.get_num_threads()
    with ProcessPoolExecutor(processes, mp_context=context, initializer=_init,
                             initargs=(fraction, val, barrier)) as pool:
        list(pool.map(_train, [1] * processes))  # warm-up: data loaded, kernels initialised
        for round_ in range(rounds):
            torch.set_num_threads(threads)
            try:
                got = starter_loop(dataset, steps, torch.device("cpu"))
            finally:
                torch.set_num_threads(kept)
            rows.append({"round": round_, "setup": f"starter, {threads} thread(s)", "starter": True, "processes": 1,
                         "models": 1,
                         "samples": got["samples"], "samples_per_s": got["samples"] / got["wall_s"]})
            results = list(pool.map(_train, [k] * processes))
            rows.append({"round": round_, "setup": f"engine, {processes} process(es) x K={k}, 1 thread each",
                         "starter": False, "processes": processes, "models": k * processes,
                         "samples": sum(r["samples"] for r in results),
                         "samples_per_s": sum(r["samples"] / r["wall_s"] for r in results)})
            print(f"  round {round_}: starter {rows[-2]['samples_per_s']:,.0f}, workers "
                  f"{rows[-1]['samples_per_s']:,.0f} model-samples/s", file=sys.stderr)
    frame = pd.DataFrame(rows)
    starter = frame[frame["starter"]].set_index("round")["samples_per_s"]  # one worker process is not the starter
    frame["ratio"] = frame["samples_per_s"] / frame["round"].map(starter)
    return frame


def summarize_machine(frame: pd.DataFrame) -> pd.DataFrame:
    """Median over rounds of model-samples per second and of the ratio to the starter."""
    return (frame.groupby("setup", sort=False)
            .agg(processes=("processes", "first"), models=("models", "first"),
                 samples_per_s=("samples_per_s", statistics.median), ratio=("ratio", statistics.median),
                 rounds=("round", "nunique"))
            .reset_index())


def machine_lines(summary: pd.DataFrame) -> list[str]:
    """The README table's (g) section."""
    lines = ["**(g) The whole machine**, each as it runs by default: the starter's loop at torch's default "
             "thread count against the study's setup (one worker process per core, one thread each, K models "
             f"per worker); model-samples per wall second, median over {int(summary['rounds'].max())} round(s):",
             "", "| setup | models | model-samples/s | x starter |", "|---|---:|---:|---:|"]
    for r in summary.itertuples():
        lines.append(f"| {r.setup} | {r.models} | {r.samples_per_s:,.0f} | {r.ratio:.2f} |")
    return lines + [""]

